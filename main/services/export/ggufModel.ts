// `gguf` and `gguf-lora`: a Llama / Qwen2 / Qwen3 / Qwen3-MoE checkpoint as one GGUF file for llama.cpp
// (tensors under llama.cpp's names, the model's hyperparameters, the tokenizer and the chat
// template), and a PEFT LoRA adapter alone as llama.cpp's adapter GGUF, both as llama.cpp's
// convert_hf_to_gguf.py / convert_lora_to_gguf.py write them:
//  - llama.cpp's `llama` architecture rotates interleaved pairs of q/k (GPT-J style RoPE) where
//    transformers' Llama rotates halves (rotate_half), so the rows of q_proj and k_proj (weight
//    and bias; in an adapter lora_B, whose rows are the same outputs) are permuted within each
//    head: row h·d + 2i + j takes row h·d + j·d/2 + i. Qwen2 and Qwen3 use NeoX RoPE in
//    llama.cpp too: no permutation.
//  - llama3 rope scaling is the rope_freqs.weight tensor of per-frequency divisors.
//  - Norms and 1-D tensors stay F32; Q8_0 needs rows of a multiple of 32 (else F16).
//  - Qwen3-MoE is llama.cpp's qwen3moe: per layer the router blk.N.ffn_gate_inp.weight [E, C]
//    (kept F32) and the experts stacked, blk.N.ffn_{gate,up}_exps.weight [E, I, C] and
//    ffn_down_exps.weight [E, C, I], from per-expert or fused (gate_up_proj) checkpoints, with
//    qwen3moe.expert_count, expert_used_count and expert_feed_forward_length. llama.cpp's
//    qwen3moe has no dense layer and always renormalises the top experts' weights: configs with
//    mlp_only_layers, decoder_sparse_step > 1 or norm_topk_prob false are refused.
//  - An adapter: blk.N.<name>.weight.lora_a = A [r, in] and .lora_b = B [out, r] as PEFT stores
//    them (ggml ne [in, r] and [r, out]) and adapter.lora.alpha; llama.cpp scales by alpha / r,
//    so rsLoRA's alpha / √r is written as alpha·√r. A Qwen3-MoE adapter's per-expert pairs are
//    stacked like the experts: blk.N.ffn_gate_exps.weight.lora_a [E, r, C], .lora_b [E, I, r].
import { basename } from 'node:path'
import type { ExportDtype } from '../../../preload/types/export'
import type { LoraPair, PeftAdapter } from './adapter'
import type { TensorInfo, TensorSource } from './checkpoint'
import {
  GGML_QUANT_VERSION, GgufMetadata, LLAMA_FTYPE, planGgufFile, writeGgufFile,
  type GgmlTypeName, type GgufTensor
} from './gguf'
import { addVocabMetadata, readGgufVocab } from './ggufTokenizer'
import { EXPERT_PROJECTIONS, fusedName, moeConfigOf, parseExpertName, perExpertName, type ExpertProjection } from './experts'
import type { ExportInputs, ExportPlan } from './index'

export type GgufArch = 'llama' | 'qwen2' | 'qwen3' | 'qwen3moe'

export const GGUF_ARCHITECTURES: Record<string, GgufArch> = {
  LlamaForCausalLM: 'llama', Qwen2ForCausalLM: 'qwen2', Qwen3ForCausalLM: 'qwen3', Qwen3MoeForCausalLM: 'qwen3moe'
}

export interface GgufHparams {
  hfArchitecture: string
  arch: GgufArch
  layers: number
  hidden: number
  intermediate: number
  heads: number
  kvHeads: number
  headDim: number
  vocab: number
  contextLength: number
  ropeTheta: number
  rmsEps: number
  tied: boolean
  /** llama3 rope scaling, or null. */
  llama3: { factor: number; low: number; high: number; originalContext: number } | null
  attentionBias: boolean
  mlpBias: boolean
  /** qwen3moe: every layer's MLP is the experts. */
  moe: { experts: number; expertsUsed: number; expertIntermediate: number } | null
}

type Json = Record<string, unknown>
const isObj = (v: unknown): v is Json => typeof v === 'object' && v !== null && !Array.isArray(v)

/** transformers' defaults where config.json leaves a field out. */
const DEFAULT_CONTEXT: Record<GgufArch, number> = { llama: 2048, qwen2: 32768, qwen3: 32768, qwen3moe: 32768 }

function positiveInt(config: Json, key: string, fallback?: number): number {
  const v = config[key] ?? fallback
  if (typeof v !== 'number' || !Number.isInteger(v) || v < 1) throw new Error(`config.json: "${key}" must be a positive integer (got ${JSON.stringify(config[key])})`)
  return v
}

function num(config: Json, key: string, fallback: number): number {
  const v = config[key] ?? fallback
  if (typeof v !== 'number' || !Number.isFinite(v)) throw new Error(`config.json: "${key}" must be a number (got ${JSON.stringify(config[key])})`)
  return v
}

/** The hyperparameters llama.cpp reads, from config.json; what it cannot represent is refused. */
export function ggufHparams(config: Json): GgufHparams {
  const archs = config.architectures
  const hfArchitecture = Array.isArray(archs) && typeof archs[0] === 'string' ? archs[0] : String(config.model_type ?? 'unknown')
  const arch = GGUF_ARCHITECTURES[hfArchitecture]
  if (!arch) throw new Error(`GGUF export supports ${Object.keys(GGUF_ARCHITECTURES).join(', ')}; this model is ${hfArchitecture}`)
  const act = config.hidden_act ?? config.hidden_activation
  if (act !== undefined && act !== 'silu') throw new Error(`config.json: hidden_act ${JSON.stringify(act)}; llama.cpp's ${arch} uses SiLU (SwiGLU)`)
  if (arch !== 'llama' && config.use_sliding_window === true)
    throw new Error(`config.json: use_sliding_window=true; llama.cpp's ${arch} has no sliding-window attention, so the GGUF would compute another model`)
  const hidden = positiveInt(config, 'hidden_size')
  const heads = positiveInt(config, 'num_attention_heads')
  const kvHeads = positiveInt(config, 'num_key_value_heads', heads)
  if (heads % kvHeads !== 0) throw new Error('config.json: num_attention_heads is not a multiple of num_key_value_heads')
  const headDim = config.head_dim === undefined || config.head_dim === null ? hidden / heads : positiveInt(config, 'head_dim')
  if (!Number.isInteger(headDim) || headDim % 2 !== 0) throw new Error(`config.json: head_dim ${headDim} is not an even integer`)
  if (arch === 'qwen2' && headDim * heads !== hidden)
    throw new Error(`config.json: head_dim × num_attention_heads (${headDim * heads}) is not hidden_size (${hidden}); llama.cpp's qwen2 needs them equal`)
  const rp = isObj(config.rope_parameters) ? config.rope_parameters : null
  const ropeTheta = num(config, 'rope_theta', rp && typeof rp.rope_theta === 'number' ? rp.rope_theta : 10000)
  let scaling = isObj(config.rope_scaling) ? config.rope_scaling : rp
  if (scaling && !('rope_type' in scaling) && !('type' in scaling)) scaling = null
  let llama3: GgufHparams['llama3'] = null
  if (scaling) {
    const type = String(scaling.rope_type ?? scaling.type)
    if (type === 'llama3') {
      if (arch !== 'llama') throw new Error(`config.json: llama3 rope scaling on ${hfArchitecture}; llama.cpp's ${arch} does not read rope_freqs`)
      const n = (k: string, d: number): number => {
        const v = scaling![k] ?? d
        if (typeof v !== 'number' || !Number.isFinite(v)) throw new Error(`config.json: rope_scaling.${k} must be a number`)
        return v
      }
      llama3 = {
        factor: n('factor', 8), low: n('low_freq_factor', 1), high: n('high_freq_factor', 4),
        originalContext: n('original_max_position_embeddings', typeof config.original_max_position_embeddings === 'number' ? config.original_max_position_embeddings : 8192)
      }
      if (llama3.low === llama3.high) throw new Error('config.json: rope_scaling low_freq_factor equals high_freq_factor')
    } else if (type !== 'default') {
      throw new Error(`config.json: rope_scaling type ${JSON.stringify(type)} is not supported for GGUF export (none or llama3)`)
    }
  }
  const attentionBias = config.attention_bias === true
  const mlpBias = config.mlp_bias === true
  if (arch !== 'llama' && mlpBias) throw new Error(`config.json: mlp_bias=true; llama.cpp's ${arch} has no MLP biases`)
  const layers = positiveInt(config, 'num_hidden_layers')
  return {
    hfArchitecture, arch, hidden, heads, kvHeads, headDim, layers,
    // Qwen3MoeConfig's default; llama.cpp's qwen3moe reads it only without expert_feed_forward_length
    intermediate: positiveInt(config, 'intermediate_size', arch === 'qwen3moe' ? 6144 : undefined),
    vocab: positiveInt(config, 'vocab_size'),
    contextLength: positiveInt(config, 'max_position_embeddings', DEFAULT_CONTEXT[arch]),
    ropeTheta, rmsEps: num(config, 'rms_norm_eps', 1e-6),
    tied: config.tie_word_embeddings === true,
    llama3, attentionBias, mlpBias,
    moe: arch === 'qwen3moe' ? ggufMoe(config, layers) : null
  }
}

/** What llama.cpp's qwen3moe computes (src/models/qwen3moe.cpp): every layer sparse (router
 *  ffn_gate_inp and the stacked experts, no dense MLP), softmax over the experts, the top
 *  num_experts_per_tok, their weights always renormalised to sum to 1 (build_moe_ffn with
 *  norm_w = true; it reads no norm_topk_prob). A config that computes otherwise is refused. */
function ggufMoe(config: Json, layers: number): NonNullable<GgufHparams['moe']> {
  let m: ReturnType<typeof moeConfigOf>
  try {
    m = moeConfigOf(config)
  } catch (err) {
    throw new Error(`${(err as Error).message} (GGUF export of Qwen3MoeForCausalLM)`)
  }
  const expertsKey = config.num_experts === undefined && config.num_local_experts !== undefined ? 'num_local_experts' : 'num_experts'
  if (!m) throw new Error(`config.json: ${expertsKey} is 0 (no experts); llama.cpp's qwen3moe needs experts in every layer`)
  if (!m.normTopkProb)
    throw new Error('config.json: norm_topk_prob is false (the top experts\' router weights are not renormalised); llama.cpp\'s qwen3moe always renormalises them, so the GGUF would compute another model (export merged instead, for transformers or vLLM)')
  if (m.sparseLayers.length !== layers) {
    const dense = Array.from({ length: layers }, (_, l) => l).filter((l) => !m.sparseLayers.includes(l))
    const why = m.mlpOnlyLayers.length
      ? `mlp_only_layers ${JSON.stringify(m.mlpOnlyLayers)}${m.sparseStep > 1 ? ` and decoder_sparse_step ${m.sparseStep}` : ''}`
      : `decoder_sparse_step ${m.sparseStep}`
    throw new Error(`config.json: ${dense.length > 1 ? 'layers' : 'layer'} ${dense.join(', ')} ${dense.length > 1 ? 'are' : 'is'} dense (${why}); llama.cpp's qwen3moe has experts in every layer and no dense MLP, so it cannot load this model (export merged instead, for transformers or vLLM)`)
  }
  return { experts: m.experts, expertsUsed: m.expertsPerToken, expertIntermediate: m.expertIntermediate }
}

/** llama.cpp's name of an HF weight of these architectures, or null for one it does not keep. */
const LAYER_NAMES: Record<string, string> = {
  'input_layernorm.weight': 'attn_norm.weight',
  'post_attention_layernorm.weight': 'ffn_norm.weight',
  'self_attn.q_proj.weight': 'attn_q.weight',
  'self_attn.k_proj.weight': 'attn_k.weight',
  'self_attn.v_proj.weight': 'attn_v.weight',
  'self_attn.o_proj.weight': 'attn_output.weight',
  'self_attn.q_proj.bias': 'attn_q.bias',
  'self_attn.k_proj.bias': 'attn_k.bias',
  'self_attn.v_proj.bias': 'attn_v.bias',
  'self_attn.o_proj.bias': 'attn_output.bias',
  'self_attn.q_norm.weight': 'attn_q_norm.weight',
  'self_attn.k_norm.weight': 'attn_k_norm.weight',
  'mlp.gate_proj.weight': 'ffn_gate.weight',
  'mlp.up_proj.weight': 'ffn_up.weight',
  'mlp.down_proj.weight': 'ffn_down.weight',
  'mlp.gate_proj.bias': 'ffn_gate.bias',
  'mlp.up_proj.bias': 'ffn_up.bias',
  'mlp.down_proj.bias': 'ffn_down.bias',
  'mlp.gate.weight': 'ffn_gate_inp.weight'
}
/** A sparse layer's experts, stacked along a third dimension (HF orientation [E, out, in]). */
const EXPERT_NAMES: Record<ExpertProjection, string> = {
  gate_proj: 'ffn_gate_exps.weight', up_proj: 'ffn_up_exps.weight', down_proj: 'ffn_down_exps.weight'
}
const LAYER_ORDER = [...Object.values(LAYER_NAMES), ...Object.values(EXPERT_NAMES)]

const LAYER_RE = /^model\.layers\.(\d+)\.(.+)$/

export function ggufTensorName(hfName: string): string | null {
  if (hfName === 'model.embed_tokens.weight') return 'token_embd.weight'
  if (hfName === 'model.norm.weight') return 'output_norm.weight'
  if (hfName === 'lm_head.weight') return 'output.weight'
  const m = LAYER_RE.exec(hfName)
  if (m) {
    if (m[2] === 'self_attn.rotary_emb.inv_freq') return null
    const n = LAYER_NAMES[m[2]!]
    return n ? `blk.${m[1]}.${n}` : `?${hfName}`
  }
  return `?${hfName}`
}

/** The GGUF type of a tensor written in `dtype`, by the converter's rules. */
export function ggufTensorType(name: string, shape: readonly number[], dtype: GgmlTypeName): GgmlTypeName {
  if (shape.length <= 1 || name.endsWith('_norm.weight') || !/\.(weight|lora_a|lora_b)$/.test(name)) return 'F32'
  // the MoE router stays F32, as the converter and llama-quantize keep it
  if (name.endsWith('.ffn_gate_inp.weight')) return 'F32'
  if (dtype === 'Q8_0' && shape[shape.length - 1]! % 32 !== 0) return 'F16'
  return dtype
}

/** Rows of a [rows, cols] q/k projection (or its lora_B, or its bias with cols = 1) from
 *  transformers' half-split RoPE order to llama.cpp's interleaved one, as the converter's
 *  LlamaModel.permute(w, n_head): reshape(n_head, 2, d/2, cols).swapaxes(1, 2). */
export function permuteRopeRows(w: Float32Array, rows: number, nHead: number): Float32Array {
  const cols = w.length / rows
  const d = rows / nHead
  if (!Number.isInteger(cols) || !Number.isInteger(d) || d % 2 !== 0) throw new Error(`cannot permute ${rows} rows into ${nHead} heads of even size`)
  const half = d / 2
  const out = new Float32Array(w.length)
  for (let h = 0; h < nHead; h++)
    for (let i = 0; i < half; i++)
      for (let j = 0; j < 2; j++) {
        const from = h * d + j * half + i
        const to = h * d + 2 * i + j
        out.set(w.subarray(from * cols, (from + 1) * cols), to * cols)
      }
  return out
}

/** How many heads the rows of an HF q/k tensor hold in the llama architecture, else 0. */
function permuteHeads(h: GgufHparams, hfName: string): number {
  if (h.arch !== 'llama') return 0
  if (/\.self_attn\.q_proj\.(weight|bias)$/.test(hfName)) return h.heads
  if (/\.self_attn\.k_proj\.(weight|bias)$/.test(hfName)) return h.kvHeads
  return 0
}

/** llama3's rope_freqs: per rotary frequency, the divisor of the frequency (convert_hf_to_gguf's
 *  LlamaModel.generate_extra_tensors, as transformers' _compute_llama3_parameters). */
export function llama3RopeFreqs(h: GgufHparams): Float32Array {
  const s = h.llama3!
  const dim = h.headDim
  const out = new Float32Array(dim / 2)
  const lowWavelen = s.originalContext / s.low
  const highWavelen = s.originalContext / s.high
  for (let i = 0; i < dim / 2; i++) {
    const freq = 1 / Math.pow(h.ropeTheta, (2 * i) / dim)
    const wavelen = (2 * Math.PI) / freq
    if (wavelen < highWavelen) out[i] = 1
    else if (wavelen > lowWavelen) out[i] = s.factor
    else {
      const smooth = (s.originalContext / wavelen - s.low) / (s.high - s.low)
      out[i] = 1 / ((1 - smooth) / s.factor + smooth)
    }
  }
  return out
}

const DTYPES: Record<ExportDtype, GgmlTypeName> = { f32: 'F32', f16: 'F16', bf16: 'BF16', q8_0: 'Q8_0' }

function expectedShapes(h: GgufHparams): Map<string, number[]> {
  const m = new Map<string, number[]>()
  const q = h.heads * h.headDim, kv = h.kvHeads * h.headDim
  m.set('token_embd.weight', [h.vocab, h.hidden])
  m.set('output_norm.weight', [h.hidden])
  if (!h.tied) m.set('output.weight', [h.vocab, h.hidden])
  for (let l = 0; l < h.layers; l++) {
    const b = `blk.${l}.`
    m.set(b + 'attn_norm.weight', [h.hidden])
    m.set(b + 'attn_q.weight', [q, h.hidden])
    m.set(b + 'attn_k.weight', [kv, h.hidden])
    m.set(b + 'attn_v.weight', [kv, h.hidden])
    m.set(b + 'attn_output.weight', [h.hidden, q])
    m.set(b + 'ffn_norm.weight', [h.hidden])
    if (h.moe) {
      const { experts: E, expertIntermediate: I } = h.moe
      m.set(b + 'ffn_gate_inp.weight', [E, h.hidden])
      m.set(b + EXPERT_NAMES.gate_proj, [E, I, h.hidden])
      m.set(b + EXPERT_NAMES.up_proj, [E, I, h.hidden])
      m.set(b + EXPERT_NAMES.down_proj, [E, h.hidden, I])
    } else {
      m.set(b + 'ffn_gate.weight', [h.intermediate, h.hidden])
      m.set(b + 'ffn_up.weight', [h.intermediate, h.hidden])
      m.set(b + 'ffn_down.weight', [h.hidden, h.intermediate])
    }
    if (h.arch === 'qwen3' || h.arch === 'qwen3moe') {
      m.set(b + 'attn_q_norm.weight', [h.headDim])
      m.set(b + 'attn_k_norm.weight', [h.headDim])
    }
    if (h.arch === 'qwen2' || h.attentionBias) {
      m.set(b + 'attn_q.bias', [q])
      m.set(b + 'attn_k.bias', [kv])
      m.set(b + 'attn_v.bias', [kv])
    }
    if (h.arch === 'llama' && h.attentionBias) m.set(b + 'attn_output.bias', [h.hidden])
    if (h.mlpBias) {
      m.set(b + 'ffn_gate.bias', [h.intermediate])
      m.set(b + 'ffn_up.bias', [h.intermediate])
      m.set(b + 'ffn_down.bias', [h.hidden])
    }
  }
  return m
}

const same = (a: readonly number[], b: readonly number[]): boolean => a.length === b.length && a.every((x, i) => x === b[i])

function sortKey(name: string): [number, number, number] {
  if (name === 'rope_freqs.weight') return [0, 0, 0]
  if (name === 'token_embd.weight') return [1, 0, 0]
  const m = /^blk\.(\d+)\.(.+?)(?:\.(lora_a|lora_b))?$/.exec(name)
  if (m) return [2, Number(m[1]), LAYER_ORDER.indexOf(m[2]!) * 2 + (m[3] === 'lora_b' ? 1 : 0)]
  if (name === 'output_norm.weight') return [3, 0, 0]
  return [4, 0, 0]
}
function byLayout(a: { name: string }, b: { name: string }): number {
  const x = sortKey(a.name), y = sortKey(b.name)
  return x[0] - y[0] || x[1] - y[1] || x[2] - y[2]
}

/** The GGUF tensors of a checkpoint in llama.cpp's layout, checked against the config. */
export function ggufModelTensors(source: TensorSource, h: GgufHparams, dtype: GgmlTypeName): GgufTensor[] {
  const expected = expectedShapes(h)
  const out: GgufTensor[] = []
  const seen = new Set<string>()
  const consumed = new Set<string>()
  if (h.moe) {
    for (const t of stackedExperts(source, h, dtype, consumed)) {
      out.push(t)
      seen.add(t.name)
    }
  }
  for (const t of source.list()) {
    if (consumed.has(t.name)) continue
    if (t.name === 'lm_head.weight' && h.tied) continue // tied: llama.cpp reads token_embd for the output
    const name = ggufTensorName(t.name)
    if (name === null) continue
    const want = expected.get(name)
    if (!want) {
      if (name.startsWith('?')) throw new Error(`tensor '${t.name}' is not a weight of llama.cpp's ${h.arch} architecture (GGUF export of ${h.hfArchitecture})`)
      throw new Error(`tensor '${t.name}' (${name}) has no place in llama.cpp's ${h.arch} as config.json describes it (GGUF export of ${h.hfArchitecture})`)
    }
    if (!same(t.shape, want)) throw new Error(`tensor '${t.name}' is ${JSON.stringify(t.shape)}; config.json says ${JSON.stringify(want)}`)
    checkFloat(t)
    seen.add(name)
    const heads = permuteHeads(h, t.name)
    out.push({
      name, shape: t.shape, type: ggufTensorType(name, t.shape, dtype),
      read: async () => {
        const w = await source.readF32(t.name)
        return heads ? permuteRopeRows(w, t.shape[0]!, heads) : w
      }
    })
  }
  const missing = [...expected.keys()].filter((n) => !seen.has(n))
  if (missing.length) throw new Error(`the checkpoint lacks ${missing.length} tensor(s) llama.cpp's ${h.arch} needs, e.g. ${missing.slice(0, 3).join(', ')}`)
  if (h.llama3) {
    const freqs = llama3RopeFreqs(h)
    out.push({ name: 'rope_freqs.weight', shape: [freqs.length], type: 'F32', read: async () => freqs })
  }
  return out.sort(byLayout)
}

/**
 * A sparse layer's experts as llama.cpp's qwen3moe reads them: ffn_gate_exps and ffn_up_exps
 * [E, I, C], ffn_down_exps [E, C, I] (ggml ne reversed), from either layout of the checkpoint:
 * per expert (E matrices stacked) or fused (gate_up_proj split into its gate rows and its up
 * rows per expert; down_proj as it is). The names read are added to `consumed`.
 */
function stackedExperts(source: TensorSource, h: GgufHparams, dtype: GgmlTypeName, consumed: Set<string>): GgufTensor[] {
  const { experts: E, expertIntermediate: I } = h.moe!
  const C = h.hidden
  const out: GgufTensor[] = []
  // gate_up_proj feeds two GGUF tensors written one after the other: read it once for both.
  let cached: { name: string; data: Float32Array } | null = null
  const readFused = async (name: string): Promise<Float32Array> => {
    if (cached?.name === name) {
      const data = cached.data
      cached = null
      return data
    }
    const data = await source.readF32(name)
    cached = { name, data }
    return data
  }
  for (let l = 0; l < h.layers; l++) {
    for (const projection of EXPERT_PROJECTIONS) {
      const [rows, cols] = projection === 'down_proj' ? [C, I] : [I, C]
      const shape = [E, rows, cols]
      const name = `blk.${l}.${EXPERT_NAMES[projection]}`
      const fused = source.info(fusedName(l, projection))
      let read: () => Promise<Float32Array>
      if (fused) {
        const want = projection === 'down_proj' ? [E, C, I] : [E, 2 * I, C]
        if (!same(fused.shape, want)) throw new Error(`tensor '${fused.name}' is ${JSON.stringify(fused.shape)}; config.json says ${JSON.stringify(want)}`)
        checkFloat(fused)
        consumed.add(fused.name)
        if (projection === 'down_proj') read = () => source.readF32(fused.name)
        else {
          const half = projection === 'up_proj' ? 1 : 0
          read = async () => {
            const all = await readFused(fused.name)
            const w = new Float32Array(E * I * C)
            for (let e = 0; e < E; e++) w.set(all.subarray((e * 2 + half) * I * C, (e * 2 + half + 1) * I * C), e * I * C)
            return w
          }
        }
      } else {
        const names = Array.from({ length: E }, (_, e) => perExpertName(l, e, projection))
        for (const n of names) {
          const t = source.info(n)
          if (!t) throw new Error(`the checkpoint lacks '${n}' (or the fused '${fusedName(l, projection)}') that llama.cpp's qwen3moe needs for ${name}`)
          if (!same(t.shape, [rows, cols])) throw new Error(`tensor '${n}' is ${JSON.stringify(t.shape)}; config.json says ${JSON.stringify([rows, cols])}`)
          checkFloat(t)
          consumed.add(n)
        }
        read = async () => {
          const w = new Float32Array(E * rows * cols)
          for (const [e, n] of names.entries()) w.set(await source.readF32(n), e * rows * cols)
          return w
        }
      }
      out.push({ name, shape, type: ggufTensorType(name, shape, dtype), read })
    }
  }
  return out
}

function checkFloat(t: TensorInfo): void {
  if (!['F32', 'F16', 'BF16'].includes(t.dtype)) throw new Error(`tensor '${t.name}' is ${t.dtype}; only F32, F16 and BF16 checkpoints can be exported`)
}

function generalMetadata(meta: GgufMetadata, h: GgufHparams, type: 'model' | 'adapter', name: string, dtype: GgmlTypeName): void {
  meta.string('general.architecture', h.arch)
  meta.string('general.type', type)
  meta.string('general.name', name)
  meta.uint32('general.file_type', LLAMA_FTYPE[dtype])
  meta.uint32('general.quantization_version', GGML_QUANT_VERSION)
  meta.uint32('general.alignment', 32)
}

function modelMetadata(meta: GgufMetadata, h: GgufHparams): void {
  const a = h.arch
  meta.uint32(`${a}.vocab_size`, h.vocab)
  meta.uint32(`${a}.context_length`, h.contextLength)
  meta.uint32(`${a}.embedding_length`, h.hidden)
  meta.uint32(`${a}.block_count`, h.layers)
  meta.uint32(`${a}.feed_forward_length`, h.intermediate)
  meta.uint32(`${a}.attention.head_count`, h.heads)
  meta.uint32(`${a}.attention.head_count_kv`, h.kvHeads)
  meta.uint32(`${a}.attention.key_length`, h.headDim)
  meta.uint32(`${a}.attention.value_length`, h.headDim)
  meta.float32(`${a}.rope.freq_base`, h.ropeTheta)
  meta.uint32(`${a}.rope.dimension_count`, h.headDim)
  meta.float32(`${a}.attention.layer_norm_rms_epsilon`, h.rmsEps)
  if (h.moe) {
    meta.uint32(`${a}.expert_count`, h.moe.experts)
    meta.uint32(`${a}.expert_used_count`, h.moe.expertsUsed)
    meta.uint32(`${a}.expert_feed_forward_length`, h.moe.expertIntermediate)
  }
}

function dtypeOf(dtype: ExportDtype | undefined, fallback: ExportDtype, allowed: ExportDtype[], format: string): GgmlTypeName {
  const d = dtype ?? fallback
  if (!allowed.includes(d)) throw new Error(`--dtype ${d}: ${format} is written in ${allowed.join(', ')}`)
  return DTYPES[d]
}

function modelName(inputs: ExportInputs): string {
  const base = basename(inputs.modelDir)
  if (inputs.run) return `${base}-${basename(inputs.run.dir)}`
  if (inputs.adapter) return `${base}-${basename(inputs.adapter.dir)}`
  return base
}

/** The metadata and tensors of model.gguf (planGguf lays them out and writes them). */
export interface GgufModelParts {
  meta: GgufMetadata
  tensors: GgufTensor[]
  warnings: string[]
}

export async function ggufModelParts(inputs: ExportInputs, dtype?: ExportDtype): Promise<GgufModelParts> {
  const type = dtypeOf(dtype, 'f16', ['f32', 'f16', 'bf16', 'q8_0'], 'gguf')
  const h = ggufHparams(inputs.config)
  const tensors = ggufModelTensors(inputs.weights, h, type)
  const vocab = await readGgufVocab(inputs.modelDir, inputs.config)
  if (vocab.tokens.length !== h.vocab) throw new Error(`the tokenizer has ${vocab.tokens.length} tokens but config.json's vocab_size is ${h.vocab}`)
  const meta = new GgufMetadata()
  generalMetadata(meta, h, 'model', modelName(inputs), type)
  modelMetadata(meta, h)
  addVocabMetadata(meta, vocab)
  return { meta, tensors, warnings: vocab.warnings }
}

/** `gguf`: model.gguf from inputs.weights (the base with the adapter merged in, or the trained
 *  weights of a full fine-tuning run); f16 unless told. */
export async function planGguf(inputs: ExportInputs, dtype?: ExportDtype): Promise<ExportPlan> {
  const { meta, tensors, warnings } = await ggufModelParts(inputs, dtype)
  const file = planGgufFile(meta, tensors)
  return {
    files: [GGUF_MODEL_FILE],
    bytes: file.bytes,
    warnings,
    usage: (dir) => [`llama-cli -m ${dir}/${GGUF_MODEL_FILE}`, `llama-server -m ${dir}/${GGUF_MODEL_FILE}`],
    write: (folder) => folder.stream(GGUF_MODEL_FILE, (write) => writeGgufFile(file, write))
  }
}

export const GGUF_MODEL_FILE = 'model.gguf'
export const GGUF_ADAPTER_FILE = 'adapter.gguf'

const TARGETS: Record<string, string> = {
  'self_attn.q_proj': 'attn_q', 'self_attn.k_proj': 'attn_k', 'self_attn.v_proj': 'attn_v', 'self_attn.o_proj': 'attn_output',
  'mlp.gate_proj': 'ffn_gate', 'mlp.up_proj': 'ffn_up', 'mlp.down_proj': 'ffn_down', 'mlp.gate': 'ffn_gate_inp'
}

/** The alpha llama.cpp must read so that its alpha / r is the adapter's scale. */
export function ggufLoraAlpha(adapter: Pick<PeftAdapter, 'alpha' | 'rank' | 'rslora'>): number {
  return adapter.rslora ? adapter.alpha * Math.sqrt(adapter.rank) : adapter.alpha
}

/**
 * The adapter's tensors under llama.cpp's names. A Qwen3-MoE adapter's per-expert pairs
 * (mlp.experts.{e}.gate_proj, ...) become one stacked pair per layer and projection, as
 * llama.cpp applies LoRA to its 3-D expert tensors (llama-graph.cpp build_lora_mm_id: each
 * token's chosen experts through ggml_mul_mat_id on lora_a [E, r, in] and lora_b [E, out, r];
 * llama-adapter.cpp checks in, out and r and leaves the third dimension to the experts, the
 * layout convert_lora_to_gguf.py writes by stacking PEFT's per-expert A and B). An expert the
 * adapter leaves out gets zeros (no change), as in PEFT.
 */
function loraTensors(adapter: PeftAdapter, h: GgufHparams, dtype: GgmlTypeName): GgufTensor[] {
  const q = h.heads * h.headDim, kv = h.kvHeads * h.headDim
  const dims: Record<string, [number, number]> = {
    attn_q: [q, h.hidden], attn_k: [kv, h.hidden], attn_v: [kv, h.hidden], attn_output: [h.hidden, q],
    ffn_gate: [h.intermediate, h.hidden], ffn_up: [h.intermediate, h.hidden], ffn_down: [h.hidden, h.intermediate]
  }
  if (h.moe) dims.ffn_gate_inp = [h.moe.experts, h.hidden]
  const out: GgufTensor[] = []
  const experts = new Map<string, { layer: number; projection: ExpertProjection; pairs: Map<number, LoraPair> }>()
  for (const p of adapter.pairs.values()) {
    const ex = parseExpertName(p.base)
    if (ex && h.moe) {
      if (ex.layer >= h.layers) throw new Error(`the adapter adapts layer ${ex.layer} but the base model has ${h.layers} layers`)
      if (ex.expert >= h.moe.experts) throw new Error(`the adapter adapts expert ${ex.expert} of layer ${ex.layer} but the base model has ${h.moe.experts} experts`)
      const I = h.moe.expertIntermediate, C = h.hidden
      const [outF, inF] = ex.projection === 'down_proj' ? [C, I] : [I, C]
      if (p.outFeatures !== outF || p.inFeatures !== inF)
        throw new Error(`the adapter's ${p.base} is for [${p.outFeatures}, ${p.inFeatures}] but the base model's is [${outF}, ${inF}] (another base model?)`)
      for (const name of [p.a, p.b]) checkFloat(adapter.tensors.info(name)!)
      const key = `${ex.layer}.${ex.projection}`
      const g = experts.get(key) ?? { layer: ex.layer, projection: ex.projection, pairs: new Map<number, LoraPair>() }
      g.pairs.set(ex.expert, p)
      experts.set(key, g)
      continue
    }
    const m = /^model\.layers\.(\d+)\.(.+)\.weight$/.exec(p.base)
    const target = m ? TARGETS[m[2]!] : undefined
    if (!m || !target || !dims[target])
      throw new Error(`the adapter adapts '${p.base}'; a llama.cpp adapter here covers the q, k, v, o, gate, up and down projections of the layers` +
        (h.moe ? ' (of a Qwen3-MoE: attention, each expert\'s gate, up and down, and the router mlp.gate)' : '') + ' only')
    const layer = Number(m[1])
    if (layer >= h.layers) throw new Error(`the adapter adapts layer ${layer} but the base model has ${h.layers} layers`)
    if (h.moe && (target === 'ffn_gate' || target === 'ffn_up' || target === 'ffn_down'))
      throw new Error(`the adapter adapts '${p.base}', a dense MLP, but every layer of this Qwen3-MoE is sparse (its MLP is the experts, mlp.experts.{e}.*)`)
    const [outF, inF] = dims[target]!
    if (p.outFeatures !== outF || p.inFeatures !== inF)
      throw new Error(`the adapter's ${p.base} is for [${p.outFeatures}, ${p.inFeatures}] but the base model's is [${outF}, ${inF}] (another base model?)`)
    for (const name of [p.a, p.b]) checkFloat(adapter.tensors.info(name)!)
    const name = `blk.${layer}.${target}.weight`
    const heads = h.arch !== 'llama' ? 0 : target === 'attn_q' ? h.heads : target === 'attn_k' ? h.kvHeads : 0
    const a: number[] = [p.rank, p.inFeatures]
    const b: number[] = [p.outFeatures, p.rank]
    out.push({ name: `${name}.lora_a`, shape: a, type: ggufTensorType(`${name}.lora_a`, a, dtype), read: () => adapter.tensors.readF32(p.a) })
    out.push({
      name: `${name}.lora_b`, shape: b, type: ggufTensorType(`${name}.lora_b`, b, dtype),
      read: async () => {
        const w = await adapter.tensors.readF32(p.b)
        return heads ? permuteRopeRows(w, p.outFeatures, heads) : w
      }
    })
  }
  for (const { layer, projection, pairs } of experts.values()) {
    const E = h.moe!.experts, r = adapter.rank
    const any = pairs.values().next().value as LoraPair
    const { inFeatures: inF, outFeatures: outF } = any
    const name = `blk.${layer}.${EXPERT_NAMES[projection]}`
    const stack = async (which: 'a' | 'b', size: number): Promise<Float32Array> => {
      const w = new Float32Array(E * size)
      for (const [e, p] of pairs) w.set(await adapter.tensors.readF32(p[which]), e * size)
      return w
    }
    const a = [E, r, inF], b = [E, outF, r]
    out.push({ name: `${name}.lora_a`, shape: a, type: ggufTensorType(`${name}.lora_a`, a, dtype), read: () => stack('a', r * inF) })
    out.push({ name: `${name}.lora_b`, shape: b, type: ggufTensorType(`${name}.lora_b`, b, dtype), read: () => stack('b', outF * r) })
  }
  return out.sort(byLayout)
}

/** `gguf-lora`: adapter.gguf, the adapter alone for llama.cpp (--lora) on the base's GGUF;
 *  f32 unless told (f16 and q8_0 too). */
export async function planGgufLora(inputs: ExportInputs, dtype?: ExportDtype): Promise<ExportPlan> {
  const adapter = inputs.adapter
  if (!adapter) throw new Error('gguf-lora needs a LoRA run or adapter; a full fine-tuning run has no adapter (export its weights with --format gguf)')
  if (adapter.dora)
    throw new Error(`${adapter.dir}: a DoRA adapter (use_dora) cannot be a llama.cpp adapter: llama.cpp applies W + (alpha/r)·B·A only and has no DoRA magnitude; export the merged model instead (--format merged, or --format gguf for one merged GGUF)`)
  const type = dtypeOf(dtype, 'f32', ['f32', 'f16', 'q8_0'], 'gguf-lora')
  const h = ggufHparams(inputs.config)
  const tensors = loraTensors(adapter, h, type)
  const meta = new GgufMetadata()
  generalMetadata(meta, h, 'adapter', basename(adapter.dir), type)
  meta.string('adapter.type', 'lora')
  meta.float32('adapter.lora.alpha', ggufLoraAlpha(adapter))
  const file = planGgufFile(meta, tensors)
  return {
    files: [GGUF_ADAPTER_FILE],
    bytes: file.bytes,
    warnings: [],
    usage: (dir) => [
      `tunebench export --model ${inputs.modelDir} --format gguf --out ${dir}/base   (the base model as GGUF, once)`,
      `llama-server -m ${dir}/base/${GGUF_MODEL_FILE} --lora ${dir}/${GGUF_ADAPTER_FILE}`
    ],
    write: (folder) => folder.stream(GGUF_ADAPTER_FILE, (write) => writeGgufFile(file, write))
  }
}

