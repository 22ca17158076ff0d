// The Train form: the method, its loss, the field values, and what they make: the config
// object, the per-field errors and the YAML that `tunebench train` takes.
import { defineStore } from 'pinia'
import { computed, ref } from 'vue'
import type { PrefLoss } from '../../../preload/types/trainingSchema'
import { buildConfig, configYaml, fieldsFor, initialValues, methodById, type FormValues, type MethodId } from '../lib/trainForm'

/** Groups whose values are the user's own (paths, data) and survive a change of method. */
const keptGroups = new Set(['model', 'data', 'output', 'engine', 'lora'])

export const useTrainStore = defineStore('train', () => {
  const methodId = ref<MethodId>('dpo')
  const loss = ref<PrefLoss>('sigmoid')
  const values = ref<FormValues>(initialValues(methodById('dpo')))

  const method = computed(() => methodById(methodId.value))
  const fields = computed(() => fieldsFor(method.value))
  const built = computed(() => buildConfig(method.value, method.value.stage === 'dpo' ? loss.value : null, values.value))
  const errors = computed(() => built.value.errors)
  const valid = computed(() => Object.keys(errors.value).length === 0)
  const yaml = computed(() => configYaml(built.value.config))

  /** Switches method: its preset replaces the training settings, paths and data stay. */
  function setMethod(id: MethodId): void {
    const next = methodById(id)
    const preset = initialValues(next)
    const kept: FormValues = {}
    for (const spec of fieldsFor(next)) if (keptGroups.has(spec.group) && spec.name in values.value) kept[spec.name] = values.value[spec.name]
    methodId.value = id
    loss.value = next.losses[0] ?? 'sigmoid'
    values.value = { ...preset, ...kept }
  }

  /** Puts the method's preset back, keeping paths and data. */
  function applyPreset(): void {
    setMethod(methodId.value)
  }

  function set(key: string, value: string | boolean): void {
    values.value = { ...values.value, [key]: value }
  }

  return { methodId, loss, values, method, fields, built, errors, valid, yaml, setMethod, applyPreset, set }
})
