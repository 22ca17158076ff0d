import { beforeEach, describe, expect, it, vi } from 'vitest'
import { createPinia, setActivePinia } from 'pinia'
import type { GrpoCompletion, RunDetail, RunEvent, RunSummary, TrainerLogEntry } from '../../../preload/types/training'

// An in-memory runs service: the run's log on disk is `disk`, events are pushed by the test.
let listener: ((e: RunEvent) => void) | null = null
let disk: TrainerLogEntry[] = []
/** The run's method, and a GRPO run's completions/ folder: lines by step. */
let stage = 'dpo'
let completionsDisk: Record<number, GrpoCompletion[]> = {}
let completionReads = 0
const summary = (over: Partial<RunSummary> = {}): RunSummary => ({
  id: 'dpo-1', dir: '/runs/dpo-1', state: 'running', stage, prefLoss: 'sigmoid', model: '/m', step: 0, totalSteps: 4,
  lastLoss: null, startedAt: null, updatedAt: null, error: null, checkpoints: [], hasAdapter: false, ...over
})
const entry = (step: number, loss: number): TrainerLogEntry => ({
  current_steps: step, total_steps: 4, loss, lr: 1e-5, epoch: step / 4, percentage: step * 25,
  elapsed_time: `0:00:0${step}`, remaining_time: `0:00:0${4 - step}`
})

vi.mock('../api', () => ({
  api: {
    runs: {
      list: async () => [summary()],
      get: async (dir: string): Promise<RunDetail> => ({ summary: summary({ dir }), config: null, log: disk.map((e) => ({ ...e })), samples: [], status: null }),
      start: async () => summary(),
      stop: async () => true,
      resume: async () => summary(),
      completionSteps: async () => Object.keys(completionsDisk).map(Number).sort((a, b) => a - b),
      completions: async (_dir: string, step: number) => {
        completionReads++
        if (!completionsDisk[step]) throw new Error(`no completions for step ${step}`)
        return completionsDisk[step]
      }
    },
    on: (channel: string, cb: (e: RunEvent) => void) => {
      if (channel === 'runs.event') listener = cb
      return () => undefined
    }
  }
}))

const { useRunsStore } = await import('./runs')
const push = (e: RunEvent) => listener!(e)

describe('runs store', () => {
  beforeEach(() => {
    setActivePinia(createPinia())
    disk = []
    listener = null
    stage = 'dpo'
    completionsDisk = {}
    completionReads = 0
  })

  it('appends live log lines to a loaded run and drops lines the log already held', async () => {
    const runs = useRunsStore()
    disk = [entry(1, 0.7)]
    await runs.refresh()
    await runs.select('/runs/dpo-1')
    expect(runs.logOf('/runs/dpo-1').map((e) => e.current_steps)).toEqual([1])
    // The line of step 1 arrives again as an event (it was written while the log was read).
    push({ type: 'log', runDir: '/runs/dpo-1', entry: entry(1, 0.7) })
    push({ type: 'log', runDir: '/runs/dpo-1', entry: entry(2, 0.6) })
    push({ type: 'eval', runDir: '/runs/dpo-1', entry: { ...entry(2, 0), loss: undefined, eval_loss: 0.65 } })
    expect(runs.logOf('/runs/dpo-1').map((e) => e.current_steps)).toEqual([1, 2, 2])
    expect(runs.runOf('/runs/dpo-1')?.lastLoss).toBe(0.6)
  })

  it('after a reload, reads the same log back from the run folder', async () => {
    const first = useRunsStore()
    await first.start({})
    for (const [s, l] of [[1, 0.7], [2, 0.6], [3, 0.5]] as const) {
      disk.push(entry(s, l))
      push({ type: 'log', runDir: '/runs/dpo-1', entry: entry(s, l) })
    }
    const live = JSON.stringify(first.logOf('/runs/dpo-1'))
    setActivePinia(createPinia())
    const reloaded = useRunsStore()
    await reloaded.refresh()
    await reloaded.select('/runs/dpo-1')
    expect(JSON.stringify(reloaded.logOf('/runs/dpo-1'))).toBe(live)
  })

  it('tracks progress, failure with its message, and the finish', async () => {
    const runs = useRunsStore()
    await runs.start({})
    push({ type: 'progress', runDir: '/runs/dpo-1', step: 3, totalSteps: 4, elapsedSeconds: 3, remainingSeconds: 1 })
    expect(runs.liveOf('/runs/dpo-1')).toEqual({ step: 3, totalSteps: 4, elapsedSeconds: 3, remainingSeconds: 1 })
    expect(runs.runOf('/runs/dpo-1')?.step).toBe(3)
    push({ type: 'failed', runDir: '/runs/dpo-1', error: 'loss is NaN at step 3', lastCheckpoint: null })
    expect(runs.runOf('/runs/dpo-1')).toMatchObject({ state: 'failed', error: 'loss is NaN at step 3' })
    push({ type: 'finished', runDir: '/runs/dpo-1', adapterDir: '/runs/dpo-1', step: 4 })
    expect(runs.runOf('/runs/dpo-1')).toMatchObject({ state: 'finished', hasAdapter: true, step: 4 })
  })

  it('ignores events of runs it does not know', async () => {
    const runs = useRunsStore()
    await runs.start({})
    push({ type: 'log', runDir: '/elsewhere', entry: entry(1, 1) })
    expect(runs.logOf('/runs/dpo-1')).toEqual([])
  })

  it('matches events to runs by their absolute folder only', async () => {
    const runs = useRunsStore()
    await runs.start({})
    // The service names every run by its absolute folder; a folder ending the same way is another run.
    push({ type: 'failed', runDir: '/other/runs/dpo-1', error: 'not this one', lastCheckpoint: null })
    push({ type: 'failed', runDir: 'runs/dpo-1', error: 'not this one either', lastCheckpoint: null })
    expect(runs.runOf('/runs/dpo-1')?.state).toBe('running')
    push({ type: 'failed', runDir: '/runs/dpo-1', error: 'this one', lastCheckpoint: null })
    expect(runs.runOf('/runs/dpo-1')).toMatchObject({ state: 'failed', error: 'this one' })
  })

  it('keeps the events of a run it just started, before its folder exists', async () => {
    const runs = useRunsStore()
    const run = await runs.start({})
    expect(run?.dir).toBe('/runs/dpo-1')
    push({ type: 'started', runDir: '/runs/dpo-1', totalSteps: 4, config: {} as never, resumedFrom: null })
    push({ type: 'log', runDir: '/runs/dpo-1', entry: entry(1, 0.7) })
    expect(runs.logOf('/runs/dpo-1')).toHaveLength(1)
    expect(runs.selected).toBe('/runs/dpo-1')
  })

  it('drops the lines after the checkpoint a run resumes from', async () => {
    const runs = useRunsStore()
    disk = [entry(1, 0.7), entry(2, 0.6), entry(3, 0.5)]
    await runs.refresh()
    await runs.select('/runs/dpo-1')
    push({ type: 'started', runDir: '/runs/dpo-1', totalSteps: 4, config: {} as never, resumedFrom: '/runs/dpo-1/checkpoint-2' })
    expect(runs.logOf('/runs/dpo-1').map((e) => e.current_steps)).toEqual([1, 2])
    push({ type: 'log', runDir: '/runs/dpo-1', entry: entry(3, 0.55) })
    expect(runs.logOf('/runs/dpo-1').map((e) => e.loss)).toEqual([0.7, 0.6, 0.55])
  })

  it('keeps sample generations as they arrive: a step sent again replaces its lines, a resume drops those after its checkpoint', async () => {
    const runs = useRunsStore()
    await runs.start({})
    const at = (step: number, adapter: string) => ({ type: 'samples' as const, runDir: '/runs/dpo-1', step, samples: [{ step, index: 0, prompt: 'Hi?', base: 'Hello.', adapter }] })
    push(at(2, 'Hey.'))
    push(at(4, 'Hi!'))
    push(at(4, 'Hi there!'))
    expect(runs.samplesOf('/runs/dpo-1').map((l) => [l.step, l.adapter])).toEqual([[2, 'Hey.'], [4, 'Hi there!']])
    push({ type: 'started', runDir: '/runs/dpo-1', totalSteps: 4, config: {} as never, resumedFrom: '/runs/dpo-1/checkpoint-2' })
    expect(runs.samplesOf('/runs/dpo-1').map((l) => l.step)).toEqual([2])
    push(at(3, 'x'))
    push({ ...at(1, 'y'), runDir: '/elsewhere' })
    expect(runs.samplesOf('/runs/dpo-1').map((l) => l.step)).toEqual([2, 3])
  })

  it('GRPO: lists the steps with completions, reads a step once, adds streamed steps and drops those after a resumed checkpoint', async () => {
    stage = 'grpo'
    const c = (step: number, reward: number): GrpoCompletion => ({
      step, group: 0, index: 0, prompt: 'p', completion: 'c', rewards: { accuracy: reward }, reward, advantage: 0, tokens: 3, clipped: false
    })
    completionsDisk = { 1: [c(1, 0)], 2: [c(2, 1)] }
    const runs = useRunsStore()
    await runs.refresh()
    await runs.select('/runs/dpo-1')
    expect(runs.completionStepsOf('/runs/dpo-1')).toEqual([1, 2])
    expect(runs.completionsOf('/runs/dpo-1', 2)).toBeNull()
    expect(await runs.loadCompletions('/runs/dpo-1', 2)).toBeNull()
    expect(await runs.loadCompletions('/runs/dpo-1', 2)).toBeNull()
    expect(completionReads).toBe(1)
    expect(runs.completionsOf('/runs/dpo-1', 2)).toEqual([c(2, 1)])
    expect(await runs.loadCompletions('/runs/dpo-1', 9)).toBe('no completions for step 9')
    // A step scored live arrives whole: no read needed.
    push({ type: 'completions', runDir: '/runs/dpo-1', step: 3, completions: [c(3, 1)] })
    expect(runs.completionStepsOf('/runs/dpo-1')).toEqual([1, 2, 3])
    expect(await runs.loadCompletions('/runs/dpo-1', 3)).toBeNull()
    expect(completionReads).toBe(2)
    push({ type: 'started', runDir: '/runs/dpo-1', totalSteps: 4, config: {} as never, resumedFrom: '/runs/dpo-1/checkpoint-2' })
    expect(runs.completionStepsOf('/runs/dpo-1')).toEqual([1, 2])
    expect(runs.completionsOf('/runs/dpo-1', 3)).toBeNull()
    expect(runs.completionsOf('/runs/dpo-1', 2)).toEqual([c(2, 1)])
  })

  it('GRPO: a run started here takes the completions it streams; another method has none', async () => {
    const runs = useRunsStore()
    await runs.start({})
    expect(runs.completionStepsOf('/runs/dpo-1')).toBeNull()
    push({ type: 'completions', runDir: '/runs/dpo-1', step: 1, completions: [] })
    expect(runs.completionStepsOf('/runs/dpo-1')).toBeNull()
    setActivePinia(createPinia())
    stage = 'grpo'
    const grpo = useRunsStore()
    await grpo.start({})
    expect(grpo.completionStepsOf('/runs/dpo-1')).toEqual([])
    push({ type: 'completions', runDir: '/runs/dpo-1', step: 1, completions: [] })
    expect(grpo.completionStepsOf('/runs/dpo-1')).toEqual([1])
  })
})
