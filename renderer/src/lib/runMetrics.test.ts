import { describe, expect, it } from 'vitest'
import { chartsFor, formatDuration, metricKeys, metricSeries, parseDuration, runProgress } from './runMetrics'
import { diffConfigs, formatConfigValue } from './configDiff'

const log = [
  { current_steps: 1, total_steps: 4, loss: 0.69, lr: 1e-5, grad_norm: 2, 'rewards/chosen': 0.01, 'rewards/rejected': -0.01, epoch: 0.25, percentage: 25, elapsed_time: '0:00:10', remaining_time: '0:00:30' },
  { current_steps: 2, total_steps: 4, loss: 0.6, lr: 2e-5, 'rewards/margins': 0.1, 'logps/chosen': -12.5, epoch: 0.5, percentage: 50, elapsed_time: '0:00:20', remaining_time: '0:00:20' },
  { current_steps: 2, total_steps: 4, eval_loss: 0.65, epoch: 0.5 },
  { current_steps: 3, total_steps: 4, loss: Number.NaN, lr: 3e-5, epoch: 0.75, elapsed_time: 30 }
]

describe('run metrics', () => {
  it('lists the numeric metrics of a log and not the progress fields', () => {
    expect(metricKeys(log)).toEqual(['loss', 'lr', 'grad_norm', 'rewards/chosen', 'rewards/rejected', 'rewards/margins', 'logps/chosen', 'eval_loss'])
  })

  it('extracts (step, value) points, skipping lines without the metric and non-finite values', () => {
    expect(metricSeries(log, 'loss')).toEqual([[1, 0.69], [2, 0.6]])
    expect(metricSeries(log, 'eval_loss')).toEqual([[2, 0.65]])
    expect(metricSeries(log, 'kl')).toEqual([])
  })

  it('groups train and eval loss in one chart and gives unknown metrics charts of their own', () => {
    const charts = chartsFor(log)
    const ids = charts.map((c) => c.spec.id)
    expect(ids).toEqual(['loss', 'rewards', 'margins', 'lr', 'grad_norm', 'metric:logps/chosen'])
    expect(charts[0].series.map((s) => s.name)).toEqual(['loss', 'eval_loss'])
  })

  it("draws a GRPO log's reward, per-function, length, clipping, entropy and throughput charts, reward first", () => {
    const grpo = [1, 2].map((step) => ({
      current_steps: step, total_steps: 2, loss: 0.01, lr: 1e-4, grad_norm: 0.3, reward: 0.5 * step, reward_std: 0.4,
      'rewards/accuracy/mean': 0.25 * step, 'rewards/accuracy/std': 0.4, 'rewards/regex:^\\d+/x$/mean': 1, 'rewards/regex:^\\d+/x$/std': 0,
      frac_reward_zero_std: 0.5, 'completions/mean_length': 30, 'completions/min_length': 8, 'completions/max_length': 64,
      'completions/clipped_ratio': 0.25, 'completions/mean_terminated_length': 25, entropy: 1.2,
      'clip_ratio/low_mean': 0, 'clip_ratio/high_mean': 0.01, 'clip_ratio/region_mean': 0.01,
      'tokens_per_second/generation': 120, 'tokens_per_second/training': 300, epoch: step / 2, percentage: step * 50
    }))
    const charts = chartsFor(grpo)
    expect(charts.map((c) => c.spec.id)).toEqual([
      'reward', 'reward_funcs', 'reward_std', 'reward_funcs_std', 'frac_reward_zero_std', 'completion_length', 'clipped_ratio', 'clip_ratio',
      'loss', 'entropy', 'lr', 'grad_norm', 'throughput'
    ])
    const of = (id: string) => charts.find((c) => c.spec.id === id)!.series
    // One series per reward function, named by the function as reward_funcs writes it.
    expect(of('reward_funcs').map((s) => s.name)).toEqual(['accuracy', 'regex:^\\d+/x$'])
    expect(of('reward_funcs')[0]!.points).toEqual([[1, 0.25], [2, 0.5]])
    // Legends without what the title says.
    expect(of('completion_length').map((s) => s.name)).toEqual(['mean', 'min', 'max', 'mean (ended)'])
    expect(of('clip_ratio').map((s) => s.name)).toEqual(['region', 'low', 'high'])
    expect(of('throughput').map((s) => s.name)).toEqual(['generation', 'training'])
    expect(of('loss').map((s) => s.name)).toEqual(['loss'])
    // kl only when the log has it (beta > 0).
    expect(chartsFor(grpo.map((e) => ({ ...e, kl: 0.01 }))).some((c) => c.spec.id === 'kl')).toBe(true)
  })

  it('reads progress from the newest line, with the ETA from the average pace when not logged', () => {
    const p = runProgress(log)
    expect(p.step).toBe(3)
    expect(p.totalSteps).toBe(4)
    expect(p.percent).toBe(75)
    expect(p.elapsedSeconds).toBe(30)
    expect(p.etaSeconds).toBe(10)
    expect(runProgress([]).percent).toBe(0)
  })

  it('parses transformers durations and formats seconds', () => {
    expect(parseDuration('0:01:30')).toBe(90)
    expect(parseDuration('1 day, 2:00:05')).toBe(93605)
    expect(parseDuration('soon')).toBeNull()
    expect(formatDuration(90)).toBe('1:30')
    expect(formatDuration(3725)).toBe('1:02:05')
    expect(formatDuration(null)).toBe('—')
  })
})

describe('config diff', () => {
  it('lists differing keys in schema order, a missing key counting as unset', () => {
    const a = { model_name_or_path: 'm', stage: 'dpo', learning_rate: 5e-6, lora_target: ['all'], note: 'x' }
    const b = { model_name_or_path: 'm', stage: 'dpo', learning_rate: 1e-5, lora_target: ['q_proj', 'v_proj'], pref_beta: 0.2 }
    expect(diffConfigs(a, b)).toEqual([
      { key: 'pref_beta', left: null, right: 0.2 },
      { key: 'lora_target', left: ['all'], right: ['q_proj', 'v_proj'] },
      { key: 'learning_rate', left: 5e-6, right: 1e-5 },
      { key: 'note', left: 'x', right: null }
    ])
    expect(diffConfigs(a, a)).toEqual([])
    expect(formatConfigValue(['q_proj', 'v_proj'])).toBe('q_proj,v_proj')
    expect(formatConfigValue(null)).toBe('(unset)')
  })
})
