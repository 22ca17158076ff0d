// The arguments of every invoke channel are checked at the boundary (main/transport/argSchemas.ts):
// what the renderer really sends passes, on either carrier; anything outside the contract's
// types is a ProtocolError naming the channel, the argument and the field, and never reaches
// the handler.
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it, vi, type Mock } from 'vitest'
import WebSocket from 'ws'
import { invokeChannels, type Handlers, type InvokeChannel, type InvokeMap } from '../../../preload/contract'
import type { DecontamReport, RecordInput } from '../../../preload/types/data'
import { DEFAULT_GENERATION_SETTINGS } from '../../../preload/types/generationSettings'
import { argSchemas, checkArgs, limits } from '../../../main/transport/argSchemas'
import { invokeHandler } from '../../../main/transport/invoke'
import { startServeServer, type ServeServer } from '../../../main/transport/serveServer'
import { wsCall } from './wsCall'

type Spies = Handlers & { [C in InvokeChannel]: Mock }

/** A handler per channel that only records its calls. */
function spyHandlers(): Spies {
  return Object.fromEntries(invokeChannels.map((c) => [c, vi.fn(async (...a: unknown[]) => ({ called: c, args: a.length }))])) as unknown as Spies
}

const report: DecontamReport = {
  evalFile: '/home/u/eval/gsm8k-test.jsonl',
  evalRecords: 1319,
  ngram: 8,
  threshold: 0.5,
  nearThreshold: 0.8,
  scanned: 42,
  contaminated: [{ recordId: 3, score: 0.75, match: 17, preview: 'Natalia sold clips to 48 of her friends in April...' }],
  exactDuplicates: [{ recordId: 9, score: 1, match: 2, preview: 'What is 2 + 2?' }],
  nearDuplicates: []
}

const chatTurns = [
  { role: 'user' as const, content: 'Write a haiku about autumn.' },
  { role: 'assistant' as const, content: 'Leaves fall...' },
  { role: 'user' as const, content: 'Another one.' }
]
// The Playground's records (renderer/src/stores/playground.ts keepPair / keepKto / keepGold).
const playgroundBase = { prompt: chatTurns.map((t) => ({ ...t })), system: null, source: 'playground' }
const records: RecordInput[] = [
  { ...playgroundBase, candidates: [{ content: 'a', source: 'demo-model' }, { content: 'b', source: 'dpo-1 adapter' }], pair: { chosen: 1, rejected: 0 } },
  { ...playgroundBase, system: 'Be brief.', candidates: [{ content: 'a', source: 'demo-model', kto: false }] },
  { ...playgroundBase, candidates: [{ content: 'gold', source: 'demo-model' }], gold: 'gold' },
  // What an importer produces, every optional field set.
  { prompt: 'What is 2 + 2?', system: null, candidates: [{ content: '4', kto: null }, { content: '5', source: 'import', kto: true }], pair: { chosen: 0, rejected: 1 }, gold: null, note: 'easy', split: 'val', source: 'pairs.jsonl', sourceIndex: 12 },
  { prompt: 'Prompt only', system: null, candidates: [] }
]

// The Train form's config (renderer/src/lib/trainForm.ts): keys as the schema, any values.
const config = { stage: 'dpo', model_name_or_path: '/models/demo', dataset: ['pairs.jsonl'], output_dir: '/runs/dpo-1', lora_rank: 8, learning_rate: 5e-5, pref_loss: 'sigmoid', val_size: 0.1 }

// Sampling settings as the Playground sends them: every key, stop strings filtered.
const settings = { ...DEFAULT_GENERATION_SETTINGS, stop: ['</s>'] }
const { numReturnSequences: _n, ...sampling } = settings

/** Valid calls for every channel, typed by the contract itself: the renderer's shapes first
 *  (including the optional fields it sets to undefined), then others the types allow. */
const valid: { [C in InvokeChannel]: InvokeMap[C]['args'][] } = {
  'app.demo': [[]],
  'engine.facts': [[]],
  'models.inspect': [['/home/u/models/SmolLM2-135M-Instruct']],
  'models.open': [['/home/u/models/SmolLM2-135M-Instruct'], ['']],
  'models.recent': [[]],
  'models.last': [[]],
  'models.forget': [['/home/u/models/old']],
  'models.pickFolder': [[]],
  'models.download': [[{ repo: 'HuggingFaceTB/SmolLM2-135M-Instruct', revision: undefined }], [{ repo: 'tiny-org/tiny', revision: 'v1.0' }], [{ repo: 'a/b' }]],
  'models.cancelDownload': [['HuggingFaceTB/SmolLM2-135M-Instruct']],
  'data.open': [['/home/u/projects/default']],
  'data.info': [[]],
  'data.openLast': [[]],
  'data.list': [
    [{ status: 'all', split: undefined, search: undefined, limit: 200 }],
    [{ status: 'unlabeled', split: 'train', search: 'haiku', limit: 200, offset: 400 }],
    [{ excluded: 'all' }],
    [{ excluded: true, status: 'skipped' }],
    [{}]
  ],
  'data.get': [[1]],
  'data.label': [
    [7, { kind: 'pair', chosen: 21, rejected: 22 }],
    [7, { kind: 'tie', a: 21, b: 22 }],
    [7, { kind: 'skip' }],
    [7, { kind: 'kto', candidate: 21, desirable: true }],
    [7, { kind: 'kto', candidate: 21, desirable: null }],
    [7, { kind: 'gold', text: 'The answer is 4.' }],
    [7, { kind: 'gold', text: null }],
    [7, { kind: 'note', text: 'check this one' }],
    [7, { kind: 'clear' }]
  ],
  'data.undo': [[]],
  'data.setSplit': [[[1, 2, 3], 'val'], [[], 'train']],
  'data.setExcluded': [[[4, 5], 'duplicate of record 2'], [[4], null]],
  'data.addRecords': [[records], [[records[0]!]]],
  'data.addCandidates': [[7, [{ content: 'another answer', source: 'demo-model' }]]],
  'data.previewImport': [
    ['/home/u/data/pairs.jsonl', {}],
    ['/home/u/data/pairs.jsonl', { format: 'trl-preference' }],
    ['/home/u/data/pairs.jsonl', { format: 'trl-preference', mapping: { prompt: 'question', chosen: 'good', rejected: 'bad' } }],
    ['/home/u/data/pairs.jsonl']
  ],
  'data.import': [
    [['/home/u/data/pairs.jsonl'], { format: 'sharegpt', mapping: { messages: 'conversations' }, split: 'train' }],
    [['/a.jsonl', '/b.parquet'], { split: 'val' }],
    [['/a.jsonl']]
  ],
  'data.export': [
    [{ format: 'trl-dpo', out: '/home/u/out/pairs.jsonl', split: undefined, name: undefined }],
    [{ format: 'llamafactory', out: '/home/u/out/lf', split: 'train', name: 'tunebench' }],
    [{ format: 'candidates', out: '/home/u/out/c.jsonl' }]
  ],
  'data.decontam': [[{ evalFile: undefined }], [{ evalFile: '/home/u/eval.jsonl', ngram: 8, threshold: 0.5, nearThreshold: 0.8 }], [{}]],
  'data.excludeFlagged': [[report], [report, ['contaminated', 'nearDuplicates']]],
  'data.tokenizePreview': [[{ modelDir: '/home/u/models/demo', cutoffLen: 2048 }], [{ modelDir: '/m', cutoffLen: 512, sample: 5, split: 'val' }]],
  'data.generateAnswers': [
    // renderer/src/stores/generateAnswers.ts request()
    [{ sources: [{ model: '/m', adapter: null }, { model: '/m', adapter: '/runs/dpo-1' }], n: 2, scope: 'prompt-only', split: undefined, settings: { ...sampling, stop: [] }, dryRun: true }],
    [{ sources: [{ model: '/m', adapter: null }], n: 4, scope: 'all', split: 'train', settings: sampling, dryRun: false }],
    [{ sources: [{ model: '/m', adapter: null }], n: 1, ids: [1, 2], batchSize: 16, settings: { temperature: 0.7 } }]
  ],
  'data.cancelGenerate': [[]],
  'runs.list': [[]],
  'runs.get': [['/home/u/.config/tunebench/runs/dpo-1'], ['dpo-1']],
  'runs.completionSteps': [['/home/u/.config/tunebench/runs/grpo-1']],
  'runs.completions': [['/home/u/.config/tunebench/runs/grpo-1', 3]],
  'runs.validate': [[config], [{}]],
  'runs.memoryPlan': [[JSON.parse(JSON.stringify(config)) as Record<string, unknown>]],
  'runs.start': [[{ config }]],
  'runs.stop': [['/runs/dpo-1']],
  'runs.resume': [['/runs/dpo-1']],
  'runs.importAdapter': [[{ dir: '/home/u/adapters/lora' }], [{ dir: '/home/u/adapters/lora', model: '/home/u/models/demo' }]],
  'export.start': [
    // renderer/src/pages/ExportPage.vue
    [{ format: 'gguf', out: '/home/u/out/gguf', run: '/runs/dpo-1' }],
    [{ format: 'ollama', out: '/home/u/out/ollama', adapter: '/home/u/adapters/lora', model: '/m', dtype: 'q8_0', ollamaAdapter: true }],
    [{ format: 'merged', out: '/o', run: '/runs/sft-1', maxShardBytes: 5_000_000_000 }]
  ],
  'export.cancel': [['/home/u/out/gguf']],
  'generation.chat': [
    // renderer/src/stores/playground.ts send()
    [{ id: 'chat-1718000000000-0', source: { model: '/m', adapter: null }, system: null, turns: chatTurns, settings }],
    [{ id: 'chat-2', source: { model: '/m', adapter: '/runs/dpo-1/checkpoint-40' }, system: 'Be brief.', turns: chatTurns.slice(0, 1), settings: {} }]
  ],
  'generation.cancelChat': [['chat-1718000000000-0']]
}

async function refused(channel: string, args: unknown, message: string | RegExp): Promise<void> {
  const handlers = spyHandlers()
  const outcome = await invokeHandler(handlers, channel, args)
  expect(outcome, `${channel} ${JSON.stringify(args, (_k, v: unknown) => (typeof v === 'bigint' ? `${v}n` : v))?.slice(0, 200)}`).toEqual({
    ok: false,
    error: { name: 'ProtocolError', message: typeof message === 'string' ? message : expect.stringMatching(message) }
  })
  for (const c of invokeChannels) expect(handlers[c], `${c} handler`).not.toHaveBeenCalled()
}

describe('argument schemas', () => {
  it('has a schema for every channel of the contract, and no other', () => {
    expect(Object.keys(argSchemas).sort()).toEqual([...invokeChannels].sort())
    expect(Object.keys(valid).sort()).toEqual([...invokeChannels].sort())
  })

  it.each(invokeChannels.map((c) => [c]))('passes what the renderer sends to %s, on either carrier', async (channel) => {
    for (const args of valid[channel] as unknown[][]) {
      // IPC carries the values by structured clone (undefined kept); the WebSocket by JSON
      // (undefined keys dropped, NaN becomes null).
      for (const carried of [args, structuredClone(args), JSON.parse(JSON.stringify(args)) as unknown[]]) {
        const handlers = spyHandlers()
        const outcome = await invokeHandler(handlers, channel, carried)
        expect(outcome, `${channel} ${JSON.stringify(carried).slice(0, 300)}`).toMatchObject({ ok: true, result: { called: channel } })
        expect(handlers[channel]).toHaveBeenCalledTimes(1)
        expect(handlers[channel]).toHaveBeenCalledWith(...carried)
      }
    }
  })

  it('refuses wrong types, naming the channel, the argument and the field', async () => {
    await refused('models.inspect', [123], 'models.inspect: argument 1 (dir): expected a string, got 123')
    await refused('models.inspect', [{ dir: '/' }], 'models.inspect: argument 1 (dir): expected a string, got an object')
    await refused('data.get', ['1'], 'data.get: argument 1 (id): expected a whole number, got a string of 1 character')
    await refused('data.get', [1.5], 'data.get: argument 1 (id): expected a whole number, got 1.5')
    await refused('data.get', [null], 'data.get: argument 1 (id): expected a whole number, got null')
    await refused('data.label', [7, { kind: 'chosn' }], 'data.label: argument 2 (action).kind: expected one of "pair", "tie", "skip", "kto", "gold", "note", "clear", got "chosn"')
    await refused('data.label', [7, { chosen: 1, rejected: 2 }], 'data.label: argument 2 (action).kind: missing (expected one of "pair", "tie", "skip", "kto", "gold", "note", "clear")')
    await refused('data.label', [7, { kind: 'pair', chosen: 1, rejected: '2' }], 'data.label: argument 2 (action).rejected: expected a whole number, got a string of 1 character')
    await refused('data.label', [7, { kind: 'kto', candidate: 1, desirable: 'yes' }], 'data.label: argument 2 (action).desirable: expected true or false or null, got a string of 3 characters')
    await refused('data.label', [7, 'skip'], 'data.label: argument 2 (action): expected an object, got a string of 4 characters')
    await refused('data.label', [7, [{ kind: 'skip' }]], 'data.label: argument 2 (action): expected an object, got a list of 1 item')
    await refused('data.setSplit', ['x', 'train'], 'data.setSplit: argument 1 (ids): expected a list, got a string of 1 character')
    await refused('data.setSplit', [[1, 2, '3'], 'train'], 'data.setSplit: argument 1 (ids)[2]: expected a whole number, got a string of 1 character')
    await refused('data.setSplit', [[1], 'test'], 'data.setSplit: argument 2 (split): expected one of "train", "val", got "test"')
    await refused('data.setExcluded', [[1], 5], 'data.setExcluded: argument 2 (reason): expected a string or null, got 5')
    await refused('data.addRecords', [42], 'data.addRecords: argument 1 (records): expected a list, got 42')
    await refused('data.addRecords', [[{ ...records[3], prompt: 5 }]], 'data.addRecords: argument 1 (records)[0].prompt: expected a string or a list, got 5')
    await refused(
      'data.addRecords',
      [[records[0], { ...records[0], prompt: [{ role: 'user', content: 'hi' }, { role: 'assistant', content: 7 }] }]],
      'data.addRecords: argument 1 (records)[1].prompt[1].content: expected a string, got 7'
    )
    await refused('data.addRecords', [[{ ...records[3], candidates: [{ content: 'x', kto: 1 }] }]], 'data.addRecords: argument 1 (records)[0].candidates[0].kto: expected true or false or null, got 1')
    await refused('data.previewImport', [123, null], 'data.previewImport: argument 1 (file): expected a string, got 123')
    await refused('data.previewImport', ['/a.jsonl', { format: 'csv' }], /^data\.previewImport: argument 2 \(options\)\.format: expected one of "trl-preference", .*"candidates", got "csv"$/)
    await refused('data.previewImport', ['/a.jsonl', { mapping: { prompt: 3 } }], 'data.previewImport: argument 2 (options).mapping.prompt: expected a string, got 3')
    await refused('data.previewImport', ['/a.jsonl', { mapping: { 'my column': 3 } }], 'data.previewImport: argument 2 (options).mapping["my column"]: expected a string, got 3')
    await refused('data.previewImport', ['/a.jsonl', 'trl-preference'], 'data.previewImport: argument 2 (options): expected an object, got a string of 14 characters')
    await refused('data.export', [{ format: 'trl-dpo', out: '/o', split: 'all' }], 'data.export: argument 1 (options).split: expected one of "train", "val", got "all"')
    await refused('data.excludeFlagged', [report, ['contaminated', 'dupes']], 'data.excludeFlagged: argument 2 (kinds)[1]: expected one of "contaminated", "exactDuplicates", "nearDuplicates", got "dupes"')
    await refused('data.excludeFlagged', [{ ...report, contaminated: [{ recordId: 'x' }] }], 'data.excludeFlagged: argument 1 (report).contaminated[0].recordId: expected a whole number, got a string of 1 character')
    await refused('data.list', [{ excluded: 'yes' }], 'data.list: argument 1 (filter).excluded: expected true or false or one of "all", got a string of 3 characters')
    await refused('runs.get', [123], 'runs.get: argument 1 (id): expected a string, got 123')
    await refused('runs.validate', [['stage', 'sft']], 'runs.validate: argument 1 (config): expected an object, got a list of 2 items')
    await refused('runs.start', [{ config: null }], 'runs.start: argument 1 (request).config: expected an object, got null')
    await refused('generation.chat', [{ ...valid['generation.chat'][0]![0], turns: [{ role: 'system', content: 'x' }] }], 'generation.chat: argument 1 (request).turns[0].role: expected one of "user", "assistant", got "system"')
    await refused('generation.chat', [{ ...valid['generation.chat'][0]![0], settings: { ...settings, topK: '' } }], 'generation.chat: argument 1 (request).settings.topK: expected a finite number, got an empty string')
    await refused('generation.chat', [{ ...valid['generation.chat'][0]![0], source: { model: '/m' } }], 'generation.chat: argument 1 (request).source.adapter: missing (expected a string or null)')
    await refused('export.start', [{ format: 'gguf', out: '/o', dtype: 'q4_k' }], 'export.start: argument 1 (request).dtype: expected one of "f32", "f16", "bf16", "q8_0", got "q4_k"')
    await refused('export.start', [{ format: 'safetensors', out: '/o' }], /^export\.start: argument 1 \(request\)\.format: expected one of "peft", "merged", "gguf", "gguf-lora", "ollama", "llamafactory", got "safetensors"$/)
    await refused('models.download', [{ repo: 'a/b', revision: 3 }], 'models.download: argument 1 (request).revision: expected a string, got 3')
  })

  it('refuses values that are not plain data where an object is expected', async () => {
    await refused('data.list', [new Date(0)], 'data.list: argument 1 (filter): expected an object, got a Date')
    await refused('data.list', [new Map()], 'data.list: argument 1 (filter): expected an object, got a Map')
    await refused('runs.validate', [new Uint8Array(4)], 'runs.validate: argument 1 (config): expected an object, got a Uint8Array')
    await refused('data.get', [1n], 'data.get: argument 1 (id): expected a whole number, got a bigint')
  })

  it('refuses NaN, Infinity and unsafe integers', async () => {
    await refused('data.get', [Number.NaN], 'data.get: argument 1 (id): expected a whole number, got NaN')
    await refused('data.get', [Infinity], 'data.get: argument 1 (id): expected a whole number, got Infinity')
    await refused('data.get', [2 ** 53], 'data.get: argument 1 (id): expected a whole number, got 9007199254740992')
    await refused('data.decontam', [{ threshold: Number.NaN }], 'data.decontam: argument 1 (options).threshold: expected a finite number, got NaN')
    await refused('data.decontam', [{ nearThreshold: -Infinity }], 'data.decontam: argument 1 (options).nearThreshold: expected a finite number, got -Infinity')
    await refused('generation.chat', [{ ...valid['generation.chat'][0]![0], settings: { temperature: Infinity } }], 'generation.chat: argument 1 (request).settings.temperature: expected a finite number, got Infinity')
    // Over the WebSocket JSON has already turned NaN into null.
    const overJson = JSON.parse(JSON.stringify([{ ...valid['generation.chat'][0]![0], settings: { topP: Number.NaN } }])) as unknown[]
    await refused('generation.chat', overJson, 'generation.chat: argument 1 (request).settings.topP: expected a finite number, got null')
  })

  it('refuses missing arguments and too many, and allows the optional trailing ones', async () => {
    await refused('data.get', [], 'data.get: argument 1 (id): missing (expected a whole number)')
    await refused('data.label', [7], 'data.label: argument 2 (action): missing (expected an object)')
    await refused('data.label', [7, undefined], 'data.label: argument 2 (action): missing (expected an object)')
    await refused('data.list', [], 'data.list: argument 1 (filter): missing (expected an object)')
    await refused('data.get', [1, 2], 'data.get: expected 1 argument (id), got 2')
    await refused('data.label', [1, { kind: 'skip' }, 'extra'], 'data.label: expected 2 arguments (id, action), got 3')
    await refused('app.demo', ['x'], 'app.demo: expected no arguments, got 1')
    await refused('data.undo', [undefined], 'data.undo: expected no arguments, got 1')
    await refused('data.previewImport', ['/a', {}, {}], 'data.previewImport: expected 1 to 2 arguments (file, options?), got 3')

    // An optional argument left undefined (IPC) or arriving as null (JSON writes undefined as
    // null in a list) is absent: the handler gets the arguments before it, and its defaults.
    for (const given of [['/a.jsonl'], ['/a.jsonl', undefined], ['/a.jsonl', null]]) {
      const handlers = spyHandlers()
      expect(await invokeHandler(handlers, 'data.previewImport', given)).toMatchObject({ ok: true })
      expect(handlers['data.previewImport'].mock.calls).toEqual([['/a.jsonl']])
    }
    const handlers = spyHandlers()
    expect(await invokeHandler(handlers, 'data.excludeFlagged', JSON.parse(JSON.stringify([report, undefined])))).toMatchObject({ ok: true })
    expect(handlers['data.excludeFlagged'].mock.calls).toEqual([[report]])
  })

  it('refuses unknown keys, naming them, except in free-form objects', async () => {
    await refused('models.download', [{ repo: 'a/b', revison: 'main' }], 'models.download: argument 1 (request).revison: unknown key (expected one of repo, revision)')
    await refused('data.label', [7, { kind: 'skip', text: 'x' }], 'data.label: argument 2 (action).text: unknown key (expected one of kind)')
    await refused('data.label', [7, { kind: 'pair', chosen: 1, rejected: 2, tie: true }], 'data.label: argument 2 (action).tie: unknown key (expected one of kind, chosen, rejected)')
    await refused('data.list', [{ status: 'all', limit: 200, pageSize: 50 }], 'data.list: argument 1 (filter).pageSize: unknown key (expected one of status, split, search, excluded, offset, limit)')
    await refused('data.addRecords', [[{ ...records[3], candidates: [{ content: 'x', label: true }] }]], 'data.addRecords: argument 1 (records)[0].candidates[0].label: unknown key (expected one of content, source, kto)')
    await refused('data.generateAnswers', [{ sources: [], n: 1, settings: { numReturnSequences: 2 } }], /^data\.generateAnswers: argument 1 \(request\)\.settings\.numReturnSequences: unknown key \(expected one of maxNewTokens, .*stop\)$/)
    await refused('data.import', [['/a'], { format: 'alpaca', spilt: 'val' }], 'data.import: argument 2 (options).spilt: unknown key (expected one of format, mapping, split)')
    await refused('runs.start', [{ config: {}, dryRun: true }], 'runs.start: argument 1 (request).dryRun: unknown key (expected one of config)')
    await refused('models.download', [JSON.parse('{"repo":"a/b","__proto__":{"polluted":true}}')], 'models.download: argument 1 (request).__proto__: unknown key (expected one of repo, revision)')
    await refused('data.previewImport', ['/a', { mapping: JSON.parse('{"__proto__":"x"}') }], 'data.previewImport: argument 2 (options).mapping.__proto__: this key is not allowed')
    // Configs are open: their keys are the training schema's to check (runs.validate names them).
    const handlers = spyHandlers()
    expect(await invokeHandler(handlers, 'runs.validate', [{ lora_rnak: 8, anything: { nested: [1, 'x', null] } }])).toMatchObject({ ok: true })
    expect(handlers['runs.validate']).toHaveBeenCalledTimes(1)
  })

  it('refuses oversized strings and lists with a clear message', async () => {
    const long = (n: number) => 'x'.repeat(n)
    await refused('models.open', [long(limits.path + 1)], `models.open: argument 1 (dir): expected a string of at most ${limits.path} characters, got ${limits.path + 1} characters`)
    await refused('data.export', [{ format: 'trl-dpo', out: long(10_000) }], `data.export: argument 1 (options).out: expected a string of at most ${limits.path} characters, got 10000 characters`)
    await refused('generation.cancelChat', [long(limits.name + 1)], `generation.cancelChat: argument 1 (id): expected a string of at most ${limits.name} characters, got ${limits.name + 1} characters`)
    await refused(
      'data.addRecords',
      [[{ ...records[3], gold: long(limits.text + 1) }]],
      `data.addRecords: argument 1 (records)[0].gold: expected a string of at most ${limits.text} characters, got ${limits.text + 1} characters`
    )
    await refused('data.setSplit', [new Array<number>(limits.items + 1).fill(1), 'train'], `data.setSplit: argument 1 (ids): expected a list of at most ${limits.items} items, got ${limits.items + 1} items`)
    await refused('data.import', [new Array<string>(limits.fewItems + 1).fill('/a')], `data.import: argument 1 (files): expected a list of at most ${limits.fewItems} items, got ${limits.fewItems + 1} items`)
    const wide = Object.fromEntries(Array.from({ length: limits.keys + 1 }, (_, i) => [`k${i}`, i]))
    await refused('runs.validate', [wide], `runs.validate: argument 1 (config): expected an object of at most ${limits.keys} keys, got ${limits.keys + 1} keys`)

    // Within the bounds: a record text of several MB, a path of PATH_MAX, a million ids.
    const handlers = spyHandlers()
    expect(await invokeHandler(handlers, 'data.addRecords', [[{ ...records[3], gold: long(8 * 1024 * 1024) }]])).toMatchObject({ ok: true })
    expect(await invokeHandler(handlers, 'models.open', [long(limits.path)])).toMatchObject({ ok: true })
    expect(await invokeHandler(handlers, 'data.setSplit', [new Array<number>(limits.items).fill(1), 'val'])).toMatchObject({ ok: true })
  })

  it('never echoes a string it was not expecting as one of a few words, and cuts those it does', async () => {
    const secret = 'hf_' + 'A'.repeat(37)
    const wrong = [
      checkArgs('data.get', [secret]),
      checkArgs('data.label', [7, { kind: 'gold', text: 5, secret }]),
      checkArgs('runs.completions', ['/runs/x', secret]),
      checkArgs('generation.chat', [{ ...valid['generation.chat'][0]![0], settings: { seed: secret } }])
    ]
    for (const outcome of wrong) {
      expect(outcome.ok).toBe(false)
      expect(outcome.ok ? '' : outcome.message).not.toContain('AAAA')
    }
    const huge = 'q'.repeat(100_000)
    const enumMiss = checkArgs('data.setSplit', [[1], huge])
    expect(enumMiss).toEqual({ ok: false, message: `data.setSplit: argument 2 (split): expected one of "train", "val", got "${'q'.repeat(40)}"… (100000 characters)` })
    const keyMiss = checkArgs('data.list', [{ [huge]: 1 }])
    expect(keyMiss.ok ? '' : keyMiss.message).toBe(`data.list: argument 1 (filter)["${'q'.repeat(40)}"… (100000 characters)]: unknown key (expected one of status, split, search, excluded, offset, limit)`)
    for (const c of [...wrong, enumMiss, keyMiss]) expect(c.ok ? '' : c.message.length).toBeLessThan(400)
  })
})

describe('argument schemas over the WebSocket', () => {
  let root: string
  let server: ServeServer
  const handlers = spyHandlers()

  beforeAll(async () => {
    root = await mkdtemp(join(tmpdir(), 'tunebench-args-'))
    const rendererDir = join(root, 'renderer')
    await mkdir(rendererDir, { recursive: true })
    await writeFile(join(rendererDir, 'index.html'), '<!doctype html><title>Tunebench</title>')
    server = await startServeServer({ host: '127.0.0.1', port: 0, rendererDir, createHandlers: () => handlers })
  })

  afterAll(async () => {
    await server?.close()
    await rm(root, { recursive: true, force: true })
  })

  function open(): Promise<WebSocket> {
    return new Promise((resolve, reject) => {
      const socket = new WebSocket(`ws://127.0.0.1:${server.port}/ws?token=${encodeURIComponent(server.token)}`, { origin: server.origin })
      socket.once('open', () => resolve(socket))
      socket.once('error', reject)
    })
  }

  it('answers a wrong-typed argument with a ProtocolError, keeps the socket, and serves the next call', async () => {
    const socket = await open()
    try {
      expect(await wsCall(socket, 1, 'data.label', [7, { kind: 'chosn', chosen: 1, rejected: 2 }])).toEqual({
        id: 1,
        ok: false,
        error: { name: 'ProtocolError', message: 'data.label: argument 2 (action).kind: expected one of "pair", "tie", "skip", "kto", "gold", "note", "clear", got "chosn"' }
      })
      expect(await wsCall(socket, 2, 'data.get', ['7'])).toEqual({
        id: 2,
        ok: false,
        error: { name: 'ProtocolError', message: 'data.get: argument 1 (id): expected a whole number, got a string of 1 character' }
      })
      expect(await wsCall(socket, 3, 'data.setSplit', [[1, 2]])).toMatchObject({ id: 3, ok: false, error: { message: 'data.setSplit: argument 2 (split): missing (expected one of "train", "val")' } })
      expect(socket.readyState).toBe(WebSocket.OPEN)
      for (const c of invokeChannels) expect(handlers[c]).not.toHaveBeenCalled()

      expect(await wsCall(socket, 4, 'data.label', [7, { kind: 'pair', chosen: 1, rejected: 2 }])).toEqual({ id: 4, ok: true, result: { called: 'data.label', args: 2 } })
      expect(handlers['data.label'].mock.calls).toEqual([[7, { kind: 'pair', chosen: 1, rejected: 2 }]])
      // What the renderer sends, JSON-carried (its undefined fields dropped).
      expect(await wsCall(socket, 5, 'models.download', [{ repo: 'a/b', revision: undefined }])).toMatchObject({ id: 5, ok: true })
      expect(handlers['models.download'].mock.calls).toEqual([[{ repo: 'a/b' }]])
    } finally {
      socket.close()
    }
  })
})
