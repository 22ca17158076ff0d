// Main-process responsiveness while training, in serve mode: the services and the WebSocket
// bridge run in this process exactly as `npm run serve` runs them, a client starts a DPO run
// of the demo model through the contract (runs.start) and receives its events, and meanwhile
//   - perf_hooks.monitorEventLoopDelay samples the event loop every 5 ms, and
//   - the client sends a cheap request (data.info) every 20 ms and times the answer.
// The peer measured in the same run is the optimiser step time: the printed ratios say how
// much of a step a renderer request can be kept waiting (far below 1: the UI never waits).
// Run: node --import tsx bench/event-loop-lag.ts [max_steps]
import { mkdtempSync, mkdirSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join, resolve } from 'node:path'
import { monitorEventLoopDelay } from 'node:perf_hooks'
import WebSocket from 'ws'
import type { RunEvent } from '../preload/types/training'
import { createServices, type Services } from '../main/services'
import { startServeServer } from '../main/transport/serveServer'

const steps = Number(process.argv[2] ?? 60)
const root = resolve(import.meta.dirname, '..')
const scratch = mkdtempSync(join(tmpdir(), 'tb-lag-bench-'))
const rendererDir = join(scratch, 'renderer')
mkdirSync(rendererDir)
writeFileSync(join(rendererDir, 'index.html'), '<!doctype html>')

const stepLag = monitorEventLoopDelay({ resolution: 5 })
const pct = (xs: number[], q: number) => [...xs].sort((a, b) => a - b)[Math.min(xs.length - 1, Math.floor(q * xs.length))] ?? NaN

let services: Services | undefined
const server = await startServeServer({
  host: '127.0.0.1',
  port: 0,
  rendererDir,
  createHandlers: (emit) => {
    services = createServices({ dataDir: join(scratch, 'home'), emit })
    return services.handlers
  }
})
try {
  const socket = new WebSocket(`ws://127.0.0.1:${server.port}/ws?token=${server.token}`, { headers: { Origin: server.origin } })
  await new Promise((ok, fail) => socket.once('open', ok).once('error', fail))
  let nextId = 1
  const pending = new Map<number, (r: { ok: boolean; result?: unknown; error?: { message: string } }) => void>()
  const stepTimes: number[] = []
  let lastProgress = 0
  let finished: (e: RunEvent) => void = () => {}
  const done = new Promise<RunEvent>((ok) => (finished = ok))
  socket.on('message', (data) => {
    const msg = JSON.parse(String(data)) as { id?: number; event?: string; payload?: RunEvent }
    if (msg.id !== undefined) return pending.get(msg.id)?.(msg as never)
    const e = msg.payload!
    if (e.type === 'progress') {
      const now = performance.now()
      if (lastProgress) stepTimes.push(now - lastProgress)
      // From the first step on: the training loop proper, without loading model and data.
      else stepLag.enable()
      lastProgress = now
    }
    if (e.type === 'finished' || e.type === 'failed' || e.type === 'cancelled') finished(e)
  })
  const call = (channel: string, ...args: unknown[]) =>
    new Promise<unknown>((ok, fail) => {
      const id = nextId++
      pending.set(id, (r) => (pending.delete(id), r.ok ? ok(r.result) : fail(new Error(r.error?.message))))
      socket.send(JSON.stringify({ id, channel, args }))
    })

  // The histogram records the interval between 5 ms timer ticks, so delay = value - 5 ms.
  const resolution = 5
  const lag = monitorEventLoopDelay({ resolution })
  const rtts: number[] = []
  const config = {
    model_name_or_path: join(root, 'resources/demo-model'),
    dataset: join(root, 'resources/demo/preference.jsonl'),
    stage: 'dpo',
    per_device_train_batch_size: 2,
    max_steps: steps,
    logging_steps: 1,
    save_steps: 20,
    learning_rate: 1e-4,
    threads: 1
  }
  const t0 = performance.now()
  await call('runs.start', { config })
  lag.enable()
  let running = true
  const pinger = (async () => {
    while (running) {
      const t = performance.now()
      await call('data.info')
      rtts.push(performance.now() - t)
      await new Promise((r) => setTimeout(r, 20))
    }
  })()
  const end = await done
  running = false
  await pinger
  lag.disable()
  stepLag.disable()
  const wall = performance.now() - t0
  if (end.type !== 'finished') throw new Error(`the run did not finish: ${JSON.stringify(end)}`)
  socket.close()

  const delay = (ns: number) => Math.max(0, ns / 1e6 - resolution)
  const stepMean = stepTimes.reduce((a, b) => a + b, 0) / Math.max(1, stepTimes.length)
  console.log(`serve mode, DPO on the demo model: ${steps} steps (a log line every step, a checkpoint every 20) in ${(wall / 1000).toFixed(1)} s; mean step ${stepMean.toFixed(1)} ms`)
  const report = (h: ReturnType<typeof monitorEventLoopDelay>) =>
    `p50 ${delay(h.percentile(50)).toFixed(1)} ms, p99 ${delay(h.percentile(99)).toFixed(1)} ms, max ${delay(h.max).toFixed(1)} ms`
  console.log('event-loop delay beyond the timer (monitorEventLoopDelay, 5 ms resolution)')
  console.log(`  during the steps:                 ${report(stepLag)}`)
  console.log(`  whole run incl. model/data load:  ${report(lag)}`)
  console.log(
    `data.info round trip over the WebSocket (${rtts.length} requests): p50 ${pct(rtts, 0.5).toFixed(1)} ms, ` +
      `p99 ${pct(rtts, 0.99).toFixed(1)} ms, max ${Math.max(...rtts).toFixed(1)} ms`
  )
  console.log(`ratio p99 loop delay during the steps / step time: ${(delay(stepLag.percentile(99)) / stepMean).toFixed(3)}`)
  console.log(`ratio p99 request round trip / step time: ${(pct(rtts, 0.99) / stepMean).toFixed(3)}`)
} finally {
  await services?.close()
  await server.close()
  rmSync(scratch, { recursive: true, force: true })
}
