// The training loop's Stages: one per method, each owning its reference log-probs, batches,
// weighting within a step, loss and metrics; the loop itself names no method.
import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import { describe, expect, it } from 'vitest'
import { resolveConfig } from '../../main/services/training/config'
import type { Batch, TrainableModel } from '../../main/services/training/engine'
import type { ChatTokenizer, Example } from '../../main/services/training/sequences'
import { createStage, type MicroBatch } from '../../main/services/training/stages'
import type { StageContext } from '../../main/services/training/stages/stage'
import type { TrainingConfig } from '../../preload/types/trainingSchema'
import { PREF_LOSSES, TRAINING_STAGES } from '../../preload/types/trainingSchema'

const root = join(import.meta.dirname, '..', '..')

/** A model whose every token has log-prob −1 under the policy and −2 under the reference, and
 *  that records what it was asked. */
function fakeModel() {
  const calls: { adapters: boolean; train: boolean; rows: number }[] = []
  const grads: Float32Array[] = []
  const model: Partial<TrainableModel> = {
    logps: async (b: Batch, o: { adapters: boolean; train: boolean }) => {
      calls.push({ adapters: o.adapters, train: o.train, rows: b.batch })
      return Float32Array.from(b.mask, (m) => (m ? (o.adapters ? -1 : -2) : 0))
    },
    backward: async (g: Float32Array) => {
      grads.push(g)
    },
    auxLoss: () => null
  }
  return { model: model as TrainableModel, calls, grads }
}

const config = (extra: Record<string, unknown>) =>
  resolveConfig({ model_name_or_path: 'm', dataset: 'd', output_dir: 'o', per_device_train_batch_size: 2, ...extra }, 'test')

/** What a stage is given; GRPO alone reads the tokenizer, the run folder and the step. */
const context = (cfg: TrainingConfig, model: TrainableModel): StageContext => ({
  cfg, model, padId: 0, tok: null as unknown as ChatTokenizer, runDir: '/nonexistent', emit: () => {}, step: () => 1
})

const sft = (tokens: number): Example => ({ kind: 'sft', sequence: { ids: Array.from({ length: tokens + 1 }, (_, i) => i + 1), mask: [0, ...Array(tokens).fill(1)] } })
const pair: Example = { kind: 'pair', prompt: [1, 2], chosen: [3, 4], rejected: [5] }
const micro = (examples: Example[], split: 'train' | 'eval' = 'train', first = 0): MicroBatch => ({ split, idx: examples.map((_, i) => first + i), examples })

describe('training stages', () => {
  it('one place maps every stage of the schema to its Stage', () => {
    for (const stage of TRAINING_STAGES)
      expect(createStage(context(config({ stage, ...(stage === 'grpo' ? { num_generations: 2 } : {}) }), fakeModel().model))).toBeDefined()
  })

  it('the loop names no method: no stage or pref_loss value appears in trainer.ts', () => {
    const loop = readFileSync(join(root, 'main/services/training/trainer.ts'), 'utf8')
    for (const name of [...TRAINING_STAGES, ...PREF_LOSSES]) expect(loop, name).not.toMatch(new RegExp(`['"\`]${name}['"\`]`))
    expect(loop).not.toMatch(/cfg\.(stage|pref_loss)\b/)
  })

  it('SFT weighs each micro-batch by its share of the step tokens, and reads no reference', async () => {
    const { model, calls, grads } = fakeModel()
    const stage = createStage(context(config({ stage: 'sft' }), model))
    expect(stage.usesReference).toBe(false)
    const runs = stage.step([micro([sft(3)]), micro([sft(5)], 'train', 1)])
    const losses = []
    for (const run of runs) losses.push((await run({ train: true, dropoutSeed: 0 })).loss)
    // Mean NLL over all 8 tokens of the step is 1; the micro-batches hold 3 and 5 of them.
    expect(losses).toEqual([3 / 8, 5 / 8])
    expect(grads.every((g) => [...g].every((v) => v === 0 || Math.abs(v + 1 / 8) < 1e-7))).toBe(true)
    expect(calls.every((c) => c.adapters)).toBe(true)
  })

  it('DPO caches the reference once per pair; ORPO and SimPO read none', async () => {
    const { model, calls } = fakeModel()
    const dpo = createStage(context(config({ stage: 'dpo', pref_loss: 'sigmoid' }), model))
    expect(dpo.usesReference).toBe(true)
    const mb = micro([pair, pair])
    await dpo.step([mb])[0]!({ train: false, dropoutSeed: 0 })
    const out = await dpo.step([mb, mb])[1]!({ train: false, dropoutSeed: 0 })
    expect(calls.filter((c) => !c.adapters)).toEqual([{ adapters: false, train: false, rows: 4 }])
    // Policy and reference differ by +1 per token on both answers: Δ = 2 − 1 = 1, so the
    // loss is −log σ(β) weighted by 1/2 (two micro-batches in the step).
    expect(out.loss).toBeCloseTo(-Math.log(1 / (1 + Math.exp(-0.1))) / 2, 12)
    expect(out.metrics['rewards/margins']).toBeCloseTo(0.1, 12)
    for (const pref_loss of ['orpo', 'simpo'])
      expect(createStage(context(config({ stage: 'dpo', pref_loss }), model)).usesReference).toBe(false)
  })

  it('KTO pairs each record with its neighbour for the KL estimate and caches both references', async () => {
    const { model, calls } = fakeModel()
    const kto = createStage(context(config({ stage: 'kto' }), model))
    const records: Example[] = [
      { kind: 'unpaired', prompt: [1], completion: [2, 3], desirable: true },
      { kind: 'unpaired', prompt: [4], completion: [5], desirable: false }
    ]
    const out = await kto.step([micro(records)])[0]!({ train: true, dropoutSeed: 0 })
    await kto.reference(micro(records))
    // One reference pass for completions and KL pairs together, cached afterwards.
    expect(calls.filter((c) => !c.adapters)).toEqual([{ adapters: false, train: false, rows: 4 }])
    expect(out.metrics.kl).toBeGreaterThan(0)
  })
})
