// A corrupt tokenizer.json (not JSON, truncated, a syntax error mid-file, JSON of the wrong
// shape) or a chat template that does not parse (tokenizer_config.json chat_template,
// chat_template.jinja) is named, with the line and column where the parser gives them, when
// the model is opened on the Models page (models.open / models.inspect) and when it is first
// used (generation through the pool, `tunebench generate`, the training tokenizer), and nothing
// is written: the recent list is not touched, no model is loaded, no --out file appears.
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest'
import { generate } from '../../../main/services/generation/generate'
import { GenerationPool, type GenerationModelLoader } from '../../../main/services/generation/pool'
import { createModelHandlers } from '../../../main/services/models'
import { ModelFolderError } from '../../../main/services/models/inspect'
import { ChatTokenizer } from '../../../main/services/training/sequences'
import { runCli } from '../cli-run'
import { writeByteLevelModel } from '../generation-fixture'
import { engineBuilt } from '../trainingPython'

let root = ''
let good = ''
let goodTokenizer = ''
beforeAll(() => {
  root = mkdtempSync(join(tmpdir(), 'tb-tokfiles-'))
  good = writeByteLevelModel(join(root, 'good'), { seed: 1 })
  goodTokenizer = readFileSync(join(good, 'tokenizer.json'), 'utf8')
})
afterAll(() => rmSync(root, { recursive: true, force: true }))

const pretty = (): string => JSON.stringify(JSON.parse(goodTokenizer), null, 2)
const editJson = (file: string, change: (v: Record<string, unknown>) => void): void => {
  const v = JSON.parse(readFileSync(file, 'utf8')) as Record<string, unknown>
  change(v)
  writeFileSync(file, JSON.stringify(v))
}
const withTemplate = (dir: string, template: string | null): void =>
  editJson(join(dir, 'tokenizer_config.json'), (c) => (template === null ? delete c.chat_template : (c.chat_template = template)))

/** Each breakage: what it does to a good folder, and the message (without the folder). */
const cases: [string, (dir: string) => void, RegExp][] = [
  ['tokenizer.json not JSON (an HTML page saved in its place)',
    (d) => writeFileSync(join(d, 'tokenizer.json'), '<!DOCTYPE html><html>rate limited</html>'),
    /tokenizer\.json: not valid JSON: unexpected character "<"/],
  ['tokenizer.json truncated (a download cut short)',
    (d) => writeFileSync(join(d, 'tokenizer.json'), pretty().split('\n').slice(0, 40).join('\n') + '\n'),
    /tokenizer\.json: not valid JSON: it ends at line 41, column 1 before the JSON is complete \(truncated\?\)/],
  ['tokenizer.json with a syntax error on line 3 (a missing comma)',
    (d) => { const lines = pretty().split('\n'); lines[1] = lines[1]!.replace(/,$/, ''); writeFileSync(join(d, 'tokenizer.json'), lines.join('\n')) },
    /tokenizer\.json: not valid JSON: Expected ',' or '}' after property value at line 3, column 3/],
  ['tokenizer.json empty', (d) => writeFileSync(join(d, 'tokenizer.json'), ''), /tokenizer\.json: not valid JSON: the file is empty/],
  ['tokenizer.json a JSON list', (d) => writeFileSync(join(d, 'tokenizer.json'), '[1, 2]'), /tokenizer\.json: expected a JSON object at the top level/],
  ['tokenizer.json without a model', (d) => editJson(join(d, 'tokenizer.json'), (t) => delete t.model), /tokenizer\.json: field "model" is missing/],
  ['tokenizer.json whose model is not an object', (d) => editJson(join(d, 'tokenizer.json'), (t) => (t.model = 'BPE')), /tokenizer\.json: field "model" is not an object/],
  ['tokenizer.json with an unknown model type',
    (d) => editJson(join(d, 'tokenizer.json'), (t) => ((t.model as Record<string, unknown>).type = 'SentencePieceMagic')),
    /tokenizer\.json: model\.type "SentencePieceMagic" is not a tokenizer model Tunebench reads \(BPE, WordPiece, WordLevel, Unigram\)/],
  ['tokenizer.json without model.vocab',
    (d) => editJson(join(d, 'tokenizer.json'), (t) => delete (t.model as Record<string, unknown>).vocab), /tokenizer\.json: field "model\.vocab" is missing/],
  ['tokenizer_config.json with a syntax error',
    (d) => writeFileSync(join(d, 'tokenizer_config.json'), '{\n  "eos_token": "<|im_end|>"\n  "chat_template": "x"\n}'),
    /tokenizer_config\.json: not valid JSON: Expected ',' or '}' after property value at line 3, column 3/],
  ['a chat_template in tokenizer_config.json that does not parse',
    (d) => withTemplate(d, "{% for message in messages %}{{ message['content'] }{% endfor %}"),
    /tokenizer_config\.json: chat_template does not parse as a Jinja template: .*Expected closing expression token/],
  ['a chat_template with an unclosed block',
    (d) => withTemplate(d, "{% for message in messages %}{{ message['content'] }}"),
    /tokenizer_config\.json: chat_template does not parse as a Jinja template: the template ends inside an unclosed block/],
  ['a chat_template.jinja that does not parse (no template in tokenizer_config.json)',
    (d) => { withTemplate(d, null); writeFileSync(join(d, 'chat_template.jinja'), '{{ messages | }}\n') },
    /chat_template\.jinja does not parse as a Jinja template: /]
]

describe('the Models page names a corrupt tokenizer file when the folder is opened', () => {
  let dataDir = ''
  let handlers: ReturnType<typeof createModelHandlers>
  beforeEach(async () => {
    dataDir = mkdtempSync(join(root, 'data-'))
    handlers = createModelHandlers({ dataDir, hubEndpoint: 'http://127.0.0.1:9', emit: () => {} })
  })

  it('a good folder opens and is remembered (the baseline)', async () => {
    const facts = await handlers['models.open'](good)
    expect(facts.chatTemplate).toBe(true)
    expect(existsSync(join(dataDir, 'recent-models.json'))).toBe(true)
  })

  for (const [name, breakIt, message] of cases) {
    it(`models.open and models.inspect: ${name}`, async () => {
      const dir = writeByteLevelModel(join(root, `open-${cases.findIndex((c) => c[0] === name)}`), { seed: 1 })
      await handlers['models.open'](good)
      const recentBefore = readFileSync(join(dataDir, 'recent-models.json'), 'utf8')
      breakIt(dir)
      await expect(handlers['models.inspect'](dir)).rejects.toThrow(message)
      const err = await handlers['models.open'](dir).catch((e: Error) => e)
      expect(err).toBeInstanceOf(ModelFolderError) // the page shows it as the folder's problem
      expect((err as Error).message).toMatch(message)
      expect(readFileSync(join(dataDir, 'recent-models.json'), 'utf8')).toBe(recentBefore)
    })
  }
})

describe('generation names a corrupt tokenizer file at first use and loads nothing', () => {
  for (const [name, breakIt, message] of cases) {
    it(`generate(): ${name}`, async () => {
      const dir = writeByteLevelModel(join(root, `gen-${cases.findIndex((c) => c[0] === name)}`), { seed: 1 })
      breakIt(dir)
      let loads = 0
      const load: GenerationModelLoader = async () => {
        loads++
        throw new Error('the engine must not be reached')
      }
      const pool = new GenerationPool({ threads: 1, load })
      const err = await generate(pool, { model: dir }, [{ prompt: 'hello' }], { settings: { maxNewTokens: 2 } }).catch((e: Error) => e)
      expect((err as Error).message).toContain(dir)
      expect((err as Error).message).toMatch(message)
      expect(loads).toBe(0)
      expect(pool.loaded).toEqual([])
      // The training tokenizer (ChatTokenizer) says the same.
      await expect(ChatTokenizer.load(dir)).rejects.toThrow(message)
    })
  }

  it('a folder fixed after the error opens on the next call (the failed tokenizer is not kept)', async () => {
    const dir = writeByteLevelModel(join(root, 'fixed'), { seed: 1 })
    writeFileSync(join(dir, 'tokenizer.json'), '{"model": ')
    const pool = new GenerationPool({ threads: 1, load: async () => { throw new Error('engine reached') } })
    await expect(pool.tokenizer(dir)).rejects.toThrow(/tokenizer\.json: not valid JSON: it ends at line 1, column 11/)
    writeFileSync(join(dir, 'tokenizer.json'), goodTokenizer)
    expect((await pool.tokenizer(dir)).hasChatTemplate).toBe(true)
    await rm(dir, { recursive: true, force: true })
  })
})

describe.runIf(engineBuilt())('tunebench generate names a corrupt tokenizer file', () => {
  it('exits 1 naming the file and where it breaks, and writes no --out', async () => {
    const dir = writeByteLevelModel(join(root, 'cli'), { seed: 1 })
    writeFileSync(join(dir, 'tokenizer.json'), pretty().split('\n').slice(0, 40).join('\n') + '\n')
    const out = join(root, 'cli-out.jsonl')
    const res = await runCli(['generate', '--model', dir, '--prompt', 'hi', '--out', out])
    expect(res.code).toBe(1)
    expect(res.stderr).toBe(`tunebench generate: ${join(dir, 'tokenizer.json')}: not valid JSON: it ends at line 41, column 1 before the JSON is complete (truncated?)\n`)
    expect(existsSync(out)).toBe(false)
    withTemplate(dir, '{% if add_generation_prompt %}')
    writeFileSync(join(dir, 'tokenizer.json'), goodTokenizer)
    const res2 = await runCli(['generate', '--model', dir, '--prompt', 'hi', '--out', out])
    expect(res2.code).toBe(1)
    expect(res2.stderr).toMatch(/^tunebench generate: .*tokenizer_config\.json: chat_template does not parse as a Jinja template: the template ends inside an unclosed block/)
    expect(existsSync(out)).toBe(false)
  }, 60_000)
})
