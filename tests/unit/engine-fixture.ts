// Helpers for engine tests: read/write f32 safetensors and build tiny random checkpoints in TS.
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'

export interface Tensor { shape: number[]; data: Float32Array }

export function readSafetensors(path: string): Map<string, Tensor> {
  const buf = readFileSync(path)
  const n = Number(buf.readBigUInt64LE(0))
  const header = JSON.parse(buf.subarray(8, 8 + n).toString('utf8')) as Record<string, { dtype: string; shape: number[]; data_offsets: [number, number] }>
  const out = new Map<string, Tensor>()
  for (const [name, t] of Object.entries(header)) {
    if (name === '__metadata__') continue
    if (t.dtype !== 'F32') throw new Error(`${path}: ${name} is ${t.dtype}, tests read F32 only`)
    const bytes = buf.subarray(8 + n + t.data_offsets[0], 8 + n + t.data_offsets[1])
    const data = new Float32Array(bytes.length / 4)
    for (let i = 0; i < data.length; i++) data[i] = bytes.readFloatLE(i * 4)
    out.set(name, { shape: t.shape, data })
  }
  return out
}

export type Dtype = 'F32' | 'BF16' | 'F16'

/** Encodes tensors as a safetensors file; `dtypeOverride` lets tests write a lying header. */
export function encodeSafetensors(tensors: Map<string, Tensor>, dtype: Dtype = 'F32', dtypeOverride?: string): Buffer {
  const header: Record<string, unknown> = {}
  const parts: Buffer[] = []
  let offset = 0
  for (const [name, t] of tensors) {
    const size = dtype === 'F32' ? 4 : 2
    const b = Buffer.alloc(t.data.length * size)
    for (let i = 0; i < t.data.length; i++) {
      if (dtype === 'F32') b.writeFloatLE(t.data[i], i * 4)
      else if (dtype === 'BF16') {
        const f = Buffer.alloc(4)
        f.writeFloatLE(t.data[i])
        b.writeUInt16LE(f.readUInt32LE() >>> 16, i * 2) // truncation: tests compare against the same rounding
      } else b.writeUInt16LE(f32ToF16(t.data[i]), i * 2)
    }
    header[name] = { dtype: dtypeOverride ?? dtype, shape: t.shape, data_offsets: [offset, offset + b.length] }
    offset += b.length
    parts.push(b)
  }
  const h = Buffer.from(JSON.stringify(header), 'utf8')
  const len = Buffer.alloc(8)
  len.writeBigUInt64LE(BigInt(h.length))
  return Buffer.concat([len, h, ...parts])
}

function f32ToF16(v: number): number {
  const f = Buffer.alloc(4)
  f.writeFloatLE(v)
  const x = f.readUInt32LE()
  const sign = (x >>> 16) & 0x8000
  const exp = ((x >>> 23) & 0xff) - 127 + 15
  const man = x & 0x7fffff
  if (exp <= 0) return sign
  if (exp >= 31) return sign | 0x7c00
  return sign | (exp << 10) | (man >>> 13)
}

export interface TinyOptions {
  architecture?: 'LlamaForCausalLM' | 'Qwen2ForCausalLM' | 'Qwen3ForCausalLM'
  tied?: boolean
  seed?: number
  /** Vocabulary size (default 64). */
  vocab?: number
}

/** Tensors of a tiny Llama-family model: hidden 32, 2 layers, 4 heads / 2 kv heads, vocab 64. */
export function tinyTensors(o: TinyOptions = {}): { config: Record<string, unknown>; tensors: Map<string, Tensor> } {
  const arch = o.architecture ?? 'LlamaForCausalLM'
  const C = 32, I = 64, L = 2, H = 4, KV = 2, V = o.vocab ?? 64
  const D = arch === 'Qwen3ForCausalLM' ? 16 : C / H
  let s = o.seed ?? 1
  const rnd = (): number => {
    s = (s * 1103515245 + 12345) % 2147483648
    return s / 2147483648 - 0.5
  }
  const t = (shape: number[], norm = false): Tensor => {
    const n = shape.reduce((a, b) => a * b, 1)
    const data = new Float32Array(n)
    for (let i = 0; i < n; i++) data[i] = norm ? 1 + 0.2 * rnd() : 0.4 * rnd()
    return { shape, data }
  }
  const m = new Map<string, Tensor>()
  m.set('model.embed_tokens.weight', t([V, C]))
  for (let l = 0; l < L; l++) {
    const p = `model.layers.${l}.`
    m.set(p + 'input_layernorm.weight', t([C], true))
    m.set(p + 'post_attention_layernorm.weight', t([C], true))
    m.set(p + 'self_attn.q_proj.weight', t([H * D, C]))
    m.set(p + 'self_attn.k_proj.weight', t([KV * D, C]))
    m.set(p + 'self_attn.v_proj.weight', t([KV * D, C]))
    m.set(p + 'self_attn.o_proj.weight', t([C, H * D]))
    if (arch === 'Qwen2ForCausalLM') {
      m.set(p + 'self_attn.q_proj.bias', t([H * D]))
      m.set(p + 'self_attn.k_proj.bias', t([KV * D]))
      m.set(p + 'self_attn.v_proj.bias', t([KV * D]))
    }
    if (arch === 'Qwen3ForCausalLM') {
      m.set(p + 'self_attn.q_norm.weight', t([D], true))
      m.set(p + 'self_attn.k_norm.weight', t([D], true))
    }
    m.set(p + 'mlp.gate_proj.weight', t([I, C]))
    m.set(p + 'mlp.up_proj.weight', t([I, C]))
    m.set(p + 'mlp.down_proj.weight', t([C, I]))
  }
  m.set('model.norm.weight', t([C], true))
  if (!o.tied) m.set('lm_head.weight', t([V, C]))
  const config = {
    architectures: [arch], hidden_size: C, intermediate_size: I, num_hidden_layers: L,
    num_attention_heads: H, num_key_value_heads: KV, vocab_size: V, rms_norm_eps: 1e-6,
    rope_theta: 10000, tie_word_embeddings: !!o.tied, hidden_act: 'silu', torch_dtype: 'float32',
    ...(arch === 'Qwen3ForCausalLM' ? { head_dim: D } : {})
  }
  return { config, tensors: m }
}

export function writeTinyModel(dir: string, o: TinyOptions = {}, dtype: Dtype = 'F32'): void {
  mkdirSync(dir, { recursive: true })
  const { config, tensors } = tinyTensors(o)
  writeFileSync(join(dir, 'config.json'), JSON.stringify(config, null, 2))
  writeFileSync(join(dir, 'model.safetensors'), encodeSafetensors(tensors, dtype))
}

/** A right-padded batch with a completion mask from position `prompt` on. */
export function tinyBatch(lengths: number[], seqLen: number, vocab: number, prompt = 1, seed = 3) {
  const B = lengths.length
  const ids = new Int32Array(B * seqLen)
  const mask = new Uint8Array(B * seqLen)
  let s = seed
  for (let b = 0; b < B; b++) {
    for (let t = 0; t < lengths[b]; t++) {
      s = (s * 48271) % 2147483647
      ids[b * seqLen + t] = s % vocab
      if (t >= prompt) mask[b * seqLen + t] = 1
    }
  }
  return { ids, batch: B, seqLen, lengths: Int32Array.from(lengths), mask }
}
