// Trajectories: 5 optimiser steps of each method from the same initial adapter (non-zero B,
// dropout 0, no shuffling) against a PyTorch + PEFT + transformers loop
// (tests/python/train_reference.py) that tokenises, batches and computes losses on its own.
import { mkdtempSync, readFileSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { resolveConfig } from '../../main/services/training/config'
import { train } from '../../main/services/training/trainer'
import type { TrainerLogEntry } from '../../preload/types/training'
import { makeModelAndAdapter, writeDatasets } from './training.fixtures'
import { engineBuilt, runPythonJsonAsync, torchAvailable } from './trainingPython'

const STEPS = 5

const methods: { name: string; data: string; config: Record<string, unknown>; dora?: boolean }[] = [
  // GA 2 over 3 micro-batches per epoch: the second step of each epoch takes the remainder.
  { name: 'sft', data: 'sft_messages', config: { stage: 'sft', per_device_train_batch_size: 2, gradient_accumulation_steps: 2, learning_rate: 5e-3, warmup_steps: 1 } },
  { name: 'dpo sigmoid', data: 'pairs_plain', config: { stage: 'dpo', pref_loss: 'sigmoid', pref_beta: 0.5, per_device_train_batch_size: 2, learning_rate: 1e-2, weight_decay: 0.01, lr_scheduler_type: 'cosine' } },
  { name: 'dpo ipo', data: 'pairs_plain', config: { stage: 'dpo', pref_loss: 'ipo', pref_beta: 0.5, per_device_train_batch_size: 2, learning_rate: 1e-2 } },
  { name: 'dpo hinge', data: 'pairs_plain', config: { stage: 'dpo', pref_loss: 'hinge', pref_beta: 0.1, per_device_train_batch_size: 2, learning_rate: 1e-2 } },
  { name: 'kto', data: 'unpaired', config: { stage: 'kto', pref_beta: 0.5, per_device_train_batch_size: 3, learning_rate: 1e-2, kto_rejected_weight: 1.3 } },
  { name: 'orpo', data: 'pairs_chat', config: { stage: 'dpo', pref_loss: 'orpo', pref_beta: 0.1, per_device_train_batch_size: 2, learning_rate: 1e-2, max_grad_norm: 0.5 } },
  { name: 'dpo sigmoid_norm', data: 'pairs_plain', config: { stage: 'dpo', pref_loss: 'sigmoid_norm', pref_beta: 1.0, per_device_train_batch_size: 2, learning_rate: 1e-2 } },
  { name: 'dpo sigmoid, label smoothing + pref_ftx', data: 'pairs_chat', config: { stage: 'dpo', pref_loss: 'sigmoid', pref_beta: 0.5, dpo_label_smoothing: 0.1, pref_ftx: 0.3, per_device_train_batch_size: 2, learning_rate: 1e-2 } },
  // Full fine-tuning: every weight trains, the reference is the starting model.
  { name: 'sft full', data: 'sft_messages', config: { stage: 'sft', finetuning_type: 'full', adapter_name_or_path: undefined, per_device_train_batch_size: 3, learning_rate: 1e-3 } },
  { name: 'dpo full', data: 'pairs_plain', config: { stage: 'dpo', finetuning_type: 'full', adapter_name_or_path: undefined, pref_beta: 0.5, per_device_train_batch_size: 2, learning_rate: 1e-3 } },
  // DoRA (use_dora): A, B and the magnitudes train; PEFT's DoRA layers on the reference side.
  { name: 'sft dora', data: 'sft_messages', dora: true, config: { stage: 'sft', per_device_train_batch_size: 2, gradient_accumulation_steps: 2, learning_rate: 5e-3, weight_decay: 0.01 } },
  { name: 'dpo sigmoid dora', data: 'pairs_plain', dora: true, config: { stage: 'dpo', pref_loss: 'sigmoid', pref_beta: 0.5, per_device_train_batch_size: 2, learning_rate: 1e-2 } },
  { name: 'simpo', data: 'pairs_plain', config: { stage: 'dpo', pref_loss: 'simpo', pref_beta: 2.0, simpo_gamma: 0.5, pref_ftx: 0.1, per_device_train_batch_size: 2, learning_rate: 1e-2, lr_scheduler_type: 'constant_with_warmup', warmup_ratio: 0.2 } }
]

describe.runIf(torchAvailable('training trajectories against PyTorch + PEFT') && engineBuilt('training trajectories against PyTorch + PEFT'))('training trajectories against PyTorch + PEFT', () => {
  let dir: string
  let model: string
  let adapter: string
  let doraAdapter: string
  let data: Record<string, string>
  let reference: { loss: number; grad_norm: number; lr: number }[][]
  const common = () => ({ model_name_or_path: model, adapter_name_or_path: adapter, lora_dropout: 0, disable_shuffling: true, max_steps: STEPS, logging_steps: 1, save_steps: 1000, threads: 1, cutoff_len: 512 })

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'tb-trajectory-'))
    ;({ model, adapter, doraAdapter } = await makeModelAndAdapter(dir))
    data = writeDatasets(join(dir, 'data'))
    reference = await runPythonJsonAsync('train_reference.py', methods.map((m) => ({
      model, adapter: m.dora ? doraAdapter : adapter, data: data[m.data], config: { ...common(), ...m.config, ...(m.dora ? { adapter_name_or_path: doraAdapter } : {}) }
    })))
  }, 180_000)
  afterAll(() => rmSync(dir, { recursive: true, force: true }))

  methods.forEach((m, k) => {
    it(`${m.name}: loss and grad_norm of ${STEPS} steps within 1e-3`, async () => {
      const out = join(dir, `run-${k}`)
      const cfg = resolveConfig({ ...common(), ...m.config, ...(m.dora ? { adapter_name_or_path: doraAdapter } : {}), dataset: data[m.data], output_dir: out }, m.name)
      await train(cfg)
      const log = readFileSync(join(out, 'trainer_log.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l) as TrainerLogEntry)
      expect(log.map((e) => e.current_steps)).toEqual([1, 2, 3, 4, 5])
      const ref = reference[k]!
      log.forEach((e, i) => {
        const rel = (a: number, b: number) => Math.abs(a - b) / Math.max(Math.abs(b), 1e-8)
        expect(rel(e.loss!, ref[i]!.loss), `step ${i + 1} loss ${e.loss} vs ${ref[i]!.loss}`).toBeLessThan(1e-3)
        expect(rel(e.grad_norm!, ref[i]!.grad_norm), `step ${i + 1} grad_norm ${e.grad_norm} vs ${ref[i]!.grad_norm}`).toBeLessThan(1e-3)
        expect(rel(e.lr!, ref[i]!.lr) < 1e-9 || (e.lr === 0 && ref[i]!.lr === 0)).toBe(true)
      })
      // Steps 1, 3 and 5 see the same batch (two steps per epoch): their losses differ only
      // because the updates were applied.
      expect(log[2]!.loss).not.toBe(log[0]!.loss)
      expect(log[4]!.loss).not.toBe(log[2]!.loss)
    })
  })
})
