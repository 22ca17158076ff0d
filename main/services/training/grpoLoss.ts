// GRPO's arithmetic, as docs/algorithms.md "GRPO" defines it (TRL's GRPOTrainer): group-relative
// advantages from the rewards of a generation batch, and the clipped per-token policy loss with
// its gradient with respect to each token's log-prob (what the engine's backward takes), in
// float64. The stage (stages/grpo.ts) samples, scores and batches; this file only computes.
import type { GrpoLossType, ScaleRewards } from '../../../preload/types/trainingSchema'
import type { Metrics } from './losses'

/** Rewards of a generation batch of groups × G completions, row-major by group. */
export interface RewardTable {
  /** perFunc[k][i]: function k's reward of completion i, or null (no reward from it). */
  perFunc: (number | null)[][]
  weights: number[]
  groupSize: number
}

export interface Advantages {
  /** R_i = Σ_k w_k r_k(i) over the functions that gave one (0 when none did). */
  total: Float64Array
  /** A_i; 0 for a completion no function rewarded. */
  advantage: Float64Array
  metrics: Metrics
}

/** Sample standard deviation (Bessel's correction; 0 for fewer than two values), as torch.std. */
function std(xs: ArrayLike<number>): number {
  const n = xs.length
  if (n < 2) return 0
  let m = 0
  for (let i = 0; i < n; i++) m += xs[i]!
  m /= n
  let s = 0
  for (let i = 0; i < n; i++) s += (xs[i]! - m) ** 2
  return Math.sqrt(s / (n - 1))
}

const mean = (xs: ArrayLike<number>): number => {
  let s = 0
  for (let i = 0; i < xs.length; i++) s += xs[i]!
  return xs.length ? s / xs.length : 0
}

/** Advantages and the reward metrics (TRL's names) of one generation batch. `names` are the
 *  reward_funcs entries, in the order of perFunc. */
export function advantages(t: RewardTable, scale: ScaleRewards, names: string[]): Advantages {
  const n = t.perFunc[0]?.length ?? 0
  const G = t.groupSize
  if (n % G !== 0) throw new Error(`${n} completions do not form groups of ${G}`)
  const total = new Float64Array(n)
  const rewarded = new Array<boolean>(n).fill(false)
  t.perFunc.forEach((values, k) => {
    for (let i = 0; i < n; i++) {
      const v = values[i]
      if (v === null || v === undefined) continue
      total[i]! += t.weights[k]! * v
      rewarded[i] = true
    }
  })
  const groups = n / G
  const advantage = new Float64Array(n)
  const groupStds: number[] = []
  const batchStd = std(total)
  for (let g = 0; g < groups; g++) {
    const r = total.subarray(g * G, (g + 1) * G)
    const m = mean(r)
    const s = std(r)
    groupStds.push(s)
    for (let j = 0; j < G; j++) {
      const i = g * G + j
      let a = total[i]! - m
      if (scale === 'group') a /= s + 1e-4
      else if (scale === 'batch') a /= batchStd + 1e-4
      advantage[i] = rewarded[i] ? a : 0
    }
  }
  const metrics: Metrics = {
    reward: mean(total),
    reward_std: mean(groupStds),
    frac_reward_zero_std: groups ? groupStds.filter((s) => Math.abs(s) < 1e-8).length / groups : 0
  }
  t.perFunc.forEach((values, k) => {
    const given = values.filter((v): v is number => v !== null && v !== undefined)
    // TRL's nanmean / nanstd: a function that rewarded nothing in the batch logs NaN; we leave it out.
    if (!given.length) return
    metrics[`rewards/${names[k]}/mean`] = mean(given)
    metrics[`rewards/${names[k]}/std`] = std(given)
  })
  return { total, advantage, metrics }
}

/** One micro-batch's completions, token by token: lp[i][t] under the policy (at the sampling
 *  temperature), oldLp (num_iterations > 1: the log-probs kept from sampling; null: lp itself,
 *  detached), refLp (beta > 0: the base with adapters off), the loss mask (0 for the tokens of
 *  a masked truncated completion) and, for the entropy metric, each token's entropy. */
export interface TokenBatch {
  lp: Float64Array[]
  oldLp: Float64Array[] | null
  refLp: Float64Array[] | null
  entropy: Float64Array[] | null
  mask: Uint8Array[]
  advantage: ArrayLike<number>
}

export interface GrpoLossOptions {
  lossType: GrpoLossType
  beta: number
  epsilon: number
  epsilonHigh: number
  maxCompletionLength: number
  /** Micro-batches in the optimiser step (grpo, bnpo and dr_grpo divide by it). */
  microBatches: number
  /** Σ mask over the whole generation batch (dapo and cispo divide by it). */
  generationTokens: number
}

export interface GrpoLoss {
  /** This micro-batch's share of the step loss. */
  loss: number
  /** dL/dlp_t, shaped as TokenBatch.lp. */
  grad: Float64Array[]
  metrics: Metrics
}

/** The clipped surrogate (or CISPO's weighted log-prob) plus β·KL, aggregated per loss_type. */
export function grpoLoss(b: TokenBatch, o: GrpoLossOptions): GrpoLoss {
  const B = b.lp.length
  const lo = 1 - o.epsilon
  const hi = 1 + o.epsilonHigh
  // Each token's weight in the aggregate: ℓ_t m_t w_t summed.
  const masked = b.mask.map((m) => m.reduce((a, x) => a + x, 0))
  const microTokens = masked.reduce((a, x) => a + x, 0)
  const weightOf = (i: number): number => {
    switch (o.lossType) {
      case 'grpo':
        return 1 / (B * Math.max(masked[i]!, 1) * o.microBatches)
      case 'bnpo':
        return 1 / (Math.max(microTokens, 1) * o.microBatches)
      case 'dr_grpo':
        return 1 / (B * o.maxCompletionLength * o.microBatches)
      case 'dapo':
      case 'cispo':
        return 1 / Math.max(o.generationTokens, 1)
    }
  }
  let loss = 0
  let klSum = 0
  let entSum = 0
  let low = 0
  let high = 0
  let region = 0
  const grad: Float64Array[] = []
  for (let i = 0; i < B; i++) {
    const lp = b.lp[i]!
    const A = b.advantage[i]!
    const w = weightOf(i)
    const g = new Float64Array(lp.length)
    for (let t = 0; t < lp.length; t++) {
      if (!b.mask[i]![t]) continue
      const old = b.oldLp ? b.oldLp[i]![t]! : lp[t]!
      const rho = Math.exp(lp[t]! - old)
      let l: number
      let dl: number
      if (o.lossType === 'cispo') {
        const c = Math.min(rho, o.epsilonHigh)
        l = -c * A * lp[t]!
        dl = -c * A
      } else {
        const clipped = Math.min(Math.max(rho, lo), hi)
        const unclippedTerm = rho * A
        const clippedTerm = clipped * A
        // −min(ρA, clip(ρ)A): the gradient flows through ρ only where the unclipped term is the min.
        l = -Math.min(unclippedTerm, clippedTerm)
        dl = unclippedTerm <= clippedTerm ? -A * rho : 0
      }
      if (b.refLp && o.beta !== 0) {
        const d = b.refLp[i]![t]! - lp[t]!
        const kl = Math.exp(d) - d - 1
        l += o.beta * kl
        dl += o.beta * (1 - Math.exp(d))
        klSum += kl
      }
      loss += l * w
      g[t] = dl * w
      if (b.entropy) entSum += b.entropy[i]![t]!
      const isLow = rho < lo && A < 0
      const isHigh = rho > hi && A > 0
      if (isLow) low++
      if (isHigh) high++
      if (isLow || isHigh) region++
    }
    grad.push(g)
  }
  const tokens = Math.max(microTokens, 1)
  const metrics: Metrics = {
    'clip_ratio/low_mean': low / tokens,
    'clip_ratio/high_mean': high / tokens,
    'clip_ratio/region_mean': region / tokens
  }
  if (b.refLp && o.beta !== 0) metrics.kl = klSum / tokens
  if (b.entropy) metrics.entropy = entSum / tokens
  return { loss, grad, metrics }
}
