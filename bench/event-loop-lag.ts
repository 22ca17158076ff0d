// Main-process responsiveness while training: the event-loop delay (perf_hooks
// monitorEventLoopDelay) during a DPO run of the demo model, the way the app runs it (the
// TypeScript loop in this process, each heavy step one async native call). The peer measured
// in the same run is the optimiser step time, so the printed ratio says how much of a step a
// renderer request can be kept waiting: far below 1 means the UI never waits on training.
// Run: node --import tsx bench/event-loop-lag.ts [max_steps]
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join, resolve } from 'node:path'
import { monitorEventLoopDelay } from 'node:perf_hooks'
import { resolveConfig } from '../main/services/training/config'
import { train } from '../main/services/training/trainer'

const steps = Number(process.argv[2] ?? 12)
const root = resolve(import.meta.dirname, '..')
const dir = mkdtempSync(join(tmpdir(), 'tb-lag-bench-'))
try {
  const cfg = resolveConfig(
    {
      model_name_or_path: join(root, 'resources/demo-model'),
      dataset: join(root, 'resources/demo/preference.jsonl'),
      output_dir: join(dir, 'run'),
      stage: 'dpo',
      per_device_train_batch_size: 2,
      max_steps: steps,
      logging_steps: 1,
      save_steps: 1000,
      learning_rate: 1e-4,
      threads: 1
    },
    'bench'
  )
  // The histogram records the interval between 5 ms timer ticks, so delay = value - 5 ms.
  const resolution = 5
  const whole = monitorEventLoopDelay({ resolution })
  const loop = monitorEventLoopDelay({ resolution })
  const stepTimes: number[] = []
  let last = 0
  whole.enable()
  const t0 = performance.now()
  await train(cfg, {
    onEvent: (e) => {
      if (e.type !== 'progress') return
      const now = performance.now()
      // From the first step on: the training loop proper, without loading the model and data.
      if (last) stepTimes.push(now - last)
      else loop.enable()
      last = now
    }
  })
  const wall = performance.now() - t0
  whole.disable()
  loop.disable()
  const delay = (ns: number) => Math.max(0, ns / 1e6 - resolution)
  const stepMean = stepTimes.reduce((a, b) => a + b, 0) / Math.max(1, stepTimes.length)
  const report = (name: string, h: ReturnType<typeof monitorEventLoopDelay>) =>
    `${name}: p50 ${delay(h.percentile(50)).toFixed(1)} ms, p99 ${delay(h.percentile(99)).toFixed(1)} ms, max ${delay(h.max).toFixed(1)} ms`
  console.log(`DPO, demo model, ${steps} steps in ${(wall / 1000).toFixed(1)} s; mean step ${stepMean.toFixed(1)} ms`)
  console.log('event-loop delay beyond the timer (perf_hooks.monitorEventLoopDelay, 5 ms resolution)')
  console.log('  ' + report('during the steps', loop))
  console.log('  ' + report('whole run incl. model and data load', whole))
  console.log(`ratio p99 delay / step time (steps): ${(delay(loop.percentile(99)) / stepMean).toFixed(3)}`)
  console.log(`ratio max delay / step time (steps): ${(delay(loop.max) / stepMean).toFixed(3)}`)
} finally {
  rmSync(dir, { recursive: true, force: true })
}
