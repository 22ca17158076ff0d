// Validates a local Hugging Face model folder and reads its facts. Every failure names the file
// and, where it applies, the field or tensor that is wrong, because the user has to fix it by hand.
// What the engine can load (architectures, tensor dtypes) comes from the engine itself, so a
// folder that opens here also loads for training.
import { readFile, stat } from 'node:fs/promises'
import { homedir } from 'node:os'
import { basename, join, resolve } from 'node:path'
import { engineFacts } from '../../../native/index'
import type { EngineLimits } from '../../../preload/types/engine'
import type { ModelFacts, ModelMoe } from '../../../preload/types/models'
import { fusedExpertsOf, modelMemory, modelShape, weightDtypeOf, type EngineFactsForPlan } from '../training/memoryPlan'
import { engineForPlan } from '../training/planEngine'
import { readMoeConfig, type MoeConfig } from './moe'
import { readSafetensorsHeader, type TensorEntry } from './safetensors'
import { compileChatTemplate, describeJsonError, readChatTemplateSource, tokenizerJsonProblem } from './tokenizerFiles'

/** The engine facts a model folder is checked against. */
export type ModelLimits = Pick<EngineLimits, 'architectures' | 'dtypes'>

export class ModelFolderError extends Error {
  constructor(message: string) {
    super(message)
    this.name = 'ModelFolderError'
  }
}

const torchDtypeOf: Record<string, string> = { BF16: 'bfloat16', F16: 'float16', F32: 'float32', F64: 'float64' }

/** A folder path as typed or pasted: trimmed, ~ expanded as a shell would, made absolute. */
export function typedPath(p: string): string {
  const t = p.trim()
  return resolve(t === '~' || t.startsWith('~/') ? homedir() + t.slice(1) : t)
}

export async function inspectModelFolder(
  dirInput: string, limits: ModelLimits = engineFacts(), planEngine: EngineFactsForPlan = engineForPlan()
): Promise<ModelFacts> {
  if (typeof dirInput !== 'string' || dirInput.trim() === '') throw new ModelFolderError('No folder given: enter the path of a model folder')
  const dir = typedPath(dirInput)
  const dirStat = await stat(dir).catch(() => null)
  if (!dirStat) throw new ModelFolderError(`Folder not found: ${dir}`)
  if (!dirStat.isDirectory()) throw new ModelFolderError(`Not a folder: ${dir}`)

  const config = await readJsonObject(dir, 'config.json')
  const architecture = readArchitecture(config, limits.architectures)
  const field = (name: string, fallback?: number): number => positiveInt(config, name, fallback)
  const layers = field('num_hidden_layers')
  const hidden = field('hidden_size')
  const intermediate = field('intermediate_size')
  const heads = field('num_attention_heads')
  const kvHeads = field('num_key_value_heads', heads)
  const vocab = field('vocab_size')
  if (heads % kvHeads !== 0) {
    throw new ModelFolderError(`config.json: num_attention_heads (${heads}) is not a multiple of num_key_value_heads (${kvHeads})`)
  }
  if (config.head_dim === undefined && hidden % heads !== 0) {
    throw new ModelFolderError(`config.json: hidden_size (${hidden}) is not divisible by num_attention_heads (${heads}) and head_dim is not given`)
  }
  const headDim = field('head_dim', hidden / heads)
  const tiedEmbeddings = config.tie_word_embeddings === undefined ? false : config.tie_word_embeddings === true
  let moeConfig: MoeConfig | null
  try {
    moeConfig = readMoeConfig(config, layers)
  } catch (err) {
    rethrowAsFolderError(err)
  }

  const weights = await readWeights(dir)
  for (const [name, tensor] of weights.tensors)
    if (!limits.dtypes.includes(tensor.dtype))
      throw new ModelFolderError(
        `${weights.fileOf(name)}: tensor '${name}' has dtype ${tensor.dtype}, which the engine cannot load (it reads ${limits.dtypes.join(', ')})`
      )
  const embed = weights.tensors.get('model.embed_tokens.weight')
  if (!embed) throw new ModelFolderError(`${weights.source}: no tensor 'model.embed_tokens.weight' (is this a ${architecture} checkpoint?)`)
  if (embed.shape.length !== 2 || embed.shape[0] !== vocab || embed.shape[1] !== hidden) {
    throw new ModelFolderError(
      `${weights.source}: 'model.embed_tokens.weight' has shape ${JSON.stringify(embed.shape)} but config.json says vocab_size=${vocab}, hidden_size=${hidden}`
    )
  }
  const lastLayer = `model.layers.${layers - 1}.self_attn.q_proj.weight`
  if (!weights.tensors.has(lastLayer)) {
    throw new ModelFolderError(`${weights.source}: no tensor '${lastLayer}' although config.json says num_hidden_layers=${layers}`)
  }
  if (!tiedEmbeddings && !weights.tensors.has('lm_head.weight')) {
    throw new ModelFolderError(`${weights.source}: no tensor 'lm_head.weight' and config.json does not set tie_word_embeddings`)
  }

  const experts = moeConfig ? checkExperts(moeConfig, layers, hidden, weights) : null

  let parameters = 0
  let weightBytes = 0
  const dtypeCounts = new Map<string, number>()
  for (const tensor of weights.tensors.values()) {
    const count = tensor.shape.reduce((a, b) => a * b, 1)
    parameters += count
    weightBytes += tensor.dataOffsets[1] - tensor.dataOffsets[0]
    dtypeCounts.set(tensor.dtype, (dtypeCounts.get(tensor.dtype) ?? 0) + count)
  }
  const tensorDtypes = [...dtypeCounts.keys()].sort()
  const commonDtype = [...dtypeCounts.entries()].sort((a, b) => b[1] - a[1])[0]![0]
  const configDtype = config.torch_dtype ?? config.dtype
  const dtype = typeof configDtype === 'string' ? configDtype : (torchDtypeOf[commonDtype] ?? commonDtype.toLowerCase())

  await readTokenizer(dir)
  const tokenizerConfig = await readJsonObject(dir, 'tokenizer_config.json')
  // The template is compiled now, so that a broken one is named when the folder is opened
  // rather than at the first chat or training step.
  const chatTemplate = await readChatTemplateSource(dir, tokenizerConfig)
    .then((t) => (t ? (compileChatTemplate(t), true) : false))
    .catch(rethrowAsFolderError)

  return {
    dir,
    name: basename(dir),
    architecture,
    modelType: typeof config.model_type === 'string' ? config.model_type : '',
    layers,
    hidden,
    intermediate,
    heads,
    kvHeads,
    headDim,
    vocab,
    dtype,
    tensorDtypes,
    parameters,
    activeParameters: parameters - (experts?.idleParameters ?? 0),
    ...(experts ? { moe: experts.moe } : {}),
    tensorCount: weights.tensors.size,
    shards: weights.shards,
    weightBytes,
    tiedEmbeddings,
    chatTemplate,
    memory: modelMemory(modelShape(config, weightDtypeOf(weights.tensors), { fusedExperts: fusedExpertsOf(weights.tensors) }), planEngine)
  }
}

/**
 * A Qwen3-MoE checkpoint's sparse layers against its config: each has the router
 * (mlp.gate.weight [E, C]) and its experts, per expert (mlp.experts.{e}.gate_proj.weight
 * [Im, C], up_proj [Im, C], down_proj [C, Im]) or fused as transformers 5 writes them
 * (mlp.experts.gate_up_proj [E, 2Im, C], mlp.experts.down_proj [E, C, Im]); each dense layer has
 * its MLP. Returns the facts and the parameters a token leaves idle: the experts the router does
 * not pick, (E - k) of each sparse layer's E, counted from the tensors' shapes.
 */
function checkExperts(m: MoeConfig, layers: number, hidden: number, weights: Weights): { moe: ModelMoe; idleParameters: number } {
  const E = m.experts, Im = m.expertIntermediate, C = hidden
  const why = `config.json makes it sparse: num_experts=${E}, decoder_sparse_step=${m.sparseStep}, mlp_only_layers=${JSON.stringify(m.mlpOnlyLayers)}`
  const need = (name: string, shape: number[], layerWhy: string): TensorEntry => {
    const t = weights.tensors.get(name)
    if (!t) throw new ModelFolderError(`${weights.source}: no tensor '${name}' (${layerWhy})`)
    if (t.shape.length !== shape.length || t.shape.some((d, i) => d !== shape[i]))
      throw new ModelFolderError(`${weights.fileOf(name)}: tensor '${name}' has shape ${JSON.stringify(t.shape)}, expected ${JSON.stringify(shape)} (${layerWhy})`)
    return t
  }
  const elements = (t: TensorEntry) => t.shape.reduce((a, b) => a * b, 1)
  const sparse = new Set(m.sparseLayers)
  const layouts = new Set<'per-expert' | 'fused'>()
  let idle = 0
  for (let l = 0; l < layers; l++) {
    const pre = `model.layers.${l}.mlp.`
    if (!sparse.has(l)) {
      if (!weights.tensors.has(`${pre}gate_proj.weight`))
        throw new ModelFolderError(`${weights.source}: no tensor '${pre}gate_proj.weight': layer ${l} is dense (decoder_sparse_step=${m.sparseStep}, mlp_only_layers=${JSON.stringify(m.mlpOnlyLayers)})`)
      continue
    }
    const layerWhy = `layer ${l}: ${why}, moe_intermediate_size=${Im}`
    need(`${pre}gate.weight`, [E, C], `the router of layer ${l}: ${why}`)
    let expertElements = 0
    if (weights.tensors.has(`${pre}experts.0.gate_proj.weight`)) {
      layouts.add('per-expert')
      for (let e = 0; e < E; e++) {
        const ex = `${pre}experts.${e}.`
        expertElements += elements(need(`${ex}gate_proj.weight`, [Im, C], layerWhy))
        expertElements += elements(need(`${ex}up_proj.weight`, [Im, C], layerWhy))
        expertElements += elements(need(`${ex}down_proj.weight`, [C, Im], layerWhy))
      }
    } else if (weights.tensors.has(`${pre}experts.gate_up_proj`) || weights.tensors.has(`${pre}experts.down_proj`)) {
      layouts.add('fused')
      expertElements += elements(need(`${pre}experts.gate_up_proj`, [E, 2 * Im, C], layerWhy))
      expertElements += elements(need(`${pre}experts.down_proj`, [E, C, Im], layerWhy))
    } else {
      throw new ModelFolderError(
        `${weights.source}: no tensor '${pre}experts.0.gate_proj.weight' (or the fused '${pre}experts.gate_up_proj' and '${pre}experts.down_proj'): ${layerWhy}`
      )
    }
    idle += ((E - m.expertsPerToken) * expertElements) / E
  }
  const expertLayout = layouts.size === 2 ? 'mixed' : layouts.has('fused') ? 'fused' : 'per-expert'
  return {
    moe: {
      experts: E, expertsPerToken: m.expertsPerToken, expertIntermediate: Im, sparseLayers: m.sparseLayers.length,
      normTopkProb: m.normTopkProb, routerAuxLossCoef: m.routerAuxLossCoef, expertLayout
    },
    idleParameters: idle
  }
}

async function exists(path: string): Promise<boolean> {
  return (await stat(path).catch(() => null)) !== null
}

export async function readJsonObject(dir: string, file: string): Promise<Record<string, unknown>> {
  const path = join(dir, file)
  let text: string
  try {
    text = await readFile(path, 'utf8')
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') throw new ModelFolderError(`${file} is missing in ${dir}`)
    throw new ModelFolderError(`${file}: cannot read (${(err as Error).message})`)
  }
  let value: unknown
  try {
    value = JSON.parse(text)
  } catch (err) {
    throw new ModelFolderError(`${file}: not valid JSON: ${describeJsonError(text, err)}`)
  }
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    throw new ModelFolderError(`${file}: expected a JSON object at the top level`)
  }
  return value as Record<string, unknown>
}

function readArchitecture(config: Record<string, unknown>, supported: readonly string[]): string {
  const list = config.architectures
  if (!Array.isArray(list) || typeof list[0] !== 'string') {
    throw new ModelFolderError('config.json: field "architectures" is missing or not a list of names')
  }
  const architecture = list[0]
  if (!supported.includes(architecture)) {
    throw new ModelFolderError(`config.json: architecture "${architecture}" is not supported (supported: ${supported.join(', ')})`)
  }
  return architecture
}

function positiveInt(config: Record<string, unknown>, name: string, fallback?: number): number {
  const value = config[name] ?? fallback
  if (value === undefined || value === null) throw new ModelFolderError(`config.json: field "${name}" is missing`)
  if (typeof value !== 'number' || !Number.isSafeInteger(value) || value <= 0) {
    throw new ModelFolderError(`config.json: field "${name}" must be a positive integer, got ${JSON.stringify(value)}`)
  }
  return value
}

/** The tensors of a model folder (model.safetensors or a sharded index), by name. */
export interface Weights {
  tensors: Map<string, TensorEntry>
  shards: number
  /** The file named in messages about tensors. */
  source: string
  /** The file holding a tensor. */
  fileOf(name: string): string
}

export async function readWeights(dir: string): Promise<Weights> {
  const single = join(dir, 'model.safetensors')
  if (await exists(single)) {
    const header = await readSafetensorsHeader(single).catch(rethrowAsFolderError)
    return { tensors: header.tensors, shards: 1, source: 'model.safetensors', fileOf: () => 'model.safetensors' }
  }
  if (await exists(join(dir, 'model.safetensors.index.json'))) return readShardedWeights(dir)
  const hasBin = (await exists(join(dir, 'pytorch_model.bin'))) || (await exists(join(dir, 'pytorch_model.bin.index.json')))
  throw new ModelFolderError(
    hasBin
      ? `${dir} has PyTorch .bin weights only; Tunebench reads safetensors (convert with transformers: save_pretrained(..., safe_serialization=True))`
      : `No weights in ${dir}: expected model.safetensors or model.safetensors.index.json`
  )
}

async function readShardedWeights(dir: string): Promise<Weights> {
  const indexFile = 'model.safetensors.index.json'
  const index = await readJsonObject(dir, indexFile)
  const weightMap = index.weight_map
  if (typeof weightMap !== 'object' || weightMap === null || Array.isArray(weightMap)) {
    throw new ModelFolderError(`${indexFile}: field "weight_map" is missing or not an object`)
  }
  const byShard = new Map<string, string[]>()
  for (const [tensor, shard] of Object.entries(weightMap as Record<string, unknown>)) {
    if (typeof shard !== 'string' || shard.includes('/') || shard.includes('\\')) {
      throw new ModelFolderError(`${indexFile}: weight_map["${tensor}"] must be a file name in the folder, got ${JSON.stringify(shard)}`)
    }
    byShard.set(shard, [...(byShard.get(shard) ?? []), tensor])
  }
  if (byShard.size === 0) throw new ModelFolderError(`${indexFile}: weight_map is empty`)
  const tensors = new Map<string, TensorEntry>()
  const shardOf = new Map<string, string>()
  for (const [shard, names] of byShard) {
    if (!(await exists(join(dir, shard)))) throw new ModelFolderError(`${indexFile} lists shard ${shard}, which is missing in ${dir}`)
    const header = await readSafetensorsHeader(join(dir, shard)).catch(rethrowAsFolderError)
    for (const name of names) {
      const entry = header.tensors.get(name)
      if (!entry) throw new ModelFolderError(`${indexFile} maps tensor '${name}' to ${shard}, but ${shard} has no such tensor`)
      tensors.set(name, entry)
      shardOf.set(name, shard)
    }
  }
  return { tensors, shards: byShard.size, source: indexFile, fileOf: (name) => shardOf.get(name)! }
}

function rethrowAsFolderError(err: unknown): never {
  throw new ModelFolderError((err as Error).message)
}

async function readTokenizer(dir: string): Promise<void> {
  const problem = tokenizerJsonProblem(await readJsonObject(dir, 'tokenizer.json'))
  if (problem) throw new ModelFolderError(`tokenizer.json: ${problem}`)
}
