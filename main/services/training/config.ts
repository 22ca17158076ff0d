// Reads a training config (YAML or JSON with LLaMA-Factory's keys), checks every key against
// the schema as the engine build accepts it (schemaForEngine) and fills in the defaults.
// Errors name the file, the line and the key.
import { readFile } from 'node:fs/promises'
import { resolve } from 'node:path'
import { LineCounter, parseDocument, isMap, isScalar, type Node, type Pair } from 'yaml'
import { engineFacts } from '../../../native/index'
import { checkRewardConfig } from './rewards'
import type { EngineLimits } from '../../../preload/types/engine'
import {
  LORA_TARGET_MODULES,
  schemaForEngine,
  trainingConfigSchema,
  type ConfigKeySpec,
  type TrainingConfig
} from '../../../preload/types/trainingSchema'

export class ConfigError extends Error {
  constructor(
    message: string,
    readonly file: string,
    readonly line: number | null,
    readonly key: string | null
  ) {
    super(message)
    this.name = 'ConfigError'
  }
}

const specByName = new Map(trainingConfigSchema.map((s) => [s.name, s]))

type Raw = Record<string, unknown>

function fail(file: string, line: number | null, key: string | null, what: string): never {
  const where = line === null ? file : `${file}:${line}`
  throw new ConfigError(`${where}: ${key ? `${key}: ` : ''}${what}`, file, line, key)
}

function describe(value: unknown): string {
  return typeof value === 'string' ? `"${value}"` : JSON.stringify(value)
}

function coerce(spec: ConfigKeySpec, value: unknown, file: string, line: number | null): unknown {
  const bad = (expected: string): never => fail(file, line, spec.name, `expected ${expected}, got ${describe(value)}`)
  const oneOf = () => `one of ${spec.choices!.join(', ')}${spec.choicesFrom ? ` (${spec.choicesFrom})` : ''}`
  if (value === null) {
    if (spec.default === null && !spec.required) return null
    return bad(spec.type === 'enum' ? oneOf() : `a ${spec.type}`)
  }
  switch (spec.type) {
    case 'string':
      // transformers accepts resume_from_checkpoint: true (= the newest checkpoint).
      if (spec.name === 'resume_from_checkpoint' && typeof value === 'boolean') return value ? 'true' : null
      if (typeof value !== 'string' || value === '') return bad('a non-empty string')
      return value
    case 'bool':
      if (typeof value === 'boolean') return value
      if (value === 'true' || value === 'false') return value === 'true'
      return bad('true or false')
    case 'int':
    case 'float': {
      // HfArgumentParser accepts numeric strings (PyYAML reads 5e-5 as a string), so do we.
      const n = typeof value === 'number' ? value : typeof value === 'string' && value.trim() !== '' ? Number(value) : NaN
      if (!Number.isFinite(n)) return bad(spec.type === 'int' ? 'an integer' : 'a number')
      if (spec.type === 'int' && !Number.isInteger(n)) return bad('an integer')
      const low = spec.min !== undefined && (spec.exclusiveMin ? n <= spec.min : n < spec.min)
      const high = spec.max !== undefined && (spec.exclusiveMax ? n >= spec.max : n > spec.max)
      if (low || high) {
        const lo = spec.min === undefined ? '' : `${spec.exclusiveMin ? '>' : '≥'} ${spec.min}`
        const hi = spec.max === undefined ? '' : `${spec.exclusiveMax ? '<' : '≤'} ${spec.max}`
        fail(file, line, spec.name, `${n} is out of range (must be ${[lo, hi].filter(Boolean).join(' and ')})`)
      }
      return n
    }
    case 'enum':
      if (typeof value !== 'string' || !spec.choices!.includes(value)) return bad(oneOf())
      return value
    case 'list': {
      const items = typeof value === 'string' ? value.split(',') : Array.isArray(value) ? value : bad('a comma list or an array of strings')
      const out = items.map((item) => {
        if (typeof item !== 'string') return bad('a comma list or an array of strings')
        return item.trim()
      })
      if (out.length === 0 || out.some((s) => s === '')) return bad('a non-empty comma list')
      return out
    }
  }
}

export interface ParseOptions {
  /** Relative paths in the config resolve against this folder (LLaMA-Factory: the working dir). */
  baseDir?: string
  /** What the engine accepts (devices, LoRA dropout range); the native engine's by default. */
  engine?: EngineLimits
}

/** Parses config text (YAML; JSON is read by the same parser so lines are known for both). */
export function parseTrainingConfig(text: string, file: string, opts: ParseOptions = {}): TrainingConfig {
  const lineCounter = new LineCounter()
  const doc = parseDocument(text, { lineCounter, uniqueKeys: true, prettyErrors: false })
  const lineOf = (node: Node | null | undefined): number | null =>
    node?.range ? lineCounter.linePos(node.range[0]).line : null
  if (doc.errors.length > 0) {
    const e = doc.errors[0]!
    const line = lineCounter.linePos(e.pos[0]).line
    fail(file, line, null, `not valid YAML/JSON: ${e.message.split('\n')[0]}`)
  }
  if (doc.contents === null) fail(file, null, null, 'empty config')
  if (!isMap(doc.contents)) fail(file, lineOf(doc.contents as Node), null, 'expected a mapping of keys to values')

  const raw: Raw = {}
  const lines = new Map<string, number | null>()
  for (const pair of doc.contents.items as Pair<Node, Node>[]) {
    const keyNode = pair.key
    const key = isScalar(keyNode) ? String(keyNode.value) : null
    const line = lineOf(keyNode)
    if (key === null) fail(file, line, null, 'keys must be plain names')
    if (!specByName.has(key)) fail(file, line, key, 'unknown key')
    raw[key] = pair.value === null ? null : (pair.value as Node).toJSON()
    lines.set(key, line)
  }
  return resolveConfig(raw, file, lines, opts)
}

/** Validates a plain object (the UI's form, or parsed JSON) against the schema. */
export function resolveConfig(raw: Raw, file: string, lines = new Map<string, number | null>(), opts: ParseOptions = {}): TrainingConfig {
  const out: Record<string, unknown> = {}
  for (const key of Object.keys(raw)) if (!specByName.has(key)) fail(file, lines.get(key) ?? null, key, 'unknown key')
  for (const spec of schemaForEngine(opts.engine ?? engineFacts())) {
    const line = lines.get(spec.name) ?? null
    if (!(spec.name in raw) || raw[spec.name] === undefined) {
      if (spec.required) fail(file, null, spec.name, 'required key is missing')
      out[spec.name] = Array.isArray(spec.default) ? [...spec.default] : spec.default
      continue
    }
    out[spec.name] = coerce(spec, raw[spec.name], file, line)
  }
  const cfg = out as unknown as TrainingConfig
  const at = (key: keyof TrainingConfig) => lines.get(key) ?? null

  // Defaults that depend on other keys, as LLaMA-Factory and transformers resolve them.
  if (cfg.lora_alpha === null) cfg.lora_alpha = cfg.lora_rank * 2
  if (cfg.epsilon_high === null) cfg.epsilon_high = cfg.epsilon
  if (cfg.bf16) {
    if (cfg.precision === 'f32') fail(file, at('bf16'), 'bf16', 'true contradicts precision f32; keep one of them')
    cfg.precision = 'bf16'
  }
  // logging_steps, save_steps and eval_steps left unset follow the run's length, which only the
  // trainer knows once the dataset is read (stepIntervals).
  if (cfg.eval_strategy === null) cfg.eval_strategy = cfg.val_size > 0 ? 'steps' : 'no'

  // Values that are each fine alone but impossible together.
  if (cfg.stage !== 'dpo' && 'pref_loss' in raw && cfg.pref_loss !== 'sigmoid')
    fail(file, at('pref_loss'), 'pref_loss', `applies to stage dpo only (stage is ${cfg.stage})`)
  if (cfg.stage === 'kto' && cfg.per_device_train_batch_size < 2)
    fail(file, at('per_device_train_batch_size'), 'per_device_train_batch_size',
      'KTO pairs each record with the completion of its neighbour for the KL estimate, so it needs at least 2')
  if (cfg.stage === 'grpo') {
    const completions = cfg.per_device_train_batch_size * cfg.gradient_accumulation_steps
    if (completions % cfg.num_generations !== 0)
      fail(file, at('per_device_train_batch_size'), 'per_device_train_batch_size',
        `per_device_train_batch_size × gradient_accumulation_steps (${cfg.per_device_train_batch_size} × ${cfg.gradient_accumulation_steps} = ${completions} completions) must be a multiple of num_generations (${cfg.num_generations})`)
    if (cfg.cutoff_len <= cfg.max_completion_length)
      fail(file, at('cutoff_len'), 'cutoff_len', `must exceed max_completion_length (${cfg.max_completion_length}) to leave room for the prompt`)
    const rewards = checkRewardConfig(cfg.reward_funcs, cfg.reward_weights)
    if (rewards) fail(file, at(rewards.key), rewards.key, rewards.message)
    if (cfg.beta > 0 && cfg.finetuning_type === 'full')
      fail(file, at('beta'), 'beta', 'the KL reference is the base with adapters off, which full fine-tuning does not keep; use finetuning_type lora or beta 0')
  }
  if (cfg.finetuning_type === 'full' && cfg.adapter_name_or_path !== null)
    fail(file, at('adapter_name_or_path'), 'adapter_name_or_path', 'cannot load an adapter with finetuning_type full')
  if (cfg.val_size >= 1 && !Number.isInteger(cfg.val_size))
    fail(file, at('val_size'), 'val_size', `${cfg.val_size} must be a fraction below 1 or a whole number of records`)
  if (cfg.lora_target.length > 1 && cfg.lora_target.includes('all'))
    fail(file, at('lora_target'), 'lora_target', '"all" cannot be combined with module names')
  for (const t of cfg.lora_target)
    if (t !== 'all' && !(LORA_TARGET_MODULES as readonly string[]).includes(t))
      fail(file, at('lora_target'), 'lora_target', `unknown module "${t}" (use all or ${LORA_TARGET_MODULES.join(', ')})`)

  const base = opts.baseDir ?? process.cwd()
  cfg.model_name_or_path = resolve(base, cfg.model_name_or_path)
  if (cfg.adapter_name_or_path !== null) cfg.adapter_name_or_path = resolve(base, cfg.adapter_name_or_path)
  cfg.dataset_dir = resolve(base, cfg.dataset_dir)
  cfg.output_dir = resolve(base, cfg.output_dir)
  const r = cfg.resume_from_checkpoint
  if (r !== null && !['true', 'last', 'false'].includes(r)) cfg.resume_from_checkpoint = resolve(base, r)
  return cfg
}

export async function loadTrainingConfig(file: string, opts: ParseOptions = {}): Promise<TrainingConfig> {
  let text: string
  try {
    text = await readFile(file, 'utf8')
  } catch (err) {
    throw new ConfigError(`${file}: cannot read config: ${(err as Error).message}`, file, null, null)
  }
  return parseTrainingConfig(text, file, opts)
}
