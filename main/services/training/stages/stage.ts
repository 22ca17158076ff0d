// What the training loop knows of a method. A Stage owns everything that differs between
// SFT, the DPO family (ORPO and SimPO included) and KTO: which reference log-probs it needs,
// how it turns examples into engine batches, how it weighs a micro-batch within its optimiser
// step, its loss, gradient and metrics. The loop (trainer.ts) only plans micro-batches, runs
// what the stage returns, steps the optimiser and logs; it never names a method.
import type { TrainingConfig } from '../../../../preload/types/trainingSchema'
import { sequenceSums } from '../batches'
import type { Batch, TrainableModel } from '../engine'
import type { Metrics } from '../losses'
import type { ChatTokenizer, Example } from '../sequences'
import type { RunEvent } from '../../../../preload/types/training'

export type Split = 'train' | 'eval'

/** The examples of one micro-batch and their indices in their split, which key the
 *  stage's cache of reference log-probs. */
export interface MicroBatch {
  split: Split
  idx: number[]
  examples: Example[]
}

export interface MicroOutcome {
  /** This micro-batch's share of the step loss (already weighted within the step); null for
   *  an evaluation that has no loss (GRPO evaluates its rewards). */
  loss: number | null
  metrics: Metrics
  /** Completion tokens the micro-batch scored (tokens/s). */
  tokens: number
}

export interface RunOptions {
  /** Keep what backward needs and accumulate gradients (false: evaluation). */
  train: boolean
  dropoutSeed: number
}

/** One micro-batch, formed and weighted for its step; running it returns its outcome and,
 *  when training, has accumulated its gradients into the model. */
export type MicroRun = (o: RunOptions) => Promise<MicroOutcome>

/** How the loop cuts the training set into steps. The default (SFT, DPO, KTO) is
 *  per_device_train_batch_size examples per micro-batch and gradient_accumulation_steps
 *  micro-batches per step; GRPO's micro-batch is every prompt of a generation batch, one per
 *  step, and `reuse` (num_iterations) steps read the same one. */
export interface StageLayout {
  examplesPerMicro: number
  microsPerStep: number
  reuse: number
}

/** What a stage keeps between steps that a checkpoint must carry (GRPO's generation batch
 *  while num_iterations reuses it). */
export interface StageCheckpoint {
  save(dir: string): Promise<void>
  load(dir: string): Promise<void>
}

export interface Stage {
  /** The loss reads the reference policy (the base with adapters off). With full fine-tuning
   *  the loop takes every reference log-prob before the first update moves the weights. */
  readonly usesReference: boolean
  readonly layout?: StageLayout
  readonly checkpoint?: StageCheckpoint
  /** Computes and caches the reference log-probs these examples need (once per example). */
  reference(mb: MicroBatch): Promise<void>
  /** The micro-batches of one optimiser step, in order; an evaluation batch is a step alone. */
  step(micros: MicroBatch[]): MicroRun[]
}

export interface StageContext {
  cfg: TrainingConfig
  model: TrainableModel
  padId: number
  /** The run's tokenizer, folder and event sink (GRPO decodes, writes completions/ and streams them). */
  tok: ChatTokenizer
  runDir: string
  emit: (e: RunEvent) => void
  /** Where the run's step counter stands (1-based step being trained). */
  step: () => number
  /** The run's cancel signal (a reward program in flight is killed with it). */
  signal?: AbortSignal
}

/** A loss or log-prob that is NaN/Inf: caught by the loop, which names the step. */
export class NonFiniteError extends Error {}

export function assertFinite(what: string, values: ArrayLike<number>): void {
  for (let i = 0; i < values.length; i++)
    if (!Number.isFinite(values[i]!)) throw new NonFiniteError(`${what} is ${values[i]}`)
}

/** The load-balancing term of a mixture-of-experts policy pass (Qwen3-MoE), as transformers
 *  adds it: loss += moe_aux_loss_coef × aux_loss. Each micro-batch's aux loss counts
 *  1/(micro-batches in the step), so the step's term is coef × their mean aux loss whatever
 *  the gradient accumulation. */
export interface AuxTerm {
  /** The pass's aux loss (metric aux_loss; the loop averages it over the micro-batches). */
  aux: number
  /** coef × aux / micros: added to the micro-batch's share of the step loss. */
  loss: number
  /** coef / micros: backward's auxWeight. */
  weight: number
}

/** Reads the aux loss of the policy pass just run (model.auxLoss() is the last logps call's,
 *  so this comes before any other pass). null, and nothing changes, when moe_aux_loss_coef is
 *  unset or 0, for an evaluation pass, and for a dense model. */
export function auxTerm(ctx: Pick<StageContext, 'cfg' | 'model'>, micros: number, train: boolean): AuxTerm | null {
  const coef = ctx.cfg.moe_aux_loss_coef
  if (!train || coef === null || !(coef > 0)) return null
  const aux = ctx.model.auxLoss()
  if (aux === null) return null
  assertFinite('aux loss', [aux])
  return { aux, loss: (coef * aux) / micros, weight: coef / micros }
}

/** backward of the last train pass, with the aux loss's weight when there is one. */
export function backward(model: TrainableModel, grad: Float32Array, aux: AuxTerm | null): Promise<void> {
  return aux ? model.backward(grad, aux.weight) : model.backward(grad)
}

/** A micro-batch's outcome with its aux term: the loss share and metric aux_loss. */
export function withAux(out: MicroOutcome, aux: AuxTerm | null): MicroOutcome {
  if (!aux) return out
  return { ...out, loss: (out.loss ?? 0) + aux.loss, metrics: { ...out.metrics, aux_loss: aux.aux } }
}

/** Summed log-probs of each sequence under the reference (adapters off, no dropout). */
export async function referenceSums(model: TrainableModel, batch: Batch): Promise<Float64Array> {
  return sequenceSums(await model.logps(batch, { adapters: false, train: false }), batch).logps
}

export const sum = (xs: ArrayLike<number>): number => {
  let s = 0
  for (let i = 0; i < xs.length; i++) s += xs[i]!
  return s
}
