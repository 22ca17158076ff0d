// Tokenisation preview for a chosen model: how records render through its chat template, how
// many tokens they take, and which ones cutoff_len would truncate. Tokenisation is the
// training code's (main/services/training/sequences.ts), so the preview counts exactly the
// tokens training will see.
import { DataError } from './errors'
import type { Message, Text } from './formats'
import type { Project } from './store'
import type { DataRecord, TokenizePreview, TokenizePreviewOptions } from '../../../preload/types/data'

function promptText(rec: DataRecord): Text {
  if (typeof rec.prompt === 'string' && rec.system === null) return rec.prompt
  const msgs: Message[] = rec.system !== null ? [{ role: 'system', content: rec.system }] : []
  return msgs.concat(typeof rec.prompt === 'string' ? [{ role: 'user', content: rec.prompt }] : rec.prompt)
}

/** The answers a record trains on: its gold answer and every candidate. */
function answers(rec: DataRecord): string[] {
  const out = rec.candidates.map((c) => c.content)
  if (rec.gold !== null) out.push(rec.gold)
  return out
}

function percentile(sorted: number[], q: number): number {
  if (!sorted.length) return 0
  return sorted[Math.min(sorted.length - 1, Math.floor(q * (sorted.length - 1) + 0.5))]
}

export async function tokenizePreview(project: Project, opts: TokenizePreviewOptions): Promise<TokenizePreview> {
  if (!Number.isInteger(opts.cutoffLen) || opts.cutoffLen < 1) throw new DataError(`cutoff_len must be a positive integer, got ${opts.cutoffLen}`, { field: 'cutoffLen' })
  const { ChatTokenizer, tokenizePromptCompletion } = await import('../training/sequences')
  const tok = await ChatTokenizer.load(opts.modelDir)
  const sample = opts.sample ?? 3
  const rendered: TokenizePreview['rendered'] = []
  const truncated: TokenizePreview['truncated'] = []
  const totals: number[] = []
  for (const rec of project.iterateRecords({ split: opts.split })) {
    const prompt = promptText(rec)
    const outs = answers(rec)
    if (!outs.length) continue
    let promptTokens = 0
    let completionTokens = 0
    for (const a of outs) {
      let pc: { prompt: number[]; completion: number[] }
      try {
        pc = tokenizePromptCompletion(tok, prompt, typeof prompt === 'string' ? a : [{ role: 'assistant', content: a }])
      } catch (e) {
        throw new DataError((e as Error).message, { row: rec.id, field: 'prompt' })
      }
      promptTokens = pc.prompt.length
      completionTokens = Math.max(completionTokens, pc.completion.length)
    }
    const total = promptTokens + completionTokens
    totals.push(total)
    if (total > opts.cutoffLen) truncated.push({ recordId: rec.id, tokens: total })
    if (rendered.length < sample) {
      // Show what training would learn first: the gold answer, else the chosen one.
      const chosen = rec.pair ? rec.candidates.find((c) => c.id === rec.pair!.chosen)?.content : undefined
      const first = rec.gold ?? chosen ?? outs[0]
      const text = typeof prompt === 'string' ? prompt + first : tok.renderChat([...prompt, { role: 'assistant', content: first }], false)
      rendered.push({ recordId: rec.id, text, promptTokens, completionTokens })
    }
  }
  const sorted = [...totals].sort((a, b) => a - b)
  return {
    rendered,
    records: totals.length,
    tokens: {
      min: sorted[0] ?? 0,
      max: sorted[sorted.length - 1] ?? 0,
      mean: totals.length ? totals.reduce((a, b) => a + b, 0) / totals.length : 0,
      p50: percentile(sorted, 0.5),
      p95: percentile(sorted, 0.95)
    },
    truncated
  }
}
