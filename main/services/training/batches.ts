// Right-padded engine batches from examples, and the glue between per-token log-probs and
// per-sequence sums: chosen and rejected run as one concatenated batch [chosen..., rejected...].
import type { Batch } from './engine'
import { joinSequence, promptBudget, type Example, type Sequence } from './sequences'

export function collate(seqs: Sequence[], padId: number): Batch {
  const batch = seqs.length
  const seqLen = Math.max(1, ...seqs.map((s) => s.ids.length))
  const ids = new Int32Array(batch * seqLen).fill(padId)
  const mask = new Uint8Array(batch * seqLen)
  const lengths = new Int32Array(batch)
  seqs.forEach((s, b) => {
    lengths[b] = s.ids.length
    for (let t = 0; t < s.ids.length; t++) {
      ids[b * seqLen + t] = s.ids[t]!
      mask[b * seqLen + t] = t === 0 ? 0 : s.mask[t]!
    }
  })
  return { ids, batch, seqLen, lengths, mask }
}

/** Summed (float64) log-probs and masked token counts of each sequence of a batch. */
export function sequenceSums(lp: Float32Array, batch: Batch): { logps: Float64Array; tokens: Float64Array } {
  const logps = new Float64Array(batch.batch)
  const tokens = new Float64Array(batch.batch)
  for (let b = 0; b < batch.batch; b++) {
    let s = 0
    let n = 0
    for (let t = 0; t < batch.seqLen; t++) {
      const i = b * batch.seqLen + t
      if (batch.mask[i]) {
        s += lp[i]!
        n++
      }
    }
    logps[b] = s
    tokens[b] = n
  }
  return { logps, tokens }
}

/** dL/dlp_t = the sequence's dL/dlogps at each of its masked tokens (logps are sums). */
export function tokenGradients(batch: Batch, perSequence: ArrayLike<number>): Float32Array {
  const g = new Float32Array(batch.batch * batch.seqLen)
  for (let b = 0; b < batch.batch; b++) {
    const v = perSequence[b]!
    for (let t = 0; t < batch.seqLen; t++) {
      const i = b * batch.seqLen + t
      if (batch.mask[i]) g[i] = v
    }
  }
  return g
}

export type PairExample = Extract<Example, { kind: 'pair' }>
export type UnpairedExample = Extract<Example, { kind: 'unpaired' }>

/** Chosen then rejected sequences of a batch of pairs; both answers share one prompt cut. */
export function pairSequences(pairs: PairExample[], cutoffLen: number): Sequence[] {
  const joined = pairs.map((p) => {
    const keep = promptBudget(p.prompt.length, Math.max(p.chosen.length, p.rejected.length), cutoffLen)
    return [joinSequence(p.prompt, p.chosen, cutoffLen, keep), joinSequence(p.prompt, p.rejected, cutoffLen, keep)] as const
  })
  return [...joined.map((j) => j[0]), ...joined.map((j) => j[1])]
}

/** KTO's KL pairs: record i's prompt with the completion of record i−1 (rotated by one). */
export function klSequences(records: UnpairedExample[], cutoffLen: number): Sequence[] {
  const n = records.length
  return records.map((r, i) => joinSequence(r.prompt, records[(i - 1 + n) % n]!.completion, cutoffLen))
}
