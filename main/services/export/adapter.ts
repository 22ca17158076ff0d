// A PEFT LoRA adapter folder read for export: its config and, for each adapted base weight,
// A [r, in] and B [out, r]; and the merged view W' = W + s·B·A of a base checkpoint.
import { existsSync } from 'node:fs'
import { join } from 'node:path'
import { openSafetensors, readJson, type TensorInfo, type TensorSource } from './checkpoint'
import { expertSlice, fusedName, parseExpertName } from './experts'

export interface LoraPair {
  /** The adapted base weight, e.g. model.layers.0.self_attn.q_proj.weight. */
  base: string
  /** Names of A and B in adapter_model.safetensors. */
  a: string
  b: string
  rank: number
  inFeatures: number
  outFeatures: number
  /** DoRA's magnitude m [out] in adapter_model.safetensors, or null for plain LoRA. */
  magnitude: string | null
}

export interface PeftAdapter {
  dir: string
  config: Record<string, unknown>
  rank: number
  alpha: number
  rslora: boolean
  dora: boolean
  /** s = alpha / r, or alpha / sqrt(r) with rsLoRA. */
  scale: number
  pairs: Map<string, LoraPair>
  tensors: TensorSource
}

export const ADAPTER_CONFIG = 'adapter_config.json'
export const ADAPTER_WEIGHTS = 'adapter_model.safetensors'

// base_model.model.<module path>.lora_A[.default].weight  ->  <module path>.weight
const LORA_KEY = /^base_model\.model\.(.+)\.lora_([AB])(?:\.[A-Za-z0-9_]+)?\.weight$/
// DoRA: base_model.model.<module path>.lora_magnitude_vector[.default][.weight]
const MAGNITUDE_KEY = /^base_model\.model\.(.+)\.lora_magnitude_vector(?:\.[A-Za-z0-9_]+)?$/

export async function readPeftAdapter(dir: string): Promise<PeftAdapter> {
  const configPath = join(dir, ADAPTER_CONFIG)
  const weightsPath = join(dir, ADAPTER_WEIGHTS)
  if (!existsSync(configPath)) throw new Error(`${dir} is not a PEFT adapter folder: ${ADAPTER_CONFIG} is missing`)
  if (!existsSync(weightsPath)) throw new Error(`${dir} is not a PEFT adapter folder: ${ADAPTER_WEIGHTS} is missing`)
  const config = await readJson(configPath)
  if (config.peft_type !== 'LORA') throw new Error(`${configPath}: peft_type ${JSON.stringify(config.peft_type)} is not LORA`)
  const rank = config.r
  if (typeof rank !== 'number' || !Number.isInteger(rank) || rank < 1) throw new Error(`${configPath}: field "r" must be a positive integer`)
  const alpha = config.lora_alpha === undefined ? 8 : config.lora_alpha
  if (typeof alpha !== 'number' || !(alpha > 0)) throw new Error(`${configPath}: field "lora_alpha" must be a positive number`)
  if (config.fan_in_fan_out === true) throw new Error(`${configPath}: fan_in_fan_out=true adapters are not supported`)
  for (const k of ['rank_pattern', 'alpha_pattern'] as const) {
    const v = config[k]
    if (v && typeof v === 'object' && Object.keys(v).length > 0) throw new Error(`${configPath}: "${k}" (per-module ranks) is not supported`)
  }
  // PEFT's LoRA on whole 3-D parameters: what PEFT >= 0.18 with transformers 5 makes of
  // gate_proj/up_proj/down_proj targets on a Qwen3-MoE's fused experts (target_parameters
  // ["gate_up_proj", "down_proj"], one A and B per fused tensor spanning every expert).
  const tp = config.target_parameters
  if (Array.isArray(tp) ? tp.length > 0 : typeof tp === 'string' && tp !== '')
    throw new Error(`${configPath}: "target_parameters" ${JSON.stringify(tp)} (PEFT's LoRA on whole 3-D parameters, as PEFT with transformers 5 adapts fused experts) is not supported: its A and B span all experts at once; adapt the experts as per-expert modules (mlp.experts.{e}.gate_proj ..., as Tunebench, transformers 4 and LLaMA-Factory train them)`)
  const rslora = config.use_rslora === true
  const tensors = await openSafetensors(weightsPath)
  const halves = new Map<string, { a?: TensorInfo; b?: TensorInfo; m?: TensorInfo }>()
  for (const t of tensors.list()) {
    const mag = MAGNITUDE_KEY.exec(t.name.replace(/\.weight$/, ''))
    if (mag) {
      const base = `${mag[1]}.weight`
      halves.set(base, { ...halves.get(base), m: t })
      continue
    }
    const m = LORA_KEY.exec(t.name)
    if (!m) throw new Error(`${weightsPath}: tensor '${t.name}' is not a LoRA weight (expected base_model.model.<module>.lora_A.weight / lora_B.weight)`)
    const base = `${m[1]}.weight`
    const h = halves.get(base) ?? {}
    h[m[2] === 'A' ? 'a' : 'b'] = t
    halves.set(base, h)
  }
  const pairs = new Map<string, LoraPair>()
  const dora = config.use_dora === true
  for (const [base, { a, b, m }] of halves) {
    const module = base.replace(/\.weight$/, '')
    if (!a || !b) throw new Error(`${weightsPath}: ${module} has lora_${a ? 'B' : 'A'} missing`)
    if (a.shape.length !== 2 || b.shape.length !== 2 || a.shape[0] !== rank || b.shape[1] !== rank)
      throw new Error(`${weightsPath}: ${a.name} ${JSON.stringify(a.shape)} and ${b.name} ${JSON.stringify(b.shape)} are not [r, in] and [out, r] with r = ${rank}`)
    if (dora && !m) throw new Error(`${weightsPath}: use_dora is set but ${module} has no lora_magnitude_vector`)
    if (!dora && m) throw new Error(`${weightsPath}: ${m.name} is a DoRA magnitude but ${ADAPTER_CONFIG} does not set use_dora`)
    if (m && (m.shape.length !== 1 || m.shape[0] !== b.shape[0]))
      throw new Error(`${weightsPath}: ${m.name} has shape ${JSON.stringify(m.shape)}, expected [${b.shape[0]}]`)
    pairs.set(base, { base, a: a.name, b: b.name, rank, inFeatures: a.shape[1]!, outFeatures: b.shape[0]!, magnitude: m?.name ?? null })
  }
  if (pairs.size === 0) throw new Error(`${weightsPath}: no LoRA weights`)
  return {
    dir, config, rank, alpha, rslora, dora,
    scale: rslora ? alpha / Math.sqrt(rank) : alpha / rank, pairs, tensors
  }
}

/** W += s · B · A in place; W is [out, in] row-major. */
export function addLoraDelta(w: Float32Array, a: Float32Array, b: Float32Array, p: LoraPair, scale: number): void {
  const { rank: r, inFeatures: n, outFeatures: m } = p
  if (w.length !== m * n) throw new Error(`${p.base}: ${w.length} values but the adapter says [${m}, ${n}]`)
  for (let o = 0; o < m; o++) {
    const row = o * n
    for (let k = 0; k < r; k++) {
      const s = scale * b[o * r + k]!
      if (s === 0) continue
      const ak = k * n
      for (let i = 0; i < n; i++) w[row + i]! += s * a[ak + i]!
    }
  }
}

/** DoRA (as PEFT): W' = m / ‖W + s·B·A‖ · (W + s·B·A), the norm of each output row. */
export function applyDoraMagnitude(w: Float32Array, magnitude: Float32Array, p: LoraPair): void {
  const n = p.inFeatures
  for (let o = 0; o < p.outFeatures; o++) {
    let sq = 0
    for (let i = 0; i < n; i++) sq += w[o * n + i]! ** 2
    const k = magnitude[o]! / Math.sqrt(sq)
    for (let i = 0; i < n; i++) w[o * n + i]! *= k
  }
}

/** The base weights with the adapter folded in; tensors the adapter does not touch pass through.
 *  A Qwen3-MoE adapter names each expert's matrices (mlp.experts.{e}.gate_proj, ...); in a base
 *  that stores them fused (mlp.experts.gate_up_proj [E, 2I, C], mlp.experts.down_proj [E, C, I])
 *  each delta goes into its expert's slice of the fused tensor, so the output keeps the base's
 *  layout. */
export function mergedSource(base: TensorSource, adapter: PeftAdapter): TensorSource {
  const file = join(adapter.dir, ADAPTER_WEIGHTS)
  const direct = new Map<string, LoraPair>()
  const sliced = new Map<string, { pair: LoraPair; offset: number }[]>()
  for (const p of adapter.pairs.values()) {
    const w = base.info(p.base)
    if (w) {
      if (w.shape.length !== 2 || w.shape[0] !== p.outFeatures || w.shape[1] !== p.inFeatures)
        throw new Error(`${file}: ${p.base} is ${JSON.stringify(w.shape)} in the base but the adapter is for [${p.outFeatures}, ${p.inFeatures}]`)
      direct.set(p.base, p)
      continue
    }
    let slice: ReturnType<typeof expertSlice>
    try {
      slice = expertSlice((n) => base.info(n)?.shape, p.base)
    } catch (err) {
      throw new Error(`${file}: adapts '${p.base}': ${(err as Error).message}`)
    }
    if (!slice) {
      const e = parseExpertName(p.base)
      throw new Error(`${file}: adapts '${p.base}', which the base model does not have` +
        (e ? ` (neither per expert nor in a fused '${fusedName(e.layer, e.projection)}')` : ''))
    }
    if (slice.rows !== p.outFeatures || slice.cols !== p.inFeatures)
      throw new Error(`${file}: ${p.base} is [${slice.rows}, ${slice.cols}] in the base's '${slice.tensor}' but the adapter is for [${p.outFeatures}, ${p.inFeatures}]`)
    sliced.set(slice.tensor, [...(sliced.get(slice.tensor) ?? []), { pair: p, offset: slice.offset }])
  }
  const fold = async (w: Float32Array, p: LoraPair): Promise<void> => {
    addLoraDelta(w, await adapter.tensors.readF32(p.a), await adapter.tensors.readF32(p.b), p, adapter.scale)
    if (p.magnitude) applyDoraMagnitude(w, await adapter.tensors.readF32(p.magnitude), p)
  }
  return {
    list: () => base.list(),
    info: (name) => base.info(name),
    async readF32(name) {
      const w = await base.readF32(name)
      const p = direct.get(name)
      if (p) await fold(w, p)
      for (const { pair, offset } of sliced.get(name) ?? [])
        await fold(w.subarray(offset, offset + pair.outFeatures * pair.inFeatures), pair)
      return w
    }
  }
}

/** Whether the adapter adapts a Qwen3-MoE expert (mlp.experts.{e}.*). */
export function adaptsExperts(adapter: Pick<PeftAdapter, 'pairs'>): boolean {
  for (const p of adapter.pairs.values()) if (parseExpertName(p.base)) return true
  return false
}
