import { beforeEach, describe, expect, it } from 'vitest'
import { createPinia, setActivePinia } from 'pinia'
import { parse } from 'yaml'
import { useTrainStore } from './train'

describe('useTrainStore', () => {
  beforeEach(() => setActivePinia(createPinia()))

  it('keeps paths and data when the method changes, and takes the new preset', () => {
    const train = useTrainStore()
    train.set('model_name_or_path', '/m')
    train.set('dataset', 'pairs.jsonl')
    train.set('output_dir', 'runs/x')
    train.set('learning_rate', '0.1')
    train.setMethod('simpo')
    const cfg = parse(train.yaml)
    expect(cfg).toMatchObject({ model_name_or_path: '/m', dataset: 'pairs.jsonl', output_dir: 'runs/x', stage: 'dpo', pref_loss: 'simpo', pref_beta: 2 })
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
})
