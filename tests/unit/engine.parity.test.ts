// Parity of the native engine with transformers + PEFT (torch autograd) on tiny random Llama,
// Qwen2 and Qwen3 checkpoints that tests/python/engine_parity.py builds with transformers' own
// classes: per-token log-probs within 1e-4, LoRA and full fine-tuning gradients within 1e-3
// relative, and PEFT adapters (LoRA and DoRA) loading both ways with the same log-probs.
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
const script = join(import.meta.dirname, '..', 'python', 'engine_parity.py')
const probe = spawnSync(python, ['-c', 'import importlib.util as u, sys; sys.exit(0 if all(u.find_spec(m) for m in ("torch", "transformers", "peft", "safetensors")) else 1)'])
const havePython = probe.status === 0
const inCI = mustRun()
if (!havePython && !inCI) {
  console.warn(`engine parity tests SKIPPED: ${python} with torch, transformers, peft and safetensors is not available (set TUNEBENCH_PYTHON; under CI, i.e. CI set to anything but ''/false/0, they are required)`)
}

interface Expected {
  arch: string
  batch: { ids: number[]; batch: number; seqLen: number; lengths: number[]; mask: number[] }
  gradLogps: number[]
  logpsBase: number[]
  logpsBaseWithAdapterOff: number[]
  logpsLora: number[]
  logpsDora: number[]
  rslora: boolean
}

describe.skipIf(!havePython && !inCI)('engine parity with transformers + PEFT', () => {
  let root = ''
  const ourLogps = new Map<string, Float32Array>()
  beforeAll(() => {
    expect(havePython, `${python} with torch, transformers, peft and safetensors is required under CI`).toBe(true)
    root = mkdtempSync(join(tmpdir(), 'tunebench-parity-'))
    const r = spawnSync(python, [script, 'make', root], { encoding: 'utf8', env: { ...process.env, OMP_NUM_THREADS: '2' } })
    if (r.status !== 0) throw new Error(`engine_parity.py make failed:\n${r.stderr}`)
  }, 300_000)
  afterAll(() => {
    if (root) rmSync(root, { recursive: true, force: true })
  })

  for (const arch of ['llama', 'qwen2', 'qwen3']) {
    describe(arch, () => {
      let e: Expected
      let batch: Batch
      const dir = (): string => join(root, arch)
      beforeAll(() => {
        e = JSON.parse(readFileSync(join(dir(), 'expected.json'), 'utf8')) as Expected
        batch = { ids: Int32Array.from(e.batch.ids), batch: e.batch.batch, seqLen: e.batch.seqLen, lengths: Int32Array.from(e.batch.lengths), mask: Uint8Array.from(e.batch.mask) }
      })

      it('base model log-probs match within 1e-4', async () => {
        const m = await Model.load(join(dir(), 'model'), { threads: 2 })
        const lp = await m.logps(batch, { adapters: false, train: false })
        expect(maxAbsDiff(lp, e.logpsBase)).toBeLessThan(1e-4)
        m.dispose()
      })

      it('a PEFT-saved adapter loads and gives PEFT\'s log-probs; adapters off gives the base', async () => {
        const m = await Model.load(join(dir(), 'model'), { threads: 2 })
        const opts = await m.loadAdapter(join(dir(), 'peft_adapter'))
        expect(opts).toMatchObject({ rank: 4, alpha: 8, dropout: 0, rslora: e.rslora })
        expect([...opts.targets].sort()).toEqual(['down', 'gate', 'k', 'o', 'q', 'up', 'v'])
        expect(maxAbsDiff(await m.logps(batch, { adapters: true, train: false }), e.logpsLora)).toBeLessThan(1e-4)
        expect(maxAbsDiff(await m.logps(batch, { adapters: false, train: false }), e.logpsBaseWithAdapterOff)).toBeLessThan(1e-4)
        m.dispose()
      })

      it('LoRA A and B gradients equal torch autograd through PEFT within 1e-3 relative', async () => {
        const m = await Model.load(join(dir(), 'model'), { threads: 2 })
        await m.loadAdapter(join(dir(), 'peft_adapter'))
        await m.logps(batch, { adapters: true, train: true })
        await m.backward(Float32Array.from(e.gradLogps))
        const { worst, name, count } = worstRelative(m.gradients(), readSafetensors(join(dir(), 'lora_grads.safetensors')))
        expect(count).toBe(2 * 7 * 2)
        expect(worst, `worst tensor ${name}`).toBeLessThan(1e-3)
        m.dispose()
      })

      it('a PEFT DoRA adapter loads and gives PEFT\'s log-probs within 1e-4', async () => {
        const m = await Model.load(join(dir(), 'model'), { threads: 2 })
        const opts = await m.loadAdapter(join(dir(), 'peft_dora_adapter'))
        expect(opts).toMatchObject({ rank: 4, alpha: 8, dora: true, rslora: e.rslora })
        const lp = await m.logps(batch, { adapters: true, train: false })
        expect(maxAbsDiff(lp, e.logpsLora)).toBeGreaterThan(1e-3) // a different adapter
        expect(maxAbsDiff(lp, e.logpsDora)).toBeLessThan(1e-4)
        expect(maxAbsDiff(await m.logps(batch, { adapters: false, train: false }), e.logpsBase)).toBeLessThan(1e-4)
        m.dispose()
      })

      it('DoRA A, B and magnitude gradients equal torch autograd through PEFT within 1e-3 relative', async () => {
        const m = await Model.load(join(dir(), 'model'), { threads: 2 })
        await m.loadAdapter(join(dir(), 'peft_dora_adapter'))
        await m.logps(batch, { adapters: true, train: true })
        await m.backward(Float32Array.from(e.gradLogps))
        const { worst, name, count } = worstRelative(m.gradients(), readSafetensors(join(dir(), 'dora_grads.safetensors')))
        expect(count).toBe(2 * 7 * 3)
        expect(worst, `worst tensor ${name}`).toBeLessThan(1e-3)
        m.dispose()
      })

      it('full fine-tuning gradients equal torch autograd within 1e-3 relative', async () => {
        const m = await Model.load(join(dir(), 'model'), { threads: 2 })
        m.setTrainable('full')
        m.setGradientCheckpointing(true)
        await m.logps(batch, { adapters: false, train: true })
        await m.backward(Float32Array.from(e.gradLogps))
        const { worst, name } = worstRelative(m.gradients(), readSafetensors(join(dir(), 'full_grads.safetensors')))
        expect(worst, `worst tensor ${name}`).toBeLessThan(1e-3)
        m.dispose()
      })

      it('an adapter saved by us is written for PEFT (checked below)', async () => {
        const m = await Model.load(join(dir(), 'model'), { threads: 2 })
        m.addLora({ rank: 3, alpha: 6, dropout: 0, targets: ['q', 'k', 'v', 'o', 'gate', 'up', 'down'], rslora: arch === 'qwen2', seed: 17 })
        await m.logps(batch, { adapters: true, train: true })
        await m.backward(Float32Array.from(e.gradLogps))
        await m.optimizerStep({ lr: 0.05, beta1: 0.9, beta2: 0.999, eps: 1e-8, weightDecay: 0, maxGradNorm: 0 })
        const ours = await m.logps(batch, { adapters: true, train: false })
        expect(maxAbsDiff(ours, e.logpsBase)).toBeGreaterThan(1e-3) // the adapter does something
        const adapterDir = join(dir(), 'our_adapter')
        await m.saveAdapter(adapterDir, join(dir(), 'model'))
        writeFileSync(join(dir(), 'batch.json'), JSON.stringify(e.batch))
        ourLogps.set(arch, ours)
        m.dispose()
      })

      it('a DoRA adapter trained and saved by us is written for PEFT (checked below)', async () => {
        const m = await Model.load(join(dir(), 'model'), { threads: 2 })
        m.addLora({ rank: 3, alpha: 6, dropout: 0, targets: ['q', 'k', 'v', 'o', 'gate', 'up', 'down'], rslora: false, dora: true, seed: 18 })
        for (let step = 0; step < 2; step++) {
          await m.logps(batch, { adapters: true, train: true })
          await m.backward(Float32Array.from(e.gradLogps))
          await m.optimizerStep({ lr: 0.05, beta1: 0.9, beta2: 0.999, eps: 1e-8, weightDecay: 0, maxGradNorm: 0 })
        }
        const ours = await m.logps(batch, { adapters: true, train: false })
        expect(maxAbsDiff(ours, e.logpsBase)).toBeGreaterThan(1e-3)
        await m.saveAdapter(join(dir(), 'our_dora_adapter'), join(dir(), 'model'))
        const config = JSON.parse(readFileSync(join(dir(), 'our_dora_adapter', 'adapter_config.json'), 'utf8'))
        expect(config.use_dora).toBe(true)
        ourLogps.set(`${arch}-dora`, ours)
        m.dispose()
      })
    })
  }

  it('adapters saved by us load in PEFT and give our log-probs within 1e-4', () => {
    // key: "llama" (LoRA) or "llama-dora"
    const where = (key: string) => {
      const [arch, kind] = key.split('-')
      return { arch: arch!, adapter: kind ? 'our_dora_adapter' : 'our_adapter', out: kind ? 'peft_dora_logps.json' : 'peft_logps.json' }
    }
    const jobs = [...ourLogps.keys()].map((key) => {
      const { arch, adapter, out } = where(key)
      return { model: join(root, arch, 'model'), adapter: join(root, arch, adapter), batch: join(root, arch, 'batch.json'), out: join(root, arch, out) }
    })
    expect(jobs).toHaveLength(6)
    writeFileSync(join(root, 'jobs.json'), JSON.stringify(jobs))
    const r = spawnSync(python, [script, 'check-adapters', join(root, 'jobs.json')], { encoding: 'utf8', env: { ...process.env, OMP_NUM_THREADS: '2' } })
    if (r.status !== 0) throw new Error(`engine_parity.py check-adapters failed:\n${r.stderr}`)
    for (const [key, ours] of ourLogps) {
      const { arch, out } = where(key)
      const peft = JSON.parse(readFileSync(join(root, arch, out), 'utf8')) as { logps: number[] }
      expect(maxAbsDiff(ours, peft.logps), key).toBeLessThan(1e-4)
    }
  }, 180_000)
})

describe.runIf(!havePython && inCI)('engine parity prerequisites', () => {
  it('has python with torch, transformers, peft and safetensors under CI', () => {
    expect(havePython, `${python} with torch, transformers, peft and safetensors is required under CI (set TUNEBENCH_PYTHON)`).toBe(true)
  })
})
