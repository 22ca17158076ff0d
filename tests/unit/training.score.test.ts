// `tunebench score` against transformers + PEFT on the same records (pairs, plain and
// conversational, single completions and conversations), with and without an adapter.
import { spawn } from 'node:child_process'
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { makeModelAndAdapter, writeDatasets } from './training.fixtures'
import { engineBuilt, runPythonJsonAsync, torchAvailable } from './trainingPython'

const root = join(import.meta.dirname, '..', '..')

function cli(args: string[]): Promise<{ code: number | null; stderr: string }> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, ['--import', 'tsx', 'main/cli.ts', ...args], { cwd: root, stdio: ['ignore', 'ignore', 'pipe'] })
    let stderr = ''
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()))
    child.on('close', (code) => resolve({ code, stderr }))
  })
}

describe.runIf(torchAvailable('tunebench score against transformers + PEFT') && engineBuilt('tunebench score against transformers + PEFT'))('tunebench score', () => {
  let dir: string
  let model: string
  let adapter: string
  let data: Record<string, string>
  let refs: Record<string, number>[][]
  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'tb-score-'))
    ;({ model, adapter } = await makeModelAndAdapter(dir))
    data = writeDatasets(join(dir, 'data'))
    // one file mixing every record kind
    const mixed = ['pairs_plain', 'pairs_chat', 'sft_messages', 'unpaired'].flatMap((k) => readFileSync(data[k]!, 'utf8').trim().split('\n').slice(0, 2))
    writeFileSync(join(dir, 'mixed.jsonl'), mixed.join('\n') + '\n')
    refs = await runPythonJsonAsync('train_score_reference.py', [false, true].map((a) => ({ model, adapter: a ? adapter : null, data: join(dir, 'mixed.jsonl') })))
  }, 180_000)
  afterAll(() => rmSync(dir, { recursive: true, force: true }))

  for (const withAdapter of [false, true]) {
    it(`matches transformers${withAdapter ? ' + PEFT adapter' : ''}`, async () => {
      const out = join(dir, `scores-${withAdapter}.jsonl`)
      const args = ['score', '--model', model, '--data', join(dir, 'mixed.jsonl'), '--out', out, '--threads', '1', '--batch-size', '3']
      if (withAdapter) args.push('--adapter', adapter)
      const res = await cli(args)
      expect(res.code, res.stderr).toBe(0)
      const ours = readFileSync(out, 'utf8').trim().split('\n').map((l) => JSON.parse(l) as Record<string, number>)
      const ref = refs[withAdapter ? 1 : 0]!
      expect(ours.length).toBe(ref.length)
      ours.forEach((o, i) => {
        expect(o.index).toBe(i)
        for (const [key, value] of Object.entries(ref[i]!)) {
          if (key.endsWith('tokens')) expect(o[key], `${i} ${key}`).toBe(value)
          else expect(Math.abs(o[key]! - value) / Math.abs(value), `${i} ${key}: ${o[key]} vs ${value}`).toBeLessThan(1e-4)
        }
      })
    })
  }

  it('a bad record fails with file and line, and writes no output', async () => {
    const bad = join(dir, 'bad.jsonl')
    writeFileSync(bad, '{"prompt": "a", "chosen": " b", "rejected": " c"}\n{"prompt": 3, "completion": "x"}\n')
    const res = await cli(['score', '--model', model, '--data', bad, '--out', join(dir, 'never.jsonl')])
    expect(res.code).toBe(1)
    expect(res.stderr).toContain(`${bad}: line 2: field 'prompt'`)
  })
})
