// The part of the native engine's Model (native/index.ts, where its API is documented) the training loop
// uses, as a structural interface so the loop type-checks on its own.
import type { Batch, GenerateOptions, GenerateStep, GeneratedRow, LoadOptions, LogpsOptions, LoraOptions, LoraTarget, OptimizerOptions, TokenScores } from '../../../native/index'

// The engine's own types, declared once in its wrapper (type-only: nothing of the addon loads).
export type { Batch, GeneratedRow, LogpsOptions, LoraOptions, LoraTarget, OptimizerOptions, TokenScores }

export interface TrainableModel {
  addLora(opts: LoraOptions): void
  loadAdapter(dir: string): Promise<LoraOptions>
  saveAdapter(dir: string, baseModelNameOrPath: string): Promise<void>
  setTrainable(mode: 'lora' | 'full'): void
  setGradientCheckpointing(on: boolean): void
  logps(batch: Batch, opts: LogpsOptions): Promise<Float32Array>
  /** logps and each token's entropy (GRPO). */
  scoreTokens(batch: Batch, opts: LogpsOptions): Promise<TokenScores>
  /** auxWeight: the weight of the load-balancing loss of the last train pass (auxLoss) in the objective. */
  backward(gradLogps: Float32Array, auxWeight?: number): Promise<void>
  /** Qwen3-MoE's load-balancing loss of the last logps call; null for a dense model. */
  auxLoss(): number | null
  zeroGrad(): void
  optimizerStep(o: OptimizerOptions): Promise<{ gradNorm: number }>
  gradNorm(): number
  saveTrainingState(path: string): Promise<void>
  loadTrainingState(path: string): Promise<void>
  /** The run's sample generations (samples.ts). */
  generate(prompts: Int32Array[], opts: GenerateOptions, onStep?: (step: GenerateStep) => void): Promise<GeneratedRow[]>
  stopRow(row: number): void
  cancel(): void
  dispose(): void
}

export type ModelLoader = (dir: string, opts: LoadOptions) => Promise<TrainableModel>

/** Loads a model through the native addon (imported lazily so config and data checks run
 *  without it). */
export const loadNativeModel: ModelLoader = async (dir, opts) => {
  const native = await import('../../../native/index')
  return native.Model.load(dir, opts)
}

export const LORA_TARGETS: Record<string, LoraTarget> = {
  q_proj: 'q',
  k_proj: 'k',
  v_proj: 'v',
  o_proj: 'o',
  gate_proj: 'gate',
  up_proj: 'up',
  down_proj: 'down'
}

export function loraTargets(names: string[]): LoraTarget[] {
  if (names.length === 1 && names[0] === 'all') return Object.values(LORA_TARGETS)
  return names.map((n) => LORA_TARGETS[n]!)
}
