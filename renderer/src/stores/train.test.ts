import { beforeEach, describe, expect, it } from 'vitest'
import { nextTick } from 'vue'
import { createPinia, setActivePinia } from 'pinia'
import { parse } from 'yaml'
import { parseTrainingConfig } from '../../../main/services/training/config'
import { customRow, type RewardEditorState } from '../lib/rewardEditor'
import { useTrainStore } from './train'

const edit = (s: RewardEditorState, change: (s: RewardEditorState) => void): RewardEditorState => {
  const next = JSON.parse(JSON.stringify(s)) as RewardEditorState
  change(next)
  return next
}

describe('useTrainStore', () => {
  beforeEach(() => setActivePinia(createPinia()))

  it('keeps paths and data when the method changes, and takes the new preset', () => {
    const train = useTrainStore()
    train.set('model_name_or_path', '/m')
    train.set('dataset', 'pairs.jsonl')
    train.set('output_dir', 'runs/x')
    train.set('learning_rate', '0.1')
    train.set('moe_aux_loss_coef', '0.001')
    train.setMethod('simpo')
    const cfg = parse(train.yaml)
    expect(cfg).toMatchObject({ model_name_or_path: '/m', dataset: 'pairs.jsonl', output_dir: 'runs/x', stage: 'dpo', pref_loss: 'simpo', pref_beta: 2, moe_aux_loss_coef: 0.001 })
    expect(cfg.learning_rate).toBe(1e-6)
    expect(train.valid).toBe(true)
  })

  it('writes the chosen DPO loss and reports invalid fields', () => {
    const train = useTrainStore()
    train.loss = 'hinge'
    expect(parse(train.yaml).pref_loss).toBe('hinge')
    expect(train.errors.model_name_or_path).toBe('required')
    expect(train.valid).toBe(false)
  })

  it('GRPO: the reward editor makes reward_funcs and reward_weights, a regex with a comma as a YAML list', () => {
    const train = useTrainStore()
    train.set('model_name_or_path', '/m')
    train.set('dataset', 'grpo.jsonl')
    train.set('output_dir', 'runs/g')
    train.setMethod('grpo')
    expect(train.rewards.builtins.filter((b) => b.enabled).map((b) => [b.name, b.weight])).toEqual([['accuracy', '1'], ['format', '0.25']])
    train.setRewards(edit(train.rewards, (s) => {
      s.builtins.find((b) => b.name === 'format')!.enabled = false
      s.regexes.push(customRow('^\\d{1,3}$', '2'))
    }))
    const cfg = parse(train.yaml)
    expect(cfg.reward_funcs).toEqual(['accuracy', 'regex:^\\d{1,3}$'])
    expect(cfg.reward_weights).toBe('1,2')
    expect(parseTrainingConfig(train.yaml, 'form.yaml').reward_funcs).toEqual(['accuracy', 'regex:^\\d{1,3}$'])
    expect(train.valid).toBe(true)
    // A bad pattern blocks Start and is named under reward_funcs.
    train.setRewards(edit(train.rewards, (s) => (s.regexes[0]!.value = '(')))
    expect(train.errors.reward_funcs).toMatch(/^a regex reward: not a valid regular expression/)
    expect(train.valid).toBe(false)
  })

  it('GRPO: a task preset sets rewards and settings and keeps paths; Reset puts the applied preset back', () => {
    const train = useTrainStore()
    train.setMethod('grpo')
    train.set('model_name_or_path', '/m')
    train.set('dataset', 'grpo.jsonl')
    train.applyGrpoPreset('short')
    expect(train.grpoPreset).toBe('short')
    let cfg = parse(train.yaml)
    expect(cfg).toMatchObject({ model_name_or_path: '/m', dataset: 'grpo.jsonl', reward_funcs: 'accuracy,length', length_target: 16, max_completion_length: 48 })
    train.set('num_generations', '3')
    expect(train.grpo?.divides).toBe(false)
    expect(train.errors.num_generations).toMatch(/per_device_train_batch_size × gradient_accumulation_steps = 32 × 1 = 32 is not a multiple of num_generations \(3\)/)
    train.applyPreset()
    cfg = parse(train.yaml)
    // Back to the preset's 8, the default, which the YAML leaves out.
    expect(cfg.num_generations).toBeUndefined()
    expect(train.grpo).toMatchObject({ prompts: 4, divides: true })
    expect(train.grpoPreset).toBe('short')
  })

  it('GRPO: the reward editor and preset survive a reload', async () => {
    const store = new Map<string, string>()
    globalThis.localStorage = { getItem: (k: string) => store.get(k) ?? null, setItem: (k: string, v: string) => void store.set(k, v) } as Storage
    try {
      const first = useTrainStore()
      first.applyGrpoPreset('format')
      first.setRewards(edit(first.rewards, (s) => s.commands.push(customRow('/opt/judge', '0.5'))))
      await nextTick()
      setActivePinia(createPinia())
      const again = useTrainStore()
      expect(again.methodId).toBe('grpo')
      expect(again.grpoPreset).toBe('format')
      expect(parse(again.yaml).reward_funcs).toBe('format,tag_count,command:/opt/judge')
      expect(parse(again.yaml).reward_weights).toBe('1,1,0.5')
      // A new row after the reload never takes the id of one read back.
      expect(customRow().id).toBeGreaterThan(again.rewards.commands[0]!.id)
    } finally {
      // @ts-expect-error the test's own storage goes away with it
      delete globalThis.localStorage
    }
  })
})
