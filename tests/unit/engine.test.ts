// The native engine through its TS API: loading (dtypes, shards, corrupt files), log-probs,
// training steps, adapters and training state on disk, cancellation and disposal.
import { copyFileSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { engineFacts, Model, type Batch } from '../../native/index'
import { mustRun } from '../../native/scripts/ci.js'
import { encodeSafetensors, tinyBatch, tinyTensors, writeTinyModel, type Tensor } from './engine-fixture'

let root = ''
beforeAll(() => {
  root = mkdtempSync(join(tmpdir(), 'tunebench-engine-'))
})
afterAll(() => {
  rmSync(root, { recursive: true, force: true })
})

function sftGrad(batch: Batch): Float32Array {
  // SFT: L = -sum(lp over masked tokens) / count  =>  dL/dlp = -1/count on masked tokens.
  const count = batch.mask.reduce((a, b) => a + b, 0)
  return Float32Array.from(batch.mask, (m) => (m ? -1 / count : 0))
}

function sftLoss(lp: Float32Array, batch: Batch): number {
  let s = 0, n = 0
  for (let i = 0; i < lp.length; i++) if (batch.mask[i]) { s -= lp[i]; n++ }
  return s / n
}

const OPT = { lr: 0.02, beta1: 0.9, beta2: 0.999, eps: 1e-8, weightDecay: 0.01, maxGradNorm: 1 }

describe('engine facts', () => {
  it('reports the build: version, BLAS, threads, no CUDA backend in this build', () => {
    const f = engineFacts()
    expect(f.version).toMatch(/^\d+\.\d+\.\d+$/)
    expect(f.threads).toBeGreaterThanOrEqual(1)
    expect(['onednn', 'openblas', 'builtin']).toContain(f.blas)
    expect(f.cudaCompiled).toBe(false)
    expect(f.devices).toEqual(['cpu'])
    if (process.arch === 'x64') expect(f.cpuFeatures).toContain('sse2')
  })

  // CI installs a CUDA toolkit from PyPI wheels so that the CUDA sources are compiled (a compile
  // error fails it); elsewhere a build without a toolkit says so.
  it.runIf(mustRun() && process.platform === 'linux')('CI compiled the CUDA probe with a toolkit', () => {
    expect(engineFacts().cuda.toolkit).toBe(true)
  })

  it('asks the CUDA runtime about the machine: its version, the driver, the GPUs or why none', () => {
    const { cuda } = engineFacts()
    if (!cuda.toolkit) {
      expect(cuda).toMatchObject({ runtime: null, driver: null, gpus: [] })
      expect(cuda.note).toMatch(/no CUDA toolkit/)
      return
    }
    expect(cuda.runtime).toMatch(/^\d+\.\d+$/)
    for (const g of cuda.gpus) {
      expect(g.name.length).toBeGreaterThan(0)
      expect(g.memoryBytes).toBeGreaterThan(0)
      expect(g.computeCapability).toMatch(/^\d+\.\d+$/)
    }
    // A machine with no GPU (this CI) says why; the driver, when there is one, has a version.
    if (cuda.gpus.length === 0) expect(cuda.note).toMatch(/\S/)
    else expect(cuda.note).toBeNull()
    if (cuda.driver !== null) expect(cuda.driver).toMatch(/^\d+\.\d+$/)
  })
})

describe('loading', () => {
  it('reads the config and counts parameters', async () => {
    const dir = join(root, 'cfg')
    writeTinyModel(dir)
    const m = await Model.load(dir, { threads: 1 })
    const { tensors } = tinyTensors()
    let n = 0
    for (const t of tensors.values()) n += t.data.length
    expect(m.config).toMatchObject({ architecture: 'LlamaForCausalLM', layers: 2, hidden: 32, heads: 4, kvHeads: 2, headDim: 8, vocab: 64, tiedEmbeddings: false, parameters: n })
    m.dispose()
  })

  it('gives identical log-probs from F32, BF16 and F16 files of the same (exactly representable) weights', async () => {
    const { config, tensors } = tinyTensors({ seed: 5 })
    // multiples of 1/128 below 2 in magnitude are exact in bf16 and f16
    for (const t of tensors.values()) for (let i = 0; i < t.data.length; i++) t.data[i] = Math.round(t.data[i] * 128) / 128
    const batch = tinyBatch([9, 6], 9, 64)
    const results: Float32Array[] = []
    for (const dtype of ['F32', 'BF16', 'F16'] as const) {
      const dir = join(root, `dtype-${dtype}`)
      writeTinyModel(dir)
      writeFileSync(join(dir, 'config.json'), JSON.stringify(config))
      writeFileSync(join(dir, 'model.safetensors'), encodeSafetensors(tensors, dtype))
      const m = await Model.load(dir, { threads: 1, precision: 'f32' })
      results.push(await m.logps(batch, { adapters: false, train: false }))
      m.dispose()
    }
    expect(Array.from(results[1])).toEqual(Array.from(results[0]))
    expect(Array.from(results[2])).toEqual(Array.from(results[0]))
  })

  it('picks bf16 for BF16 and F16 files, f32 otherwise; bf16 of the same weights gives the same log-probs from any file', async () => {
    const { config, tensors } = tinyTensors({ seed: 6 })
    for (const t of tensors.values()) for (let i = 0; i < t.data.length; i++) t.data[i] = Math.round(t.data[i] * 128) / 128
    const batch = tinyBatch([9, 6], 9, 64)
    const bf16: Float32Array[] = []
    let f32: Float32Array | null = null
    for (const dtype of ['F32', 'BF16', 'F16'] as const) {
      const dir = join(root, `precision-${dtype}`)
      writeTinyModel(dir)
      writeFileSync(join(dir, 'config.json'), JSON.stringify(config))
      writeFileSync(join(dir, 'model.safetensors'), encodeSafetensors(tensors, dtype))
      const auto = await Model.load(dir, { threads: 1 })
      expect(auto.config.precision).toBe(dtype === 'F32' ? 'f32' : 'bf16')
      if (dtype === 'F32') f32 = await auto.logps(batch, { adapters: false, train: false })
      auto.dispose()
      const m = await Model.load(dir, { threads: 1, precision: 'bf16' })
      expect(m.config.precision).toBe('bf16')
      bf16.push(await m.logps(batch, { adapters: false, train: false }))
      m.setTrainable('full')
      expect(m.config.precision).toBe('f32') // full fine-tuning trains f32 master weights
      expect(Array.from(await m.logps(batch, { adapters: false, train: false }))).toEqual(Array.from(f32!))
      m.dispose()
    }
    expect(Array.from(bf16[1])).toEqual(Array.from(bf16[0]))
    expect(Array.from(bf16[2])).toEqual(Array.from(bf16[0]))
    // bf16 rounds each product's activations: close to f32, not equal
    const diff = Math.max(...Array.from(bf16[0], (v, i) => Math.abs(v - f32![i])))
    expect(diff).toBeGreaterThan(0)
    expect(diff).toBeLessThan(0.05)
    await expect(Model.load(join(root, 'precision-F32'), { precision: 'fp8' as never })).rejects.toThrow(/precision must be one of auto, f32, bf16, got fp8/)
  })

  it('loads a sharded checkpoint through model.safetensors.index.json', async () => {
    const single = join(root, 'single')
    writeTinyModel(single, { seed: 9 })
    const sharded = join(root, 'sharded')
    const { config, tensors } = tinyTensors({ seed: 9 })
    writeTinyModel(sharded, { seed: 9 })
    rmSync(join(sharded, 'model.safetensors'))
    writeFileSync(join(sharded, 'config.json'), JSON.stringify(config))
    const names = [...tensors.keys()]
    const half = Math.floor(names.length / 2)
    const weightMap: Record<string, string> = {}
    const shards = [names.slice(0, half), names.slice(half)]
    shards.forEach((part, i) => {
      const file = `model-0000${i + 1}-of-00002.safetensors`
      writeFileSync(join(sharded, file), encodeSafetensors(new Map(part.map((n) => [n, tensors.get(n) as Tensor]))))
      for (const n of part) weightMap[n] = file
    })
    writeFileSync(join(sharded, 'model.safetensors.index.json'), JSON.stringify({ metadata: {}, weight_map: weightMap }))
    const batch = tinyBatch([7, 7], 7, 64)
    const a = await Model.load(single)
    const b = await Model.load(sharded)
    expect(Array.from(await b.logps(batch, { adapters: false, train: false }))).toEqual(Array.from(await a.logps(batch, { adapters: false, train: false })))
  })

  describe('corrupt or unsupported checkpoints fail with the file and tensor named', () => {
    const corrupt = (name: string, mutate: (dir: string, file: Buffer) => void): string => {
      const dir = join(root, `corrupt-${name}`)
      writeTinyModel(dir)
      mutate(dir, readFileSync(join(dir, 'model.safetensors')))
      return dir
    }

    it('truncated file', async () => {
      const dir = corrupt('truncated', (d, f) => writeFileSync(join(d, 'model.safetensors'), f.subarray(0, f.length - 100)))
      await expect(Model.load(dir)).rejects.toThrow(/model\.safetensors: truncated file: tensor 'lm_head\.weight'/)
    })

    it('wrong header length', async () => {
      const dir = corrupt('header', (d, f) => {
        const g = Buffer.from(f)
        g.writeBigUInt64LE(BigInt(f.length * 2), 0)
        writeFileSync(join(d, 'model.safetensors'), g)
      })
      await expect(Model.load(dir)).rejects.toThrow(/model\.safetensors: bad safetensors header length/)
    })

    it('file shorter than the header length field', async () => {
      const dir = corrupt('tiny', (d) => writeFileSync(join(d, 'model.safetensors'), Buffer.from([1, 2, 3])))
      await expect(Model.load(dir)).rejects.toThrow(/model\.safetensors: truncated safetensors file/)
    })

    it('unsupported dtype', async () => {
      const dir = corrupt('dtype', (d) => {
        const { tensors } = tinyTensors()
        writeFileSync(join(d, 'model.safetensors'), encodeSafetensors(tensors, 'F32', 'I32'))
      })
      await expect(Model.load(dir)).rejects.toThrow(/model\.safetensors: tensor '[^']+' has unsupported dtype I32/)
    })

    it('dtype that does not match the byte range', async () => {
      const dir = corrupt('dtype-size', (d) => {
        const { tensors } = tinyTensors()
        writeFileSync(join(d, 'model.safetensors'), encodeSafetensors(tensors, 'F32', 'BF16'))
      })
      await expect(Model.load(dir)).rejects.toThrow(/tensor '[^']+' byte range .* does not match dtype BF16/)
    })

    it('missing tensor', async () => {
      const dir = corrupt('missing', (d) => {
        const { tensors } = tinyTensors()
        tensors.delete('model.layers.1.mlp.up_proj.weight')
        writeFileSync(join(d, 'model.safetensors'), encodeSafetensors(tensors))
      })
      await expect(Model.load(dir)).rejects.toThrow(/model\.safetensors: missing tensor 'model\.layers\.1\.mlp\.up_proj\.weight'/)
    })

    it('misshapen tensor', async () => {
      const dir = corrupt('shape', (d) => {
        const { tensors } = tinyTensors()
        tensors.set('model.layers.0.self_attn.k_proj.weight', { shape: [8, 32], data: new Float32Array(256) })
        writeFileSync(join(d, 'model.safetensors'), encodeSafetensors(tensors))
      })
      await expect(Model.load(dir)).rejects.toThrow(/tensor 'model\.layers\.0\.self_attn\.k_proj\.weight' has shape \[8, 32\], expected \[16, 32\]/)
    })

    it('unsupported architecture', async () => {
      const dir = corrupt('arch', (d) => {
        const cfg = JSON.parse(readFileSync(join(d, 'config.json'), 'utf8'))
        cfg.architectures = ['GPT2LMHeadModel']
        writeFileSync(join(d, 'config.json'), JSON.stringify(cfg))
      })
      await expect(Model.load(dir)).rejects.toThrow(/config\.json: unsupported architecture 'GPT2LMHeadModel'/)
    })

    it('missing config field', async () => {
      const dir = corrupt('field', (d) => {
        const cfg = JSON.parse(readFileSync(join(d, 'config.json'), 'utf8'))
        delete cfg.hidden_size
        writeFileSync(join(d, 'config.json'), JSON.stringify(cfg))
      })
      await expect(Model.load(dir)).rejects.toThrow(/config\.json: missing field 'hidden_size'/)
    })
  })
})

describe('log-probs', () => {
  let model: Model
  beforeAll(async () => {
    const dir = join(root, 'lp')
    writeTinyModel(dir, { architecture: 'Qwen3ForCausalLM', seed: 21 })
    model = await Model.load(dir, { threads: 2 })
  })

  it('are log-probabilities only where the mask is 1, and padding does not change a row', async () => {
    const batch = tinyBatch([10, 4, 7], 10, 64)
    const lp = await model.logps(batch, { adapters: false, train: false })
    for (let i = 0; i < lp.length; i++) {
      if (batch.mask[i]) expect(lp[i]).toBeLessThan(0)
      else expect(lp[i]).toBe(0)
    }
    // Row 1 alone, without padding, gives the same numbers.
    const alone = { ids: batch.ids.slice(10, 14), batch: 1, seqLen: 4, lengths: Int32Array.of(4), mask: batch.mask.slice(10, 14) }
    const lp1 = await model.logps(alone, { adapters: false, train: false })
    for (let t = 0; t < 4; t++) expect(lp1[t]).toBeCloseTo(lp[10 + t], 5)
  })

  it('rejects a mask on position 0 or on padding, and ids outside the vocabulary', async () => {
    const batch = tinyBatch([5, 3], 5, 64)
    const atZero = { ...batch, mask: Uint8Array.from(batch.mask) }
    atZero.mask[0] = 1
    await expect(model.logps(atZero, { adapters: false, train: false })).rejects.toThrow(/mask\[0,0\] is 1 at position 0/)
    const onPad = { ...batch, mask: Uint8Array.from(batch.mask) }
    onPad.mask[5 + 4] = 1
    await expect(model.logps(onPad, { adapters: false, train: false })).rejects.toThrow(/mask\[1,4\] is 1 at padding/)
    const badId = { ...batch, ids: Int32Array.from(batch.ids) }
    badId.ids[2] = 64
    await expect(model.logps(badId, { adapters: false, train: false })).rejects.toThrow(/ids\[0,2\] = 64 is outside the vocabulary/)
    expect(() => model.logps({ ...batch, lengths: Int32Array.of(5) }, { adapters: false, train: false })).toThrow(/lengths/)
  })
})

describe('training', () => {
  it('SFT steps lower the loss, the reference pass stays the base model, and the adapter round-trips through disk', async () => {
    const dir = join(root, 'train')
    writeTinyModel(dir, { seed: 31 })
    const m = await Model.load(dir, { threads: 2 })
    const batch = tinyBatch([12, 9], 12, 64, 3)
    const ref0 = await m.logps(batch, { adapters: false, train: false })
    m.addLora({ rank: 4, alpha: 8, dropout: 0, targets: ['q', 'k', 'v', 'o', 'gate', 'up', 'down'], rslora: false, seed: 1 })
    // B = 0 at init: the adapter changes nothing yet.
    expect(Array.from(await m.logps(batch, { adapters: true, train: false }))).toEqual(Array.from(ref0))
    const losses: number[] = []
    for (let step = 0; step < 8; step++) {
      m.zeroGrad()
      const lp = await m.logps(batch, { adapters: true, train: true })
      losses.push(sftLoss(lp, batch))
      await m.backward(sftGrad(batch))
      const { gradNorm } = await m.optimizerStep(OPT)
      expect(gradNorm).toBeGreaterThan(0)
    }
    expect(losses[7]).toBeLessThan(losses[0] - 0.1)
    expect(Array.from(await m.logps(batch, { adapters: false, train: false }))).toEqual(Array.from(ref0))

    const trained = await m.logps(batch, { adapters: true, train: false })
    const adapterDir = join(root, 'adapter-out')
    await m.saveAdapter(adapterDir, 'tiny/base')
    const cfg = JSON.parse(readFileSync(join(adapterDir, 'adapter_config.json'), 'utf8'))
    expect(cfg).toMatchObject({ peft_type: 'LORA', task_type: 'CAUSAL_LM', r: 4, lora_alpha: 8, bias: 'none', use_rslora: false, use_dora: false, base_model_name_or_path: 'tiny/base', inference_mode: true })
    expect(Number.isInteger(cfg.lora_alpha)).toBe(true)
    expect([...cfg.target_modules].sort()).toEqual(['down_proj', 'gate_proj', 'k_proj', 'o_proj', 'q_proj', 'up_proj', 'v_proj'])
    const other = await Model.load(dir)
    const opts = await other.loadAdapter(adapterDir)
    expect(opts).toMatchObject({ rank: 4, alpha: 8, dropout: 0, rslora: false })
    const again = await other.logps(batch, { adapters: true, train: false })
    for (let i = 0; i < trained.length; i++) expect(again[i]).toBeCloseTo(trained[i], 6)
  })

  it('resuming from saveTrainingState gives the same weights as an uninterrupted run', async () => {
    const dir = join(root, 'resume')
    writeTinyModel(dir, { seed: 41 })
    const batch = tinyBatch([8, 8], 8, 64, 2)
    const lora = { rank: 2, alpha: 4, dropout: 0, targets: ['q', 'v', 'down'] as ('q' | 'v' | 'down')[], rslora: true, seed: 3 }
    const step = async (m: Model): Promise<void> => {
      m.zeroGrad()
      await m.logps(batch, { adapters: true, train: true })
      await m.backward(sftGrad(batch))
      await m.optimizerStep(OPT)
    }
    const a = await Model.load(dir)
    a.addLora(lora)
    await step(a)
    await a.saveAdapter(join(root, 'resume-adapter'), dir)
    await a.saveTrainingState(join(root, 'resume-state.safetensors'))
    await step(a)
    await step(a)
    const b = await Model.load(dir)
    await b.loadAdapter(join(root, 'resume-adapter'))
    await b.loadTrainingState(join(root, 'resume-state.safetensors'))
    await step(b)
    await step(b)
    const la = await a.logps(batch, { adapters: true, train: false })
    const lb = await b.logps(batch, { adapters: true, train: false })
    expect(Array.from(lb)).toEqual(Array.from(la))
    // A state file for another trainable set is refused with the tensor named.
    const c = await Model.load(dir)
    c.addLora({ ...lora, targets: ['q'] })
    await expect(c.loadTrainingState(join(root, 'resume-state.safetensors'))).resolves.toBeUndefined()
    c.addLora({ ...lora, targets: ['k'] })
    await expect(c.loadTrainingState(join(root, 'resume-state.safetensors'))).rejects.toThrow(/missing tensor 'base_model\.model\.model\.layers\.0\.self_attn\.k_proj\.lora_A\.weight\.exp_avg'/)
  })

  it('full fine-tuning trains every weight, including the reference pass', async () => {
    const dir = join(root, 'full')
    writeTinyModel(dir, { seed: 51, tied: true, architecture: 'Qwen2ForCausalLM' })
    const m = await Model.load(dir)
    m.setTrainable('full')
    const batch = tinyBatch([6, 6], 6, 64, 1)
    const before = await m.logps(batch, { adapters: false, train: true })
    await m.backward(sftGrad(batch))
    const grads = m.gradients()
    expect(Object.keys(grads)).toContain('model.embed_tokens.weight')
    expect(Object.keys(grads)).toContain('model.layers.0.self_attn.q_proj.bias')
    expect(m.gradNorm()).toBeGreaterThan(0)
    await m.optimizerStep(OPT)
    const after = await m.logps(batch, { adapters: false, train: false })
    expect(sftLoss(after, batch)).toBeLessThan(sftLoss(before, batch))
  })

  it('backward accumulates: two calls give twice the gradient of one', async () => {
    const dir = join(root, 'accumulate')
    writeTinyModel(dir, { seed: 57 })
    const m = await Model.load(dir)
    m.addLora({ rank: 2, alpha: 4, dropout: 0, targets: ['v', 'up'], rslora: false, seed: 2 })
    const batch = tinyBatch([7, 5], 7, 64, 2)
    await m.logps(batch, { adapters: true, train: true })
    await m.backward(sftGrad(batch))
    const once = m.gradients()
    const norm1 = m.gradNorm()
    await m.backward(sftGrad(batch))
    const twice = m.gradients()
    for (const [name, g] of Object.entries(once)) for (let i = 0; i < g.length; i++) expect(twice[name][i]).toBeCloseTo(2 * g[i], 6)
    expect(m.gradNorm()).toBeCloseTo(2 * norm1, 5)
    m.zeroGrad()
    expect(m.gradNorm()).toBe(0)
  })

  it('a reference pass between logps(train) and backward leaves the saved pass intact (DPO order)', async () => {
    const dir = join(root, 'dpo-order')
    writeTinyModel(dir, { seed: 58 })
    const batch = tinyBatch([8, 6, 7], 8, 64, 2)
    const other = tinyBatch([5, 5], 5, 64, 1, 9)
    const lora = { rank: 2, alpha: 4, dropout: 0.1, targets: ['q', 'o', 'down'] as ('q' | 'o' | 'down')[], rslora: false, seed: 6 }
    const grads = async (withReference: boolean): Promise<Record<string, Float32Array>> => {
      const m = await Model.load(dir)
      m.addLora(lora)
      await m.logps(batch, { adapters: true, train: true, dropoutSeed: 42 })
      if (withReference) {
        await m.logps(batch, { adapters: false, train: false })
        await m.logps(other, { adapters: true, train: false })
      }
      await m.backward(sftGrad(batch))
      return m.gradients()
    }
    const plain = await grads(false)
    const interleaved = await grads(true)
    for (const [name, g] of Object.entries(plain)) expect(Array.from(interleaved[name]), name).toEqual(Array.from(g))
  })

  it('full fine-tuning resumes exactly from saveTrainingState (weights and moments)', async () => {
    const dir = join(root, 'full-resume')
    writeTinyModel(dir, { seed: 59, architecture: 'Qwen3ForCausalLM' })
    const batch = tinyBatch([6, 4], 6, 64, 1)
    const step = async (m: Model): Promise<void> => {
      m.zeroGrad()
      await m.logps(batch, { adapters: false, train: true })
      await m.backward(sftGrad(batch))
      await m.optimizerStep(OPT)
    }
    const a = await Model.load(dir)
    a.setTrainable('full')
    await step(a)
    await a.saveTrainingState(join(root, 'full-state.safetensors'))
    await step(a)
    const b = await Model.load(dir)
    b.setTrainable('full')
    await b.loadTrainingState(join(root, 'full-state.safetensors'))
    await step(b)
    expect(Array.from(await b.logps(batch, { adapters: false, train: false }))).toEqual(Array.from(await a.logps(batch, { adapters: false, train: false })))
    const lora = await Model.load(dir)
    lora.addLora({ rank: 2, alpha: 4, dropout: 0, targets: ['q'], rslora: false, seed: 1 })
    await expect(lora.loadTrainingState(join(root, 'full-state.safetensors'))).rejects.toThrow(/training state is for mode 'full' but the model is in mode 'lora'/)
  })

  it('addLora rejects options PEFT could not represent', async () => {
    const dir = join(root, 'lora-options')
    writeTinyModel(dir)
    const m = await Model.load(dir)
    const ok = { rank: 2, alpha: 4, dropout: 0, targets: ['q'] as 'q'[], rslora: false, seed: 1 }
    expect(() => m.addLora({ ...ok, rank: 2.5 })).toThrow(/rank must be a positive integer/)
    expect(() => m.addLora({ ...ok, alpha: 0 })).toThrow(/alpha must be a positive number/)
    expect(() => m.addLora({ ...ok, dropout: 1 })).toThrow(/dropout must be in \[0, 1\)/)
    expect(() => m.addLora({ ...ok, seed: -1 })).toThrow(/seed must be a non-negative integer/)
    expect(() => m.addLora({ ...ok, targets: [] })).toThrow(/at least one target/)
    expect(() => m.addLora(ok)).not.toThrow()
  })

  it('backward without a training pass, or with nothing trainable, is an error', async () => {
    const dir = join(root, 'nothing')
    writeTinyModel(dir)
    const m = await Model.load(dir)
    const batch = tinyBatch([4], 4, 64)
    await expect(m.backward(sftGrad(batch))).rejects.toThrow(/no train=true logps call/)
    await m.logps(batch, { adapters: false, train: true })
    await expect(m.backward(sftGrad(batch))).rejects.toThrow(/nothing is trainable/)
  })

  it('adapter_config.json carries the LoRA options as PEFT writes them', async () => {
    const dir = join(root, 'peft-config')
    writeTinyModel(dir, { seed: 63 })
    const m = await Model.load(dir)
    m.addLora({ rank: 3, alpha: 6, dropout: 0.05, targets: ['k', 'gate'], rslora: true, seed: 4 })
    const out = join(root, 'peft-config-adapter')
    await m.saveAdapter(out, 'org/tiny')
    const text = readFileSync(join(out, 'adapter_config.json'), 'utf8')
    expect(text).toMatch(/"lora_alpha": 6,/)
    expect(text).toMatch(/"lora_dropout": 0\.05,/)
    const cfg = JSON.parse(text)
    expect(cfg).toMatchObject({ r: 3, use_rslora: true, fan_in_fan_out: false, init_lora_weights: true, modules_to_save: null, target_modules: ['k_proj', 'gate_proj'] })
    expect((await (await Model.load(dir)).loadAdapter(out))).toEqual({ rank: 3, alpha: 6, dropout: 0.05, targets: ['k', 'gate'], rslora: true, dora: false, seed: 0 })
  })

  it('a PEFT folder with an unknown tensor is refused and the current adapter is kept', async () => {
    const dir = join(root, 'peft-bad')
    writeTinyModel(dir, { seed: 61 })
    const m = await Model.load(dir)
    m.addLora({ rank: 2, alpha: 2, dropout: 0, targets: ['q'], rslora: false, seed: 9 })
    const good = join(root, 'peft-good')
    await m.saveAdapter(good, 'x')
    const bad = join(root, 'peft-bad-adapter')
    await m.saveAdapter(bad, 'x')
    const cfg = JSON.parse(readFileSync(join(bad, 'adapter_config.json'), 'utf8'))
    cfg.target_modules = ['q_proj', 'v_proj']
    writeFileSync(join(bad, 'adapter_config.json'), JSON.stringify(cfg))
    await expect(m.loadAdapter(bad)).rejects.toThrow(/adapter_model\.safetensors: missing tensor 'base_model\.model\.model\.layers\.0\.self_attn\.v_proj\.lora_A\.weight'/)
    copyFileSync(join(good, 'adapter_config.json'), join(bad, 'adapter_config.json'))
    cfg.target_modules = ['c_attn']
    writeFileSync(join(bad, 'adapter_config.json'), JSON.stringify(cfg))
    await expect(m.loadAdapter(bad)).rejects.toThrow(/target module 'c_attn' is not supported/)
    // the adapter attached before the failed loads still works
    const batch = tinyBatch([5], 5, 64)
    await m.logps(batch, { adapters: true, train: true })
    await m.backward(sftGrad(batch))
    expect(Object.keys(m.gradients())).toHaveLength(4)
  })
})

describe('calls', () => {
  it('cancel() makes the waiting call reject with "cancelled"; later calls run', async () => {
    const dir = join(root, 'cancel')
    writeTinyModel(dir, { seed: 71 })
    const m = await Model.load(dir, { threads: 1 })
    const big = tinyBatch([512, 512, 512, 512], 512, 64)
    const first = m.logps(big, { adapters: false, train: false })
    const second = m.logps(big, { adapters: false, train: false })
    m.cancel()
    const results = await Promise.allSettled([first, second])
    expect(results[1].status).toBe('rejected')
    expect(String((results[1] as PromiseRejectedResult).reason)).toMatch(/cancelled/)
    const small = tinyBatch([4], 4, 64)
    await expect(m.logps(small, { adapters: false, train: false })).resolves.toBeInstanceOf(Float32Array)
  })

  it('cancel() reaches the calls issued before it only: neither a call queued after it nor a later call is cancelled', async () => {
    const dir = join(root, 'cancel-tickets')
    writeTinyModel(dir, { seed: 72 })
    const m = await Model.load(dir, { threads: 1 })
    const big = tinyBatch([512, 512, 512, 512], 512, 64)
    const small = tinyBatch([4], 4, 64)
    const first = m.logps(big, { adapters: false, train: false })
    m.cancel()
    const after = m.logps(small, { adapters: false, train: false })  // queued after the cancel
    const [r1, r2] = await Promise.allSettled([first, after])
    expect(r1.status).toBe('rejected')
    expect(r2.status).toBe('fulfilled')
    // A cancel while nothing runs is not carried over to the next call.
    m.cancel()
    await expect(m.logps(small, { adapters: false, train: false })).resolves.toBeInstanceOf(Float32Array)
  })

  it('stopRow() stops a row of the generation running, not of one queued behind it', async () => {
    const dir = join(root, 'stop-row')
    writeTinyModel(dir, { seed: 73 })
    const m = await Model.load(dir, { threads: 1 })
    const prompts = [Int32Array.from([1, 2, 3]), Int32Array.from([4, 5])]
    // Long enough that the first streamed step reaches JavaScript while the call still runs.
    const opts = { temperature: 1, topK: 0, topP: 1, minP: 0, repetitionPenalty: 1, maxNewTokens: 20000, eosIds: [], seeds: [1, 2] }
    let stopped = false
    const running = m.generate(prompts, opts, () => {
      if (!stopped) {
        stopped = true
        m.stopRow(1)
      }
    })
    const queued = m.generate(prompts, { ...opts, maxNewTokens: 40 })
    const [a, b] = await Promise.all([running, queued])
    expect(a.map((r) => r.finish)).toEqual(['length', 'stop'])
    expect(a[1]!.tokens.length).toBeLessThan(20000)
    expect(b.map((r) => r.finish)).toEqual(['length', 'length'])
  })

  it('dispose() frees the model; later calls fail with a clear message', async () => {
    const dir = join(root, 'dispose')
    writeTinyModel(dir)
    const m = await Model.load(dir)
    m.dispose()
    expect(() => m.logps(tinyBatch([3], 3, 64), { adapters: false, train: false })).toThrow(/model disposed/)
    expect(() => m.zeroGrad()).toThrow(/model disposed/)
  })
})
