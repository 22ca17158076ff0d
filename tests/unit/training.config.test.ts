import { describe, expect, it } from 'vitest'
import { parseTrainingConfig, resolveConfig, ConfigError } from '../../main/services/training/config'
import { trainingConfigSchema } from '../../preload/types/trainingSchema'
import { engineFacts } from '../../native/index'

const base = `model_name_or_path: /m
dataset: a.jsonl
output_dir: /out
`

describe('training config', () => {
  it('fills LLaMA-Factory defaults and derived values', () => {
    const cfg = parseTrainingConfig(base + 'lora_rank: 4\nlearning_rate: 5e-5\n', 'c.yaml')
    expect(cfg.stage).toBe('sft')
    expect(cfg.lora_alpha).toBe(8) // 2 × rank
    expect(cfg.learning_rate).toBe(5e-5)
    // Unset: the trainer resolves them from the run's length (training.intervals.test.ts).
    expect([cfg.logging_steps, cfg.save_steps, cfg.eval_steps]).toEqual([null, null, null])
    expect(cfg.eval_strategy).toBe('no')
    expect(cfg.lora_target).toEqual(['all'])
    expect(cfg.dataset).toEqual(['a.jsonl'])
    expect(cfg.per_device_train_batch_size).toBe(8)
    expect(cfg.pref_beta).toBe(0.1)
  })

  it('accepts JSON with the same keys, numeric strings and comma lists', () => {
    const cfg = parseTrainingConfig(
      JSON.stringify({ model_name_or_path: 'm', dataset: 'a, b', output_dir: 'o', learning_rate: '1e-4', lora_target: 'q_proj,v_proj', stage: 'dpo', pref_loss: 'simpo' }),
      'c.json', { baseDir: '/base' })
    expect(cfg.dataset).toEqual(['a', 'b'])
    expect(cfg.learning_rate).toBe(1e-4)
    expect(cfg.lora_target).toEqual(['q_proj', 'v_proj'])
    expect(cfg.model_name_or_path).toBe('/base/m')
    expect(cfg.pref_loss).toBe('simpo')
  })

  it('precision: auto by default, f32 or bf16; LLaMA-Factory bf16: true means bf16 and contradicts precision f32', () => {
    expect(parseTrainingConfig(base, 'c.yaml').precision).toBe('auto')
    expect(parseTrainingConfig(base + 'precision: f32\n', 'c.yaml').precision).toBe('f32')
    expect(parseTrainingConfig(base + 'bf16: true\n', 'c.yaml').precision).toBe('bf16')
    expect(parseTrainingConfig(base + 'bf16: true\nprecision: bf16\n', 'c.yaml').precision).toBe('bf16')
    expect(() => parseTrainingConfig(base + 'precision: f32\nbf16: true\n', 'c.yaml')).toThrow(/^c\.yaml:5: bf16: true contradicts precision f32/)
    expect(() => parseTrainingConfig(base + 'precision: fp16\n', 'c.yaml')).toThrow(/^c\.yaml:4: precision: expected one of auto, f32, bf16/)
  })

  it('moe_aux_loss_coef: unset by default (no aux loss term), a number ≥ 0 when given', () => {
    expect(parseTrainingConfig(base, 'c.yaml').moe_aux_loss_coef).toBe(null)
    expect(parseTrainingConfig(base + 'moe_aux_loss_coef: 0.001\n', 'c.yaml').moe_aux_loss_coef).toBe(0.001)
    expect(parseTrainingConfig(base + 'moe_aux_loss_coef: 1e-3\n', 'c.yaml').moe_aux_loss_coef).toBe(0.001)
    expect(parseTrainingConfig(base + 'moe_aux_loss_coef: 0\n', 'c.yaml').moe_aux_loss_coef).toBe(0)
    expect(parseTrainingConfig(base + 'moe_aux_loss_coef: null\n', 'c.yaml').moe_aux_loss_coef).toBe(null)
    expect(resolveConfig({ model_name_or_path: 'm', dataset: 'd', output_dir: 'o', moe_aux_loss_coef: '0.02' }, 'form').moe_aux_loss_coef).toBe(0.02)
    expect(() => parseTrainingConfig(base + 'moe_aux_loss_coef: -0.01\n', 'c.yaml')).toThrow(
      'c.yaml:4: moe_aux_loss_coef: -0.01 is out of range (must be ≥ 0)'
    )
    expect(() => parseTrainingConfig(base + 'moe_aux_loss_coef: lots\n', 'c.yaml')).toThrow(/^c\.yaml:4: moe_aux_loss_coef: expected a number, got "lots"/)
    expect(() => resolveConfig({ model_name_or_path: 'm', dataset: 'd', output_dir: 'o', moe_aux_loss_coef: -1 }, 'form')).toThrow(
      expect.objectContaining({ key: 'moe_aux_loss_coef', file: 'form' })
    )
  })

  it('resume_from_checkpoint takes true, last or a path', () => {
    expect(parseTrainingConfig(base + 'resume_from_checkpoint: true\n', 'c.yaml').resume_from_checkpoint).toBe('true')
    expect(parseTrainingConfig(base + 'resume_from_checkpoint: false\n', 'c.yaml').resume_from_checkpoint).toBe(null)
    expect(parseTrainingConfig(base + 'resume_from_checkpoint: out/checkpoint-5\n', 'c.yaml', { baseDir: '/b' }).resume_from_checkpoint).toBe('/b/out/checkpoint-5')
  })

  it('names the file, line and key of an unknown key', () => {
    expect(() => parseTrainingConfig(base + 'lora_rnak: 8\n', 'c.yaml')).toThrow('c.yaml:4: lora_rnak: unknown key')
  })

  it('names the key of a wrong type and of an impossible value', () => {
    expect(() => parseTrainingConfig(base + 'lora_rank: eight\n', 'c.yaml')).toThrow(/c\.yaml:4: lora_rank: expected an integer/)
    expect(() => parseTrainingConfig(base + 'lora_rank: 1.5\n', 'c.yaml')).toThrow(/lora_rank: expected an integer/)
    expect(() => parseTrainingConfig(base + 'learning_rate: -1\n', 'c.yaml')).toThrow(/c\.yaml:4: learning_rate: -1 is out of range/)
    expect(() => parseTrainingConfig(base + 'stage: ppo\n', 'c.yaml')).toThrow(/stage: expected one of sft, dpo, kto/)
    expect(() => parseTrainingConfig(base + 'lora_target: q_proj,foo\n', 'c.yaml')).toThrow(/lora_target: unknown module "foo"/)
    expect(() => parseTrainingConfig(base + 'stage: kto\nper_device_train_batch_size: 1\n', 'c.yaml')).toThrow(/c\.yaml:5: per_device_train_batch_size/)
    expect(() => parseTrainingConfig(base + 'pref_loss: orpo\n', 'c.yaml')).toThrow(/pref_loss: applies to stage dpo only/)
    expect(() => parseTrainingConfig(base + 'val_size: 2.5\n', 'c.yaml')).toThrow(/val_size/)
    expect(() => parseTrainingConfig(base + 'disable_shuffling: yes please\n', 'c.yaml')).toThrow(/disable_shuffling: expected true or false/)
  })

  it('reports missing required keys, duplicate keys and bad syntax', () => {
    expect(() => parseTrainingConfig('dataset: a\noutput_dir: o\n', 'c.yaml')).toThrow('c.yaml: model_name_or_path: required key is missing')
    expect(() => parseTrainingConfig(base + 'seed: 1\nseed: 2\n', 'c.yaml')).toThrow(/c\.yaml:5/)
    expect(() => parseTrainingConfig('{ "model_name_or_path": ', 'c.json')).toThrow(ConfigError)
    expect(() => resolveConfig({ model_name_or_path: 'm', dataset: 'd', output_dir: 'o', bogus: 1 }, 'form')).toThrow('form: bogus: unknown key')
  })

  it('schema defaults are themselves valid values', () => {
    const raw: Record<string, unknown> = { model_name_or_path: 'm', dataset: 'd', output_dir: 'o' }
    for (const s of trainingConfigSchema) if (s.default !== null && !s.required) raw[s.name] = s.default
    expect(() => resolveConfig(raw, 'defaults')).not.toThrow()
  })
})

describe('training config against the engine limits', () => {
  const cpuOnly = { ...engineFacts(), cudaCompiled: false, devices: ['cpu'] }

  it('refuses lora_dropout 1 and device cuda on an engine built without CUDA, naming the key', () => {
    expect(() => parseTrainingConfig(base + 'lora_dropout: 1\n', 'c.yaml', { engine: cpuOnly })).toThrow(
      'c.yaml:4: lora_dropout: 1 is out of range (must be ≥ 0 and < 1)'
    )
    expect(() => parseTrainingConfig(base + 'device: cuda\n', 'c.yaml', { engine: cpuOnly })).toThrow(
      'c.yaml:4: device: expected one of cpu (the devices this engine build offers), got "cuda"'
    )
    expect(() => resolveConfig({ model_name_or_path: 'm', dataset: 'd', output_dir: 'o', device: 'cuda' }, 'form', undefined, { engine: cpuOnly })).toThrow(
      expect.objectContaining({ key: 'device' })
    )
    expect(parseTrainingConfig(base + 'lora_dropout: 0.99\ndevice: cpu\n', 'c.yaml', { engine: cpuOnly }).lora_dropout).toBe(0.99)
  })

  it('accepts device cuda from an engine that offers it', () => {
    const withCuda = { ...cpuOnly, cudaCompiled: true, devices: ['cpu', 'cuda'] }
    expect(parseTrainingConfig(base + 'device: cuda\n', 'c.yaml', { engine: withCuda }).device).toBe('cuda')
  })

  it('checks against the facts of the engine this build made when none are given', () => {
    const facts = engineFacts()
    expect(() => parseTrainingConfig(base + `lora_dropout: ${facts.loraDropout.maxExclusive}\n`, 'c.yaml')).toThrow(/c\.yaml:4: lora_dropout: .* out of range/)
    if (!facts.devices.includes('cuda')) expect(() => parseTrainingConfig(base + 'device: cuda\n', 'c.yaml')).toThrow(/c\.yaml:4: device: expected one of cpu/)
  })
})
