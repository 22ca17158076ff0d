// The Train form as data: methods, presets, per-field validation and the YAML that
// `tunebench train` takes, all derived from the one schema in preload/types/trainingSchema.ts,
// as the engine build accepts it (schemaForEngine) once the engine's facts are known.
import { stringify } from 'yaml'
import {
  LORA_TARGET_MODULES,
  runSteps,
  stepIntervals,
  trainingConfigSchema,
  type ConfigKeySpec,
  type PrefLoss,
  type StepIntervals,
  type TrainingStage
} from '../../../preload/types/trainingSchema'
import { grpoPresets, presetRewardValues } from './grpoPresets'
import { rewardErrors, rewardsToConfig, type RewardEditorState } from './rewardEditor'

export type MethodId = 'sft' | 'dpo' | 'kto' | 'orpo' | 'simpo' | 'grpo'

export interface Method {
  id: MethodId
  label: string
  stage: TrainingStage
  /** The pref_loss choices the method offers; the first is the default. */
  losses: readonly PrefLoss[]
  summary: string
  /** Values the method starts from, on top of the schema defaults. */
  preset: Record<string, string | number | boolean>
}

// Presets follow the settings the method papers and LLaMA-Factory's examples use for LoRA
// runs; they are starting points the user can change, not tuned results.
export const methods: readonly Method[] = [
  {
    id: 'sft', label: 'SFT', stage: 'sft', losses: [],
    summary: 'Supervised fine-tuning on gold answers (messages or prompt/completion).',
    preset: { learning_rate: 1e-4, num_train_epochs: 3, lr_scheduler_type: 'cosine', warmup_ratio: 0.1 }
  },
  {
    id: 'dpo', label: 'DPO', stage: 'dpo', losses: ['sigmoid', 'hinge', 'ipo', 'sigmoid_norm'],
    summary: 'Direct preference optimisation on chosen/rejected pairs; the reference is the base model.',
    preset: { learning_rate: 5e-6, num_train_epochs: 1, pref_beta: 0.1, lr_scheduler_type: 'cosine', warmup_ratio: 0.1 }
  },
  {
    id: 'kto', label: 'KTO', stage: 'kto', losses: [],
    summary: 'Kahneman–Tversky optimisation on single answers labelled desirable or undesirable.',
    preset: { learning_rate: 5e-6, num_train_epochs: 1, pref_beta: 0.1, lr_scheduler_type: 'cosine', warmup_ratio: 0.1 }
  },
  {
    id: 'orpo', label: 'ORPO', stage: 'dpo', losses: ['orpo'],
    summary: 'Odds-ratio preference optimisation: SFT on chosen plus an odds-ratio penalty; no reference model.',
    preset: { learning_rate: 8e-6, num_train_epochs: 1, pref_beta: 0.1, lr_scheduler_type: 'linear', warmup_ratio: 0.1 }
  },
  {
    id: 'simpo', label: 'SimPO', stage: 'dpo', losses: ['simpo'],
    summary: 'Simple preference optimisation: length-normalised margin with a target γ; no reference model.',
    preset: { learning_rate: 1e-6, num_train_epochs: 1, pref_beta: 2.0, simpo_gamma: 0.5, lr_scheduler_type: 'cosine', warmup_ratio: 0.1 }
  },
  {
    id: 'grpo', label: 'GRPO', stage: 'grpo', losses: [],
    summary: 'Group relative policy optimisation: samples answers to prompts, scores them with reward functions, reinforces the best.',
    // The first task preset (grpoPresets.ts); the page offers the others.
    preset: { ...grpoPresets[0]!.values, ...presetRewardValues(grpoPresets[0]!) }
  }
]

export function methodById(id: MethodId): Method {
  const m = methods.find((x) => x.id === id)
  if (!m) throw new Error(`unknown method ${id}`)
  return m
}

/** Form values: text for everything typed, booleans for check boxes. */
export type FormValues = Record<string, string | boolean>

/** Keys the method picker sets itself, so the form does not show them. */
const pickerKeys = new Set(['stage', 'pref_loss'])

/** The schema keys the form shows for a method, in schema order. */
export function fieldsFor(method: Method, schema: readonly ConfigKeySpec[] = trainingConfigSchema): ConfigKeySpec[] {
  return schema.filter((s) => !pickerKeys.has(s.name) && (!s.stages || s.stages.includes(method.stage)))
    .filter((s) => !(s.name === 'simpo_gamma' && method.id !== 'simpo'))
    .filter((s) => !(s.name === 'dpo_label_smoothing' && method.id !== 'dpo'))
}

function toFormValue(spec: ConfigKeySpec, value: ConfigKeySpec['default']): string | boolean {
  if (spec.type === 'bool') return value === true
  if (value === null) return ''
  if (Array.isArray(value)) return value.join(',')
  return String(value)
}

/** The starting values of a method: schema defaults with the method's preset on top. */
export function initialValues(method: Method, fixed: Record<string, string> = {}): FormValues {
  const values: FormValues = {}
  for (const spec of trainingConfigSchema) {
    if (pickerKeys.has(spec.name)) continue
    const preset = method.preset[spec.name]
    values[spec.name] = preset !== undefined ? toFormValue(spec, preset as ConfigKeySpec['default']) : toFormValue(spec, spec.default)
  }
  return { ...values, ...fixed }
}

/** Required keys the app fills in when the form leaves them empty: the runs service gives a
 *  run without output_dir a new folder under the app's runs folder, where the Runs page lists it. */
export const filledByApp = new Set(['output_dir'])

/** The typed value of one field, or an error message; undefined = unset (use the default). */
export function parseField(spec: ConfigKeySpec, raw: string | boolean): { value?: unknown; error?: string } {
  if (spec.type === 'bool') return { value: raw === true }
  const text = String(raw).trim()
  if (text === '') return spec.required && !filledByApp.has(spec.name) ? { error: 'required' } : { value: undefined }
  switch (spec.type) {
    case 'string':
      return { value: text }
    case 'enum':
      return spec.choices!.includes(text)
        ? { value: text }
        : { error: `must be one of ${spec.choices!.join(', ')}${spec.choicesFrom ? ` (${spec.choicesFrom})` : ''}` }
    case 'int':
    case 'float': {
      const n = Number(text)
      if (!Number.isFinite(n)) return { error: spec.type === 'int' ? 'must be a whole number' : 'must be a number' }
      if (spec.type === 'int' && !Number.isInteger(n)) return { error: 'must be a whole number' }
      if (spec.min !== undefined && (spec.exclusiveMin ? n <= spec.min : n < spec.min))
        return { error: `must be ${spec.exclusiveMin ? 'greater than' : 'at least'} ${spec.min}` }
      if (spec.max !== undefined && (spec.exclusiveMax ? n >= spec.max : n > spec.max))
        return { error: `must be ${spec.exclusiveMax ? 'below' : 'at most'} ${spec.max}` }
      if (spec.name === 'val_size' && n >= 1 && !Number.isInteger(n))
        return { error: 'must be a fraction below 1 or a whole number of records' }
      return { value: n }
    }
    case 'list': {
      const items = text.split(',').map((s) => s.trim())
      if (items.some((s) => s === '')) return { error: 'empty item in the comma list' }
      if (spec.name === 'lora_target') {
        if (items.length > 1 && items.includes('all')) return { error: '"all" cannot be combined with module names' }
        const bad = items.find((t) => t !== 'all' && !(LORA_TARGET_MODULES as readonly string[]).includes(t))
        if (bad) return { error: `unknown module "${bad}" (use all or ${LORA_TARGET_MODULES.join(', ')})` }
      }
      return { value: items }
    }
  }
}

export interface BuiltConfig {
  /** Only the keys that differ from the schema defaults (plus the method and required keys). */
  config: Record<string, unknown>
  errors: Record<string, string>
}

function sameAsDefault(spec: ConfigKeySpec, value: unknown): boolean {
  if (Array.isArray(value) && Array.isArray(spec.default)) return value.join(',') === spec.default.join(',')
  return value === spec.default
}

/** Keys the GRPO reward editor stands for: the form shows the editor instead of their fields. */
export const rewardEditorKeys = new Set(['reward_funcs', 'reward_weights'])

/**
 * Validates the form and builds the config object in schema order. For GRPO, `rewards` (the
 * reward editor) gives reward_funcs and reward_weights; without it they are read from `values`.
 */
export function buildConfig(
  method: Method,
  loss: PrefLoss | null,
  values: FormValues,
  schema: readonly ConfigKeySpec[] = trainingConfigSchema,
  rewards: RewardEditorState | null = null
): BuiltConfig {
  const config: Record<string, unknown> = {}
  const errors: Record<string, string> = {}
  const shown = new Set(fieldsFor(method, schema).map((s) => s.name))
  const fromEditor = rewards ? rewardsToConfig(rewards) : null
  if (rewards && shown.has('reward_funcs')) Object.assign(errors, rewardErrors(rewards))
  for (const spec of schema) {
    if (spec.name === 'stage') {
      config.stage = method.stage
      continue
    }
    if (spec.name === 'pref_loss') {
      if (method.stage === 'dpo') config.pref_loss = loss ?? method.losses[0]
      continue
    }
    if (!shown.has(spec.name)) continue
    if (fromEditor && rewardEditorKeys.has(spec.name)) {
      const value = spec.name === 'reward_funcs' ? fromEditor.reward_funcs : fromEditor.reward_weights
      if (value && value.length && !errors[spec.name]) config[spec.name] = value
      continue
    }
    const { value, error } = parseField(spec, values[spec.name] ?? '')
    if (error) errors[spec.name] = error
    // The reward functions are what a GRPO run is about: written even when they are the default.
    else if (value !== undefined && (spec.required || spec.name === 'reward_funcs' || !sameAsDefault(spec, value))) config[spec.name] = value
  }
  if (method.stage === 'grpo') {
    const batch = grpoBatch(config)
    if (batch && !batch.divides) errors.num_generations ??= batch.message
  }
  // Checks across keys, as the config parser makes them, shown next to the field they name.
  if (method.stage === 'kto' && typeof config.per_device_train_batch_size === 'number' && config.per_device_train_batch_size < 2)
    errors.per_device_train_batch_size ??= 'KTO needs at least 2 (each record is paired with its neighbour for the KL estimate)'
  if (config.finetuning_type === 'full' && config.adapter_name_or_path !== undefined)
    errors.adapter_name_or_path ??= 'cannot load an adapter with finetuning_type full'
  return { config, errors }
}

/** A config key's value, or the schema's default when the config leaves it out. */
function keyOf<T>(config: Record<string, unknown>, name: string): T {
  return (config[name] ?? trainingConfigSchema.find((s) => s.name === name)!.default) as T
}

/** How a GRPO step is made: completions per step (batch × accumulation), in groups of
 *  num_generations, one group per prompt. */
export interface GrpoBatch {
  batch: number
  accumulation: number
  generations: number
  completions: number
  /** Prompts per optimiser step; not whole when the groups do not divide the step. */
  prompts: number
  divides: boolean
  /** One line for the form: the derivation, or why it does not divide and what would. */
  message: string
}

/** The GRPO step of a config, or null while one of its keys is not a positive whole number. */
export function grpoBatch(config: Record<string, unknown>): GrpoBatch | null {
  const batch = keyOf<number>(config, 'per_device_train_batch_size')
  const accumulation = keyOf<number>(config, 'gradient_accumulation_steps')
  const generations = keyOf<number>(config, 'num_generations')
  if (![batch, accumulation, generations].every((n) => Number.isInteger(n) && n > 0)) return null
  const completions = batch * accumulation
  const prompts = completions / generations
  const divides = Number.isInteger(prompts)
  const message = divides
    ? `Prompts per step = per_device_train_batch_size × gradient_accumulation_steps / num_generations = ${batch} × ${accumulation} / ${generations} = ${prompts}`
    : `per_device_train_batch_size × gradient_accumulation_steps = ${batch} × ${accumulation} = ${completions} is not a multiple of num_generations (${generations}): ` +
      `each step trains on whole groups of ${generations} completions, one group per prompt. ` +
      `Set per_device_train_batch_size to ${nearestMultiple(batch, generations, accumulation)} or num_generations to a divisor of ${completions} (${divisors(completions).join(', ')}).`
  return { batch, accumulation, generations, completions, prompts, divides, message }
}

/** The batch size nearest to `batch` (at least one group) that makes batch × accumulation a multiple of g. */
function nearestMultiple(batch: number, g: number, accumulation: number): number {
  for (let d = 0; ; d++) {
    for (const b of [batch - d, batch + d]) if (b >= 1 && (b * accumulation) % g === 0) return b
  }
}

/** The divisors of n from 2 (num_generations is at least 2). */
function divisors(n: number): number[] {
  const out: number[] = []
  for (let d = 2; d <= n; d++) if (n % d === 0) out.push(d)
  return out
}

/** A run's length and the logging / save / eval intervals the trainer will use for it. */
export interface RunIntervals {
  total: number
  every: StepIntervals
}

/**
 * What the trainer will resolve for this config (stepIntervals), given how many examples the
 * dataset holds; null when the length is not known before the run reads its data (no
 * max_steps and no count, or no example to train on).
 */
export function runIntervals(config: Record<string, unknown>, examples: number | null): RunIntervals | null {
  const key = <T>(name: string): T => keyOf<T>(config, name)
  const maxSteps = key<number>('max_steps')
  let train = examples ?? 0
  if (maxSteps <= 0) {
    if (examples === null) return null
    const maxSamples = key<number | null>('max_samples')
    if (maxSamples !== null) train = Math.min(train, maxSamples)
    const val = key<number>('val_size')
    if (val > 0) train -= val < 1 ? Math.ceil(val * train) : val
    if (train <= 0) return null
  }
  const total = runSteps(
    {
      max_steps: maxSteps,
      num_train_epochs: key<number>('num_train_epochs'),
      per_device_train_batch_size: key<number>('per_device_train_batch_size'),
      gradient_accumulation_steps: key<number>('gradient_accumulation_steps'),
      stage: key<TrainingStage>('stage'),
      num_generations: key<number>('num_generations'),
      num_iterations: key<number>('num_iterations')
    },
    train
  )
  const every = stepIntervals(
    { logging_steps: key<number | null>('logging_steps'), save_steps: key<number | null>('save_steps'), eval_steps: key<number | null>('eval_steps') },
    total
  )
  return { total, every }
}

/** "every 3 steps", "every step". */
export function everySteps(n: number): string {
  return n === 1 ? 'every step' : `every ${n} steps`
}

/** The YAML file `tunebench train` takes; lists are written as LLaMA-Factory's comma strings.
 *  Keys the app resolves itself are named in comments, with their values when known. */
export function configYaml(config: Record<string, unknown>, intervals: RunIntervals | null = null): string {
  const flat: Record<string, unknown> = {}
  // A list item holding a comma (a regex reward such as \d{1,3}) cannot go in a comma string:
  // that list is written as a YAML list, which the config parser reads too.
  for (const [k, v] of Object.entries(config)) flat[k] = Array.isArray(v) && !v.some((item) => String(item).includes(',')) ? v.join(',') : v
  let yaml = stringify(flat, { lineWidth: 0 })
  if (config.output_dir === undefined)
    yaml += '# output_dir: left to the app (a new folder under its runs folder); set it to run this file with tunebench train\n'
  const of = intervals ? ` of ${intervals.total}` : ''
  for (const [key, value] of [['logging_steps', intervals?.every.logging], ['save_steps', intervals?.every.save]] as const)
    if (config[key] === undefined)
      yaml += `# ${key}: unset, follows the run's length${value === undefined ? ' (resolved when the run starts)' : `: ${everySteps(value)}${of}`}\n`
  return yaml
}
