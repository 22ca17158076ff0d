// Training runs: the history, the log of each run that has been looked at, and the live
// events of running ones. A dashboard draws from `logs`, which is filled from the run's
// trainer_log.jsonl when first shown and then grows with 'runs.event' — so a reload draws
// exactly what it drew before; `samples` (samples.jsonl, the answers to the run's fixed
// prompts at each evaluation) are kept the same way, and so are a GRPO run's completion steps
// (completions/step-NNNNN.jsonl), each step's lines read when first shown. Runs are keyed by their folder (absolute path): the runs
// service accepts it wherever the run lives, and events name the same absolute folder.
import { defineStore } from 'pinia'
import { ref, shallowRef, triggerRef } from 'vue'
import { api } from '../api'
import { errorMessage, guarded } from '../lib/guarded'
import type { ImportAdapterRequest } from '../../../preload/types/export'
import type { GrpoCompletion, RunDetail, RunEvent, RunSummary, SampleGeneration, TrainingConfig } from '../../../preload/types/training'
import type { LogEntry } from '../lib/runMetrics'

/** Live progress of a running run (progress events come more often than log lines). */
export interface LiveProgress {
  step: number
  totalSteps: number
  elapsedSeconds: number
  remainingSeconds: number
}

export const useRunsStore = defineStore('runs', () => {
  const runs = ref<RunSummary[]>([])
  const selected = ref<string | null>(null)
  /** Log lines per run folder; arrays grow in place and `revision` says when. */
  const logs = shallowRef(new Map<string, LogEntry[]>())
  const details = ref<Record<string, RunDetail>>({})
  /** samples.jsonl lines per run folder, steps ascending. */
  const samples = ref<Record<string, SampleGeneration[]>>({})
  /** The config of each run as its folder or its 'started' event gave it. */
  const configs = ref<Record<string, TrainingConfig | null>>({})
  const live = ref<Record<string, LiveProgress>>({})
  /** GRPO: the steps with completions per run folder, ascending (absent = not loaded). */
  const completionSteps = ref<Record<string, number[]>>({})
  /** GRPO: the completions of the steps read or streamed, per run folder and step. Replaced
   *  whole on change (shallow: hundreds of lines need no deep reactivity). */
  const completions = shallowRef<Record<string, Record<number, GrpoCompletion[]>>>({})
  const revision = ref(0)
  const error = ref<string | null>(null)
  const busy = ref(false)

  api.on('runs.event', (event) => receive(event))

  function upsert(summary: RunSummary): void {
    const i = runs.value.findIndex((r) => r.dir === summary.dir)
    if (i >= 0) runs.value[i] = summary
    else runs.value.unshift(summary)
  }

  function patch(runDir: string, change: Partial<RunSummary>): RunSummary | null {
    const i = runs.value.findIndex((r) => r.dir === runDir)
    if (i < 0) return null
    runs.value[i] = { ...runs.value[i], ...change }
    return runs.value[i]
  }

  function receive(event: RunEvent): void {
    const run = runs.value.find((r) => r.dir === event.runDir)
    switch (event.type) {
      case 'started': {
        // A run started elsewhere (the CLI does not reach us, another window does): list it.
        if (!run) return void refresh()
        configs.value = { ...configs.value, [run.dir]: event.config }
        patch(event.runDir, { state: 'running', error: null, totalSteps: event.totalSteps })
        // A resumed run logs again from its checkpoint on: drop the lines after it.
        const from = /checkpoint-(\d+)$/.exec(event.resumedFrom ?? '')
        const log = logs.value.get(run.dir)
        if (from && log) {
          const kept = log.filter((e) => typeof e.current_steps !== 'number' || e.current_steps <= Number(from[1]))
          log.splice(0, log.length, ...kept)
          revision.value++
          triggerRef(logs)
        }
        const held = samples.value[run.dir]
        if (from && held) samples.value = { ...samples.value, [run.dir]: held.filter((l) => l.step <= Number(from[1])) }
        // The steps after the checkpoint are sampled again.
        if (from) keepCompletions(run.dir, (step) => step <= Number(from[1]))
        return
      }
      case 'completions': {
        const steps = run && completionSteps.value[run.dir]
        // A run whose steps were never loaded gets them all on first load instead.
        if (!steps) return
        if (!steps.includes(event.step)) completionSteps.value = { ...completionSteps.value, [run.dir]: [...steps, event.step].sort((a, b) => a - b) }
        completions.value = { ...completions.value, [run.dir]: { ...completions.value[run.dir], [event.step]: event.completions } }
        return
      }
      case 'log':
      case 'eval': {
        if (!run) return
        const log = logs.value.get(run.dir)
        // A run whose log was never loaded gets all its lines on first load instead.
        if (!log) return
        if (log.some((e) => e.current_steps === event.entry.current_steps && sameEntry(e, event.entry))) return
        log.push(event.entry as LogEntry)
        if (event.type === 'log' && typeof event.entry.loss === 'number') patch(event.runDir, { lastLoss: event.entry.loss })
        revision.value++
        triggerRef(logs)
        return
      }
      case 'samples': {
        const held = run && samples.value[run.dir]
        // A run whose samples were never loaded gets them all on first load instead.
        if (!held) return
        samples.value = { ...samples.value, [run.dir]: [...held.filter((l) => l.step !== event.step), ...event.samples] }
        return
      }
      case 'progress':
        if (!run) return
        live.value = { ...live.value, [run.dir]: { step: event.step, totalSteps: event.totalSteps, elapsedSeconds: event.elapsedSeconds, remainingSeconds: event.remainingSeconds } }
        patch(event.runDir, { step: event.step, totalSteps: event.totalSteps })
        return
      case 'checkpoint':
        if (run) patch(event.runDir, { checkpoints: [...run.checkpoints, event.dir] })
        return
      case 'finished':
        patch(event.runDir, { state: 'finished', step: event.step, hasAdapter: true })
        return
      case 'failed':
        patch(event.runDir, { state: 'failed', error: event.error })
        return
      case 'cancelled':
        patch(event.runDir, { state: 'cancelled', step: event.step })
        return
    }
  }

  const guard = guarded(error)

  async function refresh(): Promise<void> {
    const list = await guard(() => api.runs.list())
    if (list) runs.value = list
  }

  /** Loads a run's config and log (from its folder) so its dashboard can be drawn. */
  async function load(dir: string): Promise<RunDetail | undefined> {
    const detail = await guard(() => api.runs.get(dir))
    if (!detail) return undefined
    details.value = { ...details.value, [dir]: detail }
    logs.value.set(dir, [...(detail.log as LogEntry[])])
    samples.value = { ...samples.value, [dir]: detail.samples }
    configs.value = { ...configs.value, [dir]: detail.config }
    if (detail.summary.stage === 'grpo') {
      const steps = await guard(() => api.runs.completionSteps(dir))
      if (steps) {
        completionSteps.value = { ...completionSteps.value, [dir]: steps }
        // Read again on demand: a step's file may have been rewritten by a resume.
        completions.value = { ...completions.value, [dir]: {} }
      }
    }
    upsert(detail.summary)
    revision.value++
    triggerRef(logs)
    return detail
  }

  async function select(dir: string | null): Promise<void> {
    selected.value = dir
    if (dir) await load(dir)
  }

  async function start(config: Record<string, unknown>): Promise<RunSummary | undefined> {
    busy.value = true
    try {
      const run = await guard(() => api.runs.start({ config }))
      if (run) {
        upsert(run)
        // The folder is being created now; the run's lines come as events from here on.
        logs.value.set(run.dir, [])
        samples.value = { ...samples.value, [run.dir]: [] }
        if (run.stage === 'grpo') {
          completionSteps.value = { ...completionSteps.value, [run.dir]: [] }
          completions.value = { ...completions.value, [run.dir]: {} }
        }
        selected.value = run.dir
        revision.value++
        triggerRef(logs)
      }
      return run
    } finally {
      busy.value = false
    }
  }

  async function stop(dir: string): Promise<void> {
    await guard(() => api.runs.stop(dir))
  }

  async function resume(dir: string): Promise<RunSummary | undefined> {
    busy.value = true
    try {
      const run = await guard(() => api.runs.resume(dir))
      if (run) {
        upsert(run)
        await select(run.dir)
      }
      return run
    } finally {
      busy.value = false
    }
  }

  /** Adds a PEFT adapter trained elsewhere as a run and selects it. Throws the service's
   *  message (the import dialog shows it where the paths were typed). */
  async function importAdapter(request: ImportAdapterRequest): Promise<RunSummary> {
    busy.value = true
    try {
      const run = await api.runs.importAdapter(request)
      upsert(run)
      await select(run.dir)
      return run
    } finally {
      busy.value = false
    }
  }

  function keepCompletions(dir: string, keep: (step: number) => boolean): void {
    const steps = completionSteps.value[dir]
    if (!steps) return
    completionSteps.value = { ...completionSteps.value, [dir]: steps.filter(keep) }
    const held = completions.value[dir] ?? {}
    completions.value = { ...completions.value, [dir]: Object.fromEntries(Object.entries(held).filter(([step]) => keep(Number(step)))) }
  }

  /** Reads one step's completions (once; streamed steps are already there). Resolves to the
   *  error message when it cannot, for the panel to show beside the step. */
  async function loadCompletions(dir: string, step: number): Promise<string | null> {
    if (completions.value[dir]?.[step]) return null
    try {
      const lines = await api.runs.completions(dir, step)
      completions.value = { ...completions.value, [dir]: { ...completions.value[dir], [step]: lines } }
      return null
    } catch (err) {
      return errorMessage(err)
    }
  }

  const logOf = (dir: string): LogEntry[] => logs.value.get(dir) ?? []
  const runOf = (dir: string | null): RunSummary | null => runs.value.find((r) => r.dir === dir) ?? null
  const liveOf = (dir: string): LiveProgress | null => live.value[dir] ?? null
  const samplesOf = (dir: string): SampleGeneration[] => samples.value[dir] ?? []
  const configOf = (dir: string): TrainingConfig | null => configs.value[dir] ?? null
  /** null while the run's steps are not loaded (or it is not a GRPO run). */
  const completionStepsOf = (dir: string): number[] | null => completionSteps.value[dir] ?? null
  const completionsOf = (dir: string, step: number | null): GrpoCompletion[] | null =>
    step === null ? null : (completions.value[dir]?.[step] ?? null)

  return {
    runs, selected, details, revision, error, busy, refresh, load, select, start, stop, resume, importAdapter, loadCompletions,
    logOf, runOf, liveOf, samplesOf, configOf, completionStepsOf, completionsOf, receive
  }
})

function sameEntry(a: object, b: object): boolean {
  return JSON.stringify(a) === JSON.stringify(b)
}

/** How a run is named in lists: its method and folder. */
export function methodName(run: RunSummary): string {
  if (run.importedFrom) return 'Imported LoRA'
  if (run.stage !== 'dpo') return run.stage.toUpperCase()
  if (run.prefLoss === 'orpo') return 'ORPO'
  if (run.prefLoss === 'simpo') return 'SimPO'
  return `DPO (${run.prefLoss ?? 'sigmoid'})`
}
