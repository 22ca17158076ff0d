// Trajectories: 5 optimiser steps of each method from the same initial adapter (non-zero B,
// dropout 0, no shuffling) against a PyTorch + PEFT + transformers loop
// (tests/python/train_reference.py) that tokenises, batches and computes losses on its own.
// The Qwen3-MoE cases (moe) train a tiny random Qwen3-MoE (experts fused as transformers 5
// saves them, an adapter on every expert); the reference trains its per-expert twin under PEFT,
// with moe_aux_loss_coef's load-balancing term (transformers' load_balancing_loss_func) in the
// loss of each micro-batch.
import { mkdtempSync, readFileSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { resolveConfig } from '../../main/services/training/config'
import { train } from '../../main/services/training/trainer'
import type { TrainerLogEntry } from '../../preload/types/training'
import { makeModelAndAdapter, makeMoeModelAndAdapter, writeDatasets } from './training.fixtures'
import { engineBuilt, runPythonJsonAsync, torchAvailable } from './trainingPython'

const STEPS = 5

const methods: { name: string; data: string; config: Record<string, unknown>; dora?: boolean; moe?: boolean }[] = [
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
  { name: 'simpo', data: 'pairs_plain', config: { stage: 'dpo', pref_loss: 'simpo', pref_beta: 2.0, simpo_gamma: 0.5, pref_ftx: 0.1, per_device_train_batch_size: 2, learning_rate: 1e-2, lr_scheduler_type: 'constant_with_warmup', warmup_ratio: 0.2 } },
  // Qwen3-MoE (3 layers, one dense; 4 experts, 2 per token): without and with the load-balancing
  // term, whose gradient reaches the adapters below each router (the routers do not train).
  { name: 'sft moe', data: 'sft_messages', moe: true, config: { stage: 'sft', per_device_train_batch_size: 2, gradient_accumulation_steps: 2, learning_rate: 5e-3, warmup_steps: 1 } },
  { name: 'sft moe aux', data: 'sft_messages', moe: true, config: { stage: 'sft', per_device_train_batch_size: 2, gradient_accumulation_steps: 2, learning_rate: 5e-3, warmup_steps: 1, moe_aux_loss_coef: 0.05 } },
  // Pairs 0-1 leave one expert of layer 2 without a token at steps 3 and 5: its LoRA tensors get
  // no gradient, and AdamW skips them (no momentum, no decay, no step) as PyTorch skips a
  // parameter whose grad is None.
  { name: 'dpo sigmoid moe', data: 'pairs_plain', moe: true, config: { stage: 'dpo', pref_loss: 'sigmoid', pref_beta: 0.5, per_device_train_batch_size: 2, learning_rate: 1e-2, weight_decay: 0.01 } },
  { name: 'dpo sigmoid moe aux', data: 'pairs_plain', moe: true, config: { stage: 'dpo', pref_loss: 'sigmoid', pref_beta: 0.5, per_device_train_batch_size: 2, learning_rate: 1e-2, weight_decay: 0.01, moe_aux_loss_coef: 0.05 } }
]

describe.runIf(torchAvailable('training trajectories against PyTorch + PEFT') && engineBuilt('training trajectories against PyTorch + PEFT'))('training trajectories against PyTorch + PEFT', () => {
  let dir: string
  let model: string
  let adapter: string
  let doraAdapter: string
  let moe: { model: string; adapter: string }
  let data: Record<string, string>
  let reference: { loss: number; grad_norm: number; lr: number; aux_loss?: number }[][]
  const logs = new Map<string, TrainerLogEntry[]>()
  const common = () => ({ model_name_or_path: model, adapter_name_or_path: adapter, lora_dropout: 0, disable_shuffling: true, max_steps: STEPS, logging_steps: 1, save_steps: 1000, threads: 1, cutoff_len: 512 })
  /** The model and adapter of a method when they are not the common ones. */
  const paths = (m: (typeof methods)[number]): Record<string, unknown> =>
    m.moe ? { model_name_or_path: moe.model, adapter_name_or_path: moe.adapter } : m.dora ? { adapter_name_or_path: doraAdapter } : {}

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'tb-trajectory-'))
    ;({ model, adapter, doraAdapter } = await makeModelAndAdapter(dir))
    moe = await makeMoeModelAndAdapter()
    data = writeDatasets(join(dir, 'data'))
    reference = await runPythonJsonAsync('train_reference.py', methods.map((m) => {
      const config = { ...common(), ...m.config, ...paths(m) }
      return { model: config.model_name_or_path, adapter: config.adapter_name_or_path, data: data[m.data], config }
    }))
  }, 300_000)
  afterAll(() => rmSync(dir, { recursive: true, force: true }))

  methods.forEach((m, k) => {
    it(`${m.name}: loss and grad_norm of ${STEPS} steps within 1e-3`, async () => {
      const out = join(dir, `run-${k}`)
      const cfg = resolveConfig({ ...common(), ...m.config, ...paths(m), dataset: data[m.data], output_dir: out }, m.name)
      await train(cfg)
      const log = readFileSync(join(out, 'trainer_log.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l) as TrainerLogEntry)
      logs.set(m.name, log)
      expect(log.map((e) => e.current_steps)).toEqual([1, 2, 3, 4, 5])
      const ref = reference[k]!
      log.forEach((e, i) => {
        expect(rel(e.loss!, ref[i]!.loss), `step ${i + 1} loss ${e.loss} vs ${ref[i]!.loss}`).toBeLessThan(1e-3)
        expect(rel(e.grad_norm!, ref[i]!.grad_norm), `step ${i + 1} grad_norm ${e.grad_norm} vs ${ref[i]!.grad_norm}`).toBeLessThan(1e-3)
        expect(rel(e.lr!, ref[i]!.lr) < 1e-9 || (e.lr === 0 && ref[i]!.lr === 0)).toBe(true)
        // The load-balancing loss (the mean over the step's micro-batches) only with the key.
        if (m.config.moe_aux_loss_coef === undefined) expect(e).not.toHaveProperty('aux_loss')
        else expect(rel(e.aux_loss as number, ref[i]!.aux_loss!), `step ${i + 1} aux_loss ${e.aux_loss} vs ${ref[i]!.aux_loss}`).toBeLessThan(1e-3)
      })
      // Steps 1, 3 and 5 see the same batch (two steps per epoch): their losses differ only
      // because the updates were applied.
      expect(log[2]!.loss).not.toBe(log[0]!.loss)
      expect(log[4]!.loss).not.toBe(log[2]!.loss)
    })
  })

  it('moe_aux_loss_coef visibly changes the Qwen3-MoE trajectory (more than the tolerance)', () => {
    const plain = logs.get('sft moe')
    const aux = logs.get('sft moe aux')
    expect(plain && aux, 'both sft moe runs ran').toBeTruthy()
    // Step 1 starts from the same weights: the loss differs by coef × aux_loss, and the gradient
    // by the aux loss's (through the routers into the attention and dense-MLP adapters below).
    expect(aux![0]!.loss! - plain![0]!.loss!).toBeCloseTo(0.05 * (aux![0]!.aux_loss as number), 4)
    expect(rel(aux![0]!.loss!, plain![0]!.loss!)).toBeGreaterThan(1e-3)
    expect(rel(aux![0]!.grad_norm!, plain![0]!.grad_norm!)).toBeGreaterThan(1e-3)
  })
})

const rel = (a: number, b: number) => Math.abs(a - b) / Math.max(Math.abs(b), 1e-8)
