// The bundled GRPO preset on the bundled demo: the math preset (renderer/src/lib/grpoPresets.ts,
// what the Train page applies) on resources/demo/grpo.jsonl with the demo model raises the mean
// accuracy reward, last quarter of the run against the first. Seeded and on one thread, so the
// run is the same every time; it takes a few minutes.
import { mkdtempSync, readFileSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, describe, expect, it } from 'vitest'
import { grpoPresetById, presetRewardValues } from '../../renderer/src/lib/grpoPresets'
import { resolveConfig } from '../../main/services/training/config'
import { train } from '../../main/services/training/trainer'
import type { TrainerLogEntry } from '../../preload/types/training'
import { engineBuilt } from './trainingPython'

const root = join(import.meta.dirname, '..', '..')
const mean = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / xs.length

describe.runIf(engineBuilt())('the bundled GRPO preset', () => {
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
})
