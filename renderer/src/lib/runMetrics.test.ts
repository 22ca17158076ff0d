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
