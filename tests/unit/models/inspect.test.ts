import { mkdtemp, readFile, rm, stat, truncate, unlink, writeFile } from 'node:fs/promises'
import { homedir, tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterEach, beforeEach, describe, expect, it } from 'vitest'
import { inspectModelFolder } from '../../../main/services/models/inspect'
import { encodeSafetensors } from '../../../main/services/models/safetensors'
import { engineFacts, Model } from '../../../native/index'
import { llamaTensorShapes, tinyConfig, writeTinyModel } from '../../fixtures/tinyModel'

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
  it('reads the facts of a single-file model and counts parameters from the safetensors headers', async () => {
    const dir = await writeTinyModel(join(root, 'tiny-llama'))
    const facts = await inspectModelFolder(dir)
    expect(facts).toMatchObject({
      dir,
      name: 'tiny-llama',
      architecture: 'LlamaForCausalLM',
      modelType: 'llama',
      layers: tinyConfig.num_hidden_layers,
      hidden: tinyConfig.hidden_size,
      intermediate: tinyConfig.intermediate_size,
      heads: tinyConfig.num_attention_heads,
      kvHeads: tinyConfig.num_key_value_heads,
      headDim: tinyConfig.hidden_size / tinyConfig.num_attention_heads,
      vocab: tinyConfig.vocab_size,
      dtype: 'float32',
      tensorDtypes: ['F32'],
      shards: 1,
      tiedEmbeddings: false,
      chatTemplate: true
    })
    expect(facts.parameters).toBe(llamaParameters(tinyConfig, false))
    expect(facts.tensorCount).toBe(llamaTensorShapes(tinyConfig, false).length)
    expect(facts.weightBytes).toBe(4 * facts.parameters)
  })

  it('reads a sharded model through its index, with tied embeddings and no chat template', async () => {
    const dir = await writeTinyModel(join(root, 'sharded'), { shards: 3, tiedEmbeddings: true, chatTemplate: false })
    const facts = await inspectModelFolder(dir)
    expect(facts.shards).toBe(3)
    expect(facts.tiedEmbeddings).toBe(true)
    expect(facts.chatTemplate).toBe(false)
    expect(facts.parameters).toBe(llamaParameters(tinyConfig, true))
  })

  it('counts a chat_template.jinja file as a chat template', async () => {
    const dir = await writeTinyModel(join(root, 'jinja'), { chatTemplate: false })
    await writeFile(join(dir, 'chat_template.jinja'), '{{ messages }}')
    expect((await inspectModelFolder(dir)).chatTemplate).toBe(true)
  })

  it('takes the dtype from the tensors when config.json names none', async () => {
    const dir = await writeTinyModel(join(root, 'nodtype'))
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
      const dir = await writeTinyModel(join(root, 'broken'))
      await breakIt(dir)
      await expect(inspectModelFolder(dir)).rejects.toThrow(message)
    })
  }

  it('a shard listed in the index but missing', async () => {
    const dir = await writeTinyModel(join(root, 'sharded'), { shards: 2 })
    await unlink(join(dir, 'model-00002-of-00002.safetensors'))
    await expect(inspectModelFolder(dir)).rejects.toThrow(/lists shard model-00002-of-00002\.safetensors, which is missing/)
  })

  it('an index mapping a tensor to a shard that lacks it', async () => {
    const dir = await writeTinyModel(join(root, 'sharded'), { shards: 2 })
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
    const dir = await writeTinyModel(join(root, 'fp8'))
    const fp8 = 'model.layers.0.mlp.up_proj.weight'
    const tensors = llamaTensorShapes(tinyConfig, false).map(([name, shape]) => {
      const count = shape.reduce((a, b) => a * b, 1)
      return name === fp8
        ? { name, dtype: 'F8_E4M3', shape, data: new Uint8Array(count) }
        : { name, dtype: 'F32', shape, data: new Uint8Array(4 * count) }
    })
    await writeFile(join(dir, 'model.safetensors'), encodeSafetensors(tensors))
    expect(engineFacts().dtypes).not.toContain('F8_E4M3')
    await expect(inspectModelFolder(dir)).rejects.toThrow(
      `model.safetensors: tensor '${fp8}' has dtype F8_E4M3, which the engine cannot load (it reads ${engineFacts().dtypes.join(', ')})`
    )
    // The engine refuses the same folder: the check at open time is the engine's own limit.
    await expect(Model.load(dir)).rejects.toThrow(/F8_E4M3/)
  })

  it('takes the architectures and dtypes from the limits it is given', async () => {
    const dir = await writeTinyModel(join(root, 'limits'))
    await expect(inspectModelFolder(dir, { architectures: ['Qwen3ForCausalLM'], dtypes: ['F32'] })).rejects.toThrow(
      'config.json: architecture "LlamaForCausalLM" is not supported (supported: Qwen3ForCausalLM)'
    )
    await expect(inspectModelFolder(dir, { architectures: ['LlamaForCausalLM'], dtypes: ['BF16'] })).rejects.toThrow(/has dtype F32, which the engine cannot load \(it reads BF16\)/)
    expect((await inspectModelFolder(dir, engineFacts())).architecture).toBe('LlamaForCausalLM')
  })
})
