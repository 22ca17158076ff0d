// The memory plan (memoryPlan.ts) meets the folder and the machine: reads a model's config.json
// and safetensors headers, the free memory (Linux MemAvailable, else os.freemem()) and the
// engine build, and says whether a run fits: for the Train form (runs.memoryPlan), for the
// Models page (ModelFacts.memory), before a run loads its model (trainer.ts), and before a
// generation loads its model or starts an engine call (generation/pool.ts: the Playground,
// `tunebench generate`, generated answers).
import { freemem } from 'node:os'
import { readFileSync } from 'node:fs'
import type { MemoryCheck } from '../../../preload/types/training'
import { trainingConfigSchema, type ConfigKeySpec } from '../../../preload/types/trainingSchema'
import { readJsonObject, readWeights } from '../models/inspect'
import {
  formatMemory, fusedExpertsOf, memoryAdvice, modelShape, planInference, planTraining, weightDtypeOf,
  type EngineFactsForPlan, type MemoryPlan, type ModelShape, type PlanConfig
} from './memoryPlan'
import { engineForPlan } from './planEngine'

export { engineForPlan }

/** Tests (and users who know better) set the free memory: bytes, or with a K/M/G suffix. */
export const AVAILABLE_ENV = 'TUNEBENCH_MEMORY_AVAILABLE'

/** Parses "2G", "512M", "1073741824"; null when it is not a size. */
export function parseBytes(text: string): number | null {
  const m = /^\s*(\d+(?:\.\d+)?)\s*([kmgt]?)i?b?\s*$/i.exec(text)
  if (!m) return null
  const scale = { '': 1, k: 2 ** 10, m: 2 ** 20, g: 2 ** 30, t: 2 ** 40 }[m[2]!.toLowerCase() as '' | 'k' | 'm' | 'g' | 't']
  return Math.round(Number(m[1]) * scale)
}

/** Bytes an allocation can take now: $TUNEBENCH_MEMORY_AVAILABLE, else MemAvailable of
 *  /proc/meminfo (free memory plus what the kernel can reclaim), else os.freemem(). */
export function availableMemory(env: NodeJS.ProcessEnv = process.env): number {
  const forced = env[AVAILABLE_ENV]
  if (forced) {
    const bytes = parseBytes(forced)
    if (bytes === null) throw new Error(`${AVAILABLE_ENV}=${forced}: expected a size in bytes, or with a K, M or G suffix`)
    return bytes
  }
  try {
    const m = /^MemAvailable:\s+(\d+) kB/m.exec(readFileSync('/proc/meminfo', 'utf8'))
    if (m) return Number(m[1]) * 1024
  } catch {
    // not Linux
  }
  return freemem()
}

/** A model folder's shape: config.json and the dtype of its safetensors headers. */
export async function readModelShape(dir: string): Promise<ModelShape> {
  const config = await readJsonObject(dir, 'config.json')
  const weights = await readWeights(dir)
  return modelShape(config, weightDtypeOf(weights.tensors), { fusedExperts: fusedExpertsOf(weights.tensors) })
}

const specs = new Map<string, ConfigKeySpec>(trainingConfigSchema.map((s) => [s.name, s]))

/** The keys the plan reads, from a form's config as it stands (possibly half typed): the
 *  schema's default wherever a value is missing or not yet of its type. */
export function planConfigOf(raw: Record<string, unknown>): PlanConfig {
  const value = (name: keyof PlanConfig): unknown => {
    const spec = specs.get(name)!
    const v = raw[name]
    const ok =
      spec.type === 'int' || spec.type === 'float'
        ? typeof v === 'number' && Number.isFinite(v) && (spec.type === 'float' || Number.isInteger(v)) && (spec.min === undefined || v >= spec.min)
        : spec.type === 'bool'
          ? typeof v === 'boolean'
          : spec.type === 'enum'
            ? typeof v === 'string' && spec.choices!.includes(v)
            : spec.type === 'list'
              ? (Array.isArray(v) && v.every((x) => typeof x === 'string')) || typeof v === 'string'
              : typeof v === 'string'
    if (!ok) return Array.isArray(spec.default) ? [...spec.default] : spec.default
    if (spec.type === 'list' && typeof v === 'string') return v.split(',').map((s) => s.trim())
    return v
  }
  const keys: (keyof PlanConfig)[] = [
    'stage', 'finetuning_type', 'lora_rank', 'lora_target', 'lora_dropout', 'per_device_train_batch_size', 'per_device_eval_batch_size',
    'gradient_accumulation_steps', 'cutoff_len', 'disable_gradient_checkpointing', 'precision', 'pref_loss', 'num_generations',
    'max_completion_length', 'beta', 'val_size', 'sample_prompts', 'sample_max_new_tokens'
  ]
  const cfg = Object.fromEntries(keys.map((k) => [k, value(k)])) as PlanConfig
  // LLaMA-Factory's bf16: true is precision bf16 (config.ts resolves it the same way).
  if (raw.bf16 === true && cfg.precision === 'auto') cfg.precision = 'bf16'
  return cfg
}

export interface CheckOptions {
  /** Free memory in bytes; availableMemory() by default. */
  available?: number
  engine?: EngineFactsForPlan
}

/** Plans a config and compares the plan with the free memory. */
export async function checkMemory(raw: Record<string, unknown>, opts: CheckOptions = {}): Promise<MemoryCheck> {
  const available = opts.available ?? availableMemory()
  const dir = raw.model_name_or_path
  if (typeof dir !== 'string' || !dir.trim()) return { plan: null, available, fits: true, advice: [], error: 'no model chosen yet' }
  let shape: ModelShape
  try {
    shape = await readModelShape(dir)
  } catch (err) {
    return { plan: null, available, fits: true, advice: [], error: (err as Error).message }
  }
  const engine = opts.engine ?? engineForPlan()
  const cfg = planConfigOf(raw)
  const plan = planTraining(shape, cfg, engine)
  const fits = plan.need <= available
  return { plan, available, fits, advice: fits ? [] : memoryAdvice(shape, cfg, engine), error: null }
}

/** One line of a plan's parts: "weights 1.2 GB, packed copy 1.2 GB, ...". */
export function describePlan(plan: MemoryPlan): string {
  const parts: [string, number][] = [
    [`weights (${plan.precision})`, plan.weights], ['packed copy', plan.packed], ['adapters and optimizer', plan.trainable],
    ['activations', plan.activations], ['KV cache', plan.kvCache]
  ]
  return parts.filter(([, b]) => b > 0).map(([name, b]) => `${name} ${formatMemory(b)}`).join(', ')
}

/** The refusal of a run that does not fit: the estimate, the free memory and what to change. */
export function memoryRefusal(check: MemoryCheck): string {
  const plan = check.plan!
  const changes = check.advice.map((a) => `${a.change}: saves about ${formatMemory(a.saves)}`)
  return (
    `not enough memory for this run: it needs about ${formatMemory(plan.need)} (${describePlan(plan)}; ` +
    `${plan.detail.trainSequences} sequences × ${plan.detail.trainTokens / plan.detail.trainSequences} tokens per micro-batch) ` +
    `and ${formatMemory(check.available)} is free. ` +
    (changes.length ? `Lower it with: ${changes.join('; ')}.` : 'Free some memory or use a smaller model.')
  )
}

/** One engine generation call: `sequences` rows decoded at once, each holding at most `tokens`
 *  (the longest prompt + max new tokens: the KV cache's capacity, native generate.cpp). */
export interface InferenceCall {
  sequences: number
  tokens: number
  /** The longest prompt, run at once by the prefill (`tokens` when not given). */
  promptTokens?: number
}

export interface InferenceCheck {
  plan: ReturnType<typeof planInference>
  call: InferenceCall
  /** Whether the weights are already in memory (a later call on a loaded model). */
  loaded: boolean
  /** What the call still has to allocate: the plan less the running process (and less the
   *  weights when they are loaded). */
  need: number
  available: number
  fits: boolean
  /** What to change, with the bytes each saves, largest first. */
  advice: { change: string; saves: number }[]
}

/** Plans a generation call on a model (planInference: the weights in the precision auto loads,
 *  bf16 for a BF16/F16 checkpoint and f32 otherwise, plus the call's KV cache) and compares
 *  what it still needs with the free memory. */
export function checkInference(shape: ModelShape, call: InferenceCall, opts: { available?: number; threads?: number; loaded?: boolean } = {}): InferenceCheck {
  const loaded = opts.loaded ?? false
  const available = opts.available ?? availableMemory()
  const needOf = (s: ModelShape, c: InferenceCall) => {
    const plan = planInference(s, { sequences: c.sequences, tokens: c.tokens, promptTokens: c.promptTokens, threads: opts.threads })
    return { plan, need: plan.total - plan.runtime - (loaded ? plan.weights : 0) }
  }
  const { plan, need } = needOf(shape, call)
  const fits = need <= available
  const advice: { change: string; saves: number }[] = []
  if (!fits) {
    const tryChange = (change: string, s: ModelShape, c: InferenceCall) => {
      const saves = need - needOf(s, c).need
      if (saves > 0) advice.push({ change, saves })
    }
    if (call.sequences > 1) {
      const half = Math.max(1, Math.floor(call.sequences / 2))
      tryChange(`fewer sequences at once (${call.sequences} → ${half}: a smaller batch size or fewer return sequences)`, shape, { ...call, sequences: half })
    }
    if (call.tokens > 1) {
      const half = Math.max(1, Math.floor(call.tokens / 2))
      tryChange(`shorter sequences (${call.tokens} → ${half} tokens of prompt + max new tokens)`, shape,
        { ...call, tokens: half, promptTokens: Math.min(half, call.promptTokens ?? half) })
    }
    if (!loaded && plan.precision === 'f32')
      tryChange('a bf16 checkpoint (the weights held in 16 bits)', { ...shape, weightDtype: 'BF16' }, call)
    advice.sort((a, b) => b.saves - a.saves)
  }
  return { plan, call, loaded, need, available, fits, advice }
}

/** The refusal of a generation that does not fit: the estimate, the free memory, what to change. */
export function inferenceRefusal(dir: string, check: InferenceCheck): string {
  const { plan, call } = check
  const parts: [string, number][] = [
    ...(check.loaded ? [] : [[`weights (${plan.precision})`, plan.weights] as [string, number]]),
    [`KV cache of ${call.sequences} × ${call.tokens} tokens`, plan.kvCache], ['activations', plan.activations]
  ]
  const breakdown = parts.filter(([, b]) => b > 0).map(([name, b]) => `${name} ${formatMemory(b)}`).join(', ')
  const what = check.loaded
    ? `this call (${call.sequences} sequences × ${call.tokens} tokens) needs about ${formatMemory(check.need)} beside the loaded weights`
    : `loading it for ${call.sequences} sequences × ${call.tokens} tokens needs about ${formatMemory(check.need)}`
  const changes = check.advice.map((a) => `${a.change}: saves about ${formatMemory(a.saves)}`)
  return (
    `not enough memory to generate with ${dir}: ${what} (${breakdown}) and ${formatMemory(check.available)} is free. ` +
    (changes.length ? `Lower it with: ${changes.join('; ')}.` : 'Free some memory or use a smaller model.')
  )
}
