// Export of a run as a LLaMA-Factory training folder: train.yaml (LLaMA-Factory's keys only),
// the run's data files and a dataset_info.json describing them, so `llamafactory-cli train
// train.yaml` trains the same thing on a cluster (DeepSpeed, FSDP). The layout is flat (the
// folder is LLaMA-Factory's working directory and its dataset_dir):
//   train.yaml  dataset_info.json  <dataset>.jsonl ...
// LLaMA-Factory files the run read are copied as they are, with their dataset_info.json entry;
// TRL files (and LLaMA-Factory data the stage reads differently, pairs given to KTO) are
// written out in LLaMA-Factory's alpaca or sharegpt format, one JSON line per example.
import { createReadStream } from 'node:fs'
import { readFile, stat } from 'node:fs/promises'
import { basename, extname, join } from 'node:path'
import { stringify } from 'yaml'
import type { TrainingConfig } from '../../../preload/types/training'
import { trainingConfigSchema, type ConfigKeySpec, type TrainingStage } from '../../../preload/types/trainingSchema'
import { DataError } from '../data/errors'
import { parseTrlRecord, type Message, type Text, type TrainingRecord } from '../data/formats'
import { inspectFile, lfEntryMapping, readRecords, where, type LfInfoEntry } from '../data/importers'
import { readRows } from '../data/sources'
import { resolveDatasets, storeRecordToTrl, type DatasetSource } from '../training/datasets'
import type { ExportInputs, ExportPlan } from './index'
import type { StagedFolder } from './staged'

export const LF_CONFIG_FILE = 'train.yaml'
export const LF_DATASET_INFO = 'dataset_info.json'

/** The stages LLaMA-Factory trains that a Tunebench run can have (GRPO is not one of them). */
const LF_STAGES: readonly TrainingStage[] = ['sft', 'dpo', 'kto']
/** pref_loss values LLaMA-Factory's FinetuningArguments accepts. */
const LF_PREF_LOSSES = ['sigmoid', 'hinge', 'ipo', 'orpo', 'simpo']

type Key = keyof TrainingConfig
type Section = 'model' | 'method' | 'dataset' | 'output' | 'train' | 'eval'

/** Tunebench keys LLaMA-Factory has under the same name and meaning, and the section of
 *  train.yaml they go in (the sections of LLaMA-Factory's example configs). */
const LF_KEYS: Partial<Record<Key, Section>> = {
  model_name_or_path: 'model',
  adapter_name_or_path: 'model',
  disable_gradient_checkpointing: 'model',
  moe_aux_loss_coef: 'model',
  stage: 'method',
  finetuning_type: 'method',
  lora_rank: 'method',
  lora_alpha: 'method',
  lora_dropout: 'method',
  lora_target: 'method',
  use_rslora: 'method',
  use_dora: 'method',
  pref_beta: 'method',
  pref_loss: 'method',
  pref_ftx: 'method',
  dpo_label_smoothing: 'method',
  simpo_gamma: 'method',
  kto_chosen_weight: 'method',
  kto_rejected_weight: 'method',
  template: 'dataset',
  dataset: 'dataset',
  dataset_dir: 'dataset',
  cutoff_len: 'dataset',
  max_samples: 'dataset',
  disable_shuffling: 'dataset',
  output_dir: 'output',
  logging_steps: 'output',
  save_steps: 'output',
  overwrite_output_dir: 'output',
  per_device_train_batch_size: 'train',
  gradient_accumulation_steps: 'train',
  learning_rate: 'train',
  weight_decay: 'train',
  adam_beta1: 'train',
  adam_beta2: 'train',
  adam_epsilon: 'train',
  max_grad_norm: 'train',
  num_train_epochs: 'train',
  max_steps: 'train',
  lr_scheduler_type: 'train',
  warmup_ratio: 'train',
  warmup_steps: 'train',
  seed: 'train',
  bf16: 'train',
  val_size: 'eval',
  per_device_eval_batch_size: 'eval',
  eval_strategy: 'eval',
  eval_steps: 'eval'
}

/** Why a Tunebench key has no place in train.yaml (named in the export's warning). */
const TUNEBENCH_ONLY: Partial<Record<Key, string>> = {
  threads: "Tunebench's engine",
  device: "Tunebench's engine",
  sample_prompts: "the dashboard's sample answers",
  sample_max_new_tokens: "the dashboard's sample answers",
  resume_from_checkpoint: "a Tunebench checkpoint, which LLaMA-Factory cannot resume"
}

const specOf = new Map<string, ConfigKeySpec>(trainingConfigSchema.map((s) => [s.name, s]))

/** A LLaMA-Factory dataset to write: its dataset_info.json entry and how its file is made. */
interface LfDataset {
  name: string
  file: string
  entry: Record<string, unknown>
  bytes: number
  write(folder: StagedFolder): Promise<void>
  /** Records given as plain text (trained by Tunebench without a chat template). */
  plain: boolean
  /** What LLaMA-Factory will read differently, if anything. */
  warning: string | null
}

export async function planLlamaFactory(inputs: Pick<ExportInputs, 'run' | 'modelDir'>): Promise<ExportPlan> {
  const run = inputs.run
  if (!run)
    throw new Error('llamafactory export needs a run (--run): its config and data are what LLaMA-Factory trains; an adapter folder alone has neither')
  const cfg = run.config
  const imported = await importedFrom(run.dir)
  if (imported !== null)
    throw new Error(`${run.dir} is an adapter imported from ${imported}: it has no training config or data to hand to LLaMA-Factory`)
  if (cfg.stage === 'grpo')
    throw new Error('LLaMA-Factory does not train GRPO (its stages are pt, sft, rm, ppo, dpo and kto): a GRPO run cannot be exported as a LLaMA-Factory config (TRL\'s GRPOTrainer takes the same keys)')
  if (!LF_STAGES.includes(cfg.stage)) throw new Error(`stage ${JSON.stringify(cfg.stage)} has no LLaMA-Factory equivalent`)
  if (cfg.stage === 'dpo' && !LF_PREF_LOSSES.includes(cfg.pref_loss))
    throw new Error(`pref_loss ${cfg.pref_loss} has no LLaMA-Factory equivalent (it has ${LF_PREF_LOSSES.join(', ')}): the run cannot be exported as a LLaMA-Factory config`)

  const { datasets, names } = await planDatasets(cfg)
  const warnings = datasets.flatMap((d) => (d.warning ? [d.warning] : []))
  const info: Record<string, unknown> = {}
  for (const d of datasets) info[d.name] = d.entry
  const infoText = JSON.stringify(info, null, 2) + '\n'

  const values: Partial<Record<Key, unknown>> = {}
  const dropped: Key[] = []
  for (const key of Object.keys(cfg) as Key[]) {
    const spec = specOf.get(key)
    const value = cfg[key]
    // Keys of another stage (GRPO's for a DPO run, ...) do not apply to the run at all.
    if (spec?.stages && !spec.stages.includes(cfg.stage)) continue
    if (key === 'precision') continue // written as LLaMA-Factory's bf16 below
    if (LF_KEYS[key]) values[key] = value
    else if (value !== null && value !== undefined) dropped.push(key)
  }
  if (cfg.finetuning_type !== 'lora') for (const k of ['lora_rank', 'lora_alpha', 'lora_dropout', 'lora_target', 'use_rslora', 'use_dora'] as const) delete values[k]
  if (cfg.stage === 'dpo' && cfg.pref_loss !== 'simpo') delete values.simpo_gamma
  // Paths and names as LLaMA-Factory reads them, relative to the folder it runs in.
  values.model_name_or_path = inputs.modelDir
  values.dataset = names
  values.dataset_dir = '.'
  values.output_dir = `saves/${basename(run.dir)}`
  if (cfg.adapter_name_or_path)
    warnings.push(`adapter_name_or_path is the local folder ${cfg.adapter_name_or_path}: copy it to the machine that trains and change the path in ${LF_CONFIG_FILE}`)
  // What transformers would do anyway, left out so the file says only what the run chose.
  if (cfg.max_steps <= 0) delete values.max_steps
  if (cfg.warmup_steps > 0 || cfg.warmup_ratio <= 0) delete values.warmup_ratio
  if (cfg.warmup_steps <= 0) delete values.warmup_steps
  if (!cfg.overwrite_output_dir) delete values.overwrite_output_dir
  if (cfg.precision === 'bf16') values.bf16 = true
  else delete values.bf16
  if (cfg.val_size <= 0 || cfg.eval_strategy === 'no') {
    for (const k of ['per_device_eval_batch_size', 'eval_strategy', 'eval_steps'] as const) delete values[k]
    if (cfg.val_size <= 0) delete values.val_size
  }
  // Unset, eval_steps follows logging_steps in both; the others the trainer resolves when the
  // run starts (a run that never started has none).
  for (const k of ['logging_steps', 'save_steps'] as const)
    if (values[k] === null) warnings.push(`${k} was never resolved (the run did not start): LLaMA-Factory's default (500) applies; set it in ${LF_CONFIG_FILE}`)
  const plain = datasets.filter((d) => d.plain).map((d) => d.name)
  if (plain.length && cfg.template === null) {
    if (plain.length === datasets.length) {
      values.template = 'empty'
      warnings.push(`${plain.join(', ')} ${plain.length > 1 ? 'are' : 'is'} plain text, which Tunebench trains without a chat template; ${LF_CONFIG_FILE} sets template: empty, LLaMA-Factory's plain-text template (it adds no eos token after the answer)`)
    } else {
      warnings.push(`${plain.join(', ')} ${plain.length > 1 ? 'are' : 'is'} plain text, which Tunebench trains without a chat template, but LLaMA-Factory formats every dataset of a run with one template (the tokenizer's chat template here)`)
    }
  }
  if (dropped.length)
    warnings.push(`Left out of ${LF_CONFIG_FILE}, LLaMA-Factory has no such keys: ${dropped.map((k) => (TUNEBENCH_ONLY[k] ? `${k} (${TUNEBENCH_ONLY[k]})` : k)).join(', ')}`)

  const yamlText = trainYaml(values, run.dir)
  const files = [LF_CONFIG_FILE, LF_DATASET_INFO, ...datasets.map((d) => d.file)]
  return {
    files,
    bytes: Buffer.byteLength(yamlText) + Buffer.byteLength(infoText) + datasets.reduce((n, d) => n + d.bytes, 0),
    warnings,
    usage: (dir) => [`cd ${shellQuote(dir)} && llamafactory-cli train ${LF_CONFIG_FILE}`],
    write: async (folder) => {
      await folder.writeFile(LF_CONFIG_FILE, yamlText)
      await folder.writeFile(LF_DATASET_INFO, infoText)
      for (const d of datasets) await d.write(folder)
    }
  }
}

/** Where an imported run's adapter came from (runs.ts writes it in status.json); null for a
 *  run trained here. */
async function importedFrom(dir: string): Promise<string | null> {
  try {
    const status = JSON.parse(await readFile(join(dir, 'status.json'), 'utf8')) as { imported?: { from?: unknown } }
    return typeof status.imported?.from === 'string' ? status.imported.from : null
  } catch {
    return null
  }
}

function shellQuote(s: string): string {
  return /^[A-Za-z0-9_./-]+$/.test(s) ? s : `'${s.replace(/'/g, `'\\''`)}'`
}

const SECTIONS: Section[] = ['model', 'method', 'dataset', 'output', 'train', 'eval']

/** train.yaml: the keys by section, as LLaMA-Factory's examples lay them out. */
function trainYaml(values: Partial<Record<Key, unknown>>, runDir: string): string {
  const lines = [
    `# LLaMA-Factory training config exported by Tunebench from the run ${runDir}.`,
    `# Run it from this folder: llamafactory-cli train ${LF_CONFIG_FILE}`,
    `# (the datasets are described in ${LF_DATASET_INFO} here; model_name_or_path is the base model`,
    '# folder on the machine that exported it: change it to where the model is on yours).',
    '# On GPUs, add bf16: true; for DeepSpeed ZeRO-3 add deepspeed: <ds_z3_config.json> and run',
    `# FORCE_TORCHRUN=1 llamafactory-cli train ${LF_CONFIG_FILE}.`
  ]
  for (const section of SECTIONS) {
    const entries = (Object.keys(values) as Key[])
      .filter((k) => LF_KEYS[k] === section && values[k] !== null && values[k] !== undefined)
      .map((k) => `${k}: ${yamlValue(k, values[k])}`)
    // LLaMA-Factory trains only when told to.
    if (section === 'method') entries.splice(2, 0, 'do_train: true')
    if (!entries.length) continue
    lines.push('', `### ${section}`, ...entries)
  }
  return lines.join('\n') + '\n'
}

/** Floats are written with a decimal point (1.0e-4, 3.0), as LLaMA-Factory's examples do:
 *  llamafactory-cli reads YAML with OmegaConf, which takes 1e-4 for a float, but plain PyYAML
 *  takes it for a string. Lists are LLaMA-Factory's comma lists. */
function yamlValue(key: Key, value: unknown): string {
  const spec = specOf.get(key)
  if (Array.isArray(value)) return yamlValue(key, value.join(','))
  if (typeof value === 'number') return spec?.type === 'float' ? floatText(value) : String(value)
  return stringify(value, { lineWidth: 0 }).trimEnd()
}

function floatText(x: number): string {
  if (!Number.isFinite(x)) throw new Error(`cannot write ${x} as a YAML float`)
  if (Number.isInteger(x) && Math.abs(x) < 1e16) return `${x}.0`
  const s = String(x)
  const m = /^(-?\d+)(e[-+]?\d+)$/i.exec(s)
  return m ? `${m[1]}.0${m[2]}` : s
}

// ---- data ----

function safeName(s: string): string {
  const n = s.replace(/\.(jsonl|json|parquet)$/i, '').replace(/[^A-Za-z0-9_.-]+/g, '_').replace(/^[._]+/, '')
  return n || 'dataset'
}

/** The datasets to write, once each, and the run's dataset list by their names. */
async function planDatasets(cfg: TrainingConfig): Promise<{ datasets: LfDataset[]; names: string[] }> {
  let sources: DatasetSource[]
  try {
    sources = await resolveDatasets(cfg)
  } catch (err) {
    throw new Error(`The run's datasets cannot be read: ${(err as Error).message}`)
  }
  const taken = new Set([LF_CONFIG_FILE, LF_DATASET_INFO].map((f) => f.toLowerCase()))
  const byFile = new Map<string, LfDataset>()
  const names: string[] = []
  for (const source of sources) {
    // A dataset listed twice is trained twice; it is written once and named twice.
    const again = byFile.get(source.file)
    if (again) {
      names.push(again.name)
      continue
    }
    let name = safeName(source.llamaFactory ? source.name : basename(source.file))
    for (let i = 2; taken.has(name.toLowerCase()); i++) name = `${safeName(source.llamaFactory ? source.name : basename(source.file))}_${i}`
    taken.add(name.toLowerCase())
    const d = copyable(source, cfg.stage) ? await copied(source, name) : await converted(source, name, cfg.stage, cfg.max_samples)
    taken.add(d.file.toLowerCase())
    byFile.set(source.file, d)
    names.push(d.name)
  }
  return { datasets: [...byFile.values()], names }
}

const HUB_KEYS = ['hf_hub_url', 'ms_hub_url', 'om_hub_url', 'script_url', 'cloud_file_name']

/** A LLaMA-Factory dataset LLaMA-Factory reads for this stage as Tunebench read it: copied. */
function copyable(source: DatasetSource, stage: TrainingStage): boolean {
  const entry = source.llamaFactory?.entry as (LfInfoEntry & { ranking?: unknown }) | undefined
  if (!entry) return false
  const columns = entry.columns && typeof entry.columns === 'object' ? (entry.columns as Record<string, unknown>) : {}
  const ranking = entry.ranking === true
  const kto = typeof columns.kto_tag === 'string'
  if (stage === 'dpo') return ranking
  if (stage === 'kto') return kto && !ranking
  return !ranking && !kto
}

async function copied(source: DatasetSource, name: string): Promise<LfDataset> {
  const ext = extname(source.file).toLowerCase() || '.json'
  const file = `${name}${ext}`
  const entry: Record<string, unknown> = { ...(source.llamaFactory!.entry as Record<string, unknown>), file_name: file }
  for (const k of HUB_KEYS) delete entry[k]
  const bytes = (await stat(source.file)).size
  return {
    name, file, entry, bytes, plain: false, warning: null,
    write: (folder) =>
      folder.stream(file, async (write) => {
        for await (const chunk of createReadStream(source.file, { highWaterMark: CHUNK })) await write(chunk as Buffer)
      })
  }
}

// Shapes of the written lines, as the data store's LLaMA-Factory export writes them
// (main/services/data/export.ts), so both exports read the same in LLaMA-Factory.
const SHAREGPT_TAGS = {
  role_tag: 'role', content_tag: 'content', user_tag: 'user', assistant_tag: 'assistant',
  system_tag: 'system', observation_tag: 'tool', function_tag: 'function_call'
}

function lfEntry(stage: TrainingStage, file: string, conversational: boolean): Record<string, unknown> {
  const ranking = stage === 'dpo' ? { ranking: true } : {}
  if (!conversational) {
    const columns: Record<string, string> = { prompt: 'instruction', query: 'input' }
    if (stage === 'dpo') Object.assign(columns, { chosen: 'chosen', rejected: 'rejected' })
    else Object.assign(columns, { response: 'output' }, stage === 'kto' ? { kto_tag: 'kto_tag' } : {})
    return { file_name: file, ...ranking, columns }
  }
  const columns: Record<string, string> = { messages: 'messages' }
  if (stage === 'dpo') Object.assign(columns, { chosen: 'chosen', rejected: 'rejected' })
  if (stage === 'kto') columns.kto_tag = 'kto_tag'
  return { file_name: file, formatting: 'sharegpt', ...ranking, columns, tags: { ...SHAREGPT_TAGS } }
}

/** The record's examples for `stage` as LLaMA-Factory lines; throws what cannot be written. */
function lfLines(rec: TrainingRecord, stage: TrainingStage): { conversational: boolean; lines: Record<string, unknown>[] } {
  const conversational = rec.type === 'messages' || Array.isArray(rec.prompt)
  const answer = (t: Text, field: string): Message => {
    if (typeof t === 'string') throw new DataError('mixes a plain string with a list of messages', { field })
    if (t.length !== 1 || t[0]!.role !== 'assistant')
      throw new DataError(`LLaMA-Factory takes one assistant message here, got ${t.length === 1 ? `a '${t[0]!.role}' message` : `${t.length} messages`}`, { field })
    return { role: 'assistant', content: t[0]!.content }
  }
  const plain = (t: Text, field: string): string => {
    if (typeof t !== 'string') throw new DataError('mixes a list of messages with a plain string', { field })
    return t
  }
  switch (stage) {
    case 'sft':
      if (rec.type === 'messages') {
        // Turns after the last assistant turn teach nothing (and LLaMA-Factory wants a conversation
        // that ends with the answer).
        const last = rec.messages.map((m) => m.role).lastIndexOf('assistant')
        return { conversational, lines: [{ messages: rec.messages.slice(0, last + 1) }] }
      }
      if (rec.type === 'prompt_completion') {
        if (!conversational) return { conversational, lines: [{ instruction: rec.prompt, input: '', output: plain(rec.completion, 'completion') }] }
        return { conversational, lines: [{ messages: [...(rec.prompt as Message[]), answer(rec.completion, 'completion')] }] }
      }
      throw new DataError(`stage sft trains on prompt/completion or messages records, not ${rec.type} records`)
    case 'dpo':
      if (rec.type !== 'preference') throw new DataError(`stage dpo trains on preference records (prompt/chosen/rejected), not ${rec.type} records`)
      if (!conversational)
        return { conversational, lines: [{ instruction: rec.prompt, input: '', chosen: plain(rec.chosen, 'chosen'), rejected: plain(rec.rejected, 'rejected') }] }
      return { conversational, lines: [{ messages: rec.prompt, chosen: answer(rec.chosen, 'chosen'), rejected: answer(rec.rejected, 'rejected') }] }
    case 'kto': {
      // A pair gives one desirable and one undesirable example, as Tunebench trains it.
      const unpaired: { completion: Text; label: boolean }[] =
        rec.type === 'unpaired' ? [{ completion: rec.completion, label: rec.label }]
          : rec.type === 'preference' ? [{ completion: rec.chosen, label: true }, { completion: rec.rejected, label: false }]
            : []
      if (!unpaired.length) throw new DataError(`stage kto trains on prompt/completion/label records, not ${rec.type} records`)
      const prompt = (rec as { prompt: Text }).prompt
      return {
        conversational,
        lines: unpaired.map((u) =>
          conversational
            ? { messages: [...(prompt as Message[]), answer(u.completion, 'completion')], kto_tag: u.label }
            : { instruction: prompt, input: '', output: plain(u.completion, 'completion'), kto_tag: u.label })
      }
    }
    default:
      throw new DataError(`stage ${stage} has no LLaMA-Factory dataset format`)
  }
}

/** Whether LLaMA-Factory's sharegpt reader takes the conversation: an optional system turn, then
 *  user (or tool) and assistant turns alternating; the answer last for sft/kto, the prompt ending
 *  on a user turn for pairs. Others it skips as "abnormal". */
function sharegptReadable(line: Record<string, unknown>, ranking: boolean): boolean {
  let msgs = line.messages as Message[]
  if (msgs[0]?.role === 'system') msgs = msgs.slice(1)
  if (msgs.length === 0 || msgs.length % 2 !== (ranking ? 1 : 0)) return false
  return msgs.every((m, i) => (i % 2 === 0 ? m.role === 'user' || m.role === 'tool' : m.role === 'assistant'))
}

/** Each record of the source as Tunebench reads it, with where it is (for errors). */
async function* sourceRecords(source: DatasetSource): AsyncGenerator<{ rec: () => TrainingRecord; at: ReturnType<typeof where> }> {
  if (!source.llamaFactory) {
    for await (const row of readRows(source.file)) yield { rec: () => parseTrlRecord(row.value), at: where(source.file, row.kind, row.index) }
    return
  }
  const { entry, infoFile } = source.llamaFactory
  const { format, mapping, tags } = lfEntryMapping(entry, source.name, (await inspectFile(source.file)).columns, infoFile)
  for await (const row of readRecords(source.file, { format, mapping, tags }))
    yield { rec: () => storeRecordToTrl(row.record), at: where(source.file, row.kind, row.index) }
}

/** The source's lines in LLaMA-Factory's format, checked: one formatting for the whole file. */
/** What converting a file found: its formatting, and the examples LLaMA-Factory reads otherwise. */
interface Seen {
  conversational: boolean | null
  records: number
  /** Examples LLaMA-Factory's sharegpt reader skips. */
  unreadable: number
  /** Records that became two examples (pairs given to KTO). */
  split: number
  /** SFT prompt/completion records whose prompt holds assistant turns (trained by LLaMA-Factory). */
  history: number
}

const newSeen = (): Seen => ({ conversational: null, records: 0, unreadable: 0, split: 0, history: 0 })

async function* convertedLines(source: DatasetSource, stage: TrainingStage, seen: Seen): AsyncGenerator<string> {
  for await (const { rec, at } of sourceRecords(source)) {
    let out: ReturnType<typeof lfLines>
    try {
      const r = rec()
      out = lfLines(r, stage)
      seen.records++
      if (out.lines.length > 1) seen.split++
      if (stage === 'sft' && r.type === 'prompt_completion' && Array.isArray(r.prompt) && r.prompt.some((m) => m.role === 'assistant')) seen.history++
    } catch (err) {
      if (err instanceof DataError) throw err.at(at)
      throw new DataError((err as Error).message, at)
    }
    if (seen.conversational === null) seen.conversational = out.conversational
    else if (seen.conversational !== out.conversational)
      throw new DataError(`is ${out.conversational ? 'conversational' : 'plain text'} but the records before it are ${seen.conversational ? 'conversational' : 'plain text'}; a LLaMA-Factory dataset has one formatting`, at)
    for (const line of out.lines) {
      if (out.conversational && !sharegptReadable(line, stage === 'dpo')) seen.unreadable++
      yield JSON.stringify(line) + '\n'
    }
  }
}

const CHUNK = 1 << 20

async function converted(source: DatasetSource, name: string, stage: TrainingStage, maxSamples: number | null): Promise<LfDataset> {
  const file = `${name}.jsonl`
  // Read once to check every record and count the bytes; written by reading again.
  const seen = newSeen()
  let bytes = 0
  let lines = 0
  for await (const line of convertedLines(source, stage, seen)) {
    bytes += Buffer.byteLength(line)
    lines++
  }
  if (lines === 0) throw new DataError('no records', { file: source.file })
  const notes = [
    seen.unreadable && `${seen.unreadable} of ${lines} examples are conversations LLaMA-Factory skips as abnormal (it reads an optional system turn, then user and assistant turns alternating, ${stage === 'dpo' ? 'the prompt ending on a user turn' : 'ending on the answer'})`,
    seen.history && `${seen.history} of ${seen.records} records have assistant turns in the prompt, which Tunebench does not train on and LLaMA-Factory does (mask_history: true trains the last turn only)`,
    seen.split && maxSamples !== null && `${seen.split} pairs are each written as a desirable and an undesirable example, so max_samples (${maxSamples}), which counts records in Tunebench, counts examples in LLaMA-Factory`
  ].filter((n): n is string => typeof n === 'string')
  const warning = notes.length ? `${name}: ${notes.join('; ')}` : null
  return {
    name, file, bytes, entry: lfEntry(stage, file, seen.conversational!), plain: !seen.conversational, warning,
    write: (folder) =>
      folder.stream(file, async (write) => {
        let buf: string[] = []
        let size = 0
        for await (const line of convertedLines(source, stage, newSeen())) {
          buf.push(line)
          size += line.length
          if (size >= CHUNK) {
            await write(Buffer.from(buf.join(''), 'utf8'))
            buf = []
            size = 0
          }
        }
        if (buf.length) await write(Buffer.from(buf.join(''), 'utf8'))
      })
  }
}
