// Typed wrapper of the native engine addon (native/build/Release/tunebench.node).
// The addon is found by TUNEBENCH_NATIVE, or by searching upward from this file and from the
// working directory, so the same code works from the TS sources (vitest, tsx) and from the
// electron-vite bundle in out/main.
import { existsSync } from 'node:fs'
import { createRequire } from 'node:module'
import { dirname, join, resolve } from 'node:path'
import { fileURLToPath } from 'node:url'

import type { EngineFacts, EngineLimits } from '../preload/types/engine'

export type { EngineFacts, EngineLimits }

export type LoraTarget = 'q' | 'k' | 'v' | 'o' | 'gate' | 'up' | 'down'
export const LORA_TARGETS: readonly LoraTarget[] = ['q', 'k', 'v', 'o', 'gate', 'up', 'down']

export interface LoraOptions {
  rank: number
  alpha: number
  dropout: number
  targets: LoraTarget[]
  rslora: boolean
  /** PEFT's use_dora: a trained magnitude per output row (weight-decomposed LoRA). Default false. */
  dora?: boolean
  seed: number
}

export interface ModelConfig {
  architecture: string
  layers: number
  hidden: number
  intermediate: number
  heads: number
  kvHeads: number
  headDim: number
  vocab: number
  ropeTheta: number
  rmsEps: number
  tiedEmbeddings: boolean
  dtype: string
  /** How the frozen weights are held and multiplied (Model.load's precision, resolved). */
  precision: 'f32' | 'bf16'
  parameters: number
  /** Parameters one token uses: all but the experts the router leaves out (= parameters when dense). */
  activeParameters: number
  /** Qwen3-MoE: the sparse layers' experts (absent for a dense model). */
  moe?: MoeConfig
}

export interface MoeConfig {
  experts: number
  expertsPerToken: number
  expertIntermediate: number
  /** Layers whose MLP is the experts (the others keep a dense MLP: decoder_sparse_step, mlp_only_layers). */
  sparseLayers: number
  normTopkProb: boolean
  /** config.json's router_aux_loss_coef (training uses moe_aux_loss_coef when set). */
  routerAuxLossCoef: number
}

/** Model.load's precision: bf16 holds the frozen projections, embedding and head in 16 bits
 *  (a bf16 checkpoint's tensors memory-mapped in place) and multiplies them in bf16 with f32
 *  sums; f32 is the exact path; auto = bf16 for a bf16 or f16 checkpoint, f32 otherwise. */
export type Precision = 'auto' | 'f32' | 'bf16'
export const PRECISIONS: readonly Precision[] = ['auto', 'f32', 'bf16']

export interface LoadOptions {
  threads?: number
  device?: 'cpu' | 'cuda'
  precision?: Precision
}

/** Right-padded batch. ids[b*seqLen + t]. mask[b*seqLen + t] = 1 where the log-prob of token t
 *  (predicted from position t-1) is wanted; mask at t=0 and at padding must be 0. */
export interface Batch {
  ids: Int32Array
  batch: number
  seqLen: number
  lengths: Int32Array
  mask: Uint8Array
}

/** What logps options ask of a pass. temperature T (default 1): log-probs are
 *  log_softmax(logits / T), and backward differentiates them so. */
export interface LogpsOptions {
  adapters: boolean
  train: boolean
  dropoutSeed?: number
  temperature?: number
}

/** Per token [batch*seqLen], 0 where mask = 0: the log-prob and the entropy of softmax(logits / T). */
export interface TokenScores {
  logps: Float32Array
  entropy: Float32Array
}

export interface OptimizerOptions {
  lr: number
  beta1: number
  beta2: number
  eps: number
  weightDecay: number
  maxGradNorm: number
}

/** Sampling as docs/algorithms.md "Sampling": logits / T (0: greedy) -> repetition penalty ->
 *  top-k (0: off) -> top-p (1: off) -> min-p (0: off) -> draw. */
export interface SamplingOptions {
  temperature: number
  topK: number
  topP: number
  minP: number
  repetitionPenalty: number
}

export const GREEDY: SamplingOptions = { temperature: 0, topK: 0, topP: 1, minP: 0, repetitionPenalty: 1 }

export interface GenerateOptions extends SamplingOptions {
  maxNewTokens: number
  /** Any of these ends a row; it is kept as the row's last token. */
  eosIds: number[]
  /** Row r's draws are fixed by seeds[r] and the step, whatever else is in the batch. */
  seeds: number[]
  /** Adapters on (default) or off (the base model) for this call. */
  adapters?: boolean
}

export type FinishReason = 'eos' | 'length' | 'stop'

export interface GeneratedRow {
  tokens: Int32Array
  /** Per token: log_softmax(logits / T) at the token (T = 1 when greedy), before any filter. */
  logps: Float32Array
  finish: FinishReason
}

/** One decoding step: tokens[r] = -1 for rows that ended before it. */
export interface GenerateStep {
  tokens: Int32Array
  logps: Float32Array
}

interface NativeModel {
  config(): ModelConfig
  addLora(o: LoraOptions): void
  loadAdapter(dir: string): Promise<LoraOptions>
  saveAdapter(dir: string, base: string): Promise<void>
  setTrainable(mode: 'lora' | 'full'): void
  setGradientCheckpointing(on: boolean): void
  logps(ids: Int32Array, batch: number, seqLen: number, lengths: Int32Array, mask: Uint8Array,
    adapters: boolean, train: boolean, dropoutSeed: number, temperature?: number, entropy?: false): Promise<Float32Array>
  logps(ids: Int32Array, batch: number, seqLen: number, lengths: Int32Array, mask: Uint8Array,
    adapters: boolean, train: boolean, dropoutSeed: number, temperature: number, entropy: true): Promise<TokenScores>
  backward(gradLogps: Float32Array, auxWeight?: number): Promise<void>
  auxLoss(): number | null
  zeroGrad(): void
  optimizerStep(o: OptimizerOptions): Promise<{ gradNorm: number }>
  gradNorm(): number
  gradients(): Record<string, Float32Array>
  saveTrainingState(path: string): Promise<void>
  loadTrainingState(path: string): Promise<void>
  generate(prompts: Int32Array[], seeds: number[], o: Required<Omit<GenerateOptions, 'seeds' | 'eosIds'>> & { eosIds: Int32Array },
    onStep: ((tokens: Int32Array, logps: Float32Array) => void) | null): Promise<GeneratedRow[]>
  stopRow(row: number): void
  cancel(): void
  dispose(): void
}

interface Addon {
  engineFacts(): EngineFacts
  loadModel(dir: string, threads: number, precision: Precision): Promise<NativeModel>
}

const ADDON_PATH = join('native', 'build', 'Release', 'tunebench.node')

function searchUp(start: string): string | null {
  let dir = resolve(start)
  for (;;) {
    const candidate = join(dir, ADDON_PATH)
    if (existsSync(candidate)) return candidate
    const parent = dirname(dir)
    if (parent === dir) return null
    dir = parent
  }
}

/** Where the addon is loaded from, or null when it has not been built. */
export function findAddon(): string | null {
  const fromEnv = process.env.TUNEBENCH_NATIVE
  if (fromEnv) return existsSync(fromEnv) ? resolve(fromEnv) : null
  let here: string | null = null
  try {
    here = dirname(fileURLToPath(import.meta.url))
  } catch {
    here = null
  }
  return (here ? searchUp(here) : null) ?? searchUp(process.cwd())
}

let addon: Addon | null = null
function load(): Addon {
  if (addon) return addon
  const path = findAddon()
  if (!path) {
    throw new Error(
      `native engine not found: ${process.env.TUNEBENCH_NATIVE ? `TUNEBENCH_NATIVE=${process.env.TUNEBENCH_NATIVE} does not exist` : `no ${ADDON_PATH} above ${process.cwd()}`}; build it with \`npm run build:native\``
    )
  }
  const require = createRequire(import.meta.url)
  addon = require(path) as Addon
  return addon
}

let facts: EngineFacts | null = null
/** What the engine was built with and accepts; read from the addon once. */
export function engineFacts(): EngineFacts {
  facts ??= load().engineFacts()
  return facts
}

function checkBatch(b: Batch): void {
  const n = b.batch * b.seqLen
  if (!Number.isInteger(b.batch) || !Number.isInteger(b.seqLen) || b.batch <= 0 || b.seqLen <= 0) {
    throw new Error(`batch: batch (${b.batch}) and seqLen (${b.seqLen}) must be positive integers`)
  }
  if (!(b.ids instanceof Int32Array) || b.ids.length !== n) throw new Error(`batch: ids must be an Int32Array of batch*seqLen = ${n}`)
  if (!(b.mask instanceof Uint8Array) || b.mask.length !== n) throw new Error(`batch: mask must be a Uint8Array of batch*seqLen = ${n}`)
  if (!(b.lengths instanceof Int32Array) || b.lengths.length !== b.batch) throw new Error(`batch: lengths must be an Int32Array of batch = ${b.batch}`)
}

function checkTemperature(t: number | undefined): number {
  if (t === undefined) return 1
  if (!(Number.isFinite(t) && t > 0)) throw new Error(`logps: temperature must be a positive number, got ${t}`)
  return t
}

export class Model {
  private native: NativeModel
  private cfg: ModelConfig

  private constructor(native: NativeModel) {
    this.native = native
    this.cfg = native.config()
  }

  get config(): ModelConfig {
    return this.cfg
  }

  static async load(dir: string, opts: LoadOptions = {}): Promise<Model> {
    const { devices } = engineFacts()
    if (opts.device !== undefined && !devices.includes(opts.device))
      throw new Error(`device ${opts.device}: this engine build offers ${devices.join(', ')} only (engineFacts().devices)`)
    const threads = opts.threads ?? 0
    if (!Number.isInteger(threads) || threads < 0) throw new Error(`threads must be a non-negative integer, got ${threads}`)
    const precision = opts.precision ?? 'auto'
    if (!PRECISIONS.includes(precision)) throw new Error(`precision must be one of ${PRECISIONS.join(', ')}, got ${String(precision)}`)
    return new Model(await load().loadModel(resolve(dir), threads, precision))
  }

  /** PEFT init: A kaiming-uniform(a=sqrt5) from seed, B = 0. Replaces any adapter attached. */
  addLora(opts: LoraOptions): void {
    for (const t of opts.targets) if (!LORA_TARGETS.includes(t)) throw new Error(`addLora: unknown target '${t}'`)
    if (!Number.isInteger(opts.rank) || opts.rank < 1) throw new Error(`addLora: rank must be a positive integer, got ${opts.rank}`)
    if (!Number.isFinite(opts.alpha) || opts.alpha <= 0) throw new Error(`addLora: alpha must be a positive number, got ${opts.alpha}`)
    const { min, maxExclusive } = engineFacts().loraDropout
    if (!(opts.dropout >= min && opts.dropout < maxExclusive))
      throw new Error(`addLora: dropout must be in [${min}, ${maxExclusive}), got ${opts.dropout}`)
    if (!Number.isSafeInteger(opts.seed) || opts.seed < 0) throw new Error(`addLora: seed must be a non-negative integer, got ${opts.seed}`)
    this.native.addLora(opts)
  }

  /** Loads a PEFT folder (adapter_config.json + adapter_model.safetensors). */
  loadAdapter(dir: string): Promise<LoraOptions> {
    return this.native.loadAdapter(resolve(dir))
  }

  /** Writes a PEFT folder; each file is written to a temporary name and renamed. */
  saveAdapter(dir: string, baseModelNameOrPath: string): Promise<void> {
    return this.native.saveAdapter(resolve(dir), baseModelNameOrPath)
  }

  setTrainable(mode: 'lora' | 'full'): void {
    this.native.setTrainable(mode)
    this.cfg = this.native.config() // full fine-tuning trains f32 weights: precision f32
  }

  setGradientCheckpointing(on: boolean): void {
    this.native.setGradientCheckpointing(on)
  }

  /** Per-token log-probs [batch*seqLen]: lp[t] = log_softmax(logits[t-1] / T)[ids[t]] where
   *  mask=1, else 0. adapters=false is the reference pass; train=true keeps what backward needs. */
  logps(batch: Batch, opts: LogpsOptions): Promise<Float32Array> {
    checkBatch(batch)
    return this.native.logps(batch.ids, batch.batch, batch.seqLen, batch.lengths, batch.mask,
      opts.adapters, opts.train, opts.dropoutSeed ?? 0, checkTemperature(opts.temperature), false)
  }

  /** logps and, at the same tokens, the entropy of softmax(logits / T) (GRPO's metric). */
  scoreTokens(batch: Batch, opts: LogpsOptions): Promise<TokenScores> {
    checkBatch(batch)
    return this.native.logps(batch.ids, batch.batch, batch.seqLen, batch.lengths, batch.mask,
      opts.adapters, opts.train, opts.dropoutSeed ?? 0, checkTemperature(opts.temperature), true)
  }

  /** Backward of the last train=true logps call; accumulates into the gradients. */
  /** auxWeight: the weight of the last train pass's load-balancing loss (auxLoss()) in the
   *  objective, whose gradient then joins that of the log-probs (Qwen3-MoE; default 0). */
  backward(gradLogps: Float32Array, auxWeight = 0): Promise<void> {
    return this.native.backward(gradLogps, auxWeight)
  }

  /** Qwen3-MoE: transformers' load_balancing_loss_func over the sparse layers and the valid
   *  tokens of the last logps call; null for a dense model. */
  auxLoss(): number | null {
    return this.native.auxLoss()
  }

  zeroGrad(): void {
    this.native.zeroGrad()
  }

  /** Global-norm clipping then AdamW; returns the norm before clipping; grads are not zeroed. */
  optimizerStep(o: OptimizerOptions): Promise<{ gradNorm: number }> {
    return this.native.optimizerStep(o)
  }

  gradNorm(): number {
    return this.native.gradNorm()
  }

  /** Copies of the trainable parameters' gradients by PEFT/HF name (tests and diagnostics). */
  gradients(): Record<string, Float32Array> {
    return this.native.gradients()
  }

  saveTrainingState(path: string): Promise<void> {
    return this.native.saveTrainingState(resolve(path))
  }

  loadTrainingState(path: string): Promise<void> {
    return this.native.loadTrainingState(resolve(path))
  }

  /** Continues each prompt (token ids, one or more each) until an eos id, maxNewTokens, or
   *  stopRow(r), with a KV cache sized before it is allocated (refused, with the sizes, when it
   *  would not fit). onStep sees every step's tokens as they are decoded, on the event loop;
   *  the Promise holds every row whole. cancel() ends it with an error. */
  generate(prompts: Int32Array[], opts: GenerateOptions, onStep?: (step: GenerateStep) => void): Promise<GeneratedRow[]> {
    if (prompts.length === 0) throw new Error('generate: no prompts')
    if (opts.seeds.length !== prompts.length) throw new Error(`generate: ${opts.seeds.length} seeds for ${prompts.length} prompts`)
    for (const s of opts.seeds) if (!Number.isSafeInteger(s) || s < 0) throw new Error(`generate: seeds must be non-negative integers, got ${s}`)
    if (!Number.isInteger(opts.maxNewTokens) || opts.maxNewTokens < 1) throw new Error(`generate: maxNewTokens must be a positive integer, got ${opts.maxNewTokens}`)
    if (!Number.isInteger(opts.topK) || opts.topK < 0) throw new Error(`generate: topK must be a non-negative integer, got ${opts.topK}`)
    const { seeds, eosIds, adapters, ...rest } = opts
    return this.native.generate(prompts, seeds, { ...rest, adapters: adapters ?? true, eosIds: Int32Array.from(eosIds) },
      onStep ? (tokens, logps) => onStep({ tokens, logps }) : null)
  }

  /** Ends row r of the generation in flight after its current token (finish 'stop'). */
  stopRow(row: number): void {
    this.native.stopRow(row)
  }

  cancel(): void {
    this.native.cancel()
  }

  dispose(): void {
    this.native.dispose()
  }
}
