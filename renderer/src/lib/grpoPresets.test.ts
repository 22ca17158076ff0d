import { describe, expect, it } from 'vitest'
import { parseTrainingConfig } from '../../../main/services/training/config'
import { trainingConfigSchema } from '../../../preload/types/trainingSchema'
import { grpoPresets, presetRewardValues } from './grpoPresets'
import { rewardsFromConfig } from './rewardEditor'
import { buildConfig, configYaml, grpoBatch, initialValues, methodById, parseField } from './trainForm'

const fixed = { model_name_or_path: '/models/tiny', dataset: 'data/grpo.jsonl', output_dir: 'runs/g' }
const grpo = methodById('grpo')

describe('GRPO task presets', () => {
  it('set only GRPO and run keys of the schema, each a value its field accepts', () => {
    for (const p of grpoPresets) {
      for (const [key, value] of Object.entries(p.values)) {
        const spec = trainingConfigSchema.find((s) => s.name === key)
        expect(spec, `${p.id}: ${key}`).toBeDefined()
        expect(!spec!.stages || spec!.stages.includes('grpo'), `${p.id}: ${key} applies to grpo`).toBe(true)
        expect(parseField(spec!, typeof value === 'boolean' ? value : String(value)).error, `${p.id}: ${key}=${value}`).toBeUndefined()
      }
      expect(rewardsFromConfig(p.rewards.map((r) => r.func), p.rewards.map((r) => String(r.weight))).problems, p.id).toEqual([])
    }
  })

  it('make a form without errors whose YAML the training config parser accepts with the preset rewards', () => {
    for (const p of grpoPresets) {
      const values = initialValues({ ...grpo, preset: { ...p.values, ...presetRewardValues(p) } }, fixed)
      const { config, errors } = buildConfig(grpo, null, values)
      expect(errors, p.id).toEqual({})
      const resolved = parseTrainingConfig(configYaml(config), `${p.id}.yaml`)
      expect(resolved.stage).toBe('grpo')
      expect(resolved.reward_funcs, p.id).toEqual(p.rewards.map((r) => r.func))
      expect((resolved.reward_weights ?? p.rewards.map(() => '1')).map(Number), p.id).toEqual(p.rewards.map((r) => r.weight))
    }
  })

  it('fit a tiny model on a laptop CPU: groups of 4-8, short completions, whole groups per step, a LoRA learning rate, a run of minutes', () => {
    for (const p of grpoPresets) {
      const v = p.values as Record<string, number>
      expect(v.num_generations, p.id).toBeGreaterThanOrEqual(4)
      expect(v.num_generations, p.id).toBeLessThanOrEqual(8)
      expect(v.max_completion_length, p.id).toBeLessThanOrEqual(64)
      expect(v.learning_rate, p.id).toBeGreaterThanOrEqual(5e-5)
      expect(v.learning_rate, p.id).toBeLessThanOrEqual(1e-3)
      expect(v.max_steps, p.id).toBeGreaterThanOrEqual(20)
      expect(v.max_steps * v.per_device_train_batch_size, p.id).toBeLessThanOrEqual(300 * 32)
      const batch = grpoBatch(v)!
      expect(batch.divides, p.id).toBe(true)
      expect(batch.prompts, p.id).toBeGreaterThanOrEqual(1)
    }
  })

  it('the GRPO method starts from the first preset', () => {
    const { config } = buildConfig(grpo, null, initialValues(grpo, fixed))
    expect(config).toMatchObject({ stage: 'grpo', reward_funcs: ['accuracy', 'format'], reward_weights: ['1', '0.25'], max_completion_length: 40, per_device_train_batch_size: 32 })
    // num_generations is the preset's 8, which is the default, so the config leaves it out.
    expect(config.num_generations).toBeUndefined()
  })
})

describe('GRPO prompts per step', () => {
  const build = (over: Record<string, string>) => buildConfig(grpo, null, { ...initialValues(grpo, fixed), ...over })

  it('derives prompts per step from batch × accumulation / num_generations', () => {
    const b = grpoBatch(build({ per_device_train_batch_size: '4', gradient_accumulation_steps: '3', num_generations: '6' }).config)!
    expect(b).toMatchObject({ completions: 12, prompts: 2, divides: true })
    expect(b.message).toBe('Prompts per step = per_device_train_batch_size × gradient_accumulation_steps / num_generations = 4 × 3 / 6 = 2')
  })

  it('reports a step that does not hold whole groups at num_generations, naming both keys and what would divide', () => {
    const { errors } = build({ per_device_train_batch_size: '6', num_generations: '4' })
    expect(errors.num_generations).toBe(
      'per_device_train_batch_size × gradient_accumulation_steps = 6 × 1 = 6 is not a multiple of num_generations (4): ' +
        'each step trains on whole groups of 4 completions, one group per prompt. ' +
        'Set per_device_train_batch_size to 4 or num_generations to a divisor of 6 (2, 3, 6).'
    )
    expect(Object.keys(errors)).toEqual(['num_generations'])
    // The schema's defaults (8 × 1, 8 generations) divide: no error from keys left unset.
    expect(buildConfig(grpo, null, { ...initialValues(methodById('sft'), fixed) }).errors.num_generations).toBeUndefined()
  })

  it('waits for numbers before checking: a bad batch size is its own field error', () => {
    const { errors } = build({ per_device_train_batch_size: 'x', num_generations: '4' })
    expect(errors).toEqual({ per_device_train_batch_size: 'must be a whole number' })
  })

  it('makes no check for other methods', () => {
    const sft = methodById('sft')
    expect(buildConfig(sft, null, { ...initialValues(sft, fixed), per_device_train_batch_size: '3' }).errors).toEqual({})
  })
})
