import { copyFile, mkdtemp, readFile, rm, stat, truncate, unlink, writeFile } from 'node:fs/promises'
import { homedir, tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterEach, beforeEach, describe, expect, it } from 'vitest'
import { inspectModelFolder } from '../../../main/services/models/inspect'
import { readMoeConfig } from '../../../main/services/models/moe'
import { readSafetensorsHeader } from '../../../main/services/models/safetensors'
import { engineFacts, Model } from '../../../native/index'
import { layoutReversed, safetensorsBytes, tinyLlamaTensors, writeHandBuiltModel, type HandTensor } from '../../fixtures/safetensorsBytes'
import { llamaTensorShapes, tinyConfig, writeTinyModel } from '../../fixtures/tinyModel'

// The weights files these tests read are never written by the app's own encoder
// (encodeSafetensors), so a bug it shares with the reader cannot pass: they come from the Python
// safetensors package (tests/fixtures/models, see write_reference.py) or are built byte by byte
// (tests/fixtures/safetensorsBytes.ts).
const pythonFixtures = join(__dirname, '..', '..', 'fixtures', 'models')

/** writeTinyModel's folder with the weights the Python safetensors package wrote. */
async function writePythonModel(dir: string): Promise<string> {
  await writeTinyModel(dir)
  await copyFile(join(pythonFixtures, 'tiny-llama.safetensors'), join(dir, 'model.safetensors'))
  return dir
}

let root: string
beforeEach(async () => {
  root = await mkdtemp(join(tmpdir(), 'tunebench-inspect-'))
})
afterEach(async () => {
  await rm(root, { recursive: true, force: true })
})

/** Llama parameter count from the config alone (an independent path to the same number). */
function llamaParameters(c: typeof tinyConfig, tied: boolean): number {
  const head = c.hidden_size / c.num_attention_heads
  const attention = 2 * c.hidden_size * c.hidden_size + 2 * c.num_key_value_heads * head * c.hidden_size
  const mlp = 3 * c.hidden_size * c.intermediate_size
  const norms = 2 * c.hidden_size
  const embeddings = c.vocab_size * c.hidden_size * (tied ? 1 : 2)
  return embeddings + c.num_hidden_layers * (attention + mlp + norms) + c.hidden_size
}

async function editJson(file: string, change: (value: Record<string, unknown>) => void): Promise<void> {
  const value = JSON.parse(await readFile(file, 'utf8')) as Record<string, unknown>
  change(value)
  await writeFile(file, JSON.stringify(value))
}

describe('inspectModelFolder on good folders', () => {
  const singleFileFacts = (dir: string, name: string) => ({
    dir,
    name,
    architecture: 'LlamaForCausalLM',
    modelType: 'llama',
    layers: 2,
    hidden: 8,
    intermediate: 16,
    heads: 2,
    kvHeads: 1,
    headDim: 4,
    vocab: 32,
    dtype: 'float32',
    tensorDtypes: ['F32'],
    shards: 1,
    tiedEmbeddings: false,
    chatTemplate: true,
    tensorCount: 21,
    // 2 * 32 * 8 embeddings and head, 2 layers of (64 + 32 + 32 + 64) attention + 3 * 128 MLP
    // + 2 * 8 norms, and the final 8-wide norm.
    parameters: 1704,
    weightBytes: 4 * 1704
  })

  it('reads the facts of a single-file model written by the Python safetensors package', async () => {
    const dir = await writePythonModel(join(root, 'tiny-llama'))
    const facts = await inspectModelFolder(dir)
    expect(facts).toMatchObject(singleFileFacts(dir, 'tiny-llama'))
    expect(facts.parameters).toBe(llamaParameters(tinyConfig, false))
    expect(facts.tensorCount).toBe(llamaTensorShapes(tinyConfig, false).length)
  })

  it('reads the facts of a single-file model built byte by byte, data laid out in reverse order', async () => {
    const dir = await writeHandBuiltModel(join(root, 'hand-llama'))
    expect(await inspectModelFolder(dir)).toMatchObject(singleFileFacts(dir, 'hand-llama'))
  })

  it('reads a sharded model through its index, with tied embeddings and no chat template', async () => {
    const dir = await writeHandBuiltModel(join(root, 'sharded'), { shards: 3, tiedEmbeddings: true, chatTemplate: false })
    const facts = await inspectModelFolder(dir)
    expect(facts.shards).toBe(3)
    expect(facts.tiedEmbeddings).toBe(true)
    expect(facts.chatTemplate).toBe(false)
    expect(facts.parameters).toBe(llamaParameters(tinyConfig, true))
  })

  it('counts a chat_template.jinja file as a chat template', async () => {
    const dir = await writeHandBuiltModel(join(root, 'jinja'), { chatTemplate: false })
    await writeFile(join(dir, 'chat_template.jinja'), '{{ messages }}')
    expect((await inspectModelFolder(dir)).chatTemplate).toBe(true)
  })

  it('takes the dtype from the tensors when config.json names none', async () => {
    const dir = await writeHandBuiltModel(join(root, 'nodtype'))
    await editJson(join(dir, 'config.json'), (c) => delete c.torch_dtype)
    expect((await inspectModelFolder(dir)).dtype).toBe('float32')
  })
})

describe('inspectModelFolder on broken folders names what is wrong', () => {
  const cases: [string, (dir: string) => Promise<void>, RegExp][] = [
    ['missing config.json', (d) => unlink(join(d, 'config.json')), /config\.json is missing/],
    ['config.json not JSON', (d) => writeFile(join(d, 'config.json'), '{"architectures": [}'), /config\.json: not valid JSON/],
    ['missing num_hidden_layers', (d) => editJson(join(d, 'config.json'), (c) => delete c.num_hidden_layers), /config\.json: field "num_hidden_layers" is missing/],
    ['non-integer hidden_size', (d) => editJson(join(d, 'config.json'), (c) => (c.hidden_size = 'eight')), /config\.json: field "hidden_size" must be a positive integer, got "eight"/],
    ['unsupported architecture', (d) => editJson(join(d, 'config.json'), (c) => (c.architectures = ['GPT2LMHeadModel'])), /architecture "GPT2LMHeadModel" is not supported \(supported: LlamaForCausalLM/],
    ['heads not a multiple of kv heads', (d) => editJson(join(d, 'config.json'), (c) => (c.num_key_value_heads = 3)), /num_attention_heads \(2\) is not a multiple of num_key_value_heads \(3\)/],
    ['vocab_size disagreeing with the embeddings', (d) => editJson(join(d, 'config.json'), (c) => (c.vocab_size = 64)), /'model\.embed_tokens\.weight' has shape \[32,8\] but config\.json says vocab_size=64/],
    ['more layers in config than in the weights', (d) => editJson(join(d, 'config.json'), (c) => (c.num_hidden_layers = 3)), /no tensor 'model\.layers\.2\.self_attn\.q_proj\.weight'/],
    ['no weights at all', (d) => unlink(join(d, 'model.safetensors')), /No weights in .*: expected model\.safetensors or model\.safetensors\.index\.json/],
    ['PyTorch .bin weights only', async (d) => { await unlink(join(d, 'model.safetensors')); await writeFile(join(d, 'pytorch_model.bin'), 'x') }, /PyTorch \.bin weights only/],
    ['truncated safetensors', async (d) => truncate(join(d, 'model.safetensors'), (await stat(join(d, 'model.safetensors'))).size - 100), /model\.safetensors: tensor '.*' ends at byte \d+ of a \d+-byte data section \(file truncated\?\)/],
    ['safetensors with a garbage header', (d) => writeFile(join(d, 'model.safetensors'), Buffer.from([255, 255, 255, 255, 0, 0, 0, 0, 1, 2])), /model\.safetensors: header length \d+ does not fit/],
    ['missing tokenizer.json', (d) => unlink(join(d, 'tokenizer.json')), /tokenizer\.json is missing/],
    ['tokenizer.json without a model', (d) => writeFile(join(d, 'tokenizer.json'), '{"version": "1.0"}'), /tokenizer\.json: field "model" is missing/],
    ['missing tokenizer_config.json', (d) => unlink(join(d, 'tokenizer_config.json')), /tokenizer_config\.json is missing/]
  ]
  for (const [name, breakIt, message] of cases) {
    it(name, async () => {
      const dir = await writeHandBuiltModel(join(root, 'broken'))
      await breakIt(dir)
      await expect(inspectModelFolder(dir)).rejects.toThrow(message)
    })
  }

  it('a shard listed in the index but missing', async () => {
    const dir = await writeHandBuiltModel(join(root, 'sharded'), { shards: 2 })
    await unlink(join(dir, 'model-00002-of-00002.safetensors'))
    await expect(inspectModelFolder(dir)).rejects.toThrow(/lists shard model-00002-of-00002\.safetensors, which is missing/)
  })

  it('an index mapping a tensor to a shard that lacks it', async () => {
    const dir = await writeHandBuiltModel(join(root, 'sharded'), { shards: 2 })
    await editJson(join(dir, 'model.safetensors.index.json'), (index) => {
      ;(index.weight_map as Record<string, string>)['model.norm.weight'] = 'model-00001-of-00002.safetensors'
    })
    await expect(inspectModelFolder(dir)).rejects.toThrow(/maps tensor 'model\.norm\.weight' to model-00001-of-00002\.safetensors, but .* has no such tensor/)
  })

  it('a folder that does not exist (after expanding ~), and a file instead of a folder', async () => {
    await expect(inspectModelFolder('~/tunebench-no-such-model')).rejects.toThrow(`Folder not found: ${join(homedir(), 'tunebench-no-such-model')}`)
    await expect(inspectModelFolder(join(root, 'nope'))).rejects.toThrow(/Folder not found/)
    await writeFile(join(root, 'file.txt'), 'x')
    await expect(inspectModelFolder(join(root, 'file.txt'))).rejects.toThrow(/Not a folder/)
  })
})

describe('inspectModelFolder checks what the engine can load, as the engine reports it', () => {
  it('refuses a tensor in a dtype the engine cannot load (FP8) when the folder is opened, naming the tensor and the dtype', async () => {
    const dir = await writeHandBuiltModel(join(root, 'fp8'))
    const fp8 = 'model.layers.0.mlp.up_proj.weight'
    const { header, data } = layoutReversed(tinyLlamaTensors(false).map((t) => (t.name === fp8 ? { ...t, dtype: 'F8_E4M3' } : t)))
    await writeFile(join(dir, 'model.safetensors'), safetensorsBytes(header, data))
    expect(engineFacts().dtypes).not.toContain('F8_E4M3')
    await expect(inspectModelFolder(dir)).rejects.toThrow(
      `model.safetensors: tensor '${fp8}' has dtype F8_E4M3, which the engine cannot load (it reads ${engineFacts().dtypes.join(', ')})`
    )
    // The engine refuses the same folder: the check at open time is the engine's own limit.
    await expect(Model.load(dir)).rejects.toThrow(/F8_E4M3/)
  })

  it('takes the architectures and dtypes from the limits it is given', async () => {
    const dir = await writeHandBuiltModel(join(root, 'limits'))
    await expect(inspectModelFolder(dir, { architectures: ['Qwen3ForCausalLM'], dtypes: ['F32'] })).rejects.toThrow(
      'config.json: architecture "LlamaForCausalLM" is not supported (supported: Qwen3ForCausalLM)'
    )
    await expect(inspectModelFolder(dir, { architectures: ['LlamaForCausalLM'], dtypes: ['BF16'] })).rejects.toThrow(/has dtype F32, which the engine cannot load \(it reads BF16\)/)
    expect((await inspectModelFolder(dir, engineFacts())).architecture).toBe('LlamaForCausalLM')
  })
})

describe('readSafetensorsHeader on files other writers made', () => {
  it('reads the header the Python safetensors package wrote: every dtype, shape and offset, metadata and the data size', async () => {
    const file = join(pythonFixtures, 'reference.safetensors')
    // The header as write_reference.py's save_file laid it out (by dtype alignment, then name),
    // padded with spaces to 504 bytes; 8 + 504 + 69 = 581 bytes in all.
    expect((await stat(file)).size).toBe(581)
    const header = await readSafetensorsHeader(file)
    expect(header.metadata).toEqual({ format: 'pt', writer: 'python safetensors' })
    expect(header.dataBytes).toBe(69)
    expect(Object.fromEntries(header.tensors)).toEqual({
      ids: { dtype: 'I64', shape: [2], dataOffsets: [0, 16] },
      empty: { dtype: 'F32', shape: [0, 3], dataOffsets: [16, 16] },
      'model.embed_tokens.weight': { dtype: 'F32', shape: [4, 2], dataOffsets: [16, 48] },
      scalar: { dtype: 'F32', shape: [], dataOffsets: [48, 52] },
      brain: { dtype: 'BF16', shape: [3], dataOffsets: [52, 58] },
      half: { dtype: 'F16', shape: [2, 2], dataOffsets: [58, 66] },
      flags: { dtype: 'U8', shape: [3], dataOffsets: [66, 69] }
    })
    // The offsets point at the tensors' own bytes: int64 7 and -1, then float32 0..7.
    const bytes = await readFile(file)
    const data = bytes.subarray(8 + 504)
    const [b, e] = header.tensors.get('ids')!.dataOffsets
    expect([...data.subarray(b, e)]).toEqual([7, 0, 0, 0, 0, 0, 0, 0, 255, 255, 255, 255, 255, 255, 255, 255])
    const [fb, fe] = header.tensors.get('model.embed_tokens.weight')!.dataOffsets
    expect(Array.from({ length: 8 }, (_, i) => data.readFloatLE(fb + 4 * i))).toEqual([0, 1, 2, 3, 4, 5, 6, 7])
    expect(fe - fb).toBe(32)
  })

  it('reads a hand-built file: unpadded header, a non-ASCII name (header length in bytes, not characters), no metadata', async () => {
    const file = join(root, 'hand.safetensors')
    // {"bïas":{"dtype":"F16","shape":[3],"data_offsets":[0,6]}}: 57 characters, 58 bytes (ï is two).
    const json = '{"bïas":{"dtype":"F16","shape":[3],"data_offsets":[0,6]}}'
    expect(json.length).toBe(57)
    const bytes = Buffer.from([58, 0, 0, 0, 0, 0, 0, 0, ...Buffer.from(json, 'utf8'), 1, 2, 3, 4, 5, 6])
    expect(bytes.length).toBe(8 + 58 + 6)
    await writeFile(file, bytes)
    const header = await readSafetensorsHeader(file)
    expect(header).toEqual({ tensors: new Map([['bïas', { dtype: 'F16', shape: [3], dataOffsets: [0, 6] }]]), metadata: {}, dataBytes: 6 })
  })

  it('reads a header whose data section is laid out in reverse order of its keys', async () => {
    const file = join(root, 'reversed.safetensors')
    const { header, data } = layoutReversed(
      [
        { name: 'a', dtype: 'F32', shape: [2, 3] },
        { name: 'b', dtype: 'U8', shape: [5] },
        { name: 'c', dtype: 'I64', shape: [1] }
      ],
      { format: 'pt', note: 'by hand' }
    )
    await writeFile(file, safetensorsBytes(header, data))
    const read = await readSafetensorsHeader(file)
    expect(Object.fromEntries(read.tensors)).toEqual({
      a: { dtype: 'F32', shape: [2, 3], dataOffsets: [13, 37] },
      b: { dtype: 'U8', shape: [5], dataOffsets: [8, 13] },
      c: { dtype: 'I64', shape: [1], dataOffsets: [0, 8] }
    })
    expect(read.metadata).toEqual({ format: 'pt', note: 'by hand' })
    expect(read.dataBytes).toBe(37)
  })

  it('refuses a length prefix that does not fit the file, read as little-endian 64 bits', async () => {
    const file = join(root, 'bad.safetensors')
    const json = '{"x":{"dtype":"U8","shape":[1],"data_offsets":[0,1]}}'
    expect(json.length).toBe(53)
    const body = [...Buffer.from(json, 'utf8'), 9]
    // The right length in the low byte, and a stray bit in the top byte: 2^56 + 53.
    await writeFile(file, Buffer.from([53, 0, 0, 0, 0, 0, 0, 1, ...body]))
    await expect(readSafetensorsHeader(file)).rejects.toThrow('bad.safetensors: header length 72057594037927989 does not fit in a file of 62 bytes')
    // Big-endian, the same length reads as 53 * 2^56.
    await writeFile(file, Buffer.from([0, 0, 0, 0, 0, 0, 0, 53, ...body]))
    await expect(readSafetensorsHeader(file)).rejects.toThrow('bad.safetensors: header length 3819052484010180608 does not fit in a file of 62 bytes')
    await writeFile(file, Buffer.from([53, 0, 0, 0, 0, 0, 0, 0, ...body]))
    expect((await readSafetensorsHeader(file)).tensors.get('x')).toEqual({ dtype: 'U8', shape: [1], dataOffsets: [0, 1] })
  })

  it('names the tensor whose offsets disagree with its shape, or run past the data', async () => {
    const file = join(root, 'offsets.safetensors')
    await writeFile(file, safetensorsBytes({ w: { dtype: 'F32', shape: [2], data_offsets: [0, 4] } }, new Uint8Array(8)))
    await expect(readSafetensorsHeader(file)).rejects.toThrow("offsets.safetensors: tensor 'w' (F32 [2]) needs 8 bytes but data_offsets span 4")
    await writeFile(file, safetensorsBytes({ w: { dtype: 'F32', shape: [2], data_offsets: [4, 12] } }, new Uint8Array(8)))
    await expect(readSafetensorsHeader(file)).rejects.toThrow("offsets.safetensors: tensor 'w' ends at byte 12 of a 8-byte data section (file truncated?)")
  })
})

// A tiny Qwen3-MoE: 3 layers, layer 1 dense through mlp_only_layers, layers 0 and 2 sparse with
// 4 experts of MLP width 6, 2 per token. Written as tensor lists by hand (names and shapes as
// transformers' Qwen3MoeForCausalLM saves them), not by the app.
const moeConfig = {
  architectures: ['Qwen3MoeForCausalLM'], model_type: 'qwen3_moe', vocab_size: 32, hidden_size: 8, intermediate_size: 16,
  num_hidden_layers: 3, num_attention_heads: 2, num_key_value_heads: 1, head_dim: 4, max_position_embeddings: 64,
  rms_norm_eps: 1e-6, rope_theta: 10000, torch_dtype: 'float32', tie_word_embeddings: false, bos_token_id: 1, eos_token_id: 2,
  num_experts: 4, num_experts_per_tok: 2, moe_intermediate_size: 6, decoder_sparse_step: 1, mlp_only_layers: [1],
  norm_topk_prob: true, router_aux_loss_coef: 0.02
}

function moeTensors(layout: 'per-expert' | 'fused', c: Record<string, unknown> = moeConfig): HandTensor[] {
  const C = 8, q = 8, kv = 4, D = 4, I = 16, E = 4, Im = 6
  const t = (name: string, shape: number[]): HandTensor => ({ name, dtype: 'F32', shape })
  const out = [t('model.embed_tokens.weight', [32, C])]
  for (let l = 0; l < 3; l++) {
    const p = `model.layers.${l}.`
    out.push(
      t(p + 'input_layernorm.weight', [C]), t(p + 'post_attention_layernorm.weight', [C]),
      t(p + 'self_attn.q_proj.weight', [q, C]), t(p + 'self_attn.k_proj.weight', [kv, C]), t(p + 'self_attn.v_proj.weight', [kv, C]),
      t(p + 'self_attn.o_proj.weight', [C, q]), t(p + 'self_attn.q_norm.weight', [D]), t(p + 'self_attn.k_norm.weight', [D])
    )
    const dense = (c.mlp_only_layers as number[]).includes(l)
    if (dense) {
      out.push(t(p + 'mlp.gate_proj.weight', [I, C]), t(p + 'mlp.up_proj.weight', [I, C]), t(p + 'mlp.down_proj.weight', [C, I]))
      continue
    }
    out.push(t(p + 'mlp.gate.weight', [E, C]))
    if (layout === 'fused') {
      out.push(t(p + 'mlp.experts.gate_up_proj', [E, 2 * Im, C]), t(p + 'mlp.experts.down_proj', [E, C, Im]))
    } else {
      for (let e = 0; e < E; e++) {
        const x = `${p}mlp.experts.${e}.`
        out.push(t(x + 'gate_proj.weight', [Im, C]), t(x + 'up_proj.weight', [Im, C]), t(x + 'down_proj.weight', [C, Im]))
      }
    }
  }
  out.push(t('model.norm.weight', [C]), t('lm_head.weight', [32, C]))
  return out
}

/** writeTinyModel's tokenizer files with the Qwen3-MoE config and hand-built weights. */
async function writeMoeModel(dir: string, tensors: HandTensor[], config: Record<string, unknown> = moeConfig): Promise<string> {
  await writeTinyModel(dir)
  await writeFile(join(dir, 'config.json'), JSON.stringify(config, null, 2))
  const { header, data } = layoutReversed(tensors)
  await writeFile(join(dir, 'model.safetensors'), safetensorsBytes(header, data))
  return dir
}

describe('inspectModelFolder on a Qwen3-MoE model', () => {
  // By hand: embeddings and head 2 * 32 * 8, the final norm 8; each layer's attention
  // 64 + 32 + 32 + 64 with norms 2 * 8 and q/k norms 2 * 4 (216); the dense layer's MLP
  // 3 * 16 * 8 = 384; each sparse layer's router 4 * 8 and 4 experts of 3 * 6 * 8 = 144.
  const expert = 3 * 6 * 8
  const total = 2 * 32 * 8 + 8 + 3 * 216 + 384 + 2 * (4 * 8 + 4 * expert)
  // A token uses 2 of the 4 experts of each sparse layer.
  const active = total - 2 * (4 - 2) * expert
  const moeFacts = (layout: string) => ({
    architecture: 'Qwen3MoeForCausalLM', modelType: 'qwen3_moe', layers: 3, hidden: 8, intermediate: 16, headDim: 4,
    parameters: total, activeParameters: active, weightBytes: 4 * total,
    moe: { experts: 4, expertsPerToken: 2, expertIntermediate: 6, sparseLayers: 2, normTopkProb: true, routerAuxLossCoef: 0.02, expertLayout: layout }
  })

  it('reads experts, active experts and active parameters of per-expert tensors, with a dense layer by mlp_only_layers', async () => {
    const dir = await writeMoeModel(join(root, 'moe'), moeTensors('per-expert'))
    const facts = await inspectModelFolder(dir)
    expect(total).toBe(2768)
    expect(facts).toMatchObject(moeFacts('per-expert'))
    expect(facts.tensorCount).toBe(1 + 3 * 8 + 3 + 2 * (1 + 4 * 3) + 2)
    expect(facts.memory.inference).toBeGreaterThan(0)
    // The engine loads the same folder and counts the same.
    const model = await Model.load(dir, { threads: 1 })
    try {
      expect(model.config.parameters).toBe(total)
      expect(model.config.activeParameters).toBe(active)
      expect(model.config.moe).toMatchObject({ experts: 4, expertsPerToken: 2, expertIntermediate: 6, sparseLayers: 2, normTopkProb: true })
    } finally {
      model.dispose()
    }
  })

  it('reads the same facts from transformers 5 fused experts (gate_up_proj [E, 2I, C], down_proj [E, C, I])', async () => {
    const dir = await writeMoeModel(join(root, 'fused'), moeTensors('fused'))
    const facts = await inspectModelFolder(dir)
    expect(facts).toMatchObject(moeFacts('fused'))
    expect(facts.tensorCount).toBe(1 + 3 * 8 + 3 + 2 * 3 + 2)
  })

  it("takes Qwen3MoeConfig's defaults for absent keys: every layer sparse, 128 experts, 8 per token of width 768", async () => {
    expect(readMoeConfig({ architectures: ['Qwen3MoeForCausalLM'] }, 3)).toEqual({
      experts: 128, expertsPerToken: 8, expertIntermediate: 768, sparseStep: 1, mlpOnlyLayers: [], normTopkProb: false,
      routerAuxLossCoef: 0.001, sparseLayers: [0, 1, 2]
    })
    // A folder with 8 experts (the default 128 would make a 28 MB file) and every other key left out.
    const config: Record<string, unknown> = { ...moeConfig, num_experts: 8, mlp_only_layers: [] }
    for (const key of ['num_experts_per_tok', 'moe_intermediate_size', 'decoder_sparse_step', 'norm_topk_prob', 'router_aux_loss_coef', 'mlp_only_layers']) delete config[key]
    const C = 8, Im = 768, E = 8
    const tensors = moeTensors('fused', { mlp_only_layers: [] }).map((t) =>
      t.name.endsWith('mlp.gate.weight') ? { ...t, shape: [E, C] }
        : t.name.endsWith('gate_up_proj') ? { ...t, shape: [E, 2 * Im, C] }
          : t.name.endsWith('experts.down_proj') ? { ...t, shape: [E, C, Im] } : t
    )
    const facts = await inspectModelFolder(await writeMoeModel(join(root, 'defaults'), tensors, config))
    expect(facts.moe).toEqual({ experts: 8, expertsPerToken: 8, expertIntermediate: 768, sparseLayers: 3, normTopkProb: false, routerAuxLossCoef: 0.001, expertLayout: 'fused' })
    // every expert is used: all parameters are active
    expect(facts.activeParameters).toBe(facts.parameters)
    // num_experts 0: no experts, every layer dense
    expect(readMoeConfig({ architectures: ['Qwen3MoeForCausalLM'], num_experts: 0 }, 3)).toBeNull()
    // transformers >= 5 writes num_experts as num_local_experts
    expect(readMoeConfig({ architectures: ['Qwen3MoeForCausalLM'], num_local_experts: 6, num_experts_per_tok: 2 }, 3)?.experts).toBe(6)
  })

  it('a dense model has no experts and all its parameters active', async () => {
    const facts = await inspectModelFolder(await writeHandBuiltModel(join(root, 'dense')))
    expect(facts.moe).toBeUndefined()
    expect(facts.activeParameters).toBe(facts.parameters)
  })

  const cases: [string, () => { tensors: HandTensor[]; config?: Record<string, unknown> }, RegExp][] = [
    ['a sparse layer without its router',
      () => ({ tensors: moeTensors('per-expert').filter((t) => t.name !== 'model.layers.2.mlp.gate.weight') }),
      /no tensor 'model\.layers\.2\.mlp\.gate\.weight' \(the router of layer 2: config\.json makes it sparse: num_experts=4, decoder_sparse_step=1, mlp_only_layers=\[1\]\)/],
    ['an expert missing',
      () => ({ tensors: moeTensors('per-expert').filter((t) => t.name !== 'model.layers.0.mlp.experts.3.down_proj.weight') }),
      /no tensor 'model\.layers\.0\.mlp\.experts\.3\.down_proj\.weight' \(layer 0: /],
    ['an expert of another width than moe_intermediate_size',
      () => ({ tensors: moeTensors('per-expert'), config: { ...moeConfig, moe_intermediate_size: 5 } }),
      /tensor 'model\.layers\.0\.mlp\.experts\.0\.gate_proj\.weight' has shape \[6,8\], expected \[5,8\] \(.*moe_intermediate_size=5\)/],
    ['fused experts of the wrong count',
      () => ({ tensors: moeTensors('fused').map((t) => (t.name === 'model.layers.0.mlp.experts.down_proj' ? { ...t, shape: [3, 8, 6] } : t)) }),
      /tensor 'model\.layers\.0\.mlp\.experts\.down_proj' has shape \[3,8,6\], expected \[4,8,6\]/],
    ['a sparse layer with no experts at all',
      () => ({ tensors: moeTensors('fused').filter((t) => !t.name.startsWith('model.layers.2.mlp.experts.')) }),
      /no tensor 'model\.layers\.2\.mlp\.experts\.0\.gate_proj\.weight' \(or the fused 'model\.layers\.2\.mlp\.experts\.gate_up_proj' and 'model\.layers\.2\.mlp\.experts\.down_proj'\)/],
    ['a layer made dense by mlp_only_layers that has experts instead of an MLP',
      () => ({ tensors: moeTensors('per-expert'), config: { ...moeConfig, mlp_only_layers: [0] } }),
      /no tensor 'model\.layers\.0\.mlp\.gate_proj\.weight': layer 0 is dense \(decoder_sparse_step=1, mlp_only_layers=\[0\]\)/],
    ['more experts per token than experts',
      () => ({ tensors: moeTensors('per-expert'), config: { ...moeConfig, num_experts_per_tok: 5 } }),
      /config\.json: num_experts_per_tok \(5\) is more than num_experts \(4\)/],
    ['a layer index that is not one',
      () => ({ tensors: moeTensors('per-expert'), config: { ...moeConfig, mlp_only_layers: [1, -1] } }),
      /config\.json: mlp_only_layers holds -1, not a layer index/]
  ]
  for (const [name, make, message] of cases) {
    it(`names what is wrong: ${name}`, async () => {
      const { tensors, config } = make()
      await expect(inspectModelFolder(await writeMoeModel(join(root, 'broken-moe'), tensors, config))).rejects.toThrow(message)
    })
  }
})
