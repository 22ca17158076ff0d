// The Train form: the method, its loss, the field values, and what they make: the config
// object, the per-field errors and the YAML that `tunebench train` takes.
import { defineStore } from 'pinia'
import { computed, ref, watch } from 'vue'
import type { EngineLimits } from '../../../preload/types/engine'
import { schemaForEngine, trainingConfigSchema, type PrefLoss } from '../../../preload/types/trainingSchema'
import { buildConfig, configYaml, fieldsFor, initialValues, methodById, methods, type FormValues, type MethodId } from '../lib/trainForm'

const storageKey = 'tunebench.trainForm'

interface SavedForm {
  methodId: MethodId
  loss: PrefLoss
  values: FormValues
}

// The form outlives a reload: what was typed is kept in the browser's storage. Anything that
// does not fit the current schema and methods is dropped rather than trusted.
function loadSaved(): SavedForm | null {
  try {
    if (typeof localStorage === 'undefined') return null
    const raw = JSON.parse(localStorage.getItem(storageKey) ?? 'null') as Partial<SavedForm> | null
    const method = methods.find((m) => m.id === raw?.methodId)
    if (!raw || !method || typeof raw.values !== 'object' || raw.values === null) return null
    const defaults = initialValues(method)
    const values: FormValues = { ...defaults }
    for (const [k, v] of Object.entries(raw.values))
      if (k in defaults && typeof v === typeof defaults[k]) values[k] = v as string | boolean
    const loss = method.losses.includes(raw.loss as PrefLoss) ? (raw.loss as PrefLoss) : (method.losses[0] ?? 'sigmoid')
    return { methodId: method.id, loss, values }
  } catch {
    return null
  }
}

/** Groups whose values are the user's own (paths, data) and survive a change of method. */
const keptGroups = new Set(['model', 'data', 'output', 'engine', 'lora'])

export const useTrainStore = defineStore('train', () => {
  const saved = loadSaved()
  const methodId = ref<MethodId>(saved?.methodId ?? 'dpo')
  const loss = ref<PrefLoss>(saved?.loss ?? 'sigmoid')
  const values = ref<FormValues>(saved?.values ?? initialValues(methodById('dpo')))
  if (typeof localStorage !== 'undefined')
    watch([methodId, loss, values], () => {
      localStorage.setItem(storageKey, JSON.stringify({ methodId: methodId.value, loss: loss.value, values: values.value }))
    })

  /** What the engine accepts; until its facts arrive the form checks the schema alone. */
  const engine = ref<EngineLimits | null>(null)
  const schema = computed(() => (engine.value ? schemaForEngine(engine.value) : trainingConfigSchema))
  const method = computed(() => methodById(methodId.value))
  const fields = computed(() => fieldsFor(method.value, schema.value))
  const built = computed(() => buildConfig(method.value, method.value.stage === 'dpo' ? loss.value : null, values.value, schema.value))
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

  function setEngine(limits: EngineLimits): void {
    engine.value = limits
  }

  return { methodId, loss, values, method, fields, built, errors, valid, yaml, setMethod, applyPreset, set, setEngine }
})
