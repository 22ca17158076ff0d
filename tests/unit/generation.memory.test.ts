// A model too large for generation is refused before the engine loads or allocates anything:
// the pool plans each engine call (planInference: the weights in the precision auto loads, plus
// the KV cache of the call's rows × capacity) against the free memory ($TUNEBENCH_MEMORY_AVAILABLE
// faked here), for the Playground (generation.chat), `tunebench generate` and generate(); the
// message gives the estimate, the free memory and what to change. With enough memory the model
// loads as before. The engine is a spy (a fake Model) except where the CLI runs.
import { existsSync, mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest'
import type { GenerateOptions, GeneratedRow } from '../../native/index'
import { createGenerationHandlers } from '../../main/services/generation/handlers'
import { generate } from '../../main/services/generation/generate'
import { GenerationMemoryError, GenerationPool, type GenerationModel, type GenerationModelLoader } from '../../main/services/generation/pool'
import { checkInference, inferenceRefusal, readModelShape } from '../../main/services/training/memoryCheck'
import { formatMemory, kvCacheBytes, modelShape, planInference, weightBytes, type ModelShape } from '../../main/services/training/memoryPlan'
import { runCli } from './cli-run'
import { writeByteLevelModel } from './generation-fixture'
import { engineBuilt } from './trainingPython'

const ENV = 'TUNEBENCH_MEMORY_AVAILABLE'
const prevEnv = process.env[ENV]
afterEach(() => {
  if (prevEnv === undefined) delete process.env[ENV]
  else process.env[ENV] = prevEnv
})

/** A loader spy whose Model answers every row with one token. */
function spyLoader() {
  const spy = { loads: 0, generateCalls: 0, disposed: 0 }
  const load: GenerationModelLoader = async () => {
    spy.loads++
    const model: GenerationModel = {
      loadAdapter: async () => { throw new Error('no adapters here') },
      generate: async (prompts: Int32Array[], _o: GenerateOptions): Promise<GeneratedRow[]> => {
        spy.generateCalls++
        return prompts.map(() => ({ tokens: Int32Array.from([104]), logps: Float32Array.from([-1]), finish: 'length' as const }))
      },
      stopRow: () => {},
      cancel: () => {},
      dispose: () => void spy.disposed++
    }
    return model
  }
  return { spy, load }
}

let root = ''
let model = ''
let shape: ModelShape
beforeAll(async () => {
  root = mkdtempSync(join(tmpdir(), 'tb-genmem-'))
  model = writeByteLevelModel(join(root, 'model'), { seed: 3 })
  shape = await readModelShape(model)
})
afterAll(() => rmSync(root, { recursive: true, force: true }))

const big = { maxNewTokens: 4000, numReturnSequences: 16 }
const small = { maxNewTokens: 8, numReturnSequences: 1 }

describe('generation refuses a model too large for the free memory', () => {
  it('generate(): refused before Model.load with the estimate (weights, KV cache of rows × capacity), the free memory and what to change', async () => {
    process.env[ENV] = '8M'
    const { spy, load } = spyLoader()
    const pool = new GenerationPool({ threads: 1, load })
    const tok = await pool.tokenizer(model)
    const promptLen = tok.encode(tok.renderChat([{ role: 'user', content: 'hello' }], true), false).length
    const tokens = promptLen + big.maxNewTokens
    const err = await generate(pool, { model }, [{ prompt: 'hello' }], { settings: big }).catch((e: Error) => e)
    expect(err).toBeInstanceOf(GenerationMemoryError)
    const message = (err as Error).message
    const plan = planInference(shape, { sequences: 16, tokens, promptTokens: promptLen, threads: 1 })
    expect(plan.kvCache).toBe(kvCacheBytes(shape, 16, tokens))
    expect(plan.weights).toBe(weightBytes(shape, 'f32'))
    expect(message).toContain(`not enough memory to generate with ${model}: loading it for 16 sequences × ${tokens} tokens`)
    expect(message).toContain(`needs about ${formatMemory(plan.total - plan.runtime)}`)
    expect(message).toContain(`weights (f32) ${formatMemory(plan.weights)}`)
    expect(message).toContain(`KV cache of 16 × ${tokens} tokens ${formatMemory(plan.kvCache)}`)
    expect(message).toContain('and 8 MB is free')
    expect(message).toMatch(/Lower it with: .*fewer sequences at once \(16 → 8.*\): saves about [\d.]+ [kMG]B/)
    expect(message).toMatch(/shorter sequences \(\d+ → \d+ tokens of prompt \+ max new tokens\): saves about/)
    expect(message).toContain(`activations ${formatMemory(plan.activations)}`)
    expect(message).toMatch(/a bf16 checkpoint \(the weights held in 16 bits\): saves about [\d.]+ kB/)
    expect(spy.loads).toBe(0)
    expect(spy.generateCalls).toBe(0)
    expect(pool.loaded).toEqual([]) // forgotten: the next call plans again
  })

  it('generate(): loads as before when the call fits; a later, larger call on the loaded model is refused before the engine call', async () => {
    process.env[ENV] = '8M'
    const { spy, load } = spyLoader()
    const pool = new GenerationPool({ threads: 1, load })
    const got = await generate(pool, { model }, [{ prompt: 'hello' }], { settings: small })
    expect(got).toHaveLength(1)
    expect(spy.loads).toBe(1)
    expect(spy.generateCalls).toBe(1)
    const err = await generate(pool, { model }, [{ prompt: 'hello' }], { settings: big }).catch((e: Error) => e)
    expect((err as Error).message).toMatch(/this call \(16 sequences × \d+ tokens\) needs about [\d.]+ [kMG]B beside the loaded weights \(KV cache of 16 × \d+ tokens [\d.]+ [kMG]B, activations [\d.]+ [kMG]B\) and 8 MB is free/)
    expect((err as Error).message).not.toMatch(/bf16 checkpoint/) // the weights are loaded already
    expect(spy.generateCalls).toBe(1)
    // The model stays loaded and usable.
    expect(await generate(pool, { model }, [{ prompt: 'hello' }], { settings: small })).toHaveLength(1)
    expect(spy.loads).toBe(1)
    // With enough memory the large call runs.
    process.env[ENV] = '64G'
    expect(await generate(pool, { model }, [{ prompt: 'hello' }], { settings: big })).toHaveLength(16)
    await pool.dispose()
    expect(spy.disposed).toBe(1)
  })

  it('the Playground (generation.chat) shows the refusal and never loads the model; with enough memory it answers', async () => {
    const { spy, load } = spyLoader()
    const pool = new GenerationPool({ threads: 1, load })
    const h = createGenerationHandlers({ emit: () => {}, pool })
    const request = { id: 'a', source: { model, adapter: null }, system: null, turns: [{ role: 'user' as const, content: 'hi' }], settings: { maxNewTokens: 100000 } }
    process.env[ENV] = '16M'
    await expect(h['generation.chat'](request)).rejects.toThrow(/^not enough memory to generate with .*: loading it for 1 sequences × \d+ tokens needs about [\d.]+ [MG]B \(.*KV cache.*\) and 17 MB is free\. Lower it with: shorter sequences/)
    expect(spy.loads).toBe(0)
    process.env[ENV] = '64G'
    const reply = await h['generation.chat']({ ...request, id: 'b' })
    expect(reply.tokens).toBe(1)
    expect(spy.loads).toBe(1)
    await pool.dispose()
  })

  it('an injected free-memory figure is used over the environment', async () => {
    process.env[ENV] = '64G'
    const { spy, load } = spyLoader()
    const pool = new GenerationPool({ threads: 1, load, availableMemory: () => 1000 })
    await expect(generate(pool, { model }, [{ prompt: 'hi' }], { settings: small })).rejects.toThrow(/and 1 kB is free/)
    expect(spy.loads).toBe(0)
  })

  it('plans a BF16 checkpoint in bf16 (auto), and advises one for an f32 checkpoint whose weights dominate', () => {
    // Llama-2-7B's shape.
    const config = {
      architectures: ['LlamaForCausalLM'], hidden_size: 4096, intermediate_size: 11008, num_hidden_layers: 32,
      num_attention_heads: 32, num_key_value_heads: 32, vocab_size: 32000
    }
    const call = { sequences: 1, tokens: 256 }
    const bf16 = modelShape(config, 'BF16')
    const check = checkInference(bf16, call, { available: 2 ** 30, threads: 1 })
    expect(check.plan.precision).toBe('bf16')
    expect(check.plan.weights).toBe(weightBytes(bf16, 'bf16'))
    expect(check.fits).toBe(false)
    expect(check.advice.map((a) => a.change).join(' | ')).not.toMatch(/bf16/)
    const f32 = checkInference(modelShape(config, 'F32'), call, { available: 2 ** 30, threads: 1 })
    expect(f32.plan.precision).toBe('f32')
    expect(f32.advice[0]!.change).toMatch(/a bf16 checkpoint/)
    expect(f32.advice[0]!.saves).toBe(f32.need - checkInference(bf16, call, { available: 0, threads: 1 }).need)
    expect(inferenceRefusal('/models/llama', f32)).toMatch(/^not enough memory to generate with \/models\/llama: loading it for 1 sequences × 256 tokens needs about 27 GB \(weights \(f32\) 27 GB, KV cache of 1 × 256 tokens 268 MB, activations .*\) and 1\.1 GB is free\. Lower it with: a bf16 checkpoint \(the weights held in 16 bits\): saves about 13 GB/)
    expect(checkInference(bf16, call, { available: 2 ** 40, threads: 1 })).toMatchObject({ fits: true, advice: [] })
  })
})

describe.runIf(engineBuilt())('tunebench generate refuses a model too large for the free memory', () => {
  it('exits 1 with the estimate and the free memory, and writes no --out; with enough memory it generates', async () => {
    const out = join(root, 'out.jsonl')
    const args = ['--model', model, '--prompt', 'hello', '--out', out, '--threads', '1']
    process.env[ENV] = '8M'
    const refused = await runCli(['generate', ...args, '--max-new-tokens', '4000', '--num-return-sequences', '16'])
    expect(refused.code).toBe(1)
    expect(refused.stderr).toMatch(/^tunebench generate: not enough memory to generate with .*: loading it for 16 sequences × \d+ tokens needs about [\d.]+ [MG]B \(weights \(f32\) .*KV cache of 16 × \d+ tokens .*\) and 8 MB is free\. Lower it with: /)
    expect(existsSync(out)).toBe(false)
    process.env[ENV] = '64G'
    const ok = await runCli(['generate', ...args, '--max-new-tokens', '4'])
    expect(ok.code, ok.stderr).toBe(0)
    expect(existsSync(out)).toBe(true)
  }, 60_000)
})
