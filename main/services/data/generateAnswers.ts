// "Generate answers…": K answers per prompt from each source (the base model, adapters), stored
// as candidates of their records under the source's name (answerSourceName), ready for pair or
// KTO labeling. A record that already holds some answers under that name gets only the rest,
// drawn as the samples after them (per-sample seeds), so a rerun after a cancel or a crash
// gives what one uninterrupted run would have. Each engine call's answers are written in one
// transaction as soon as the call ends: a crash loses only the calls in flight.
import { DataError } from './errors'
import type { Project } from './store'
import { GenerationCancelled, generate, type GenerationPrompt, type GenerationResult } from '../generation/generate'
import type { GenerationPool } from '../generation/pool'
import { resolveSettings } from '../../../preload/types/generationSettings'
import {
  answerSourceName,
  type AnswerScope,
  type ChatSource,
  type GenerateAnswersProgress,
  type GenerateAnswersRequest,
  type GenerateAnswersResult
} from '../../../preload/types/generation'

/** Records per round: each source answers a round's records before the next round starts, so
 *  records finish as the run goes while a source's adapter is not swapped in at every call. */
const ROUND = 128

const SCOPES: readonly AnswerScope[] = ['all', 'unlabeled', 'prompt-only']

interface Need {
  recordId: number
  /** Per source (request order): the sample numbers still to draw. */
  samples: number[][]
}

/** Checks a request from a channel or the command line; errors name the field. */
function checkRequest(req: GenerateAnswersRequest): void {
  if (!req || !Array.isArray(req.sources) || req.sources.length === 0) throw new DataError('choose at least one model or adapter to answer')
  req.sources.forEach((s, i) => {
    if (!s || typeof s.model !== 'string' || !s.model) throw new DataError(`sources[${i}]: a model folder is needed`)
    if (s.adapter !== null && s.adapter !== undefined && (typeof s.adapter !== 'string' || !s.adapter))
      throw new DataError(`sources[${i}]: the adapter must be a folder or null`)
  })
  const names = req.sources.map((s) => answerSourceName(s))
  const twice = names.find((n, i) => names.indexOf(n) !== i)
  if (twice) throw new DataError(`two sources would store their answers under the same name '${twice}'`)
  if (!Number.isInteger(req.n) || req.n < 1) throw new DataError(`answers per prompt must be a whole number ≥ 1, got ${String(req.n)}`, { field: 'n' })
  if (req.scope !== undefined && !SCOPES.includes(req.scope)) throw new DataError(`scope must be one of ${SCOPES.join(', ')}, got '${String(req.scope)}'`, { field: 'scope' })
  if (req.split !== undefined && req.split !== 'train' && req.split !== 'val') throw new DataError(`split must be train or val, got '${String(req.split)}'`, { field: 'split' })
  if (req.ids !== undefined && (!Array.isArray(req.ids) || req.ids.some((id) => !Number.isInteger(id)))) throw new DataError('ids must be a list of record ids', { field: 'ids' })
}

/** What each record in scope still needs from each source. */
function plan(project: Project, req: GenerateAnswersRequest, names: string[]): { inScope: number; needs: Need[]; alreadyFull: number[] } {
  const scope = req.scope ?? 'all'
  const rows = project.answerSources({ ids: req.ids, split: req.split, status: scope === 'unlabeled' ? 'unlabeled' : undefined })
  const chosen = new Set(names)
  const needs: Need[] = []
  const alreadyFull = names.map(() => 0)
  let inScope = 0
  for (const r of rows) {
    if (scope === 'prompt-only' && (r.gold || [...r.sources.keys()].some((s) => !chosen.has(s)))) continue
    inScope++
    const samples = names.map((name, s) => {
      const have = r.sources.get(name) ?? 0
      if (have >= req.n) alreadyFull[s]!++
      return Array.from({ length: Math.max(0, req.n - have) }, (_, k) => have + k)
    })
    if (samples.some((x) => x.length)) needs.push({ recordId: r.id, samples })
  }
  return { inScope, needs, alreadyFull }
}

/** A model without a chat template encodes text prompts as they are; it cannot encode chats. */
async function checkPrompts(project: Project, pool: GenerationPool, sources: ChatSource[], needs: Need[]): Promise<boolean[]> {
  const chat: boolean[] = []
  for (const [s, source] of sources.entries()) {
    const tok = await pool.tokenizer(source.model)
    chat.push(tok.hasChatTemplate)
    if (tok.hasChatTemplate) continue
    const bad = needs.filter((n) => n.samples[s]!.length).map((n) => project.getRecord(n.recordId))
      .filter((r) => typeof r.prompt !== 'string' || r.system).map((r) => r.id)
    if (bad.length)
      throw new DataError(`${source.model} has no chat template, so it can answer only plain-text prompts without a system prompt; ` +
        `${bad.length === 1 ? '1 record holds' : `${bad.length} records hold`} a conversation or a system prompt ` +
        `(record ${bad.slice(0, 5).join(', ')}${bad.length > 5 ? ', …' : ''}). ` +
        'Choose a model with a chat template, or other records.')
  }
  return chat
}

export interface GenerateAnswersCall {
  signal?: AbortSignal
  onProgress?: (p: GenerateAnswersProgress) => void
}

/** Generates the missing answers of the records in scope; resolves with what was written (also
 *  when cancelled: the answers written stay). Throws on a bad request or an engine failure. */
export async function generateAnswers(project: Project, pool: GenerationPool, req: GenerateAnswersRequest,
  call: GenerateAnswersCall = {}): Promise<GenerateAnswersResult> {
  checkRequest(req)
  // Checked before anything runs, so that a bad value fails at once.
  const settings = resolveSettings({ ...req.settings, numReturnSequences: 1 })
  const t0 = performance.now()
  const names = req.sources.map((s) => answerSourceName(s))
  const { inScope, needs, alreadyFull } = plan(project, req, names)
  const chatTemplate = await checkPrompts(project, pool, req.sources, needs)

  const left = new Map(needs.map((n) => [n.recordId, n.samples.reduce((a, x) => a + x.length, 0)]))
  const answersTotal = [...left.values()].reduce((a, b) => a + b, 0)
  const written = names.map(() => 0)
  let answersWritten = 0
  let recordsDone = 0
  const summary = (cancelled: boolean): GenerateAnswersResult => ({
    sources: req.sources.map((s, i) => ({
      name: names[i]!, model: s.model, adapter: s.adapter ?? null, answers: written[i]!,
      records: needs.filter((n) => n.samples[i]!.length).length, alreadyFull: alreadyFull[i]!
    })),
    records: inScope, planned: { records: needs.length, answers: answersTotal }, recordsDone, answers: answersWritten, cancelled,
    seconds: (performance.now() - t0) / 1000
  })
  if (req.dryRun) return summary(false)
  let current: string | null = null
  const progress = (finished = false): void => {
    const elapsed = (performance.now() - t0) / 1000
    call.onProgress?.({
      recordsDone, recordsTotal: needs.length, answersWritten, answersTotal, elapsedSeconds: elapsed,
      etaSeconds: answersWritten > 0 ? (elapsed / answersWritten) * (answersTotal - answersWritten) : null,
      source: finished ? null : current, finished
    })
  }

  let cancelled = false
  progress()
  try {
    for (let at = 0; at < needs.length; at += ROUND) {
      const round = needs.slice(at, at + ROUND)
      for (const [s, source] of req.sources.entries()) {
        const todo = round.filter((n) => n.samples[s]!.length)
        if (!todo.length) continue
        current = names[s]!
        const prompts: GenerationPrompt[] = todo.map((n) => {
          const r = project.getRecord(n.recordId)
          return { index: r.id, prompt: r.prompt, system: r.system, samples: n.samples[s] }
        })
        progress()
        const write = (results: GenerationResult[]): void => {
          const byRecord = new Map<number, { content: string; source: string }[]>()
          for (const r of [...results].sort((a, b) => a.index - b.index || a.sample - b.sample))
            (byRecord.get(r.index) ?? byRecord.set(r.index, []).get(r.index)!).push({ content: r.text, source: names[s]! })
          const entries = [...byRecord].map(([recordId, candidates]) => ({ recordId, candidates }))
          answersWritten += project.addAnswers(entries)
          written[s]! += results.length
          for (const e of entries) {
            const rest = left.get(e.recordId)! - e.candidates.length
            left.set(e.recordId, rest)
            if (rest === 0) recordsDone++
          }
          progress()
        }
        await generate(pool, source, prompts, { settings, chatTemplate: chatTemplate[s], batchSize: req.batchSize, signal: call.signal, onResults: write })
      }
    }
  } catch (err) {
    if (!(err instanceof GenerationCancelled)) {
      progress(true)
      throw err
    }
    cancelled = true
  }
  progress(true)
  return summary(cancelled)
}
