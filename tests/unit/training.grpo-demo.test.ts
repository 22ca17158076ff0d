// The bundled presets on the bundled demo, as the Train page applies them: GRPO's math preset
// (renderer/src/lib/grpoPresets.ts) on resources/demo/grpo.jsonl raises the mean accuracy
// reward, last quarter of the run against the first; DPO's preset (trainForm.ts) on
// resources/demo/preference.jsonl ends with most pairs ranked right. Seeded and on one thread,
// so the runs are the same every time; the GRPO one takes a minute or two.
import { mkdtempSync, readFileSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, describe, expect, it } from 'vitest'
import { grpoPresetById, presetRewardValues } from '../../renderer/src/lib/grpoPresets'
import { methodById } from '../../renderer/src/lib/trainForm'
import { resolveConfig } from '../../main/services/training/config'
import { train } from '../../main/services/training/trainer'
import type { TrainerLogEntry } from '../../preload/types/training'
import { engineBuilt } from './trainingPython'

const root = join(import.meta.dirname, '..', '..')
const mean = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / xs.length

describe.runIf(engineBuilt())('the bundled presets on the demo', () => {
  const dir = mkdtempSync(join(tmpdir(), 'tb-grpo-demo-'))
  afterAll(() => rmSync(dir, { recursive: true, force: true }))

  it('raises the accuracy reward on the demo arithmetic prompts', { timeout: 15 * 60_000 }, async () => {
    const preset = grpoPresetById('math')!
    const cfg = resolveConfig({
      model_name_or_path: join(root, 'resources/demo-model'), stage: 'grpo', dataset: join(root, 'resources/demo/grpo.jsonl'),
      output_dir: join(dir, 'run'), ...preset.values, ...presetRewardValues(preset), logging_steps: 1, save_steps: 1000,
      sample_prompts: 0, threads: 1
    }, 'math preset')
    await train(cfg)
    const log = readFileSync(join(dir, 'run', 'trainer_log.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l) as TrainerLogEntry)
    const accuracy = log.map((e) => e['rewards/accuracy/mean'] as number)
    const quarter = Math.floor(accuracy.length / 4)
    const before = mean(accuracy.slice(0, quarter))
    const after = mean(accuracy.slice(-quarter))
    console.log(`math preset: accuracy reward ${before.toFixed(3)} (first quarter) -> ${after.toFixed(3)} (last quarter) over ${accuracy.length} steps`)
    expect(after).toBeGreaterThan(before + 0.05)
  })

  it('DPO: the preset ranks most demo pairs right by the end of its epoch', async () => {
    const cfg = resolveConfig({
      model_name_or_path: join(root, 'resources/demo-model'), stage: 'dpo', dataset: join(root, 'resources/demo/preference.jsonl'),
      output_dir: join(dir, 'dpo'), ...methodById('dpo').preset, logging_steps: 1, sample_prompts: 0, threads: 1
    }, 'dpo preset')
    await train(cfg)
    const log = readFileSync(join(dir, 'dpo', 'trainer_log.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l) as TrainerLogEntry)
    const accuracies = log.map((e) => e['rewards/accuracies'] as number)
    console.log(`dpo preset: rewards/accuracies per step ${accuracies.map((a) => a.toFixed(2)).join(', ')}`)
    // At step 1 the policy is the reference: no pair is ranked yet.
    expect(accuracies[0]).toBe(0)
    expect(accuracies[accuracies.length - 1]).toBeGreaterThan(0.6)
    expect(log[log.length - 1]!['rewards/margins'] as number).toBeGreaterThan(0)
  })
})
