// Export of a run or a PEFT adapter in the formats people run models with. Each format makes an
// ExportPlan (its files, their expected size, warnings, and the writer); exportModel stages the
// files in the destination and renames them into place only when all are written.
import { existsSync } from 'node:fs'
import { readFile, stat } from 'node:fs/promises'
import { basename, isAbsolute, join, resolve } from 'node:path'
import type { TrainingConfig } from '../../../preload/types/training'
import type { ExportDtype, ModelExportProgress, ModelExportRequest, ModelExportResult } from '../../../preload/types/export'
import { EXPORT_DTYPES, EXPORT_FORMATS } from '../../../preload/types/export'
import { ADAPTER_CONFIG, ADAPTER_WEIGHTS, adaptsExperts, mergedSource, readPeftAdapter, type PeftAdapter } from './adapter'
import { openModelWeights, openSafetensors, readJson, withReplacements, type TensorSource } from './checkpoint'
import type { FloatDtype } from './dtype'
import { GGUF_ADAPTER_FILE, GGUF_MODEL_FILE, ggufHparams, planGguf, planGgufLora } from './ggufModel'
import { ggufTokenFacts } from './ggufTokenizer'
import { ollamaModelfile } from './ollama'
import { planLlamaFactory } from './llamafactory'
import { planMerged, writeMerged } from './merged'
import { vllmWarnings } from './vllm'
import { withStagedFolder, type StagedFolder } from './staged'

/** What every format reads from: the base folder, the adapter (if any) and the weights to write. */
export interface ExportInputs {
  modelDir: string
  /** The base model's config.json. */
  config: Record<string, unknown>
  adapter: PeftAdapter | null
  /** The base weights (for a full fine-tuning run: the trained weights). */
  base: TensorSource
  /** What a merged export writes: base with the adapter folded in, or base when there is none. */
  weights: TensorSource
  run: { dir: string; config: TrainingConfig } | null
}

export interface ExportPlan {
  files: string[]
  /** Expected bytes of all files. */
  bytes: number
  warnings: string[]
  usage(dir: string): string[]
  write(folder: StagedFolder): Promise<void>
}

export interface ExportHooks {
  onProgress?: (p: ModelExportProgress) => void
  signal?: AbortSignal
}

/** A run folder's config (run.json), checked. */
async function readRunFolder(runDir: string): Promise<{ dir: string; config: TrainingConfig }> {
  const dir = resolve(runDir)
  const runJson = join(dir, 'run.json')
  if (!existsSync(runJson)) throw new Error(`${dir} is not a run folder: run.json is missing`)
  return { dir, config: (await readJson(runJson)) as unknown as TrainingConfig }
}

/** The request's base, adapter and weights, checked. */
export async function resolveInputs(req: ModelExportRequest): Promise<ExportInputs> {
  if (req.run && req.adapter) throw new Error('Give one of a run folder (--run) or an adapter folder (--adapter), not both')
  if (!req.run && !req.adapter && !req.model) throw new Error('Give a run folder (--run), an adapter folder (--adapter), or a base model folder (--model) to export the base alone')
  let run: ExportInputs['run'] = null
  let adapterDir: string | null = null
  let fullState: string | null = null
  let modelDir = req.model ? resolve(req.model) : null
  if (req.run) {
    run = await readRunFolder(req.run)
    const { dir, config } = run
    modelDir ??= resolve(dir, config.model_name_or_path)
    if (config.finetuning_type === 'full') {
      fullState = join(dir, 'training_state.bin')
      if (!existsSync(fullState)) throw new Error(`${dir} has no training_state.bin: the full fine-tuning run has not finished`)
    } else {
      for (const f of [ADAPTER_CONFIG, ADAPTER_WEIGHTS])
        if (!existsSync(join(dir, f))) throw new Error(`${dir} has no ${f}: the run has not finished`)
      adapterDir = dir
    }
  } else if (req.adapter) {
    adapterDir = resolve(req.adapter)
  }
  const adapter = adapterDir ? await readPeftAdapter(adapterDir) : null
  if (!modelDir) {
    const named = adapter?.config.base_model_name_or_path
    if (typeof named !== 'string' || !named)
      throw new Error(`${join(adapterDir!, ADAPTER_CONFIG)} names no base_model_name_or_path: give the base model folder (--model)`)
    modelDir = isAbsolute(named) ? named : resolve(adapterDir!, named)
    if (!existsSync(join(modelDir, 'config.json')))
      throw new Error(`The adapter's base model ${JSON.stringify(named)} is not a local model folder: give the base model folder (--model)`)
  }
  if (!(await stat(modelDir).catch(() => null))?.isDirectory()) throw new Error(`Base model folder not found: ${modelDir}`)
  const config = await readJson(join(modelDir, 'config.json'))
  let base = await openModelWeights(modelDir)
  if (fullState) base = withReplacements(base, await trainedWeights(fullState))
  let weights: TensorSource | null = adapter ? null : base
  return {
    modelDir, config, adapter, base, run,
    // Merged (and checked against the base's shapes) on first use, by the formats that write
    // merged weights; gguf-lora and peft read the adapter alone.
    get weights() {
      return (weights ??= mergedSource(base, adapter!))
    }
  }
}

/** A full fine-tuning run's weights: the training state's tensors that are not optimiser moments. */
async function trainedWeights(file: string): Promise<TensorSource> {
  const state = await openSafetensors(file)
  const weights = state.list().filter((t) => !t.name.endsWith('.exp_avg') && !t.name.endsWith('.exp_avg_sq'))
  const names = new Set(weights.map((t) => t.name))
  return {
    list: () => weights,
    info: (name) => (names.has(name) ? state.info(name) : undefined),
    readF32: (name) => state.readF32(name)
  }
}

function floatDtype(dtype: ExportDtype | undefined, format: string): FloatDtype | undefined {
  if (dtype === undefined) return undefined
  if (dtype === 'q8_0') throw new Error(`--dtype q8_0 is for GGUF files; ${format} is written in f32, f16 or bf16`)
  return dtype.toUpperCase() as FloatDtype
}

/** For the formats of an adapter alone. */
function needAdapter(inputs: ExportInputs, format: string): PeftAdapter {
  if (inputs.adapter) return inputs.adapter
  throw new Error(inputs.run
    ? `${format} export needs a LoRA run or adapter; a full fine-tuning run has no adapter (export it as merged or gguf)`
    : `${format} export needs a run (--run) or an adapter folder (--adapter), not a base model alone`)
}

async function planPeft(inputs: ExportInputs): Promise<ExportPlan> {
  const adapter = needAdapter(inputs, 'peft')
  const files = [ADAPTER_CONFIG, ADAPTER_WEIGHTS]
  const sizes = await Promise.all(files.map(async (f) => (await stat(join(adapter.dir, f))).size))
  return {
    files,
    bytes: sizes.reduce((a, b) => a + b, 0),
    warnings: vllmWarnings(adapter.config, { experts: adaptsExperts(adapter) }),
    usage: (dir) => [`PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained("${inputs.modelDir}"), "${dir}")`,
      `vllm serve ${inputs.modelDir} --enable-lora --lora-modules adapter=${dir}`],
    write: async (folder) => {
      for (const f of files) await folder.stream(f, async (write) => write(await readFile(join(adapter.dir, f))))
    }
  }
}

/** `ollama`: model.gguf (merged, or the base with adapter.gguf beside it) and a Modelfile. */
async function planOllama(inputs: ExportInputs, req: ModelExportRequest): Promise<ExportPlan> {
  if (req.ollamaAdapter) {
    needAdapter(inputs, 'ollama --ollama-adapter')
    const { arch } = ggufHparams(inputs.config)
    if (OLLAMA_ENGINE_ARCHS.includes(arch))
      throw new Error(`ollama --ollama-adapter: Ollama runs ${arch} models on its own engine, which does not load LoRA adapters (the model fails to start with "loras are not yet implemented"); export without --ollama-adapter, for one GGUF with the adapter merged in`)
  }
  const model = await planGguf(req.ollamaAdapter ? { ...inputs, weights: inputs.base } : inputs, req.dtype)
  const lora = req.ollamaAdapter ? await planGgufLora(inputs) : null
  const facts = await ggufTokenFacts(inputs.modelDir, inputs.config)
  const { modelfile, warnings } = ollamaModelfile({
    modelFile: GGUF_MODEL_FILE, adapterFile: lora ? GGUF_ADAPTER_FILE : undefined, chatTemplate: facts.chatTemplate,
    eosTokens: facts.eosTokens, bosToken: facts.bosToken, ggufAddsBos: facts.addsBos
  })
  const text = Buffer.from(modelfile, 'utf8')
  return {
    files: [...model.files, ...(lora?.files ?? []), OLLAMA_MODELFILE],
    bytes: model.bytes + (lora?.bytes ?? 0) + text.length,
    warnings: [...model.warnings, ...(lora?.warnings ?? []), ...warnings],
    usage: (dir) => [`cd ${dir} && ollama create ${ollamaName(inputs)} -f ${OLLAMA_MODELFILE}`, `ollama run ${ollamaName(inputs)}`],
    write: async (folder) => {
      await model.write(folder)
      await lora?.write(folder)
      await folder.writeFile(OLLAMA_MODELFILE, text)
    }
  }
}

const OLLAMA_MODELFILE = 'Modelfile'

/** GGUF architectures Ollama runs on its own engine rather than llama.cpp's (its fs/ggml
 *  OllamaEngineRequired), whose runner refuses ADAPTER lines (runner/ollamarunner: "loras are
 *  not yet implemented"); llama and qwen2 go through llama.cpp, which applies them. */
const OLLAMA_ENGINE_ARCHS: string[] = ['qwen3moe']

/** A model name Ollama accepts (lowercase letters, digits, '-', '_', '.'), from the run or folder. */
function ollamaName(inputs: ExportInputs): string {
  const from = inputs.run?.dir ?? inputs.adapter?.dir ?? inputs.modelDir
  return basename(from).toLowerCase().replace(/[^a-z0-9._-]+/g, '-').replace(/^[-._]+|[-._]+$/g, '') || 'tunebench-model'
}

async function planFor(req: ModelExportRequest, inputs: ExportInputs): Promise<ExportPlan> {
  switch (req.format) {
    case 'peft':
      if (req.dtype) throw new Error('--dtype does not apply to a PEFT export (the adapter is copied as trained)')
      return planPeft(inputs)
    case 'merged': {
      const plan = planMerged(inputs.weights, inputs.modelDir, { dtype: floatDtype(req.dtype, 'merged'), maxShardBytes: req.maxShardBytes })
      return {
        files: plan.files, bytes: plan.bytes, warnings: [],
        usage: (dir) => [`AutoModelForCausalLM.from_pretrained("${dir}")`, `vllm serve ${dir}`],
        write: (folder) => writeMerged(folder, inputs.weights, inputs.modelDir, plan)
      }
    }
    case 'gguf':
      return planGguf(inputs, req.dtype)
    case 'gguf-lora':
      needAdapter(inputs, 'gguf-lora')
      return planGgufLora(inputs, req.dtype)
    case 'ollama':
      return planOllama(inputs, req)
    case 'llamafactory':
      throw new Error('unreachable: exportModel plans llamafactory from the run alone')
  }
}

export async function exportModel(req: ModelExportRequest, hooks: ExportHooks = {}): Promise<ModelExportResult> {
  if (!EXPORT_FORMATS.includes(req.format)) throw new Error(`Unknown export format ${JSON.stringify(req.format)} (one of ${EXPORT_FORMATS.join(', ')})`)
  if (req.dtype !== undefined && !EXPORT_DTYPES.includes(req.dtype)) throw new Error(`Unknown dtype ${JSON.stringify(req.dtype)} (one of ${EXPORT_DTYPES.join(', ')})`)
  if (!req.out?.trim()) throw new Error('No destination folder given (--out)')
  const out = resolve(req.out.trim())
  let plan: ExportPlan
  if (req.format === 'llamafactory') {
    // The hand-off is the run's config and data: it needs no weights (a failed run can go too).
    if (!req.run) throw new Error('llamafactory export needs a run (--run): its config and data are what LLaMA-Factory trains; an adapter folder alone has neither')
    if (req.dtype) throw new Error('--dtype does not apply to a llamafactory export (it writes a config and data, no weights)')
    const run = await readRunFolder(req.run)
    // A local base folder by its absolute path; a Hub id as it is (the cluster downloads it).
    const named = run.config.model_name_or_path
    const local = resolve(run.dir, named)
    plan = await planLlamaFactory({ run, modelDir: req.model ? resolve(req.model) : existsSync(local) ? local : named })
  } else {
    plan = await planFor(req, await resolveInputs(req))
  }
  await withStagedFolder(out, plan.files, {
    totalBytes: plan.bytes, signal: hooks.signal,
    onProgress: (p) => hooks.onProgress?.({ out, ...p })
  }, (folder) => plan.write(folder))
  const files = await Promise.all(plan.files.map(async (name) => ({ name, bytes: (await stat(join(out, name))).size })))
  return { format: req.format, dir: out, files, warnings: plan.warnings, usage: plan.usage(out) }
}
