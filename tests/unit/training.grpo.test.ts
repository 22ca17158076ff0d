// Stage grpo end to end on the bundled demo model: a seeded run raises its reward, the
// completions of every generation batch land in completions/step-N.jsonl with their rewards
// and advantages, a run stopped while num_iterations reuses a batch resumes with the same
// losses, evaluation logs rewards, and bad settings or a failing reward program stop the run
// with a message naming them.
import { mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { ConfigError, resolveConfig } from '../../main/services/training/config'
import { CancelledError, Trainer, train } from '../../main/services/training/trainer'
import type { GrpoCompletion, TrainerLogEntry } from '../../preload/types/training'
import { runSteps } from '../../preload/types/trainingSchema'
import { engineBuilt } from './trainingPython'

const root = join(import.meta.dirname, '..', '..')
const demoModel = join(root, 'resources', 'demo-model')
const readLines = <T>(file: string): T[] => readFileSync(file, 'utf8').trim().split('\n').filter(Boolean).map((l) => JSON.parse(l) as T)
const readLog = (dir: string) => readLines<TrainerLogEntry>(join(dir, 'trainer_log.jsonl'))
const mean = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / xs.length

describe('grpo config', () => {
  const cfg = (extra: Record<string, unknown>) =>
    resolveConfig({ model_name_or_path: 'm', dataset: 'd', output_dir: 'o', stage: 'grpo', ...extra }, 'test.yaml')
  it('a batch that does not divide into groups names both keys', () => {
    expect(() => cfg({ num_generations: 3, per_device_train_batch_size: 4, gradient_accumulation_steps: 1 })).toThrow(
      /per_device_train_batch_size × gradient_accumulation_steps \(4 × 1 = 4 completions\) must be a multiple of num_generations \(3\)/
    )
    expect(() => cfg({ num_generations: 4, per_device_train_batch_size: 2, gradient_accumulation_steps: 2 })).not.toThrow()
  })
  it('TRL defaults; epsilon_high follows epsilon', () => {
    const c = cfg({ per_device_train_batch_size: 8, epsilon: 0.3 })
    expect([c.num_generations, c.loss_type, c.scale_rewards, c.beta, c.temperature, c.num_iterations]).toEqual([8, 'dapo', 'group', 0, 1, 1])
    expect(c.epsilon_high).toBe(0.3)
  })
  it('refuses what cannot work: no room for the prompt, a KL reference with full fine-tuning', () => {
    expect(() => cfg({ per_device_train_batch_size: 8, cutoff_len: 64, max_completion_length: 64 })).toThrow(ConfigError)
    expect(() => cfg({ per_device_train_batch_size: 8, beta: 0.1, finetuning_type: 'full' })).toThrow(/beta: .*adapters off/)
  })
  it('reward functions and weights are checked with the config, naming the key', () => {
    expect(() => cfg({ per_device_train_batch_size: 8, reward_funcs: 'accuracy,bogus' })).toThrow(/test\.yaml: reward_funcs: unknown reward function 'bogus'/)
    expect(() => cfg({ per_device_train_batch_size: 8, reward_funcs: 'regex:(' })).toThrow(/reward_funcs: 'regex:\(' is not a valid regular expression/)
    expect(() => cfg({ per_device_train_batch_size: 8, reward_funcs: 'accuracy,format', reward_weights: '1' })).toThrow(/reward_weights: 1 weight\(s\) for 2/)
  })
})

describe.runIf(engineBuilt())('grpo training', () => {
  let dir: string
  let prompts: string
  const base = (out: string, extra: Record<string, unknown> = {}) => ({
    model_name_or_path: demoModel, stage: 'grpo', dataset: prompts, output_dir: out,
    num_generations: 4, per_device_train_batch_size: 4, gradient_accumulation_steps: 2, max_completion_length: 16,
    learning_rate: 5e-3, lora_rank: 4, max_steps: 8, logging_steps: 1, threads: 1, seed: 3, sample_prompts: 0,
    reward_funcs: ['regex:<answer>'], ...extra
  })

  beforeAll(() => {
    dir = mkdtempSync(join(tmpdir(), 'tb-grpo-'))
    prompts = join(dir, 'prompts.jsonl')
    const lines = Array.from({ length: 24 }, (_, i) => JSON.stringify({ prompt: [{ role: 'user', content: `What is ${i % 7} + ${(i * 3) % 5}?` }], solution: String((i % 7) + ((i * 3) % 5)) }))
    writeFileSync(prompts, lines.join('\n') + '\n')
  })
  afterAll(() => rmSync(dir, { recursive: true, force: true }))

  it('a seeded run raises the mean reward (first vs last quarter) and keeps every batch', async () => {
    const out = join(dir, 'learn')
    await train(resolveConfig(base(out, { max_steps: 16, gradient_accumulation_steps: 1, per_device_train_batch_size: 8 }), 'learn'))
    const rewards = readLog(out).map((e) => e.reward as number)
    expect(rewards).toHaveLength(16)
    expect(mean(rewards.slice(12))).toBeGreaterThan(mean(rewards.slice(0, 4)) + 0.2)
    const files = readdirSync(join(out, 'completions')).sort()
    expect(files).toHaveLength(16)
    const first = readLines<GrpoCompletion>(join(out, 'completions', files[0]!))
    expect(first).toHaveLength(8)
    for (const c of first) {
      expect(c.rewards['regex:<answer>']).toBe(/<answer>/.test(c.completion) ? 1 : 0)
      expect(c.reward).toBe(c.rewards['regex:<answer>'])
    }
    // Group-relative: the advantages of each group sum to zero.
    for (const g of [0, 1]) expect(Math.abs(first.filter((c) => c.group === g).reduce((a, c) => a + c.advantage, 0))).toBeLessThan(1e-9)
  })

  it('logs TRL metrics; num_iterations reuses a batch (one completions file per generation)', async () => {
    const out = join(dir, 'metrics')
    await train(resolveConfig(base(out, { num_iterations: 2, beta: 0.05, max_steps: 4, reward_funcs: ['regex:<answer>', 'length'], reward_weights: ['1', '0.5'] }), 'metrics'))
    const log = readLog(out)
    for (const key of ['reward', 'reward_std', 'rewards/regex:<answer>/mean', 'rewards/length/std', 'frac_reward_zero_std', 'completions/mean_length',
      'completions/clipped_ratio', 'tokens_per_second/generation'])
      expect(log[0]![key], key).toBeTypeOf('number')
    for (const key of ['kl', 'entropy', 'clip_ratio/region_mean', 'tokens_per_second/training']) expect(log[1]![key], key).toBeTypeOf('number')
    // Steps 2 and 4 train on the batches sampled at steps 1 and 3: no new rewards logged.
    expect(log[1]!.reward).toBeUndefined()
    expect(readdirSync(join(out, 'completions')).sort()).toEqual(['step-00001.jsonl', 'step-00003.jsonl'])
    const lines = readLines<GrpoCompletion>(join(out, 'completions', 'step-00003.jsonl'))
    for (const c of lines) expect(c.reward).toBeCloseTo(c.rewards['regex:<answer>']! + 0.5 * c.rewards.length!, 12)
  })

  it('stopped while a batch is reused, resumed: the same losses as an uninterrupted run', async () => {
    const cfgOf = (out: string, extra: Record<string, unknown> = {}) => base(out, { num_iterations: 2, save_steps: 1, lora_dropout: 0.1, ...extra })
    const full = join(dir, 'full')
    await train(resolveConfig(cfgOf(full), 'full'))
    const reference = readLog(full)
    const split = join(dir, 'split')
    const abort = new AbortController()
    // Checkpoint 3 holds the batch sampled at step 3, which step 4 reuses.
    const first = new Trainer(resolveConfig(cfgOf(split), 'split'), { signal: abort.signal, onEvent: (e) => e.type === 'checkpoint' && e.step === 3 && abort.abort() })
    await expect(first.run()).rejects.toBeInstanceOf(CancelledError)
    await train(resolveConfig(cfgOf(split, { resume_from_checkpoint: 'last' }), 'split'))
    const resumed = readLog(split)
    expect(resumed.map((e) => e.current_steps)).toEqual([1, 2, 3, 4, 5, 6, 7, 8])
    resumed.forEach((e, i) => {
      expect(e.loss, `step ${i + 1}`).toBe(reference[i]!.loss)
      expect(e.grad_norm, `step ${i + 1}`).toBe(reference[i]!.grad_norm)
    })
    for (const f of readdirSync(join(full, 'completions')))
      expect(readFileSync(join(split, 'completions', f), 'utf8'), f).toBe(readFileSync(join(full, 'completions', f), 'utf8'))
  })

  it('an epoch is every prompt once, each batch taken num_iterations times, as the Train form counts it', async () => {
    const out = join(dir, 'epoch')
    const cfg = resolveConfig(base(out, { max_steps: -1, num_train_epochs: 1, num_iterations: 2 }), 'epoch')
    await train(cfg)
    // 24 prompts, 4 x 2 / 4 = 2 prompts a step: 12 batches, each trained on twice.
    expect(runSteps(cfg, 24)).toBe(24)
    expect(readLog(out).map((e) => e.total_steps)[0]).toBe(24)
  })

  it('evaluation samples the held-out prompts and logs their rewards (no eval_loss)', async () => {
    const out = join(dir, 'eval')
    await train(resolveConfig(base(out, { max_steps: 2, val_size: 4, eval_steps: 2, per_device_eval_batch_size: 2 }), 'eval'))
    const evals = readLog(out).filter((e) => 'eval_reward' in e)
    expect(evals).toHaveLength(1)
    expect(evals[0]!.eval_loss).toBeUndefined()
    expect(evals[0]!['eval_rewards/regex:<answer>/mean']).toBeTypeOf('number')
  })

  it('a reward program that fails stops the run with its stderr', async () => {
    const program = join(dir, 'fail.sh')
    writeFileSync(program, '#!/bin/sh\necho "no solution column" >&2\nexit 3\n', { mode: 0o755 })
    const out = join(dir, 'fails')
    await expect(train(resolveConfig(base(out, { reward_funcs: [`command:${program}`], max_steps: 1 }), 'fails'))).rejects.toThrow(/no solution column/)
  })
})
