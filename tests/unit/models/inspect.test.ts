import { copyFile, mkdtemp, readFile, rm, stat, truncate, unlink, writeFile } from 'node:fs/promises'
import { homedir, tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterEach, beforeEach, describe, expect, it } from 'vitest'
import { inspectModelFolder } from '../../../main/services/models/inspect'
import { readSafetensorsHeader } from '../../../main/services/models/safetensors'
import { engineFacts, Model } from '../../../native/index'
import { layoutReversed, safetensorsBytes, tinyLlamaTensors, writeHandBuiltModel } from '../../fixtures/safetensorsBytes'
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
