// The runs service the app uses: start streams events (log, eval on the val_size split,
// checkpoint, finished), runs are listed and read back from disk, stop keeps checkpoints,
// resume continues to the end, export copies the PEFT adapter without replacing files.
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join, resolve } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { RunsService, createRunHandlers } from '../../main/services/training/runs'
import { resolveConfig } from '../../main/services/training/config'
import { Trainer } from '../../main/services/training/trainer'
import type { RunEvent } from '../../preload/types/training'
import { writeDatasets } from './training.fixtures'
import { engineBuilt } from './trainingPython'

const demoModel = join(import.meta.dirname, '..', '..', 'resources', 'demo-model')

/** The first event that satisfies `pred`, polled every 5 ms; fails after `limitMs` naming what came. */
function waitFor(events: RunEvent[], pred: (e: RunEvent) => boolean, limitMs = 50_000): Promise<RunEvent> {
  const end = Date.now() + limitMs
  return new Promise((resolve, reject) => {
    const tick = () => {
      const hit = events.find(pred)
      if (hit) resolve(hit)
      else if (Date.now() > end) reject(new Error(`no such event within ${limitMs} ms; got: ${events.map((e) => e.type).join(', ')}`))
      else setTimeout(tick, 5)
    }
    tick()
  })
}

describe.runIf(engineBuilt())('runs service', () => {
  let root: string
  let data: Record<string, string>
  beforeAll(() => {
    root = mkdtempSync(join(tmpdir(), 'tb-runs-'))
    data = writeDatasets(join(root, 'data'))
  })
  afterAll(() => rmSync(root, { recursive: true, force: true }))

  it('start → events → list/get from disk → export', async () => {
    const events: RunEvent[] = []
    const runs = new RunsService({ runsRoot: join(root, 'runs'), emit: (channel, payload) => channel === 'runs.event' && events.push(payload as RunEvent) })
    const summary = await runs.start({
      config: {
        model_name_or_path: demoModel, stage: 'kto', dataset: data.unpaired, per_device_train_batch_size: 2,
        val_size: 2, max_steps: 4, logging_steps: 2, eval_steps: 2, save_steps: 2, threads: 1, lora_rank: 4, learning_rate: 1e-3
      }
    })
    expect(summary.state).toBe('running')
    expect(summary.dir.startsWith(join(root, 'runs'))).toBe(true)
    const finished = await waitFor(events, (e) => e.type === 'finished' || e.type === 'failed')
    expect(finished.type, JSON.stringify(finished)).toBe('finished')
    const kinds = events.map((e) => e.type)
    expect(kinds[0]).toBe('started')
    expect(kinds.filter((k) => k === 'log')).toHaveLength(2)
    expect(kinds.filter((k) => k === 'checkpoint')).toHaveLength(1) // step 2 (none at the last step)
    const evals = events.filter((e): e is Extract<RunEvent, { type: 'eval' }> => e.type === 'eval')
    expect(evals.map((e) => e.entry.current_steps)).toEqual([2, 4])
    expect(typeof evals[0]!.entry.eval_loss).toBe('number')
    expect(evals[0]!.entry).toHaveProperty('eval_kl')
    const log = events.find((e): e is Extract<RunEvent, { type: 'log' }> => e.type === 'log')!.entry
    for (const key of ['current_steps', 'total_steps', 'loss', 'lr', 'grad_norm', 'epoch', 'percentage', 'elapsed_time', 'remaining_time', 'kl'])
      expect(log, key).toHaveProperty(key)

    const listed = await runs.list()
    expect(listed.map((r) => r.id)).toEqual([summary.id])
    expect(listed[0]).toMatchObject({ state: 'finished', stage: 'kto', step: 4, totalSteps: 4, hasAdapter: true, checkpoints: ['checkpoint-2'] })
    const detail = await runs.get(summary.id)
    expect(detail.log).toHaveLength(4) // 2 train lines + 2 eval lines
    expect(detail.config?.stage).toBe('kto')

    const dest = join(root, 'exported')
    const exported = await runs.exportAdapter(summary.id, dest)
    expect(exported.files.map((f) => f.name)).toEqual(['adapter_config.json', 'adapter_model.safetensors'])
    expect(readFileSync(join(dest, 'adapter_model.safetensors')).equals(readFileSync(join(summary.dir, 'adapter_model.safetensors')))).toBe(true)
    await expect(runs.exportAdapter(summary.id, dest)).rejects.toThrow(/already exists/)
    expect(JSON.parse(readFileSync(join(dest, 'adapter_config.json'), 'utf8'))).toMatchObject({ peft_type: 'LORA', r: 4 })
  })

  it('stop keeps the checkpoints; resume continues to the end', async () => {
    const events: RunEvent[] = []
    let stopping: Promise<boolean> | null = null
    // Stop from inside the first checkpoint event: the abort lands before the next step.
    const runs: RunsService = new RunsService({
      runsRoot: join(root, 'runs2'),
      emit: (_c, p) => {
        events.push(p as RunEvent)
        if ((p as RunEvent).type === 'checkpoint' && !stopping) stopping = runs.stop((p as RunEvent).runDir)
      }
    })
    const summary = await runs.start({
      config: {
        model_name_or_path: demoModel, stage: 'dpo', dataset: data.pairs_plain, per_device_train_batch_size: 1,
        max_steps: 400, logging_steps: 1, save_steps: 2, threads: 1, lora_rank: 4, output_dir: join(root, 'runs2', 'stop-me')
      }
    })
    await waitFor(events, (e) => e.type === 'cancelled')
    expect(await stopping).toBe(true)
    expect(events.at(-1)?.type).toBe('cancelled')
    const stopped = await runs.get(summary.id)
    expect(stopped.summary.state).toBe('cancelled')
    expect(stopped.summary.checkpoints.length).toBeGreaterThan(0)
    expect(existsSync(join(summary.dir, 'adapter_model.safetensors'))).toBe(false)
    expect(await runs.stop(summary.id)).toBe(false)

    // shorten the rest of the run: resume reads run.json
    const cfgFile = join(summary.dir, 'run.json')
    writeFileSync(cfgFile, JSON.stringify({ ...JSON.parse(readFileSync(cfgFile, 'utf8')), max_steps: 12 }))
    expect(stopped.summary.checkpoints).toEqual(['checkpoint-2'])
    expect(stopped.log.map((e) => e.current_steps)).toEqual([1, 2])
    events.length = 0
    const resumed = await runs.resume(summary.id)
    expect(resumed.id).toBe(summary.id)
    const end = await waitFor(events, (e) => e.type === 'finished' || e.type === 'failed')
    expect(end.type).toBe('finished')
    const started = events.find((e) => e.type === 'started') as Extract<RunEvent, { type: 'started' }>
    expect(started.resumedFrom).toContain('checkpoint-')
    const detail = await runs.get(summary.id)
    expect(detail.log.map((e) => e.current_steps)).toEqual(Array.from({ length: 12 }, (_, i) => i + 1))
  })

  it('a relative output_dir lives in the runs root; runs elsewhere are remembered in the index after a restart', async () => {
    const runsRoot = join(root, 'runs4')
    const indexFile = join(root, 'data-dir', 'runs-index.json')
    const events: RunEvent[] = []
    const runs = new RunsService({ runsRoot, indexFile, emit: (_c, p) => events.push(p as RunEvent) })
    expect(runs.validate({ model_name_or_path: demoModel, dataset: 'x', output_dir: 'named' }).output_dir).toBe(join(runsRoot, 'named'))
    const base = { model_name_or_path: demoModel, stage: 'sft', dataset: data.sft_messages, max_steps: 1, logging_steps: 1, threads: 1, lora_rank: 4 }
    const ended = (dir: string) => waitFor(events, (e) => (e.type === 'finished' || e.type === 'failed') && e.runDir === dir)

    const elsewhere = join(root, 'elsewhere', 'sft-a')
    const outside = await runs.start({ config: { ...base, output_dir: elsewhere } })
    expect(outside.dir).toBe(elsewhere)
    expect((await ended(elsewhere)).type).toBe('finished')
    const inside = await runs.start({ config: { ...base, output_dir: 'inside' } })
    expect(inside.dir).toBe(join(runsRoot, 'inside'))
    expect((await ended(inside.dir)).type).toBe('finished')
    // Every event names its run by the absolute folder the summary gave.
    expect(new Set(events.map((e) => e.runDir))).toEqual(new Set([elsewhere, inside.dir]))
    // Only the run outside the root needs remembering; the root is listed.
    expect(JSON.parse(readFileSync(indexFile, 'utf8'))).toEqual({ version: 1, runs: [elsewhere] })

    const restarted = new RunsService({ runsRoot, indexFile })
    expect((await restarted.list()).map((r) => r.dir).sort()).toEqual([elsewhere, inside.dir].sort())
    expect((await restarted.get(elsewhere)).summary).toMatchObject({ state: 'finished', dir: elsewhere, hasAdapter: true })
    rmSync(elsewhere, { recursive: true })
    expect((await restarted.list()).map((r) => r.dir)).toEqual([inside.dir])
    writeFileSync(indexFile, '{"runs": [')
    await expect(restarted.list()).rejects.toThrow(`${indexFile}: the runs index is not valid JSON`)
  })

  it('validate names the key of a bad value', async () => {
    const handlers = createRunHandlers({ runsRoot: join(root, 'runs3') })
    const bad = await handlers['runs.validate']({ model_name_or_path: demoModel, dataset: 'x', lora_rank: 0 })
    expect(bad).toMatchObject({ ok: false, key: 'lora_rank' })
    const good = await handlers['runs.validate']({ model_name_or_path: demoModel, dataset: 'x' })
    expect(good.ok).toBe(true)
    expect(good.config?.output_dir.startsWith(join(root, 'runs3'))).toBe(true)
  })
})

describe('trainer', () => {
  it('names its run by the absolute folder, also for a config built with a relative output_dir', () => {
    const cfg = resolveConfig({ model_name_or_path: demoModel, dataset: 'x', output_dir: 'o' }, 'config')
    const trainer = new Trainer({ ...cfg, output_dir: 'saves/relative-run' })
    expect(trainer.runDir).toBe(resolve('saves/relative-run'))
    expect(trainer.cfg.output_dir).toBe(resolve('saves/relative-run'))
  })
})
