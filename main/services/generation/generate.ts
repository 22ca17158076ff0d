// Completions of prompts from a source: each prompt repeated num_return_sequences times in one
// engine call, the text streamed as it is decoded (completionText.ts), stop strings ending a
// row through model.stopRow, cancellable. The rows the engine's Promise resolves with are the
// truth: streamed steps only run ahead of them, and a step that arrives after them is ignored.
import type { FinishReason } from '../../../native/index'
import { CompletionText } from './completionText'
import type { GenerationPool, GenerationSource, ReadySource } from './pool'
import { promptIds, type PromptSpec } from './prompts'
import { resolveSettings, type GenerationSettings } from '../../../preload/types/generationSettings'

/** One line of `tunebench generate --out`: one completion of one prompt. */
export interface GenerationResult {
  /** The prompt's index (its record's, for a data file). */
  index: number
  /** Which of the num_return_sequences completions of that prompt. */
  sample: number
  prompt_ids: number[]
  /** The generated tokens: the eos last when it ended on one; up to the token that completed
   *  the stop string when one was found. */
  completion_ids: number[]
  /** decode(completion_ids) without special tokens, cut before the stop string if any. */
  text: string
  finish_reason: FinishReason
  /** Per completion token: log_softmax(logits / T) at it (T = 1 when greedy). */
  logps: number[]
}

/** Text of one completion that became safe to show. */
export interface TextDelta {
  index: number
  sample: number
  delta: string
}

/** A prompt: a conversation or text to encode, or token ids as they are; `index` defaults to its
 *  position. `samples` names which completions to draw (default 0 … numReturnSequences - 1):
 *  each one's seed depends on its number, so drawing 2 and 3 later gives what drawing 0 to 3 at
 *  once would have (how generating answers again tops a record up). */
export type GenerationPrompt = (PromptSpec | { ids: number[] }) & { index?: number; samples?: number[] }

export interface GenerateCallOptions {
  settings?: Partial<GenerationSettings>
  /** Render prompts with the tokenizer's chat template (default true). */
  chatTemplate?: boolean
  /** Rows per engine call (default 16); a prompt's samples always share a call. */
  batchSize?: number
  signal?: AbortSignal
  onText?: (d: TextDelta) => void
  /** Each engine call's results as soon as it ends (before the whole call returns). */
  onResults?: (results: GenerationResult[]) => void
}

export class GenerationCancelled extends Error {
  constructor() {
    super('generation cancelled')
    this.name = 'GenerationCancelled'
  }
}

/** The seed of one (prompt index, sample): a hash of the user's seed and both, so that a row's
 *  draws do not depend on what else shares its batch. A non-negative safe integer. */
export function rowSeed(seed: number, index: number, sample: number): number {
  const mix = (h: number, v: number): number => {
    h = Math.imul(h ^ v, 0x85ebca6b)
    h ^= h >>> 13
    h = Math.imul(h, 0xc2b2ae35)
    return (h ^ (h >>> 16)) >>> 0
  }
  const words = [seed % 0x100000000, Math.floor(seed / 0x100000000), index >>> 0, Math.floor(index / 0x100000000), sample >>> 0]
  let hi = 0x9e3779b9, lo = 0x7f4a7c15
  for (const w of words) {
    hi = mix(hi, w)
    lo = mix(lo ^ hi, w + 0x632be5ab)
  }
  return (hi & 0x1fffff) * 0x100000000 + lo
}

export interface GenerationRow {
  index: number
  sample: number
  ids: number[]
}

/** One engine call over these rows, on a ready source. */
export async function generateRows(
  src: ReadySource, rows: GenerationRow[], settings: GenerationSettings,
  opts: { signal?: AbortSignal; onText?: (d: TextDelta) => void } = {}
): Promise<GenerationResult[]> {
  if (opts.signal?.aborted) throw new GenerationCancelled()
  const texts = rows.map(() => new CompletionText(src.tokenizer, settings.stop))
  const emit = (r: number, delta: string): void => {
    if (delta && opts.onText) opts.onText({ index: rows[r]!.index, sample: rows[r]!.sample, delta })
  }
  let settled = false
  const onStep = (step: { tokens: Int32Array }): void => {
    if (settled) return
    for (let r = 0; r < rows.length; r++) {
      const id = step.tokens[r]!
      const t = texts[r]!
      if (id < 0 || t.stopped) continue
      emit(r, t.push(id))
      if (t.stopped) src.model.stopRow(r)
    }
  }
  const onAbort = (): void => src.model.cancel()
  opts.signal?.addEventListener('abort', onAbort, { once: true })
  let out
  try {
    out = await src.model.generate(rows.map((r) => Int32Array.from(r.ids)), {
      maxNewTokens: settings.maxNewTokens, temperature: settings.temperature, topK: settings.topK, topP: settings.topP,
      minP: settings.minP, repetitionPenalty: settings.repetitionPenalty, eosIds: src.eosIds, adapters: src.adapters,
      seeds: rows.map((r) => rowSeed(settings.seed, r.index, r.sample))
    }, opts.onText || settings.stop.length ? onStep : undefined)
  } catch (err) {
    if (opts.signal?.aborted) throw new GenerationCancelled()
    throw err
  } finally {
    settled = true
    opts.signal?.removeEventListener('abort', onAbort)
  }
  if (opts.signal?.aborted) throw new GenerationCancelled()
  return out.map((row, r) => {
    const t = texts[r]!
    // Tokens whose step had not arrived yet go through the same decoder.
    for (let k = t.ids.length; k < row.tokens.length && !t.stopped; k++) emit(r, t.push(row.tokens[k]!))
    const { text, delta } = t.finish()
    emit(r, delta)
    const keep = t.stoppedAt ?? row.tokens.length
    return {
      index: rows[r]!.index, sample: rows[r]!.sample, prompt_ids: rows[r]!.ids,
      completion_ids: Array.from(row.tokens.subarray(0, keep)), text,
      finish_reason: t.stopped ? 'stop' : row.finish, logps: Array.from(row.logps.subarray(0, keep))
    }
  })
}

/** Completions of `prompts` from `source` (loaded through the pool and kept there). */
export async function generate(pool: GenerationPool, source: GenerationSource, prompts: GenerationPrompt[],
  opts: GenerateCallOptions = {}): Promise<GenerationResult[]> {
  const settings = resolveSettings(opts.settings)
  const batchSize = opts.batchSize ?? 16
  if (!Number.isInteger(batchSize) || batchSize < 1) throw new Error(`batchSize must be a positive integer, got ${batchSize}`)
  const tok = await pool.tokenizer(source.model)
  const defaultSamples = Array.from({ length: settings.numReturnSequences }, (_, s) => s)
  // One group of rows per prompt: its samples always share an engine call.
  const groups: GenerationRow[][] = prompts.map((p, i) => {
    const index = p.index ?? i
    const samples = p.samples ?? defaultSamples
    if (samples.some((s) => !Number.isInteger(s) || s < 0)) throw new Error(`prompt ${index}: samples must be whole numbers ≥ 0`)
    let ids: number[]
    try {
      ids = 'ids' in p ? p.ids : promptIds(tok, p, opts.chatTemplate ?? true)
    } catch (err) {
      throw new Error(`prompt ${index}: ${(err as Error).message}`)
    }
    if (!ids.length) throw new Error(`prompt ${index}: no tokens`)
    return samples.map((sample) => ({ index, sample, ids }))
  })
  const results: GenerationResult[] = []
  const run = async (chunk: GenerationRow[]): Promise<void> => {
    // The engine's KV cache holds every row at the longest prompt + maxNewTokens (generate.cpp).
    const longest = chunk.reduce((m, r) => Math.max(m, r.ids.length), 0)
    const call = { sequences: chunk.length, tokens: longest + settings.maxNewTokens, promptTokens: longest }
    const got = await pool.use(source, (src) => generateRows(src, chunk, settings, opts), call)
    opts.onResults?.(got)
    results.push(...got)
  }
  let chunk: GenerationRow[] = []
  for (const group of groups) {
    if (!group.length) continue
    if (chunk.length && chunk.length + group.length > batchSize) {
      await run(chunk)
      chunk = []
    }
    chunk.push(...group)
  }
  if (chunk.length) await run(chunk)
  return results
}
