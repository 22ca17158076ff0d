// Parity of the native engine's Qwen3-MoE with transformers' Qwen3MoeForCausalLM, PEFT and torch
// autograd on tiny random checkpoints that tests/python/engine_moe_parity.py builds: three
// layers (sparse, dense via mlp_only_layers, sparse), experts fused as transformers >= 5 holds
// them or per expert, norm_topk_prob on and off. Log-probs within 1e-4; the load-balancing loss
// equal to transformers' load_balancing_loss_func; LoRA (attention, the dense MLP, every expert)
// and full fine-tuning gradients of log-probs + weight * aux within 1e-3 relative; adapters
// loading both ways with the same log-probs.
import { spawnSync } from 'node:child_process'
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { Model, type Batch } from '../../native/index'
import { readSafetensors } from './engine-fixture'
import { maxAbsDiff, worstRelative } from './parity-compare'
import { mustRun } from '../../native/scripts/ci.js'

const python = process.env.TUNEBENCH_PYTHON ?? 'python3'
const script = join(import.meta.dirname, '..', 'python', 'engine_moe_parity.py')
const probe = spawnSync(python, ['-c', 'import importlib.util as u, sys; sys.exit(0 if all(u.find_spec(m) for m in ("torch", "transformers", "peft", "safetensors")) else 1)'])
const havePython = probe.status === 0
const inCI = mustRun()
if (!havePython && !inCI) {
  console.warn(`engine MoE parity tests SKIPPED: ${python} with torch, transformers, peft and safetensors is not available (set TUNEBENCH_PYTHON; under CI they are required)`)
}

interface Expected {
  variant: string
  fused: boolean
  normTopkProb: boolean
  auxWeight: number
  batch: { ids: number[]; batch: number; seqLen: number; lengths: number[]; mask: number[] }
  gradLogps: number[]
  logpsBase: number[]
  auxBase: number
  logpsLora: number[]
  auxLora: number
}

const VARIANTS = ['fused_norm', 'experts_nonorm']
// 3 layers x 4 attention projections, the dense layer's 3, and 2 sparse layers x 4 experts x 3
const LORA_TENSORS = 2 * (3 * 4 + 3 + 2 * 4 * 3)

describe.skipIf(!havePython && !inCI)('engine Qwen3-MoE parity with transformers + PEFT', () => {
  let root = ''
  const ourLogps = new Map<string, Float32Array>()
  beforeAll(() => {
    expect(havePython, `${python} with torch, transformers, peft and safetensors is required under CI`).toBe(true)
    root = mkdtempSync(join(tmpdir(), 'tunebench-moe-parity-'))
    const r = spawnSync(python, [script, 'make', root], { encoding: 'utf8', env: { ...process.env, OMP_NUM_THREADS: '2' } })
    if (r.status !== 0) throw new Error(`engine_moe_parity.py make failed:\n${r.stderr}`)
  }, 300_000)
  afterAll(() => {
    if (root) rmSync(root, { recursive: true, force: true })
  })

  for (const variant of VARIANTS) {
    describe(variant, () => {
      let e: Expected
      let batch: Batch
      const dir = (): string => join(root, variant)
      beforeAll(() => {
        e = JSON.parse(readFileSync(join(dir(), 'expected.json'), 'utf8')) as Expected
        batch = { ids: Int32Array.from(e.batch.ids), batch: e.batch.batch, seqLen: e.batch.seqLen, lengths: Int32Array.from(e.batch.lengths), mask: Uint8Array.from(e.batch.mask) }
      })

      it('reads the config and the checkpoint\'s expert layout', async () => {
        const m = await Model.load(join(dir(), 'model'), { threads: 2 })
        const c = m.config
        expect(c.architecture).toBe('Qwen3MoeForCausalLM')
        expect(c.moe).toEqual({ experts: 4, expertsPerToken: 2, expertIntermediate: 24, sparseLayers: 2, normTopkProb: e.normTopkProb, routerAuxLossCoef: 0.01 })
        // two sparse layers leave 2 of 4 experts idle per token: 2 x 2 x 3 x 32 x 24
        expect(c.parameters - c.activeParameters).toBe(2 * 2 * 3 * 32 * 24)
        m.dispose()
      })

      it('base model log-probs within 1e-4 and the load-balancing loss equal to transformers\'', async () => {
        const m = await Model.load(join(dir(), 'model'), { threads: 2 })
        const lp = await m.logps(batch, { adapters: false, train: false })
        expect(maxAbsDiff(lp, e.logpsBase)).toBeLessThan(1e-4)
        expect(Math.abs(m.auxLoss()! - e.auxBase)).toBeLessThan(1e-5)
        m.dispose()
      })

      it('a PEFT adapter on attention, the dense MLP and every expert gives PEFT\'s log-probs', async () => {
        const m = await Model.load(join(dir(), 'model'), { threads: 2 })
        const opts = await m.loadAdapter(join(dir(), 'peft_adapter'))
        expect([...opts.targets].sort()).toEqual(['down', 'gate', 'k', 'o', 'q', 'up', 'v'])
        const lp = await m.logps(batch, { adapters: true, train: false })
        expect(maxAbsDiff(lp, e.logpsBase)).toBeGreaterThan(1e-3)
        expect(maxAbsDiff(lp, e.logpsLora)).toBeLessThan(1e-4)
        expect(Math.abs(m.auxLoss()! - e.auxLora)).toBeLessThan(1e-5)
        m.dispose()
      })

      it('LoRA gradients of log-probs + weight x aux loss equal torch autograd through PEFT within 1e-3', async () => {
        const m = await Model.load(join(dir(), 'model'), { threads: 2 })
        await m.loadAdapter(join(dir(), 'peft_adapter'))
        m.setGradientCheckpointing(e.fused) // both ways of running backward
        await m.logps(batch, { adapters: true, train: true })
        await m.backward(Float32Array.from(e.gradLogps), e.auxWeight)
        const { worst, name, count } = worstRelative(m.gradients(), readSafetensors(join(dir(), 'lora_grads.safetensors')))
        expect(count).toBe(LORA_TENSORS)
        expect(worst, `worst tensor ${name}`).toBeLessThan(1e-3)
        m.dispose()
      })

      it('full fine-tuning gradients (router and experts included) equal torch autograd within 1e-3', async () => {
        const m = await Model.load(join(dir(), 'model'), { threads: 2 })
        m.setTrainable('full')
        await m.logps(batch, { adapters: false, train: true })
        await m.backward(Float32Array.from(e.gradLogps), e.auxWeight)
        const { worst, name } = worstRelative(m.gradients(), readSafetensors(join(dir(), 'full_grads.safetensors')))
        expect(worst, `worst tensor ${name}`).toBeLessThan(1e-3)
        m.dispose()
      })

      it('an adapter trained and saved by us is written for PEFT (checked below)', async () => {
        const m = await Model.load(join(dir(), 'model'), { threads: 2 })
        m.addLora({ rank: 3, alpha: 6, dropout: 0, targets: ['q', 'k', 'v', 'o', 'gate', 'up', 'down'], rslora: false, seed: 19 })
        await m.logps(batch, { adapters: true, train: true })
        await m.backward(Float32Array.from(e.gradLogps), e.auxWeight)
        await m.optimizerStep({ lr: 0.05, beta1: 0.9, beta2: 0.999, eps: 1e-8, weightDecay: 0, maxGradNorm: 0 })
        const ours = await m.logps(batch, { adapters: true, train: false })
        expect(maxAbsDiff(ours, e.logpsBase)).toBeGreaterThan(1e-3)
        await m.saveAdapter(join(dir(), 'our_adapter'), join(dir(), 'model'))
        writeFileSync(join(dir(), 'batch.json'), JSON.stringify(e.batch))
        ourLogps.set(variant, ours)
        m.dispose()
      })
    })
  }

  it('adapters saved by us load in PEFT and give our log-probs within 1e-4', () => {
    const jobs = [...ourLogps.keys()].map((v) => ({ model: join(root, v, 'model'), adapter: join(root, v, 'our_adapter'), batch: join(root, v, 'batch.json'), out: join(root, v, 'peft_logps.json') }))
    expect(jobs).toHaveLength(VARIANTS.length)
    writeFileSync(join(root, 'jobs.json'), JSON.stringify(jobs))
    const r = spawnSync(python, [script, 'check-adapters', join(root, 'jobs.json')], { encoding: 'utf8', env: { ...process.env, OMP_NUM_THREADS: '2' } })
    if (r.status !== 0) throw new Error(`engine_moe_parity.py check-adapters failed:\n${r.stderr}`)
    for (const [v, ours] of ourLogps) {
      const peft = JSON.parse(readFileSync(join(root, v, 'peft_logps.json'), 'utf8')) as { logps: number[] }
      expect(maxAbsDiff(ours, peft.logps), v).toBeLessThan(1e-4)
    }
  }, 180_000)
})

describe.runIf(!havePython && inCI)('engine MoE parity prerequisites', () => {
  it('has python with torch, transformers, peft and safetensors under CI', () => {
    expect(havePython, `${python} with torch, transformers, peft and safetensors is required under CI (set TUNEBENCH_PYTHON)`).toBe(true)
  })
})
