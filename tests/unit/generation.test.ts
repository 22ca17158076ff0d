// The generation service on the native engine with a tiny byte-level model: per-token logps
// equal the full forward's, seeded sampling repeats whatever the batch, the first-token
// frequencies follow softmax(logits / T) truncated by top-k / top-p / min-p (chi-square),
// stop strings across tokens end the row, the streamed text is always a prefix of the final
// text, cancel rejects and leaves the model usable, and the pool keeps one model per folder.
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { Model } from '../../native/index'
import { generate, GenerationCancelled, type GenerationResult, type TextDelta } from '../../main/services/generation/generate'
import { GenerationPool, loadGenerationModel } from '../../main/services/generation/pool'
import type { GenerationSettings } from '../../preload/types/generationSettings'
import { BYTE_VOCAB_SIZE, writeByteLevelModel } from './generation-fixture'
import { engineBuilt } from './trainingPython'

describe.runIf(engineBuilt())('generation service', () => {
  let root = ''
  let modelDir = ''
  let adapterDir = ''
  let loads = 0
  const pool = new GenerationPool({ threads: 2, load: (d, o) => (loads++, loadGenerationModel(d, o)) })
  let ref: Model
  const prompts = [{ prompt: 'hello the' }, { prompt: 'abcd é', system: 'be brief' }]

  beforeAll(async () => {
    root = mkdtempSync(join(tmpdir(), 'tb-gen-'))
    modelDir = writeByteLevelModel(join(root, 'model'), { seed: 5 })
    // An adapter with non-zero B: one optimiser step from PEFT's init.
    ref = await Model.load(modelDir, { threads: 2 })
    ref.addLora({ rank: 4, alpha: 8, dropout: 0, targets: ['q', 'v', 'down'], rslora: false, seed: 3 })
    const b = { ids: Int32Array.from([1, 2, 3, 4, 5, 6]), batch: 1, seqLen: 6, lengths: Int32Array.from([6]), mask: Uint8Array.from([0, 1, 1, 1, 1, 1]) }
    await ref.logps(b, { adapters: true, train: true })
    await ref.backward(Float32Array.from([0, -1, -1, -1, -1, -1]))
    await ref.optimizerStep({ lr: 0.2, beta1: 0.9, beta2: 0.999, eps: 1e-8, weightDecay: 0, maxGradNorm: 0 })
    adapterDir = join(root, 'adapter')
    await ref.saveAdapter(adapterDir, modelDir)
  })
  afterAll(async () => {
    ref?.dispose()
    await pool.dispose()
    rmSync(root, { recursive: true, force: true })
  })

  const source = () => ({ model: modelDir })

  /** Per-token log-probs of prompt + completion by the full forward (the reference model). */
  async function fullLogps(r: GenerationResult, adapters: boolean): Promise<number[]> {
    const ids = [...r.prompt_ids, ...r.completion_ids]
    const mask = ids.map((_, t) => (t >= r.prompt_ids.length ? 1 : 0))
    const lp = await ref.logps({ ids: Int32Array.from(ids), batch: 1, seqLen: ids.length, lengths: Int32Array.from([ids.length]), mask: Uint8Array.from(mask) }, { adapters, train: false })
    return Array.from(lp.subarray(r.prompt_ids.length))
  }

  it('the logps of sampled tokens at T = 1 equal the full forward\'s log-probs within 1e-5, adapters off and on', async () => {
    for (const adapter of [null, adapterDir]) {
      const got = await generate(pool, { model: modelDir, adapter }, prompts, { settings: { maxNewTokens: 12, numReturnSequences: 3, seed: 9 } })
      expect(got).toHaveLength(6)
      for (const r of got) {
        expect(r.logps).toHaveLength(r.completion_ids.length)
        const full = await fullLogps(r, adapter !== null)
        for (let k = 0; k < full.length; k++) expect(Math.abs(r.logps[k]! - full[k]!), `${r.index}/${r.sample} token ${k}`).toBeLessThan(1e-5)
      }
    }
  })

  it('the same seed gives the same tokens whether a prompt runs alone or in a batch; another seed others', async () => {
    const settings = { maxNewTokens: 10, numReturnSequences: 2, seed: 4, temperature: 0.9, topP: 0.95 }
    const together = await generate(pool, source(), prompts, { settings, batchSize: 16 })
    const alone = await generate(pool, source(), [{ ...prompts[1]!, index: 1 }], { settings, batchSize: 1 })
    expect(alone.map((r) => r.completion_ids)).toEqual(together.slice(2).map((r) => r.completion_ids))
    expect((await generate(pool, source(), prompts, { settings })).map((r) => r.completion_ids)).toEqual(together.map((r) => r.completion_ids))
    const other = await generate(pool, source(), prompts, { settings: { ...settings, seed: 5 } })
    expect(other.map((r) => r.completion_ids)).not.toEqual(together.map((r) => r.completion_ids))
    expect(together[0]!.completion_ids).not.toEqual(together[1]!.completion_ids) // samples differ
  })

  describe('first-token frequencies follow the truncated softmax (chi-square, 4000 rows, fixed seed)', () => {
    let lp: number[] = []
    const promptIds = [104, 101, 108, 108, 111, 32]
    beforeAll(async () => {
      // log_softmax(logits)[v] of the first step for every candidate v, by the full forward.
      const V = BYTE_VOCAB_SIZE, L = promptIds.length + 1
      const ids = new Int32Array(V * L), mask = new Uint8Array(V * L)
      for (let v = 0; v < V; v++) {
        ids.set([...promptIds, v], v * L)
        mask[v * L + L - 1] = 1
      }
      const out = await ref.logps({ ids, batch: V, seqLen: L, lengths: new Int32Array(V).fill(L), mask }, { adapters: false, train: false })
      lp = Array.from({ length: V }, (_, v) => out[v * L + L - 1]!)
    })

    /** softmax(lp / T) -> top-k -> top-p -> min-p -> renormalised (docs/algorithms.md "Sampling"). */
    function expected(s: Partial<GenerationSettings>): number[] {
      const T = s.temperature ?? 1
      const m = Math.max(...lp)
      let p = lp.map((x) => Math.exp((x - m) / T))
      const norm = (q: number[]): number[] => { const z = q.reduce((a, b) => a + b, 0); return q.map((x) => x / z) }
      p = norm(p)
      const order = p.map((_, i) => i).sort((a, b) => p[b]! - p[a]!)
      if (s.topK) p = norm(p.map((x, i) => (order.indexOf(i) < s.topK! ? x : 0)))
      if (s.topP !== undefined && s.topP < 1) {
        let cum = 0
        const keep = new Set<number>()
        for (const i of order) {
          if (cum >= s.topP) break
          // the test is only fair away from the edge of the nucleus
          expect(Math.abs(cum - s.topP), 'top-p boundary margin').toBeGreaterThan(1e-4)
          keep.add(i)
          cum += p[i]!
        }
        p = norm(p.map((x, i) => (keep.has(i) ? x : 0)))
      }
      if (s.minP) { const top = Math.max(...p); p = norm(p.map((x) => (x >= s.minP! * top ? x : 0))) }
      return p
    }

    /** Pearson's statistic with bins of expected count ≥ 5 (the rest pooled), and its df. */
    function chiSquare(counts: number[], probs: number[], n: number): { stat: number; df: number } {
      let stat = 0, df = -1, restO = 0, restE = 0
      probs.forEach((p, i) => {
        const e = p * n
        if (e >= 5) { stat += (counts[i]! - e) ** 2 / e; df++ } else { restO += counts[i]!; restE += e }
      })
      if (restE > 0) { stat += (restO - restE) ** 2 / Math.max(restE, 1e-9); df++ }
      return { stat, df }
    }
    /** The 99.9% quantile of chi-square(df), Wilson-Hilferty. */
    const critical = (df: number): number => df * (1 - 2 / (9 * df) + 3.09 * Math.sqrt(2 / (9 * df))) ** 3

    async function firstTokens(s: Partial<GenerationSettings>): Promise<number[]> {
      const N = 4000
      const got = await generate(pool, source(), [{ ids: promptIds }], { settings: { ...s, maxNewTokens: 1, numReturnSequences: N, seed: 2024 } })
      const counts = new Array<number>(BYTE_VOCAB_SIZE).fill(0)
      for (const r of got) counts[r.completion_ids[0]!]!++
      return counts
    }

    const cases: Partial<GenerationSettings>[] = [
      { temperature: 1 }, { temperature: 0.5 }, { temperature: 0.7, topK: 12 }, { temperature: 0.6, topP: 0.5 },
      { temperature: 0.5, minP: 0.2 }, { temperature: 0.8, topK: 40, topP: 0.8, minP: 0.05 }
    ]
    for (const s of cases) {
      it(JSON.stringify(s), async () => {
        const probs = expected(s)
        const counts = await firstTokens(s)
        counts.forEach((c, v) => { if (probs[v] === 0) expect(c, `token ${v} is outside the truncated set`).toBe(0) })
        const { stat, df } = chiSquare(counts, probs, 4000)
        expect(df).toBeGreaterThan(3)
        expect(stat, `chi-square ${stat.toFixed(1)} on ${df} df`).toBeLessThan(critical(df))
      })
    }

    it('the test has power: samples at T = 1 are refused against the softmax at T = 0.5', async () => {
      const { stat, df } = chiSquare(await firstTokens({ temperature: 1 }), expected({ temperature: 0.5 }), 4000)
      expect(stat).toBeGreaterThan(critical(df))
    })
  })

  it('a stop string spanning two tokens ends the row there: text cut before it, tokens up to the one completing it', async () => {
    const settings = { maxNewTokens: 24, temperature: 0.8 }
    let found: { seed: number; free: GenerationResult; stop: string; keep: number; cut: string } | null = null
    for (let seed = 0; seed < 40 && !found; seed++) {
      const [free] = await generate(pool, source(), [prompts[0]!], { settings: { ...settings, seed } })
      const ids = free!.completion_ids
      const texts = ids.map((_, k) => ids.slice(0, k + 1)).map((p) => pool.tokenizer(modelDir).then((t) => t.decode(p, true)))
      const prefix = await Promise.all(texts)
      for (let j = 1; j + 1 < ids.length && !found; j++) {
        const a = prefix[j]!, b = prefix[j + 1]!
        if (a.includes('\uFFFD') || b.includes('\uFFFD') || b.length <= a.length || !a.length) continue
        const stop = a.slice(-1) + b.slice(a.length, a.length + 1)
        if (free!.text.indexOf(stop) !== a.length - 1) continue
        found = { seed, free: free!, stop, keep: j + 2, cut: a.slice(0, -1) }
      }
    }
    expect(found, 'a generation with two clean neighbouring tokens').not.toBeNull()
    const f = found!
    const deltas: TextDelta[] = []
    const [r] = await generate(pool, source(), [prompts[0]!], { settings: { ...settings, seed: f.seed, stop: ['never there', f.stop] }, onText: (d) => deltas.push(d) })
    expect(r!.finish_reason).toBe('stop')
    expect(r!.completion_ids).toEqual(f.free.completion_ids.slice(0, f.keep))
    expect(r!.logps).toEqual(f.free.logps.slice(0, f.keep))
    expect(r!.text).toBe(f.cut)
    expect(deltas.map((d) => d.delta).join('')).toBe(f.cut)
  })

  it('streamed text is at every moment a prefix of the final text, which is decode(completion ids)', async () => {
    const seen = new Map<string, string>()
    const violations: string[] = []
    let finals: GenerationResult[] = []
    const check = (d: TextDelta) => {
      const key = `${d.index}/${d.sample}`
      seen.set(key, (seen.get(key) ?? '') + d.delta)
    }
    finals = await generate(pool, source(), prompts, { settings: { maxNewTokens: 40, numReturnSequences: 4, seed: 1 }, onText: check })
    const tok = await pool.tokenizer(modelDir)
    for (const r of finals) {
      const streamed = seen.get(`${r.index}/${r.sample}`) ?? ''
      if (streamed !== r.text) violations.push(`${r.index}/${r.sample}: ${JSON.stringify(streamed)} vs ${JSON.stringify(r.text)}`)
      expect(r.text).toBe(tok.decode(r.completion_ids, true))
    }
    expect(violations).toEqual([])
    // Random bytes split characters often: the test saw some.
    expect(finals.some((r) => r.completion_ids.some((id) => id >= 0xc2 && id <= 0xf4))).toBe(true)
  })

  it('cancel mid-stream rejects with "generation cancelled" and the model then generates as before', async () => {
    const settings = { maxNewTokens: 8, seed: 3 }
    const before = await generate(pool, source(), prompts, { settings })
    const abort = new AbortController()
    let steps = 0
    const t0 = performance.now()
    const run = generate(pool, source(), prompts, {
      settings: { maxNewTokens: 3000, seed: 3 }, signal: abort.signal,
      onText: () => { if (++steps === 1) abort.abort() }
    })
    await expect(run).rejects.toBeInstanceOf(GenerationCancelled)
    await expect(run).rejects.toThrow(/cancelled/)
    expect(performance.now() - t0).toBeLessThan(20_000)
    // The engine stopped soon after the abort, not at the 3000th token.
    expect(steps).toBeLessThan(200)
    const after = await generate(pool, source(), prompts, { settings })
    expect(after).toEqual(before)
    // Aborted before it starts: rejected without running.
    await expect(generate(pool, source(), prompts, { settings, signal: AbortSignal.abort() })).rejects.toThrow(/cancelled/)
  })

  it('keeps one model per folder: base and adapter calls share it, an adapter rewritten on disk is reloaded', async () => {
    const settings = { maxNewTokens: 8, temperature: 0 }
    const base1 = await generate(pool, source(), prompts, { settings })
    const lora1 = await generate(pool, { model: modelDir, adapter: adapterDir }, prompts, { settings })
    const base2 = await generate(pool, source(), prompts, { settings })
    expect(base2).toEqual(base1)
    expect(lora1.map((r) => r.logps)).not.toEqual(base1.map((r) => r.logps))
    expect(loads).toBe(1)
    expect(pool.loaded).toHaveLength(1)
    // Another optimiser step, saved over the same folder: the next call sees the new weights.
    const b = { ids: Int32Array.from([7, 8, 9, 10]), batch: 1, seqLen: 4, lengths: Int32Array.from([4]), mask: Uint8Array.from([0, 1, 1, 1]) }
    await ref.logps(b, { adapters: true, train: true })
    await ref.backward(Float32Array.from([0, -1, -1, -1]))
    await ref.optimizerStep({ lr: 0.5, beta1: 0.9, beta2: 0.999, eps: 1e-8, weightDecay: 0, maxGradNorm: 0 })
    await new Promise((r) => setTimeout(r, 20))
    await ref.saveAdapter(adapterDir, modelDir)
    const lora2 = await generate(pool, { model: modelDir, adapter: adapterDir }, prompts, { settings })
    expect(lora2.map((r) => r.logps)).not.toEqual(lora1.map((r) => r.logps))
    for (const r of lora2) {
      const full = await fullLogps({ ...r }, true)
      // T = 0: logps are at T = 1, so they equal the full forward's.
      full.forEach((x, k) => expect(Math.abs(r.logps[k]! - x)).toBeLessThan(1e-5))
    }
    await pool.dispose(modelDir)
    expect(pool.loaded).toHaveLength(0)
    expect(await generate(pool, source(), prompts, { settings })).toEqual(base1)
    expect(loads).toBe(2)
  })
})
