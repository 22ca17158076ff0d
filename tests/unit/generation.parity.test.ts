// Greedy decoding through the generation service equals transformers' generate(do_sample=False)
// token for token on tiny random Llama, Qwen2 and Qwen3 checkpoints, with the adapters off and
// with a PEFT adapter (non-zero B), one prompt per call and the three prompts of different
// lengths in one batch, stopping at the eos ids of generation_config.json
// (tests/python/generation_parity.py).
import { mkdtempSync, readFileSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { generate } from '../../main/services/generation/generate'
import { GenerationPool, readEosIds } from '../../main/services/generation/pool'
import { writeIdTokenizer } from './generation-fixture'
import { engineBuilt, runPython, torchAvailable } from './trainingPython'

// Under CI a missing torch throws here and fails the file; elsewhere the suite skips, saying why.
const havePython = torchAvailable('generation parity tests')

interface Expected { prompts: number[][]; eos: number[]; maxNewTokens: number; base: number[][]; lora: number[][] }

describe.runIf(havePython && engineBuilt())('greedy generation equals transformers generate(do_sample=False)', () => {
  let root = ''
  const pool = new GenerationPool({ threads: 2 })
  beforeAll(async () => {
    root = mkdtempSync(join(tmpdir(), 'tunebench-genparity-'))
    await runPython([join(import.meta.dirname, '..', 'python', 'generation_parity.py'), 'make', root])
  }, 300_000)
  afterAll(async () => {
    await pool.dispose()
    if (root) rmSync(root, { recursive: true, force: true })
  })

  for (const arch of ['llama', 'qwen2', 'qwen3']) {
    for (const withAdapter of [false, true]) {
      it(`${arch}${withAdapter ? ' + PEFT adapter' : ''}: batch 1 and a batch of prompt lengths 5, 9, 3`, async () => {
        const dir = join(root, arch)
        const e = JSON.parse(readFileSync(join(dir, 'expected.json'), 'utf8')) as Expected
        const model = join(dir, 'model')
        writeIdTokenizer(model, 128)
        const source = { model, adapter: withAdapter ? join(dir, 'adapter') : null }
        const want = withAdapter ? e.lora : e.base
        expect(want.some((t) => e.eos.includes(t.at(-1)!)), 'some row ends on an eos id').toBe(true)
        expect([...e.base, ...e.lora].some((t) => t.length === e.maxNewTokens && !e.eos.includes(t.at(-1)!)), 'some row runs to the length').toBe(true)
        const settings = { temperature: 0, maxNewTokens: e.maxNewTokens }
        const prompts = e.prompts.map((ids) => ({ ids }))
        for (const batchSize of [1, 16]) {
          const got = await generate(pool, source, prompts, { settings, batchSize })
          expect(got.map((r) => r.completion_ids), `batch size ${batchSize}`).toEqual(want)
          got.forEach((r, i) => {
            expect(r.prompt_ids).toEqual(e.prompts[i])
            expect(r.finish_reason).toBe(e.eos.includes(want[i]!.at(-1)!) ? 'eos' : 'length')
            expect(r.logps).toHaveLength(want[i]!.length)
          })
        }
        // The eos ids come from generation_config.json (a list), not the tokenizer's eos.
        expect(await readEosIds(model, await pool.tokenizer(model))).toEqual(e.eos)
      })
    }
  }
})
