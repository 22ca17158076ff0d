// Losses of every method from per-sequence log-probs, in float64, with their analytic
// gradients. Definitions: docs/algorithms.md (as TRL / LLaMA-Factory). Each loss returns the
// gradient with respect to each sequence's SUMMED policy log-prob; since logps(y) = Σ_t lp_t,
// that number is also dL/dlp_t for every masked-in token t of the sequence, which is what
// the engine's backward takes.

import type { PrefLoss } from '../../../preload/types/trainingSchema'

export type Metrics = Record<string, number>

/** Per pair: summed log-probs of chosen/rejected under the policy and the reference, and the
 *  completion token counts |y| (for the length-normalised losses). */
export interface PairBatch {
  policyChosen: Float64Array
  policyRejected: Float64Array
  refChosen: Float64Array | null
  refRejected: Float64Array | null
  chosenTokens: Float64Array
  rejectedTokens: Float64Array
}

export interface PairLoss {
  loss: number
  metrics: Metrics
  /** dL/d(summed policy logps) of each chosen and rejected sequence. */
  gradChosen: Float64Array
  gradRejected: Float64Array
}

export type PairLossKind = PrefLoss

/** ORPO and SimPO score the policy alone; every other pair loss compares it with the reference. */
export const pairLossUsesReference = (kind: PairLossKind): boolean => kind !== 'orpo' && kind !== 'simpo'

export interface PairLossOptions {
  kind: PairLossKind
  beta: number
  labelSmoothing: number
  ftx: number
  simpoGamma: number
}

const sigmoid = (x: number): number => (x >= 0 ? 1 / (1 + Math.exp(-x)) : Math.exp(x) / (1 + Math.exp(x)))
/** log σ(x) = −softplus(−x), stable for large |x|. */
export const logSigmoid = (x: number): number => (x >= 0 ? -Math.log1p(Math.exp(-x)) : x - Math.log1p(Math.exp(x)))
/** log(1 − e^x) for x < 0 (Mächler's switch at −ln 2). */
export const log1mexp = (x: number): number => (x > -Math.LN2 ? Math.log(-Math.expm1(x)) : Math.log1p(-Math.exp(x)))
/** d/dx log(1 − e^x) = −e^x / (1 − e^x) = −1 / expm1(−x). */
const dlog1mexp = (x: number): number => -1 / Math.expm1(-x)
const mean = (xs: ArrayLike<number>): number => {
  let s = 0
  for (let i = 0; i < xs.length; i++) s += xs[i]!
  return xs.length ? s / xs.length : NaN
}

/** DPO family, ORPO and SimPO over a batch of pairs; loss is the mean over pairs. */
export function pairLoss(b: PairBatch, o: PairLossOptions): PairLoss {
  const n = b.policyChosen.length
  const gradChosen = new Float64Array(n)
  const gradRejected = new Float64Array(n)
  const rewardsChosen = new Float64Array(n)
  const rewardsRejected = new Float64Array(n)
  const logpsChosen = new Float64Array(n)
  const logpsRejected = new Float64Array(n)
  const extra: Record<string, Float64Array> = {}
  const track = (name: string, i: number, v: number) => ((extra[name] ??= new Float64Array(n))[i] = v)
  const beta = o.beta
  let total = 0
  const needsRef = pairLossUsesReference(o.kind)
  if (needsRef && (!b.refChosen || !b.refRejected)) throw new Error(`pref_loss ${o.kind} needs reference log-probs`)

  for (let i = 0; i < n; i++) {
    const pc = b.policyChosen[i]!
    const pr = b.policyRejected[i]!
    const nc = Math.max(b.chosenTokens[i]!, 1)
    const nr = Math.max(b.rejectedTokens[i]!, 1)
    let li = 0
    let gc = 0
    let gr = 0
    if (needsRef) {
      const rc = b.refChosen![i]!
      const rr = b.refRejected![i]!
      const delta = pc - rc - (pr - rr)
      if (o.kind === 'sigmoid') {
        const eps = o.labelSmoothing
        li = -(1 - eps) * logSigmoid(beta * delta) - eps * logSigmoid(-beta * delta)
        const dDelta = -(1 - eps) * beta * sigmoid(-beta * delta) + eps * beta * sigmoid(beta * delta)
        gc = dDelta
        gr = -dDelta
      } else if (o.kind === 'hinge') {
        const m = 1 - beta * delta
        li = Math.max(0, m)
        const dDelta = m > 0 ? -beta : 0
        gc = dDelta
        gr = -dDelta
      } else {
        const h = (pc - rc) / nc - (pr - rr) / nr
        let dh: number
        if (o.kind === 'ipo') {
          const d = h - 1 / (2 * beta)
          li = d * d
          dh = 2 * d
        } else {
          li = -logSigmoid(beta * h)
          dh = -beta * sigmoid(-beta * h)
        }
        gc = dh / nc
        gr = -dh / nr
      }
      rewardsChosen[i] = beta * (pc - rc)
      rewardsRejected[i] = beta * (pr - rr)
      logpsChosen[i] = pc
      logpsRejected[i] = pr
    } else {
      const lc = pc / nc
      const lr = pr / nr
      if (o.kind === 'orpo') {
        const logOdds = lc - lr - (log1mexp(lc) - log1mexp(lr))
        const ratio = logSigmoid(logOdds)
        const nll = -lc
        li = nll - beta * ratio
        const dLogOdds = -beta * sigmoid(-logOdds)
        const dlc = -1 + dLogOdds * (1 - dlog1mexp(lc))
        const dlr = dLogOdds * (-1 + dlog1mexp(lr))
        gc = dlc / nc
        gr = dlr / nr
        track('nll_loss', i, nll)
        track('log_odds_ratio', i, ratio)
        track('log_odds_chosen', i, logOdds)
      } else {
        const z = beta * (lc - lr) - o.simpoGamma
        li = -logSigmoid(z)
        const dz = -sigmoid(-z)
        gc = (dz * beta) / nc
        gr = (-dz * beta) / nr
      }
      // TRL and LLaMA-Factory log the reward-free methods' rewards and logps length-normalised.
      rewardsChosen[i] = beta * lc
      rewardsRejected[i] = beta * lr
      logpsChosen[i] = lc
      logpsRejected[i] = lr
    }
    if (o.ftx > 0 && o.kind !== 'orpo') {
      // SFT term on the chosen answer: mean per-token NLL = −logps/|y|.
      li += o.ftx * (-pc / nc)
      gc += -o.ftx / nc
    }
    total += li
    gradChosen[i] = gc / n
    gradRejected[i] = gr / n
  }

  const margins = rewardsChosen.map((c, i) => c - rewardsRejected[i]!)
  const metrics: Metrics = {
    'rewards/chosen': mean(rewardsChosen),
    'rewards/rejected': mean(rewardsRejected),
    'rewards/margins': mean(margins),
    'rewards/accuracies': mean(margins.map((m) => (m > 0 ? 1 : 0))),
    'logps/chosen': mean(logpsChosen),
    'logps/rejected': mean(logpsRejected)
  }
  for (const [name, values] of Object.entries(extra)) metrics[name] = mean(values)
  return { loss: total / n, metrics, gradChosen, gradRejected }
}

/** Per record of a KTO batch: summed policy/reference logps of its own completion, and of the
 *  KL pair (its prompt with the neighbour's completion), plus the record's label. */
export interface KtoBatch {
  policy: Float64Array
  ref: Float64Array
  policyKl: Float64Array
  refKl: Float64Array
  desirable: boolean[]
}

export interface KtoLossOptions {
  beta: number
  desirableWeight: number
  undesirableWeight: number
}

export interface KtoLoss {
  loss: number
  metrics: Metrics
  /** dL/d(summed policy logps) of each record's completion (z₀ is detached). */
  grad: Float64Array
}

export function ktoLoss(b: KtoBatch, o: KtoLossOptions): KtoLoss {
  const n = b.policy.length
  let klSum = 0
  for (let i = 0; i < n; i++) klSum += b.policyKl[i]! - b.refKl[i]!
  const z0 = Math.max(0, klSum / n)
  const grad = new Float64Array(n)
  const chosenRewards: number[] = []
  const rejectedRewards: number[] = []
  let total = 0
  for (let i = 0; i < n; i++) {
    const r = b.policy[i]! - b.ref[i]!
    if (b.desirable[i]) {
      const s = sigmoid(o.beta * (r - z0))
      total += o.desirableWeight * (1 - s)
      grad[i] = (-o.desirableWeight * o.beta * s * (1 - s)) / n
      chosenRewards.push(o.beta * r)
    } else {
      const s = sigmoid(o.beta * (z0 - r))
      total += o.undesirableWeight * (1 - s)
      grad[i] = (o.undesirableWeight * o.beta * s * (1 - s)) / n
      rejectedRewards.push(o.beta * r)
    }
  }
  const metrics: Metrics = { kl: z0 }
  if (chosenRewards.length) metrics['rewards/chosen'] = mean(chosenRewards)
  if (rejectedRewards.length) metrics['rewards/rejected'] = mean(rejectedRewards)
  if (chosenRewards.length && rejectedRewards.length)
    metrics['rewards/margins'] = metrics['rewards/chosen']! - metrics['rewards/rejected']!
  return { loss: total / n, metrics, grad }
}

/** Index of the completion record i is paired with for the KL estimate: rotated by one. */
export const ktoKlPartner = (i: number, n: number): number => (i - 1 + n) % n
