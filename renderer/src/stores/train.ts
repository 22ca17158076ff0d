// The Train form: the method, its loss, the field values, and what they make: the config
// object, the per-field errors and the YAML that `tunebench train` takes.
import { defineStore } from 'pinia'
import { computed, ref, watch } from 'vue'
import type { EngineLimits } from '../../../preload/types/engine'
import { schemaForEngine, trainingConfigSchema, type PrefLoss } from '../../../preload/types/trainingSchema'
import { grpoPresetById, grpoPresets, presetRewardValues } from '../lib/grpoPresets'
import { isRewardEditorState, reserveIds, rewardsFromConfig, type RewardEditorState } from '../lib/rewardEditor'
import { buildConfig, configYaml, fieldsFor, grpoBatch, initialValues, methodById, methods, runIntervals, type FormValues, type MethodId } from '../lib/trainForm'

const storageKey = 'tunebench.trainForm'

interface SavedForm {
  methodId: MethodId
  loss: PrefLoss
  values: FormValues
  /** Values the app filled in itself, by key (see fillDefault). */
  filled: Record<string, string>
  /** GRPO: the reward editor and the task preset it started from. */
  rewards?: RewardEditorState
  grpoPreset?: string
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
    const filled: Record<string, string> = {}
    for (const [k, v] of Object.entries(raw.filled ?? {})) if (k in defaults && typeof v === 'string') filled[k] = v
    const rewards = isRewardEditorState(raw.rewards) ? raw.rewards : undefined
    if (rewards) reserveIds(rewards)
    const grpoPreset = grpoPresetById(raw.grpoPreset ?? '')?.id
    return { methodId: method.id, loss, values, filled, rewards, grpoPreset }
  } catch {
    return null
  }
}

/** The reward editor of the form values' reward_funcs / reward_weights (a method's preset). */
function rewardsOf(values: FormValues): RewardEditorState {
  const list = (v: unknown) => (typeof v === 'string' && v.trim() ? v.split(',').map((s) => s.trim()) : null)
  return rewardsFromConfig(list(values.reward_funcs) ?? [], list(values.reward_weights)).state
}

/** Groups whose values are the user's own (paths, data) and survive a change of method. */
const keptGroups = new Set(['model', 'data', 'output', 'engine', 'lora', 'moe'])

export const useTrainStore = defineStore('train', () => {
  const saved = loadSaved()
  const methodId = ref<MethodId>(saved?.methodId ?? 'dpo')
  const loss = ref<PrefLoss>(saved?.loss ?? 'sigmoid')
  const values = ref<FormValues>(saved?.values ?? initialValues(methodById('dpo')))
  const filled = ref<Record<string, string>>(saved?.filled ?? {})
  /** The GRPO reward editor; it makes reward_funcs and reward_weights (replaced, never mutated). */
  const rewards = ref<RewardEditorState>(saved?.rewards ?? rewardsOf(values.value))
  /** The GRPO task preset applied last. */
  const grpoPreset = ref<string>(saved?.grpoPreset ?? grpoPresets[0]!.id)
  if (typeof localStorage !== 'undefined')
    watch([methodId, loss, values, filled, rewards, grpoPreset], () => {
      const form: SavedForm = {
        methodId: methodId.value, loss: loss.value, values: values.value, filled: filled.value, rewards: rewards.value, grpoPreset: grpoPreset.value
      }
      localStorage.setItem(storageKey, JSON.stringify(form))
    })

  /** What the engine accepts; until its facts arrive the form checks the schema alone. */
  const engine = ref<EngineLimits | null>(null)
  const schema = computed(() => (engine.value ? schemaForEngine(engine.value) : trainingConfigSchema))
  const method = computed(() => methodById(methodId.value))
  const fields = computed(() => fieldsFor(method.value, schema.value))
  const built = computed(() =>
    buildConfig(method.value, method.value.stage === 'dpo' ? loss.value : null, values.value, schema.value, method.value.stage === 'grpo' ? rewards.value : null)
  )
  const errors = computed(() => built.value.errors)
  const valid = computed(() => Object.keys(errors.value).length === 0)
  /** Training examples in the dataset when the app knows (the open project's labels), else null. */
  const examples = ref<number | null>(null)
  /** The run's length and its log / checkpoint intervals, as the trainer will resolve them. */
  const intervals = computed(() => runIntervals(built.value.config, examples.value))
  const yaml = computed(() => configYaml(built.value.config, intervals.value))
  /** GRPO: completions and prompts per step, or null (another method, or a key not yet a number). */
  const grpo = computed(() => (method.value.stage === 'grpo' ? grpoBatch(built.value.config) : null))

  /** Switches method: its preset replaces the training settings, paths and data stay. A GRPO
   *  task preset's values go on top of the method's. */
  function setMethod(id: MethodId, over: Record<string, string | number | boolean> = {}): void {
    const next = methodById(id)
    const preset = initialValues({ ...next, preset: { ...next.preset, ...over } })
    const kept: FormValues = {}
    for (const spec of fieldsFor(next)) if (keptGroups.has(spec.group) && spec.name in values.value) kept[spec.name] = values.value[spec.name]
    methodId.value = id
    loss.value = next.losses[0] ?? 'sigmoid'
    values.value = { ...preset, ...kept }
    if (next.stage === 'grpo') {
      rewards.value = rewardsOf(values.value)
      // The method's own preset is the first task preset; applyGrpoPreset names another.
      grpoPreset.value = grpoPresets[0]!.id
    }
  }

  /** Puts the method's preset back (for GRPO the task preset applied last), keeping paths and data. */
  function applyPreset(): void {
    if (method.value.stage === 'grpo') applyGrpoPreset(grpoPreset.value)
    else setMethod(methodId.value)
  }

  /** Starts GRPO from a task preset: its reward functions and settings; paths and data stay. */
  function applyGrpoPreset(id: string): void {
    const preset = grpoPresetById(id)
    if (!preset) return
    setMethod('grpo', { ...preset.values, ...presetRewardValues(preset) })
    grpoPreset.value = preset.id
  }

  function setRewards(next: RewardEditorState): void {
    rewards.value = next
  }

  function set(key: string, value: string | boolean): void {
    values.value = { ...values.value, [key]: value }
  }

  /** Whether the field still holds the value the app filled in (the user has not typed over it). */
  function isFilled(key: string): boolean {
    return filled.value[key] !== undefined && values.value[key] === filled.value[key]
  }

  /** Fills a field the user left empty (or that still holds the app's last value) with what
   *  the app has open (the model, the project's labels); a typed value is never replaced. */
  function fillDefault(key: string, value: string): void {
    if (String(values.value[key] ?? '').trim() !== '' && !isFilled(key)) return
    filled.value = { ...filled.value, [key]: value }
    if (values.value[key] !== value) set(key, value)
  }

  function setEngine(limits: EngineLimits): void {
    engine.value = limits
  }

  return {
    methodId, loss, values, method, fields, built, errors, valid, examples, intervals, yaml, grpo, rewards, grpoPreset,
    setMethod, applyPreset, applyGrpoPreset, setRewards, set, isFilled, fillDefault, setEngine
  }
})
