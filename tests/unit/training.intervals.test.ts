// logging_steps and save_steps left unset follow the run's length: a 1-step run logs its step,
// a short run logs every step and keeps checkpoints to resume from, a long one about 50 log
// lines and 10 checkpoints; given values are kept as they are. The trainer writes what it
// resolved into run.json, and the Train form computes the same values before the run.
import { existsSync, mkdtempSync, readFileSync, readdirSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, describe, expect, it } from 'vitest'
import { resolveConfig } from '../../main/services/training/config'
import { train } from '../../main/services/training/trainer'
import { runSteps, stepIntervals } from '../../preload/types/trainingSchema'
import { buildConfig, configYaml, initialValues, methodById, runIntervals } from '../../renderer/src/lib/trainForm'
import { writeDatasets } from './training.fixtures'

const unset = { logging_steps: null, save_steps: null, eval_steps: null }
const root = mkdtempSync(join(tmpdir(), 'tb-intervals-'))
afterAll(() => rmSync(root, { recursive: true, force: true }))
const demoModel = join(import.meta.dirname, '..', '..', 'resources', 'demo-model')

describe('step intervals', () => {
  it('unset: every step up to 50 steps, then about 50 log lines and 10 checkpoints; eval follows logging', () => {
    expect(stepIntervals(unset, 1)).toEqual({ logging: 1, save: 1, eval: 1 })
    expect(stepIntervals(unset, 12)).toEqual({ logging: 1, save: 2, eval: 1 })
    expect(stepIntervals(unset, 50)).toEqual({ logging: 1, save: 5, eval: 1 })
    expect(stepIntervals(unset, 51)).toEqual({ logging: 2, save: 6, eval: 2 })
    expect(stepIntervals(unset, 10_000)).toEqual({ logging: 200, save: 1000, eval: 200 })
    for (const total of [1, 7, 49, 333, 12_345]) {
      const { logging, save } = stepIntervals(unset, total)
      expect(Math.floor(total / logging), `log lines of ${total}`).toBeGreaterThanOrEqual(Math.min(total, 25))
      expect(Math.floor(total / logging)).toBeLessThanOrEqual(50)
      expect(Math.floor(total / save)).toBeLessThanOrEqual(10)
    }
  })

  it('given values are kept as they are, eval_steps then following the given logging_steps', () => {
    expect(stepIntervals({ logging_steps: 500, save_steps: 500, eval_steps: null }, 3)).toEqual({ logging: 500, save: 500, eval: 500 })
    expect(stepIntervals({ logging_steps: null, save_steps: 7, eval_steps: 3 }, 100)).toEqual({ logging: 2, save: 7, eval: 3 })
  })

  it('the parser leaves them unset for the trainer to resolve', () => {
    const cfg = resolveConfig({ model_name_or_path: '/m', dataset: 'a.jsonl', output_dir: '/o' }, 'c.yaml')
    expect([cfg.logging_steps, cfg.save_steps, cfg.eval_steps]).toEqual([null, null, null])
    expect(resolveConfig({ model_name_or_path: '/m', dataset: 'a', output_dir: '/o', logging_steps: 500 }, 'c.yaml').logging_steps).toBe(500)
  })

  it('the Train form says what they resolve to for the run the form makes, and writes it in the YAML', () => {
    const dpo = methodById('dpo')
    const { config } = buildConfig(dpo, 'sigmoid', initialValues(dpo, { model_name_or_path: '/m', dataset: 'pairs.jsonl' }))
    expect(config.logging_steps).toBeUndefined()
    // One labeled pair, batch 8, one epoch: one step, logged.
    expect(runIntervals(config, 1)).toEqual({ total: 1, every: { logging: 1, save: 1, eval: 1 } })
    // 300 pairs, 4 held out by val_size: ceil(296 / 8) = 37 steps.
    expect(runIntervals({ ...config, val_size: 4 }, 300)).toEqual({ total: 37, every: { logging: 1, save: 4, eval: 1 } })
    expect(runIntervals({ ...config, max_steps: 120 }, null)).toEqual({ total: 120, every: { logging: 3, save: 12, eval: 3 } })
    // Unknown length (a typed dataset path), or nothing to train on yet.
    expect(runIntervals(config, null)).toBeNull()
    expect(runIntervals(config, 0)).toBeNull()
    expect(configYaml(config, runIntervals(config, 1))).toContain("# logging_steps: unset, follows the run's length: every step of 1\n")
    expect(configYaml(config, null)).toContain("# save_steps: unset, follows the run's length (resolved when the run starts)\n")
    expect(configYaml({ ...config, logging_steps: 5 }, null)).not.toContain('# logging_steps')
    expect(runSteps({ max_steps: -1, num_train_epochs: 3, per_device_train_batch_size: 2, gradient_accumulation_steps: 2 }, 10)).toBe(9)
  })

  it('a run with them unset logs every step of a short run, checkpoints along it, and records them in run.json', async () => {
    const data = writeDatasets(join(root, 'data'))
    const out = join(root, 'run')
    // 4 pairs, batch 1: 4 steps; logged each step, checkpoints every step but the last.
    const cfg = resolveConfig(
      { model_name_or_path: demoModel, stage: 'dpo', dataset: data.pairs_plain, per_device_train_batch_size: 1, threads: 1, lora_rank: 2, num_train_epochs: 1, output_dir: out },
      'intervals'
    )
    const result = await train(cfg)
    expect(result.log.map((e) => e.current_steps)).toEqual([1, 2, 3, 4])
    expect(readdirSync(out).filter((n) => n.startsWith('checkpoint-')).sort()).toEqual(['checkpoint-1', 'checkpoint-2', 'checkpoint-3'])
    expect(JSON.parse(readFileSync(join(out, 'run.json'), 'utf8'))).toMatchObject({ logging_steps: 1, save_steps: 1, eval_steps: 1 })
    expect(existsSync(join(out, 'adapter_model.safetensors'))).toBe(true)
  }, 120_000)

  it('a 1-step run logs its one step', async () => {
    const data = writeDatasets(join(root, 'data1'))
    const out = join(root, 'run1')
    const cfg = resolveConfig(
      { model_name_or_path: demoModel, stage: 'sft', dataset: data.sft_messages, threads: 1, lora_rank: 2, num_train_epochs: 1, output_dir: out },
      'one-step'
    )
    const result = await train(cfg)
    expect(result.steps).toBe(1)
    expect(result.log.map((e) => e.current_steps)).toEqual([1])
  }, 120_000)
})
