import { describe, expect, it } from 'vitest'
import { parse } from 'yaml'
import { ConfigError, parseTrainingConfig, resolveConfig } from '../../../main/services/training/config'
import { engineFacts } from '../../../native/index'
import { schemaForEngine, trainingConfigSchema } from '../../../preload/types/trainingSchema'
import { buildConfig, configYaml, fieldsFor, initialValues, methodById, methods, parseField } from './trainForm'

const fixed = { model_name_or_path: '/models/tiny', dataset: 'data/pairs.jsonl', output_dir: 'runs/a' }

describe('train form', () => {
  it('gives every schema key help text, and shows each key for the stages it applies to', () => {
    for (const spec of trainingConfigSchema) expect(spec.help.trim().length, spec.name).toBeGreaterThan(3)
    const kto = fieldsFor(methodById('kto')).map((s) => s.name)
    expect(kto).toContain('kto_chosen_weight')
    expect(kto).not.toContain('simpo_gamma')
    expect(fieldsFor(methodById('sft')).map((s) => s.name)).not.toContain('pref_beta')
    expect(fieldsFor(methodById('simpo')).map((s) => s.name)).toContain('simpo_gamma')
    // The picker owns stage and pref_loss.
    for (const m of methods) expect(fieldsFor(m).map((s) => s.name)).not.toContain('stage')
  })

  it('writes YAML that the training config parser accepts, with the method and preset, for every method', () => {
    for (const m of methods) {
      for (const loss of m.losses.length ? m.losses : [null]) {
        const { config, errors } = buildConfig(m, loss, initialValues(m, fixed))
        expect(errors, m.id).toEqual({})
        const yaml = configYaml(config)
        // The parser `tunebench train CONFIG` reads the file with.
        const resolved = parseTrainingConfig(yaml, 'preview.yaml')
        expect(resolved.stage).toBe(m.stage)
        if (m.stage === 'dpo') expect(resolved.pref_loss).toBe(loss)
        expect(resolved.model_name_or_path).toBe('/models/tiny')
        expect(resolved.dataset).toEqual(['data/pairs.jsonl'])
        expect(resolved.learning_rate).toBe(m.preset.learning_rate)
      }
    }
  })

  it('leaves keys at their defaults out of the YAML and writes changed ones', () => {
    const m = methodById('dpo')
    const values = { ...initialValues(m, fixed), lora_rank: '16', lora_target: 'q_proj, v_proj', use_rslora: true }
    const { config } = buildConfig(m, 'ipo', values)
    const yaml = configYaml(config)
    expect(yaml).toContain('lora_rank: 16\n')
    expect(yaml).toContain('lora_target: q_proj,v_proj\n')
    expect(yaml).toContain('use_rslora: true\n')
    expect(yaml).toContain('pref_loss: ipo\n')
    expect(yaml).not.toContain('adam_beta1')
    expect(yaml.startsWith('model_name_or_path: /models/tiny\n')).toBe(true)
  })

  it('moe_aux_loss_coef: a field of its own group for every method, unset (left out of the YAML) until typed', () => {
    for (const m of methods) {
      const spec = fieldsFor(m).find((s) => s.name === 'moe_aux_loss_coef')
      expect(spec?.group, m.id).toBe('moe')
      expect(spec!.help).toMatch(/Qwen3-MoE models only/)
      expect(initialValues(m, fixed).moe_aux_loss_coef).toBe('')
      expect(configYaml(buildConfig(m, m.losses[0] ?? null, initialValues(m, fixed)).config)).not.toContain('moe_aux_loss_coef')
    }
    const m = methodById('sft')
    const { config, errors } = buildConfig(m, null, { ...initialValues(m, fixed), moe_aux_loss_coef: '0.001' })
    expect(errors).toEqual({})
    const yaml = configYaml(config)
    expect(yaml).toContain('moe_aux_loss_coef: 0.001\n')
    expect(parseTrainingConfig(yaml, 'preview.yaml').moe_aux_loss_coef).toBe(0.001)
    expect(buildConfig(m, null, { ...initialValues(m, fixed), moe_aux_loss_coef: '-0.5' }).errors.moe_aux_loss_coef).toBe('must be at least 0')
  })

  it('reports a message per field for bad values', () => {
    const m = methodById('kto')
    const values = { ...initialValues(m, fixed), lora_rank: '2.5', learning_rate: 'fast', lora_dropout: '1.5',
      per_device_train_batch_size: '1', model_name_or_path: '', lora_target: 'q_proj,all' }
    const { errors } = buildConfig(m, null, values)
    expect(errors.lora_rank).toBe('must be a whole number')
    expect(errors.learning_rate).toBe('must be a number')
    expect(errors.lora_dropout).toBe('must be at most 1')
    expect(errors.per_device_train_batch_size).toMatch(/at least 2/)
    expect(errors.model_name_or_path).toBe('required')
    expect(errors.lora_target).toMatch(/all/)
  })

  it('agrees with the config parser on which single values are acceptable', () => {
    const probes = ['0', '-1', '1', '2.5', '1e-8', 'x', '0.5', '3']
    // The app builds the form from the schema as this engine accepts it, as the parser checks it.
    for (const spec of schemaForEngine(engineFacts()).filter((s) => s.type === 'int' || s.type === 'float')) {
      for (const probe of probes) {
        const ours = parseField(spec, probe).error === undefined
        // The parser rejects the value itself when its error names this key.
        let theirs = true
        try {
          resolveConfig({ ...fixed, stage: 'dpo', per_device_train_batch_size: 2, [spec.name]: probe }, 'x.yaml')
        } catch (e) {
          if (!(e instanceof ConfigError)) throw e
          theirs = e.key !== spec.name
        }
        expect(ours, `${spec.name}=${probe}`).toBe(theirs)
      }
    }
  })

  it('lets the app choose output_dir when the form leaves it empty, and says so in the YAML', () => {
    const m = methodById('sft')
    const { config, errors } = buildConfig(m, null, initialValues(m, { ...fixed, output_dir: '' }))
    expect(errors).toEqual({})
    expect(config.output_dir).toBeUndefined()
    const yaml = configYaml(config)
    expect(yaml).toMatch(/^# output_dir: left to the app/m)
    // The YAML is still valid: the comment is only a comment, and the CLI's parser names the
    // key the comment asks for.
    expect(parse(yaml).output_dir).toBeUndefined()
    expect(() => parseTrainingConfig(yaml, 'preview.yaml')).toThrow(/output_dir: required key is missing/)
  })

  it('offers only what the engine accepts once its facts are known: its devices and its LoRA dropout range', () => {
    const schema = schemaForEngine({ ...engineFacts(), devices: ['cpu'], loraDropout: { min: 0, maxExclusive: 1 } })
    const m = methodById('dpo')
    const fields = fieldsFor(m, schema)
    expect(fields.find((s) => s.name === 'device')!.choices).toEqual(['cpu'])
    const dropout = fields.find((s) => s.name === 'lora_dropout')!
    expect(parseField(dropout, '1').error).toBe('must be below 1')
    expect(parseField(dropout, '0.9').error).toBeUndefined()
    const { errors } = buildConfig(m, 'sigmoid', { ...initialValues(m, fixed), device: 'cuda', lora_dropout: '1' }, schema)
    expect(errors.device).toBe('must be one of cpu (the devices this engine build offers)')
    expect(errors.lora_dropout).toBe('must be below 1')
  })
})

