// `tunebench generate` end to end on a tiny byte-level model: --data in an import format with
// --out JSONL (exactly the documented keys, one line per record and sample), --prompt streaming
// to stdout the text --out records, and bad flags refused naming the flag.
import { mkdtempSync, readFileSync, rmSync, writeFileSync, existsSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { ChatTokenizer } from '../../main/services/training/sequences'
import { runCli } from './cli-run'
import { writeByteLevelModel } from './generation-fixture'
import { engineBuilt } from './trainingPython'

const cli = (args: string[]) => runCli(['generate', ...args])

describe.runIf(engineBuilt())('tunebench generate', () => {
  let dir = ''
  let model = ''
  beforeAll(() => {
    dir = mkdtempSync(join(tmpdir(), 'tb-gencli-'))
    model = writeByteLevelModel(join(dir, 'model'), { seed: 2 })
  })
  afterAll(() => rmSync(dir, { recursive: true, force: true }))

  it('--data (TRL prompt-completion, plain and with a system message) --out writes one line per record and sample', async () => {
    const data = join(dir, 'prompts.jsonl')
    writeFileSync(data, [
      { prompt: 'hello', completion: 'x' },
      { prompt: [{ role: 'system', content: 'be brief' }, { role: 'user', content: 'abcd' }], completion: [{ role: 'assistant', content: 'y' }] }
    ].map((r) => JSON.stringify(r)).join('\n') + '\n')
    const out = join(dir, 'out.jsonl')
    const res = await cli(['--model', model, '--data', data, '--out', out, '--max-new-tokens', '6', '--num-return-sequences', '2',
      '--temperature', '0.8', '--top-k', '50', '--seed', '11', '--stop', 'zz', '--threads', '1'])
    expect(res.code, res.stderr).toBe(0)
    const lines = readFileSync(out, 'utf8').trim().split('\n').map((l) => JSON.parse(l) as Record<string, unknown>)
    expect(lines.map((l) => [l.index, l.sample])).toEqual([[0, 0], [0, 1], [1, 0], [1, 1]])
    const tok = await ChatTokenizer.load(model)
    const promptOf = [
      tok.encode(tok.renderChat([{ role: 'user', content: 'hello' }], true), false),
      tok.encode(tok.renderChat([{ role: 'system', content: 'be brief' }, { role: 'user', content: 'abcd' }], true), false)
    ]
    for (const l of lines) {
      expect(Object.keys(l)).toEqual(['index', 'sample', 'prompt_ids', 'completion_ids', 'text', 'finish_reason', 'logps'])
      expect(l.prompt_ids).toEqual(promptOf[l.index as number])
      const ids = l.completion_ids as number[]
      expect((l.logps as number[]).length).toBe(ids.length)
      expect(['eos', 'length', 'stop']).toContain(l.finish_reason)
      if (l.finish_reason !== 'stop') expect(l.text).toBe(tok.decode(ids, true))
    }
    expect(lines[0]!.completion_ids).not.toEqual(lines[1]!.completion_ids)
  })

  it('--data of prompt-only records (messages ending in a user turn) uses their system and user turns', async () => {
    const data = join(dir, 'prompt-only.jsonl')
    const messages = [{ role: 'system', content: 's' }, { role: 'user', content: 'abcd' }]
    writeFileSync(data, JSON.stringify({ messages }) + '\n')
    const out = join(dir, 'prompt-only.out.jsonl')
    const res = await cli(['--model', model, '--data', data, '--out', out, '--max-new-tokens', '3', '--threads', '1'])
    expect(res.code, res.stderr).toBe(0)
    const tok = await ChatTokenizer.load(model)
    const line = JSON.parse(readFileSync(out, 'utf8')) as { prompt_ids: number[] }
    expect(line.prompt_ids).toEqual(tok.encode(tok.renderChat(messages, true), false))
  })

  it('--prompt without --out streams the same text that --out records', async () => {
    const args = ['--model', model, '--prompt', 'hello the', '--max-new-tokens', '10', '--temperature', '0', '--threads', '1']
    const out = join(dir, 'one.jsonl')
    const a = await cli([...args, '--out', out])
    expect(a.code, a.stderr).toBe(0)
    const line = JSON.parse(readFileSync(out, 'utf8')) as { text: string }
    const b = await cli(args)
    expect(b.code, b.stderr).toBe(0)
    expect(b.stdout).toBe(line.text + '\n')
  })

  it('bad flags exit 2 with an error naming the flag, and write nothing', async () => {
    const out = join(dir, 'never.jsonl')
    const cases: [string[], RegExp][] = [
      [['--temperature', 'hot'], /--temperature: expected a number ≥ 0, got "hot"/],
      [['--top-p', '0'], /--top-p: expected a number in \(0, 1\]/],
      [['--max-new-tokens', '2.5'], /--max-new-tokens: expected a whole number ≥ 1/],
      [['--colour', 'red'], /--colour/],
      [['--stop', ''], /--stop/]
    ]
    for (const [flags, message] of cases) {
      const res = await cli(['--model', model, '--prompt', 'hi', '--out', out, ...flags])
      expect(res.code, flags.join(' ')).toBe(2)
      expect(res.stderr).toMatch(message)
    }
    const missing = await cli(['--model', model, '--out', out])
    expect(missing.code).toBe(2)
    expect(missing.stderr).toMatch(/--prompt or --data/)
    expect(existsSync(out)).toBe(false)
  })

  it('a model folder that does not load fails with exit 1 and its reason', async () => {
    const res = await cli(['--model', join(dir, 'nowhere'), '--prompt', 'hi'])
    expect(res.code).toBe(1)
    expect(res.stderr).toMatch(/tunebench generate: .*nowhere/)
  })
})
