// "Generate answers…" on the Data page: which records, which sources, K, the sampling settings,
// and the generation running in main (its progress comes on data.generateProgress, also for a
// generation started before a reload, so the dialog can show it and cancel it).
import { defineStore } from 'pinia'
import { computed, reactive, ref, watch } from 'vue'
import type { AnswerScope, GenerateAnswersProgress, GenerateAnswersResult } from '../../../preload/types/generation'
import { answerSourceName } from '../../../preload/types/generation'
import { DEFAULT_GENERATION_SETTINGS, resolveSettings, type GenerationSettings } from '../../../preload/types/generationSettings'
import type { Split } from '../../../preload/types/data'
import { api } from '../api'
import { errorMessage } from '../lib/guarded'
import { adapterChoice, listSources, type SourceChoice } from '../lib/sources'
import { useProjectStore } from './project'

export const useGenerateAnswersStore = defineStore('generateAnswers', () => {
  const project = useProjectStore()
  const sources = ref<SourceChoice[]>([])
  const chosen = ref<string[]>([])
  const n = ref(2)
  const scope = ref<AnswerScope>('prompt-only')
  const split = ref<Split | 'all'>('all')
  const settings = reactive<GenerationSettings>({ ...DEFAULT_GENERATION_SETTINGS, stop: [] })
  const progress = ref<GenerateAnswersProgress | null>(null)
  const result = ref<GenerateAnswersResult | null>(null)
  const running = ref(false)
  const cancelling = ref(false)
  const error = ref<string | null>(null)

  api.on('data.generateProgress', (p) => {
    progress.value = p
    // A generation this page did not start (one from before a reload) shows while it runs.
    if (!p.finished && !running.value) running.value = true
    if (p.finished && !starting) {
      running.value = false
      void project.refresh()
    }
  })
  let starting = false

  /** The sources to offer; the first (the model opened last) is ticked when none is. */
  async function loadSources(): Promise<void> {
    try {
      const list = await listSources()
      for (const s of sources.value) if (!list.some((x) => x.key === s.key)) list.push(s) // folders added by hand
      sources.value = list
      chosen.value = chosen.value.filter((k) => list.some((s) => s.key === k))
      if (chosen.value.length === 0 && list[0]) chosen.value = [list[0].key]
      error.value = null
    } catch (err) {
      error.value = errorMessage(err)
    }
  }

  /** A PEFT adapter folder on top of the first base model ticked (else the first listed). */
  function addAdapter(dir: string): boolean {
    const base = sources.value.find((s) => chosen.value.includes(s.key) && !s.adapter) ?? sources.value.find((s) => !s.adapter)
    if (!base || !dir.trim()) return false
    const choice = adapterChoice(base.model, dir.trim())
    if (!sources.value.some((s) => s.key === choice.key)) sources.value = [...sources.value, choice]
    if (!chosen.value.includes(choice.key)) chosen.value = [...chosen.value, choice.key]
    return true
  }

  const picked = computed(() => sources.value.filter((s) => chosen.value.includes(s.key)))
  /** The name each ticked source's answers are stored under. */
  const names = computed(() => picked.value.map((s) => answerSourceName(s)))

  /** Why Start cannot run now, or null. */
  const problem = computed<string | null>(() => {
    if (picked.value.length === 0) return 'Tick at least one model or adapter.'
    if (!Number.isInteger(n.value) || n.value < 1) return 'Answers per prompt must be a whole number of at least 1.'
    try {
      resolveSettings({ ...settings, numReturnSequences: 1 })
    } catch (err) {
      return errorMessage(err).replace(/^generation setting /, '')
    }
    return null
  })

  const request = (dryRun: boolean) => {
    const { numReturnSequences: _n, ...sampling } = settings
    return {
      sources: picked.value.map((s) => ({ model: s.model, adapter: s.adapter })),
      n: n.value,
      scope: scope.value,
      split: split.value === 'all' ? undefined : split.value,
      settings: { ...sampling, stop: sampling.stop.filter((x) => x.length > 0) },
      dryRun
    }
  }

  /** What Start would generate with the choices as they are (asked again when they change). */
  const plan = ref<GenerateAnswersResult | null>(null)
  const planError = ref<string | null>(null)
  let planAsked = 0
  async function preview(): Promise<void> {
    const asked = ++planAsked
    if (problem.value || !project.info) {
      plan.value = null
      planError.value = null
      return
    }
    try {
      const r = await api.data.generateAnswers(request(true))
      if (asked !== planAsked) return
      plan.value = r
      planError.value = null
    } catch (err) {
      if (asked !== planAsked) return
      plan.value = null
      planError.value = errorMessage(err)
    }
  }
  let planTimer: ReturnType<typeof setTimeout> | undefined
  watch([chosen, n, scope, split, () => project.counts], () => {
    clearTimeout(planTimer)
    planTimer = setTimeout(() => void preview(), 150)
  })

  async function start(): Promise<boolean> {
    if (running.value || problem.value) return false
    running.value = true
    starting = true
    cancelling.value = false
    error.value = null
    result.value = null
    progress.value = null
    try {
      result.value = await api.data.generateAnswers(request(false))
      return true
    } catch (err) {
      error.value = errorMessage(err)
      return false
    } finally {
      starting = false
      running.value = false
      cancelling.value = false
      await project.refresh()
    }
  }

  async function cancel(): Promise<void> {
    if (!running.value) return
    cancelling.value = true
    try {
      await api.data.cancelGenerate()
    } catch (err) {
      error.value = errorMessage(err)
    }
  }

  /** Back to the form (after a result, for another round). */
  function reset(): void {
    result.value = null
    progress.value = null
    error.value = null
  }

  return {
    sources, chosen, n, scope, split, settings, progress, result, running, cancelling, error, picked, names, problem, plan, planError,
    loadSources, addAdapter, preview, start, cancel, reset
  }
})
