// "Generate answers…" on a tiny byte-level model and a temp project: the answers land as
// candidates under the source's name, K per prompt; generating again adds nothing, a larger K
// adds only the missing ones (the same answers one run with that K gives), a cancel keeps what
// was written and a rerun completes it, two sources each get K, the scopes pick their records,
// a model without a chat template answers text prompts only; the channels stream progress and
// cancel; `tunebench data generate` end to end.
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { generateAnswers } from '../../main/services/data/generateAnswers'
import { createDataHandlers } from '../../main/services/data/handlers'
import { Project } from '../../main/services/data/store'
import { GenerationPool } from '../../main/services/generation/pool'
import type { EventMap } from '../../preload/contract'
import type { RecordInput } from '../../preload/types/data'
import { answerSourceName, type GenerateAnswersProgress, type GenerateAnswersRequest } from '../../preload/types/generation'
import { runCli } from './cli-run'
import { tempDir, writeJsonl } from './data-helpers'
import { writeByteLevelModel, writeByteLevelTokenizer } from './generation-fixture'
import { engineBuilt } from './trainingPython'

const cli = (args: string[]) => runCli(['data', ...args])

const RECORDS: RecordInput[] = [
  { prompt: 'hello', system: null, candidates: [] },
  { prompt: [{ role: 'user', content: 'abcd' }], system: 'be brief', candidates: [] },
  { prompt: 'the cat', system: null, candidates: [] },
  { prompt: 'compare these', system: null, candidates: [{ content: 'one', source: 'import' }, { content: 'two', source: 'import' }] },
  { prompt: 'ef', system: null, candidates: [] }
]

/** Each record's answers as [source, text], in stored order. */
function answers(p: Project): [string, string][][] {
  return [...p.iterateRecords({ includeExcluded: true })].map((r) => r.candidates.map((c) => [c.source, c.content] as [string, string]))
}

const bySource = (p: Project, name: string): number[] => answers(p).map((a) => a.filter(([s]) => s === name).length)

describe.runIf(engineBuilt())('generating answers into a project', () => {
  let dir = ''
  let cleanup = (): void => {}
  let model = ''
  let adapter = ''
  let plain = ''
  const pool = new GenerationPool({ threads: 1 })
  let projects = 0
  const project = (records: RecordInput[] = RECORDS): Project => {
    const p = new Project(join(dir, `project-${projects++}`))
    p.addRecords(records)
    return p
  }
  const base = (): { model: string; adapter: null } => ({ model, adapter: null })
  const request = (over: Partial<GenerateAnswersRequest> = {}): GenerateAnswersRequest =>
    ({ sources: [base()], n: 2, settings: { maxNewTokens: 6, seed: 3 }, ...over })

  beforeAll(async () => {
    ;({ dir, cleanup } = tempDir('tb-gen-answers-'))
    model = writeByteLevelModel(join(dir, 'model'), { seed: 5 })
    // A model without a chat template: text prompts are encoded as they are.
    plain = writeByteLevelModel(join(dir, 'plain-model'), { seed: 5 })
    writeByteLevelTokenizer(plain, { chatTemplate: false })
    // A PEFT adapter of the model (what a run saves), a second source.
    const { Model } = await import('../../native/index')
    const m = await Model.load(model, { threads: 1 })
    m.addLora({ rank: 4, alpha: 8, dropout: 0, targets: ['q', 'v'], rslora: false, seed: 3 })
    adapter = join(dir, 'runs', 'dpo-1')
    await m.saveAdapter(adapter, model)
    m.dispose()
  })
  afterAll(async () => {
    await pool.dispose()
    cleanup()
  })

  it('stores K answers per prompt under the source name; running again adds nothing', async () => {
    const p = project()
    const events: GenerateAnswersProgress[] = []
    const r = await generateAnswers(p, pool, request(), { onProgress: (e) => events.push(e) })
    expect(answerSourceName(base())).toBe('model')
    expect(bySource(p, 'model')).toEqual([2, 2, 2, 2, 2])
    expect(answers(p)[3]!.slice(0, 2)).toEqual([['import', 'one'], ['import', 'two']])
    expect(r).toMatchObject({ records: 5, planned: { records: 5, answers: 10 }, recordsDone: 5, answers: 10, cancelled: false })
    expect(r.sources).toEqual([{ name: 'model', model, adapter: null, answers: 10, records: 5, alreadyFull: 0 }])
    const last = events.at(-1)!
    expect(last).toMatchObject({ recordsDone: 5, recordsTotal: 5, answersWritten: 10, answersTotal: 10, finished: true, etaSeconds: 0 })
    expect(events[0]).toMatchObject({ answersWritten: 0, etaSeconds: null, finished: false })
    for (let i = 1; i < events.length; i++) expect(events[i]!.answersWritten).toBeGreaterThanOrEqual(events[i - 1]!.answersWritten)

    const before = answers(p)
    const planned = await generateAnswers(p, pool, request({ n: 3, dryRun: true }))
    expect(planned).toMatchObject({ records: 5, planned: { records: 5, answers: 5 }, answers: 0 })
    expect(answers(p)).toEqual(before)
    const again = await generateAnswers(p, pool, request())
    expect(again).toMatchObject({ answers: 0, recordsDone: 0 })
    expect(again.sources[0]!.alreadyFull).toBe(5)
    expect(answers(p)).toEqual(before)
    p.close()
  })

  it('a larger K adds only the missing answers, the same ones a single run with that K writes', async () => {
    const topped = project()
    await generateAnswers(topped, pool, request({ n: 1 }))
    const first = answers(topped)
    const r = await generateAnswers(topped, pool, request({ n: 3 }))
    expect(r.answers).toBe(10)
    expect(bySource(topped, 'model')).toEqual([3, 3, 3, 3, 3])
    answers(topped).forEach((a, i) => expect(a.slice(0, first[i]!.length)).toEqual(first[i]))
    const once = project()
    await generateAnswers(once, pool, request({ n: 3 }))
    expect(answers(topped)).toEqual(answers(once))
    topped.close()
    once.close()
  })

  it('a cancel keeps the answers written; a rerun completes them as one run would have', async () => {
    const p = project()
    const abort = new AbortController()
    // One record's two answers per engine call: cancel once the first call's are written.
    const r = await generateAnswers(p, pool, request({ batchSize: 2 }), {
      signal: abort.signal,
      onProgress: (e) => {
        if (e.answersWritten > 0) abort.abort()
      }
    })
    expect(r.cancelled).toBe(true)
    expect(r.answers).toBe(2)
    expect(bySource(p, 'model')).toEqual([2, 0, 0, 0, 0])
    const rest = await generateAnswers(p, pool, request({ batchSize: 2 }))
    expect(rest).toMatchObject({ cancelled: false, answers: 8 })
    const once = project()
    await generateAnswers(once, pool, request())
    expect(answers(p)).toEqual(answers(once))
    p.close()
    once.close()
  })

  it('two sources each get K, under their own names', async () => {
    const p = project()
    const sources = [base(), { model, adapter }]
    const r = await generateAnswers(p, pool, request({ sources }))
    expect(r.sources.map((s) => [s.name, s.answers])).toEqual([['model', 10], ['dpo-1 adapter', 10]])
    expect(bySource(p, 'model')).toEqual([2, 2, 2, 2, 2])
    expect(bySource(p, 'dpo-1 adapter')).toEqual([2, 2, 2, 2, 2])
    expect(answers(p)[0]!.map(([s]) => s)).toEqual(['model', 'model', 'dpo-1 adapter', 'dpo-1 adapter'])
    expect(answerSourceName({ model, adapter: join(adapter, 'checkpoint-40') })).toBe('dpo-1/checkpoint-40 adapter')
    expect((await generateAnswers(p, pool, request({ sources }))).answers).toBe(0)
    p.close()
  })

  it('scopes: prompt-only leaves records with other answers, unlabeled leaves labeled ones, excluded never', async () => {
    const p = project()
    const ids = [...p.iterateRecords()].map((r) => r.id)
    p.setLabel(ids[2]!, { kind: 'gold', text: 'a gold answer' })
    p.setExcluded([ids[4]!], 'test')
    const promptOnly = await generateAnswers(p, pool, request({ scope: 'prompt-only', n: 1 }))
    expect(promptOnly.records).toBe(2)
    expect(bySource(p, 'model')).toEqual([1, 1, 0, 0, 0])
    // Records answered by this source are still prompt-only for it, so a larger K tops them up.
    await generateAnswers(p, pool, request({ scope: 'prompt-only', n: 2 }))
    expect(bySource(p, 'model')).toEqual([2, 2, 0, 0, 0])
    await generateAnswers(p, pool, request({ scope: 'unlabeled', n: 2 }))
    expect(bySource(p, 'model')).toEqual([2, 2, 0, 2, 0])
    await generateAnswers(p, pool, request({ ids: [ids[2]!], n: 1 }))
    expect(bySource(p, 'model')).toEqual([2, 2, 1, 2, 0])
    p.close()
  })

  it('a model without a chat template answers text prompts as plain text and refuses conversations by record', async () => {
    const p = project()
    const source = { model: plain, adapter: null }
    await expect(generateAnswers(p, pool, request({ sources: [source] }))).rejects.toThrow(/no chat template.*1 record holds a conversation or a system prompt \(record 2\)/)
    expect(bySource(p, 'plain-model')).toEqual([0, 0, 0, 0, 0])
    const ids = [...p.iterateRecords()].map((r) => r.id)
    const r = await generateAnswers(p, pool, request({ sources: [source], ids: [ids[0]!, ids[2]!] }))
    expect(r.answers).toBe(4)
    p.close()
  })

  it('refuses bad requests by name', async () => {
    const p = project()
    await expect(generateAnswers(p, pool, request({ sources: [] }))).rejects.toThrow(/at least one model/)
    await expect(generateAnswers(p, pool, request({ n: 0 }))).rejects.toThrow(/answers per prompt/)
    await expect(generateAnswers(p, pool, request({ sources: [base(), base()] }))).rejects.toThrow(/same name 'model'/)
    await expect(generateAnswers(p, pool, request({ settings: { topP: 2 } }))).rejects.toThrow(/topP/)
    p.close()
  })

  it('the channels: progress events, one generation at a time, cancel', async () => {
    const events: GenerateAnswersProgress[] = []
    let onEvent = (_e: GenerateAnswersProgress): void => {}
    const closers: (() => void | Promise<void>)[] = []
    const h = createDataHandlers({
      pool,
      emit: (channel, payload) => {
        if (channel !== 'data.generateProgress') return
        events.push(payload as EventMap['data.generateProgress'])
        onEvent(payload as GenerateAnswersProgress)
      }
    }, (c) => closers.push(c))
    await h['data.open'](join(dir, 'channels'))
    await h['data.addRecords'](RECORDS)
    onEvent = (e) => {
      if (e.answersWritten > 0) void h['data.cancelGenerate']()
    }
    const running = h['data.generateAnswers'](request({ batchSize: 2 }))
    await expect(h['data.generateAnswers'](request())).rejects.toThrow(/already/)
    await expect(h['data.open'](join(dir, 'elsewhere'))).rejects.toThrow(/cancel that before opening another project/)
    const cancelled = await running
    expect(cancelled).toMatchObject({ cancelled: true, answers: 2 })
    expect(events.at(-1)).toMatchObject({ finished: true, answersWritten: 2 })
    onEvent = () => {}
    expect(await h['data.cancelGenerate']()).toBe(false)
    expect(await h['data.generateAnswers'](request())).toMatchObject({ cancelled: false, answers: 8 })
    expect((await h['data.list']({})).records.map((r) => r.candidates.filter((c) => c.source === 'model').length)).toEqual([2, 2, 2, 2, 2])
    for (const c of closers) await c()
  })

  it('tunebench data generate: progress on stderr, a summary on stdout, again adds nothing', async () => {
    const proj = join(dir, 'cli-project')
    const file = writeJsonl(join(dir, 'prompts.jsonl'), [{ prompt: 'hello' }, { prompt: [{ role: 'user', content: 'abcd' }] }, { prompt: 'ef' }])
    const imported = await cli(['import', file, '--project', proj])
    expect(imported.code, imported.stderr).toBe(0)
    const args = ['generate', '--project', proj, '--model', model, '--n', '2', '--only', 'prompt-only', '--max-new-tokens', '5', '--temperature', '0.7', '--threads', '1']
    const first = await cli(args)
    expect(first.code, first.stderr).toBe(0)
    expect(first.stdout).toMatch(/^wrote 6 answers from model to 3 of 3 records in [\d.]+ s\n$/)
    expect(first.stderr).toMatch(/generate \[#+\] 6\/6 100% .*answers, 3\/3 records/)
    const again = await cli(args)
    expect(again.stdout).toMatch(/^wrote 0 answers from model to 0 of 3 records \(3 already held 2\)/)
    const p = new Project(proj)
    expect(bySource(p, 'model')).toEqual([2, 2, 2])
    p.close()
    const bad = await cli(['generate', '--project', proj, '--model', model, '--n', '2', '--top-p', '3'])
    expect(bad.code).toBe(2)
    expect(bad.stderr).toMatch(/--top-p: expected a number in \(0, 1\], got "3"/)
    const noN = await cli(['generate', '--project', proj, '--model', model])
    expect(noN.code).toBe(2)
    expect(noN.stderr).toMatch(/needs --n K/)
  })
})
