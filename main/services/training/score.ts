// Summed completion log-probs of dataset records under a model (and optionally an adapter):
// pairs give chosen/rejected logps, single completions give logps (docs/algorithms.md sequences).
import { DataError } from '../data/errors'
import { parseTrlRecord } from '../data/formats'
import { readRows } from '../data/sources'
import type { ScoreLine } from '../../../preload/types/training'
import { collate, pairSequences, sequenceSums } from './batches'
import { loadNativeModel, type ModelLoader } from './engine'
import { writeFileAtomic } from '../fsAtomic'
import { ChatTokenizer, joinSequence, tokenizeConversation, tokenizePromptCompletion, type Sequence } from './sequences'

export interface ScoreOptions {
  model: string
  adapter?: string | null
  data: string
  out: string
  cutoffLen?: number
  batchSize?: number
  threads?: number
  device?: 'cpu' | 'cuda'
  loadModel?: ModelLoader
  onProgress?: (done: number, total: number) => void
  signal?: AbortSignal
}

type Item =
  | { index: number; kind: 'pair'; prompt: number[]; chosen: number[]; rejected: number[] }
  | { index: number; kind: 'single'; sequence: Sequence }

export async function scoreRecords(o: ScoreOptions): Promise<{ records: number }> {
  const tok = await ChatTokenizer.load(o.model)
  const cutoff = o.cutoffLen ?? 2048
  const items: Item[] = []
  for await (const row of readRows(o.data)) {
    const where = row.kind === 'jsonl' ? { file: o.data, line: row.index } : { file: o.data, row: row.index }
    try {
      const rec = parseTrlRecord(row.value)
      const index = items.length
      if (rec.type === 'preference') {
        const c = tokenizePromptCompletion(tok, rec.prompt, rec.chosen)
        const r = tokenizePromptCompletion(tok, rec.prompt, rec.rejected)
        items.push({ index, kind: 'pair', prompt: c.prompt, chosen: c.completion, rejected: r.completion })
      } else if (rec.type === 'messages') {
        const s = tokenizeConversation(tok, rec.messages)
        items.push({ index, kind: 'single', sequence: { ids: s.ids.slice(0, cutoff), mask: s.mask.slice(0, cutoff) } })
      } else {
        const pc = tokenizePromptCompletion(tok, rec.prompt, rec.completion)
        items.push({ index, kind: 'single', sequence: joinSequence(pc.prompt, pc.completion, cutoff) })
      }
    } catch (e) {
      if (e instanceof DataError) throw e.at(where)
      throw new DataError((e as Error).message, where)
    }
  }
  if (!items.length) throw new DataError('no records', { file: o.data })

  const model = await (o.loadModel ?? loadNativeModel)(o.model, { threads: o.threads || undefined, device: o.device })
  const onAbort = () => model.cancel()
  o.signal?.addEventListener('abort', onAbort, { once: true })
  // The output appears whole when every record is scored, never half written.
  const out: string[] = []
  try {
    if (o.adapter) await model.loadAdapter(o.adapter)
    const adapters = Boolean(o.adapter)
    const bs = Math.max(1, o.batchSize ?? 8)
    for (let i = 0; i < items.length; i += bs) {
      if (o.signal?.aborted) throw new Error('cancelled')
      const chunk = items.slice(i, i + bs)
      const pairs = chunk.filter((x): x is Extract<Item, { kind: 'pair' }> => x.kind === 'pair')
      const singles = chunk.filter((x): x is Extract<Item, { kind: 'single' }> => x.kind === 'single')
      const lines = new Map<number, ScoreLine>()
      if (pairs.length) {
        const batch = collate(pairSequences(pairs, cutoff), tok.padId)
        const { logps, tokens } = sequenceSums(await model.logps(batch, { adapters, train: false }), batch)
        const n = pairs.length
        pairs.forEach((p, b) =>
          lines.set(p.index, { index: p.index, chosen_logps: logps[b]!, rejected_logps: logps[n + b]!, chosen_tokens: tokens[b]!, rejected_tokens: tokens[n + b]! })
        )
      }
      if (singles.length) {
        const batch = collate(singles.map((s) => s.sequence), tok.padId)
        const { logps, tokens } = sequenceSums(await model.logps(batch, { adapters, train: false }), batch)
        singles.forEach((s, b) => lines.set(s.index, { index: s.index, logps: logps[b]!, tokens: tokens[b]! }))
      }
      for (const item of chunk) out.push(JSON.stringify(lines.get(item.index)) + '\n')
      o.onProgress?.(Math.min(i + bs, items.length), items.length)
    }
    await writeFileAtomic(o.out, out.join(''))
    return { records: items.length }
  } finally {
    o.signal?.removeEventListener('abort', onAbort)
    model.dispose()
  }
}
