// moe_aux_loss_coef (LLaMA-Factory's key; transformers' and TRL's loss += coef × aux_loss): the
// load-balancing loss of a Qwen3-MoE policy's train pass joins every stage's objective. Each
// micro-batch's share is coef × aux / (micro-batches in the step), backward is told that weight,
// and aux_loss is a logged metric. Unset, or with a dense model (auxLoss() null), nothing
// changes: the same losses, the same backward calls, no aux_loss.
import { mkdtempSync, readFileSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, describe, expect, it } from 'vitest'
import { resolveConfig } from '../../main/services/training/config'
import { loadNativeModel, type Batch, type LogpsOptions, type TrainableModel } from '../../main/services/training/engine'
import type { ChatTokenizer, Example } from '../../main/services/training/sequences'
import { createStage, type MicroBatch, type MicroOutcome } from '../../main/services/training/stages'
import type { StageContext } from '../../main/services/training/stages/stage'
import { train } from '../../main/services/training/trainer'
import type { TrainingConfig } from '../../preload/types/trainingSchema'
import { writeDatasets } from './training.fixtures'
import { engineBuilt } from './trainingPython'

const root = mkdtempSync(join(tmpdir(), 'tb-moe-aux-'))
afterAll(() => rmSync(root, { recursive: true, force: true }))
const demoModel = join(import.meta.dirname, '..', '..', 'resources', 'demo-model')

const AUX = 0.5
const COEF = 0.01

/** A model whose every token has log-prob −1 under the policy and −2 under the reference.
 *  auxLoss() answers for the last pass: AUX after a train pass and 100 + AUX after any other,
 *  so a stage that reads it after the wrong pass is caught; null throughout is a dense model. */
function fakeModel(aux: number | null) {
  let lastTrain = false
  const backward: unknown[][] = []
  const model: Partial<TrainableModel> = {
    logps: async (b: Batch, o: LogpsOptions) => {
      lastTrain = o.train
      return Float32Array.from(b.mask, (m) => (m ? (o.adapters ? -1 : -2) : 0))
    },
    scoreTokens: async (b: Batch, o: LogpsOptions) => {
      lastTrain = o.train
      return { logps: Float32Array.from(b.mask, (m) => (m ? -1 : 0)), entropy: Float32Array.from(b.mask, (m) => (m ? 0.5 : 0)) }
    },
    generate: async (prompts: Int32Array[]) =>
      prompts.map((_, r) => ({ tokens: Int32Array.from([5 + (r % 3), 6]), logps: Float32Array.from([-1, -1]), finish: 'eos' as const })),
    backward: async (...args: unknown[]) => {
      backward.push(args)
    },
    auxLoss: () => (aux === null ? null : lastTrain ? aux : 100 + aux)
  }
  return { model: model as TrainableModel, backward }
}

const tok = { eosId: 0, padId: 0, decode: () => 'an answer' } as unknown as ChatTokenizer

const config = (extra: Record<string, unknown>) =>
  resolveConfig({ model_name_or_path: join(root, 'no-model'), dataset: 'd', output_dir: 'o', per_device_train_batch_size: 2, ...extra }, 'test')

const context = (cfg: TrainingConfig, model: TrainableModel, runDir: string): StageContext => ({
  cfg, model, padId: 0, tok, runDir, emit: () => {}, step: () => 1
})

const sft = (tokens: number): Example => ({ kind: 'sft', sequence: { ids: Array.from({ length: tokens + 1 }, (_, i) => i + 1), mask: [0, ...Array(tokens).fill(1)] } })
const pair: Example = { kind: 'pair', prompt: [1, 2], chosen: [3, 4], rejected: [5] }
const unpaired = (desirable: boolean): Example => ({ kind: 'unpaired', prompt: [1, 2], completion: desirable ? [3, 4] : [5], desirable })
const prompt = (i: number): Example => ({ kind: 'prompt', prompt: [1, 2 + i], text: `prompt ${i}`, columns: {} })
const micro = (examples: Example[], first = 0, split: 'train' | 'eval' = 'train'): MicroBatch => ({ split, idx: examples.map((_, i) => first + i), examples })

/** Each stage with two micro-batches in its step (GRPO: gradient_accumulation_steps 2 over one
 *  generation batch). beta > 0 gives GRPO its reference pass after the policy's. */
const cases: { name: string; cfg: Record<string, unknown>; micros: () => MicroBatch[] }[] = [
  { name: 'sft', cfg: { stage: 'sft' }, micros: () => [micro([sft(3)]), micro([sft(5)], 1)] },
  { name: 'dpo', cfg: { stage: 'dpo', pref_loss: 'sigmoid' }, micros: () => [micro([pair, pair]), micro([pair, pair], 2)] },
  { name: 'orpo', cfg: { stage: 'dpo', pref_loss: 'orpo' }, micros: () => [micro([pair, pair]), micro([pair, pair], 2)] },
  { name: 'kto', cfg: { stage: 'kto' }, micros: () => [micro([unpaired(true), unpaired(false)]), micro([unpaired(false), unpaired(true)], 2)] },
  {
    name: 'grpo',
    cfg: { stage: 'grpo', num_generations: 2, per_device_train_batch_size: 2, gradient_accumulation_steps: 2, beta: 0.04, reward_funcs: 'regex:answer' },
    micros: () => [micro([prompt(0), prompt(1)])]
  }
]

/** Metrics without the throughputs, which differ from one run to the next. */
const untimed = (m: Record<string, number>) => Object.fromEntries(Object.entries(m).filter(([k]) => !k.startsWith('tokens_per_second')))

/** Trains one step of a stage on a fresh fake model; what each micro-batch returned and what
 *  backward was given. */
async function step(c: (typeof cases)[number], extra: Record<string, unknown>, aux: number | null, trainPass = true) {
  const { model, backward } = fakeModel(aux)
  const runDir = mkdtempSync(join(root, `${c.name}-`))
  const stage = createStage(context(config({ ...c.cfg, ...extra }), model, runDir))
  const outs: MicroOutcome[] = []
  for (const run of stage.step(c.micros())) outs.push(await run({ train: trainPass, dropoutSeed: 0 }))
  return { outs, backward }
}

describe('moe_aux_loss_coef in the stages', () => {
  for (const c of cases) {
    it(`${c.name}: each micro-batch adds coef × aux / micros to its loss, backward gets auxWeight coef / micros, aux_loss is a metric`, async () => {
      const plain = await step(c, {}, AUX)
      const moe = await step(c, { moe_aux_loss_coef: COEF }, AUX)
      expect(moe.outs).toHaveLength(2)
      for (let k = 0; k < 2; k++) {
        expect(moe.outs[k]!.loss).toBeCloseTo(plain.outs[k]!.loss! + (COEF * AUX) / 2, 12)
        expect(moe.outs[k]!.metrics.aux_loss).toBe(AUX)
        const { aux_loss: _, ...mine } = moe.outs[k]!.metrics
        expect(untimed(mine)).toEqual(untimed(plain.outs[k]!.metrics))
      }
      // The step objective: the method's loss plus coef × the mean aux loss over its micro-batches.
      const total = (outs: MicroOutcome[]) => outs.reduce((a, o) => a + o.loss!, 0)
      expect(total(moe.outs)).toBeCloseTo(total(plain.outs) + COEF * AUX, 12)
      expect(moe.backward.map((args) => args[1])).toEqual([COEF / 2, COEF / 2])
      // The log-prob gradients themselves are the method's, untouched.
      expect(moe.backward.map((args) => args[0])).toEqual(plain.backward.map((args) => args[0]))
    })

    it(`${c.name}: unset, with coef 0, with a dense model or in evaluation nothing changes`, async () => {
      const plain = await step(c, {}, AUX)
      expect(plain.backward).toHaveLength(2)
      // Unset: backward is called as before (no auxWeight), and no aux_loss metric.
      for (const args of plain.backward) expect(args).toHaveLength(1)
      for (const o of plain.outs) expect(o.metrics).not.toHaveProperty('aux_loss')
      for (const [extra, aux] of [[{ moe_aux_loss_coef: 0 }, AUX], [{ moe_aux_loss_coef: COEF }, null], [{}, null]] as const) {
        const same = await step(c, extra, aux)
        expect(same.outs.map((o) => o.loss)).toEqual(plain.outs.map((o) => o.loss))
        for (const o of same.outs) expect(o.metrics).not.toHaveProperty('aux_loss')
        expect(same.backward).toEqual(plain.backward)
      }
      if (c.name !== 'grpo') {
        // An evaluation batch (train: false) has no backward, and its loss has no aux term.
        const evalPlain = await step(c, {}, AUX, false)
        const evalMoe = await step(c, { moe_aux_loss_coef: COEF }, AUX, false)
        expect(evalMoe.outs.map((o) => o.loss)).toEqual(evalPlain.outs.map((o) => o.loss))
        for (const o of evalMoe.outs) expect(o.metrics).not.toHaveProperty('aux_loss')
        expect(evalMoe.backward).toEqual([])
      }
    })
  }
})

/** The demo model (dense) with a fixed load-balancing loss, as a Qwen3-MoE model reports it;
 *  the auxWeight each backward received is recorded (the dense engine is given none). */
function withAux(aux: number, weights: (number | undefined)[]) {
  return async (dir: string, opts: Parameters<typeof loadNativeModel>[1]): Promise<TrainableModel> => {
    const m = await loadNativeModel(dir, opts)
    return new Proxy(m, {
      get(target, key, receiver) {
        if (key === 'auxLoss') return () => aux
        if (key === 'backward')
          return (g: Float32Array, w?: number) => {
            weights.push(w)
            return target.backward(g)
          }
        const v = Reflect.get(target, key, receiver) as unknown
        return typeof v === 'function' ? (v as (...a: unknown[]) => unknown).bind(target) : v
      }
    })
  }
}

describe.runIf(engineBuilt())('moe_aux_loss_coef in a run', () => {
  it('trainer_log.jsonl logs aux_loss (the mean over the micro-batches) and the loss includes coef × aux_loss', async () => {
    const data = writeDatasets(join(root, 'data'))
    const run = async (name: string, extra: Record<string, unknown>, weights: (number | undefined)[]) => {
      const cfg = resolveConfig(
        {
          model_name_or_path: demoModel, stage: 'sft', dataset: data.sft_messages, output_dir: join(root, name),
          per_device_train_batch_size: 2, gradient_accumulation_steps: 2, max_steps: 2, logging_steps: 1, save_steps: 10,
          lora_rank: 2, threads: 1, sample_prompts: 0, ...extra
        },
        name
      )
      return train(cfg, { loadModel: withAux(0.25, weights) })
    }
    const plainWeights: (number | undefined)[] = []
    const plain = await run('plain', {}, plainWeights)
    const moeWeights: (number | undefined)[] = []
    const moe = await run('moe', { moe_aux_loss_coef: 0.02 }, moeWeights)
    // 6 examples in micro-batches of 2: step 1 takes two, step 2 the one left of the epoch, so
    // its aux loss weighs coef / 1 and the step's term stays coef × the mean aux loss.
    expect(plainWeights).toEqual([undefined, undefined, undefined])
    expect(moeWeights).toEqual([0.01, 0.01, 0.02])
    expect(plain.log).toHaveLength(2)
    expect(moe.log).toHaveLength(2)
    for (let i = 0; i < 2; i++) {
      expect(plain.log[i]).not.toHaveProperty('aux_loss')
      expect(moe.log[i]!.aux_loss).toBe(0.25)
      // The dense engine got the same log-prob gradients, so the runs differ by the term alone.
      expect(moe.log[i]!.loss).toBeCloseTo(plain.log[i]!.loss! + 0.02 * 0.25, 9)
      expect(moe.log[i]!.grad_norm).toBe(plain.log[i]!.grad_norm)
    }
    const lines = readFileSync(join(root, 'moe', 'trainer_log.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l) as Record<string, unknown>)
    expect(lines.map((l) => l.aux_loss)).toEqual([0.25, 0.25])
  }, 120_000)
})
