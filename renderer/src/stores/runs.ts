// Training runs: the history, the log of each run that has been looked at, and the live
// events of running ones. A dashboard draws from `logs`, which is filled from the run's
// trainer_log.jsonl when first shown and then grows with 'runs.event' — so a reload draws
// exactly what it drew before; `samples` (samples.jsonl, the answers to the run's fixed
// prompts at each evaluation) are kept the same way. Runs are keyed by their folder (absolute path): the runs
// service accepts it wherever the run lives, and events name the same absolute folder.
import { defineStore } from 'pinia'
import { ref, shallowRef, triggerRef } from 'vue'
import { api } from '../api'
import { guarded } from '../lib/guarded'
import type { RunDetail, RunEvent, RunSummary, SampleGeneration, TrainingConfig } from '../../../preload/types/training'
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

  const logOf = (dir: string): LogEntry[] => logs.value.get(dir) ?? []
  const runOf = (dir: string | null): RunSummary | null => runs.value.find((r) => r.dir === dir) ?? null
  const liveOf = (dir: string): LiveProgress | null => live.value[dir] ?? null
  const samplesOf = (dir: string): SampleGeneration[] => samples.value[dir] ?? []
  const configOf = (dir: string): TrainingConfig | null => configs.value[dir] ?? null

  return { runs, selected, details, revision, error, busy, refresh, load, select, start, stop, resume, logOf, runOf, liveOf, samplesOf, configOf, receive }
})

function sameEntry(a: object, b: object): boolean {
  return JSON.stringify(a) === JSON.stringify(b)
}

/** How a run is named in lists: its method and folder. */
export function methodName(run: RunSummary): string {
  if (run.stage !== 'dpo') return run.stage.toUpperCase()
  if (run.prefLoss === 'orpo') return 'ORPO'
  if (run.prefLoss === 'simpo') return 'SimPO'
  return `DPO (${run.prefLoss ?? 'sigmoid'})`
}
