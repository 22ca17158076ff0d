// README "Command line" claims run as a script would run them (node --import tsx main/cli.ts,
// as tests/unit/cli-run.ts does, with an environment of the test's choosing):
//   - `tunebench data decontam --project DIR --eval FILE [--exclude]`: its report and its effect;
//   - `tunebench train CONFIG [key=value ...]`: overrides change the resolved config (run.json),
//     a bad override is an error naming the key;
//   - train's "run events as JSON lines on stdout and a progress bar with ETA on stderr";
//   - overwrite_output_dir ("Allow starting a fresh run in an output_dir that already holds one");
//   - `tunebench serve`: prints a URL with a token, answers it, 403 without it, stops on
//     SIGINT / SIGTERM, and keeps its data in the default data dir.
import { spawn, type ChildProcess } from 'node:child_process'
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { request } from 'node:http'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { writeByteLevelModel } from './generation-fixture'
import { writeDatasets } from './training.fixtures'
import { engineBuilt } from './trainingPython'
import { writeJsonl } from './data-helpers'

const repo = join(import.meta.dirname, '..', '..')

interface Result { code: number | null; signal: NodeJS.Signals | null; stdout: string; stderr: string }

/** The environment without the variables that pick the data dir or a Hub token. */
function cleanEnv(extra: Record<string, string> = {}): NodeJS.ProcessEnv {
  const env = { ...process.env }
  for (const k of ['TUNEBENCH_HOME', 'XDG_CONFIG_HOME', 'HF_TOKEN']) delete env[k]
  return { ...env, ...extra }
}

/** Every process started, so that none outlives the tests (a server that ignores a signal). */
const started: { child: ChildProcess; group: boolean }[] = []
function killAll() {
  for (const { child, group } of started) {
    if (child.pid === undefined) continue
    // A group outlives its leader (bin/tunebench.js dies of the signal, the server may not).
    if (!group && (child.exitCode !== null || child.signalCode !== null)) continue
    try {
      if (group) process.kill(-child.pid, 'SIGKILL')
      else child.kill('SIGKILL')
    } catch {
      // already gone
    }
  }
}

function start(args: string[], env: NodeJS.ProcessEnv, script = ['--import', 'tsx', 'main/cli.ts'], detached = false): { child: ChildProcess; done: Promise<Result>; out: () => string } {
  const child = spawn(process.execPath, [...script, ...args], { cwd: repo, env, stdio: ['ignore', 'pipe', 'pipe'], detached })
  started.push({ child, group: detached })
  let stdout = '', stderr = ''
  child.stdout!.on('data', (d: Buffer) => (stdout += d.toString()))
  child.stderr!.on('data', (d: Buffer) => (stderr += d.toString()))
  const done = new Promise<Result>((resolve) => child.on('close', (code, signal) => resolve({ code, signal, stdout, stderr })))
  return { child, done, out: () => stdout }
}

const cli = (args: string[], env = cleanEnv()) => start(args, env).done

let root: string
beforeAll(() => {
  root = mkdtempSync(join(tmpdir(), 'tb-readme-cli-'))
})
afterAll(() => {
  killAll()
  rmSync(root, { recursive: true, force: true })
})

describe('tunebench data decontam', () => {
  const evalQuestion = 'Natalia sold clips to 48 of her friends in April, and then she sold half as many clips in May. How many clips did she sell altogether?'
  const poem = 'Write a poem about the sea and the wind over the harbour at night.'
  const pair = (prompt: string) => ({ prompt, chosen: ' A good answer.', rejected: ' A bad answer.' })

  it('reports eval overlap and duplicates, changes nothing without --exclude, and excludes them from exports with it', async () => {
    const dir = join(root, 'decontam')
    mkdirSync(dir)
    const train = writeJsonl(join(dir, 'train.jsonl'), [
      pair(poem), // 1 clean
      pair('Question: ' + evalQuestion + ' Show your work.'), // 2 in the eval set
      pair(poem), // 3 exact duplicate of 1
      pair('List three facts about Jupiter.') // 4 clean
    ])
    const evalFile = writeJsonl(join(dir, 'gsm8k.jsonl'), [{ question: 'What is 1 + 1?', answer: '2' }, { question: evalQuestion, answer: '72' }])
    const project = join(dir, 'proj')
    const imported = await cli(['data', 'import', train, '--project', project])
    expect(imported.stderr).toBe('')
    expect(imported.code).toBe(0)
    const exported = async (name: string) => {
      const out = join(dir, `${name}.jsonl`)
      const r = await cli(['data', 'export', '--project', project, '--format', 'trl-dpo', '--out', out])
      expect(r.code, r.stderr).toBe(0)
      return readFileSync(out, 'utf8').trim().split('\n').map((l) => (JSON.parse(l) as { prompt: string }).prompt)
    }

    const report = await cli(['data', 'decontam', '--project', project, '--eval', evalFile])
    expect(report.stderr).toBe('')
    expect(report.code).toBe(0)
    const lines = report.stdout.split('\n')
    expect(lines.slice(0, 4)).toEqual([
      'scanned 4 records against 2 eval records (8-grams)',
      'contaminated: 1',
      'exact duplicates: 1',
      'near duplicates: 0'
    ])
    expect(lines[4]).toMatch(/^ {2}record 2: \d+% of n-grams in eval record 2: .*Natalia sold clips/)
    expect(report.stdout).not.toContain('excluded')
    // A report only: every record still exports.
    expect(await exported('before')).toHaveLength(4)

    const excluded = await cli(['data', 'decontam', '--project', project, '--eval', evalFile, '--exclude'])
    expect(excluded.code).toBe(0)
    expect(excluded.stdout).toContain('contaminated: 1\n')
    expect(excluded.stdout).toMatch(/^excluded 2 records$/m)
    const kept = await exported('after')
    expect(kept).toEqual([poem, 'List three facts about Jupiter.'])

    // The excluded records are out of the next scan too.
    const again = await cli(['data', 'decontam', '--project', project, '--eval', evalFile])
    expect(again.stdout).toMatch(/^scanned 2 records against 2 eval records/m)
    expect(again.stdout).toContain('contaminated: 0\nexact duplicates: 0\nnear duplicates: 0\n')
  })

  it('without --project it is a usage error (exit 2)', async () => {
    const r = await cli(['data', 'decontam', '--eval', 'x.jsonl'])
    expect(r.code).toBe(2)
    expect(r.stderr).toContain('data decontam needs --project DIR')
  })
})

describe.runIf(engineBuilt())('tunebench train', () => {
  let model: string
  let data: Record<string, string>
  beforeAll(() => {
    model = writeByteLevelModel(join(root, 'model'))
    data = writeDatasets(join(root, 'data'))
  })

  /** A tiny SFT config (YAML) whose output_dir is `out`. */
  const config = (name: string, out: string, extra = ''): string => {
    const file = join(root, `${name}.yaml`)
    writeFileSync(file, [
      `model_name_or_path: ${model}`, 'stage: sft', `dataset: ${data.sft_messages}`, `output_dir: ${out}`,
      'per_device_train_batch_size: 1', 'max_steps: 2', 'lora_rank: 4', 'learning_rate: 1.0e-3', 'threads: 1',
      'sample_prompts: 0', extra, ''
    ].join('\n'))
    return file
  }
  const runJson = (dir: string) => JSON.parse(readFileSync(join(dir, 'run.json'), 'utf8')) as Record<string, unknown>
  const events = (stdout: string) => stdout.split('\n').filter(Boolean).map((l) => JSON.parse(l) as { event: string } & Record<string, unknown>)

  it('key=value overrides change the resolved config the run uses (run.json, started event)', async () => {
    const fileOut = join(root, 'from-file')
    const overOut = join(root, 'from-override')
    const file = config('override', fileOut)
    const r = await cli(['train', file, 'max_steps=3', 'learning_rate=0.002', 'lora_rank=2', `output_dir=${overOut}`, 'logging_steps=1'])
    expect(r.code, r.stderr).toBe(0)
    expect(existsSync(fileOut)).toBe(false)
    const resolved = runJson(overOut)
    expect(resolved).toMatchObject({ max_steps: 3, learning_rate: 0.002, lora_rank: 2, lora_alpha: 4, output_dir: overOut, logging_steps: 1, stage: 'sft' })
    const started = events(r.stdout).find((e) => e.event === 'started')!
    expect(started).toMatchObject({ totalSteps: 3, config: { max_steps: 3, learning_rate: 0.002, lora_rank: 2 } })
    expect(events(r.stdout).at(-1)).toMatchObject({ event: 'finished', step: 3 })
    expect(readFileSync(join(overOut, 'trainer_log.jsonl'), 'utf8').trim().split('\n')).toHaveLength(3)
    expect(JSON.parse(readFileSync(join(overOut, 'adapter_config.json'), 'utf8'))).toMatchObject({ r: 2 })
  })

  it('a bad override is an error naming the key, and nothing is trained', async () => {
    const out = join(root, 'bad-override')
    const file = config('bad', out)
    const unknown = await cli(['train', file, 'lerning_rate=0.1'])
    expect(unknown.code).toBe(1)
    expect(unknown.stderr).toMatch(/tunebench train: .*bad\.yaml \(with command-line overrides\): lerning_rate: unknown key/)
    const wrongType = await cli(['train', file, 'max_steps=many'])
    expect(wrongType.code).toBe(1)
    expect(wrongType.stderr).toMatch(/max_steps: expected an integer, got "many"/)
    const outOfRange = await cli(['train', file, 'learning_rate=-1'])
    expect(outOfRange.code).toBe(1)
    expect(outOfRange.stderr).toMatch(/learning_rate: -1 is out of range/)
    const noValue = await cli(['train', file, 'max_steps'])
    expect(noValue.code).toBe(2)
    expect(noValue.stderr).toContain('expected key=value, got "max_steps"')
    for (const r of [unknown, wrongType, outOfRange, noValue]) expect(r.stdout).toBe('')
    expect(existsSync(out)).toBe(false)
  })

  it('prints run events as JSON lines on stdout and the progress bar with ETA on stderr only', async () => {
    const out = join(root, 'progress')
    const r = await cli(['train', config('progress', out), 'max_steps=3'])
    expect(r.code, r.stderr).toBe(0)
    // stdout: nothing but JSON lines.
    const lines = r.stdout.split('\n').filter(Boolean)
    expect(lines.length).toBeGreaterThan(0)
    for (const line of lines) expect(() => JSON.parse(line), line).not.toThrow()
    expect(events(r.stdout).map((e) => e.event)).toEqual(expect.arrayContaining(['started', 'log', 'finished']))
    expect(r.stdout).not.toMatch(/train \[|\beta\b/)
    // stderr: the bar, with elapsed time and ETA, its first step (drawn at once) and its last.
    const bar = (step: number, pct: number) => new RegExp(`^train \\[[#-]{24}\\] ${step}/3 ${pct}% elapsed \\d+:\\d\\d:\\d\\d eta \\d+:\\d\\d:\\d\\d`, 'm')
    expect(r.stderr).toMatch(bar(1, 33))
    expect(r.stderr).toMatch(/^train \[#{24}\] 3\/3 100% elapsed \d+:\d\d:\d\d eta 0:00:00/m)
    expect(r.stderr).not.toMatch(/^\{/m)
  })

  it('refuses an output_dir that already holds a run unless overwrite_output_dir is set, which starts it over', async () => {
    const out = join(root, 'overwrite')
    // 3 steps, saved every step: checkpoint-1 and checkpoint-2 (the last step is the final adapter).
    const file = config('overwrite', out, 'save_steps: 1')
    const first = await cli(['train', file, 'max_steps=3'])
    expect(first.code, first.stderr).toBe(0)
    expect(readdirSync(out).filter((n) => n.startsWith('checkpoint-')).sort()).toEqual(['checkpoint-1', 'checkpoint-2'])
    const snapshot = () => ['run.json', 'trainer_log.jsonl', 'status.json', 'adapter_model.safetensors'].map((f) => readFileSync(join(out, f)))
    const before = snapshot()

    const refused = await cli(['train', file, 'max_steps=3'])
    expect(refused.code).toBe(1)
    expect(refused.stderr).toContain(`tunebench train: output_dir ${out} already holds a run; set resume_from_checkpoint to continue it or overwrite_output_dir: true to start over`)
    expect(events(refused.stdout).some((e) => e.event === 'started')).toBe(false)
    expect(snapshot()).toEqual(before) // the old run is left exactly as it was

    const overwritten = await cli(['train', file, 'overwrite_output_dir=true'])
    expect(overwritten.code, overwritten.stderr).toBe(0)
    expect(runJson(out)).toMatchObject({ overwrite_output_dir: true, max_steps: 2 })
    // A fresh run: the old checkpoints are gone, the log is this run's only.
    expect(readdirSync(out).filter((n) => n.startsWith('checkpoint-'))).toEqual(['checkpoint-1'])
    const log = readFileSync(join(out, 'trainer_log.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l) as { current_steps: number; total_steps: number })
    expect(log.map((l) => [l.current_steps, l.total_steps])).toEqual([[1, 2], [2, 2]])
  })

  it('an output_dir holding other files but no run is not "a run": training goes ahead and keeps them', async () => {
    const out = join(root, 'not-a-run')
    mkdirSync(out)
    writeFileSync(join(out, 'notes.txt'), 'mine')
    const r = await cli(['train', config('not-a-run', out)])
    expect(r.code, r.stderr).toBe(0)
    expect(readFileSync(join(out, 'notes.txt'), 'utf8')).toBe('mine')
  })
})

describe('tunebench serve', () => {
  function get(url: string): Promise<{ status: number; type: string; body: string }> {
    return new Promise((resolve, reject) => {
      const req = request(url, (res) => {
        let body = ''
        res.setEncoding('utf8')
        res.on('data', (c: string) => (body += c))
        res.on('end', () => resolve({ status: res.statusCode!, type: String(res.headers['content-type'] ?? ''), body }))
      })
      req.on('error', reject)
      req.end()
    })
  }

  /** Starts serve on a free port and waits for its URL line. */
  async function serve(env: NodeJS.ProcessEnv, script?: string[], detached = false) {
    const s = start(['serve', '--port', '0'], env, script, detached)
    const end = Date.now() + 45_000
    while (!/TUNEBENCH_URL=\S+\n/.test(s.out())) {
      if (s.child.exitCode !== null || Date.now() > end) {
        s.child.kill('SIGKILL')
        const r = await s.done
        throw new Error(`serve printed no URL (exit ${r.code}): ${r.stdout}${r.stderr}`)
      }
      await new Promise((r) => setTimeout(r, 20))
    }
    const url = /TUNEBENCH_URL=(\S+)\n/.exec(s.out())![1]!
    return { ...s, url: new URL(url) }
  }

  /** The server's end after a signal; a server still running after 15 s is killed and fails the test. */
  async function stopped(s: { done: Promise<Result> }, what: string): Promise<Result> {
    let timer: NodeJS.Timeout | undefined
    const late = new Promise<never>((_, reject) => {
      timer = setTimeout(() => {
        killAll()
        reject(new Error(`tunebench serve did not stop within 15 s of ${what}`))
      }, 15_000)
    })
    try {
      return await Promise.race([s.done, late])
    } finally {
      clearTimeout(timer)
    }
  }

  async function expectServing(url: URL) {
    expect(url.protocol).toBe('http:')
    expect(url.hostname).toBe('127.0.0.1')
    expect(url.pathname).toBe('/')
    const token = url.searchParams.get('token')
    expect(token).toMatch(/^[A-Za-z0-9_-]{16,}$/)
    const page = await get(url.href)
    expect(page.status).toBe(200)
    expect(page.type).toContain('text/html')
    expect((await get(url.origin + '/')).status).toBe(403)
    expect((await get(`${url.origin}/?token=${'x'.repeat(token!.length)}`)).status).toBe(403)
    return token!
  }

  it('prints a URL with a token, answers it (403 without), and stops on SIGINT; data in TUNEBENCH_HOME', async () => {
    const home = join(root, 'serve-home')
    const s = await serve(cleanEnv({ TUNEBENCH_HOME: home }))
    expect(s.out()).toContain(`(data in ${home})`)
    expect(s.out()).toContain(`\n  ${s.url.href}\n`)
    const token = await expectServing(s.url)
    s.child.kill('SIGINT')
    const r = await stopped(s, 'SIGINT')
    expect(r.code).toBe(0)
    expect(r.stdout).toContain('SIGINT: shutting down')
    await expect(get(s.url.href)).rejects.toThrow(/ECONNREFUSED/)

    // The token is new at every start.
    const again = await serve(cleanEnv({ TUNEBENCH_HOME: home }))
    expect(again.url.searchParams.get('token')).not.toBe(token)
    again.child.kill('SIGTERM')
    expect((await stopped(again, 'SIGTERM')).code).toBe(0)
  })

  it('stops on SIGTERM; without TUNEBENCH_HOME its data is in ~/.config/tunebench (XDG_CONFIG_HOME when set)', async () => {
    const home = join(root, 'fake-home')
    mkdirSync(home)
    const s = await serve(cleanEnv({ HOME: home }))
    const expected = process.platform === 'linux' ? join(home, '.config', 'tunebench') : null
    if (expected) expect(s.out()).toContain(`(data in ${expected})`)
    await expectServing(s.url)
    s.child.kill('SIGTERM')
    const r = await stopped(s, 'SIGTERM')
    expect(r.code).toBe(0)
    expect(r.stdout).toContain('SIGTERM: shutting down')
    await expect(get(s.url.href)).rejects.toThrow(/ECONNREFUSED/)

    if (process.platform === 'linux') {
      const xdg = join(root, 'xdg')
      const x = await serve(cleanEnv({ HOME: home, XDG_CONFIG_HOME: xdg }))
      expect(x.out()).toContain(`(data in ${join(xdg, 'tunebench')})`)
      x.child.kill('SIGTERM')
      expect((await stopped(x, 'SIGTERM')).code).toBe(0)
    }
  })

  it.runIf(process.platform !== 'win32')('through bin/tunebench.js, Ctrl-C (SIGINT to the process group) stops it', async () => {
    const s = await serve(cleanEnv({ TUNEBENCH_HOME: join(root, 'bin-home') }), ['bin/tunebench.js'], true)
    await expectServing(s.url)
    process.kill(-s.child.pid!, 'SIGINT') // what a terminal does on Ctrl-C
    const r = await stopped(s, 'SIGINT to its process group') // 'close': every holder of the pipes (the server too) has exited
    expect(r.stdout).toContain('SIGINT: shutting down')
    await expect(get(s.url.href)).rejects.toThrow(/ECONNREFUSED/)
  })
})
