// Resume: a run stopped after a checkpoint and resumed logs the same losses as an
// uninterrupted run (shuffling, LoRA dropout and gradient accumulation on, so data position
// and RNG state must both be restored); a process killed with SIGKILL resumes from its last
// checkpoint; NaN stops a run and keeps the last good checkpoint.
import { spawn } from 'node:child_process'
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { resolveConfig } from '../../main/services/training/config'
import { loadNativeModel, type Batch, type LogpsOptions, type ModelLoader } from '../../main/services/training/engine'
import { REFERENCE_FILE } from '../../main/services/training/stages/referenceCache'
import { CancelledError, Trainer, TrainingError, train } from '../../main/services/training/trainer'
import { readRun } from '../../main/services/training/runs'
import type { RunEvent, TrainerLogEntry } from '../../preload/types/training'
import { writeDatasets } from './training.fixtures'
import { engineBuilt } from './trainingPython'

const root = join(import.meta.dirname, '..', '..')
const demoModel = join(root, 'resources', 'demo-model')
const readLog = (dir: string): TrainerLogEntry[] =>
  readFileSync(join(dir, 'trainer_log.jsonl'), 'utf8').trim().split('\n').filter(Boolean).map((l) => JSON.parse(l))

describe.runIf(engineBuilt())('training resume', () => {
  let dir: string
  let data: Record<string, string>
  const base = (out: string, extra: Record<string, unknown> = {}) => ({
    model_name_or_path: demoModel, stage: 'dpo', dataset: data.pairs_plain, output_dir: out,
    per_device_train_batch_size: 1, gradient_accumulation_steps: 2, lora_rank: 4, lora_dropout: 0.1,
    learning_rate: 2e-3, max_steps: 8, logging_steps: 1, save_steps: 2, threads: 1, seed: 7, ...extra
  })

  beforeAll(() => {
    dir = mkdtempSync(join(tmpdir(), 'tb-resume-'))
    data = writeDatasets(join(dir, 'data'))
  })
  afterAll(() => rmSync(dir, { recursive: true, force: true }))

  it('stop after step 4, resume: the logged losses equal an uninterrupted run', async () => {
    const full = join(dir, 'full')
    await train(resolveConfig(base(full), 'full'))
    const reference = readLog(full)
    expect(reference.map((e) => e.current_steps)).toEqual([1, 2, 3, 4, 5, 6, 7, 8])

    const split = join(dir, 'split')
    const abort = new AbortController()
    const first = new Trainer(resolveConfig(base(split), 'split'), {
      signal: abort.signal,
      onEvent: (e) => e.type === 'checkpoint' && e.step === 4 && abort.abort()
    })
    await expect(first.run()).rejects.toBeInstanceOf(CancelledError)
    expect((await readRun(split)).summary.state).toBe('cancelled')
    expect(readLog(split).length).toBeLessThan(8)

    await train(resolveConfig(base(split, { resume_from_checkpoint: 'last' }), 'split'))
    const resumed = readLog(split)
    expect(resumed.map((e) => e.current_steps)).toEqual([1, 2, 3, 4, 5, 6, 7, 8])
    resumed.forEach((e, i) => {
      expect(e.loss, `step ${i + 1}`).toBe(reference[i]!.loss)
      expect(e.grad_norm, `step ${i + 1}`).toBe(reference[i]!.grad_norm)
      expect(e.lr).toBe(reference[i]!.lr)
    })
    // The final adapters are identical too.
    expect(readFileSync(join(split, 'adapter_model.safetensors')).equals(readFileSync(join(full, 'adapter_model.safetensors')))).toBe(true)
    const detail = await readRun(split)
    expect(detail.summary.state).toBe('finished')
    expect(detail.summary.checkpoints).toEqual(['checkpoint-2', 'checkpoint-4', 'checkpoint-6'])
  })

  // Reference log-probs are taken once per example, in the first micro-batch that holds it, and
  // a sequence's value may differ in its last bits with the micro-batch around it (GEMM kernels
  // that split by row count). Shuffling puts an example beside others in every epoch, so a run
  // resumed past its first epoch must read the values the stopped run took, not take them
  // again. The loader below makes that dependence large enough to see on any machine.
  const batchDependent: ModelLoader = async (dir, opts) => {
    const model = await loadNativeModel(dir, opts)
    return new Proxy(model, {
      get(target, key) {
        if (key === 'logps')
          return async (batch: Batch, o: LogpsOptions) => {
            const lp = await target.logps(batch, o)
            return o.adapters ? lp : lp.map((x) => x * (1 + 1e-4 * batch.seqLen))
          }
        const v = Reflect.get(target, key)
        return typeof v === 'function' ? v.bind(target) : v
      }
    })
  }
  for (const [stage, finetuning] of [['dpo', 'lora'], ['kto', 'lora'], ['dpo', 'full']] as const) {
    it(`${stage} (${finetuning}): resumed in a later epoch, with references that depend on the micro-batch, the losses equal an uninterrupted run`, async () => {
      const cfgOf = (out: string, extra: Record<string, unknown> = {}) =>
        base(out, {
          stage, finetuning_type: finetuning, ...(stage === 'kto' ? { dataset: data.unpaired } : {}),
          per_device_train_batch_size: 2, gradient_accumulation_steps: 1, max_steps: 12, save_steps: 5, ...extra
        })
      const name = `${stage}-${finetuning}-epochs`
      const full = join(dir, `${name}-full`)
      await train(resolveConfig(cfgOf(full), 'full'), { loadModel: batchDependent })
      const reference = readLog(full)
      const split = join(dir, `${name}-split`)
      const abort = new AbortController()
      const first = new Trainer(resolveConfig(cfgOf(split), 'split'), {
        signal: abort.signal, loadModel: batchDependent,
        onEvent: (e) => e.type === 'checkpoint' && e.step === 5 && abort.abort()
      })
      await expect(first.run()).rejects.toBeInstanceOf(CancelledError)
      expect(existsSync(join(split, 'checkpoint-5', REFERENCE_FILE))).toBe(true)
      await train(resolveConfig(cfgOf(split, { resume_from_checkpoint: 'last' }), 'split'), { loadModel: batchDependent })
      const resumed = readLog(split)
      expect(resumed.map((e) => e.current_steps)).toEqual(reference.map((e) => e.current_steps))
      resumed.forEach((e, i) => {
        expect(e.loss, `step ${i + 1}`).toBe(reference[i]!.loss)
        expect(e.grad_norm, `step ${i + 1}`).toBe(reference[i]!.grad_norm)
      })
    })
  }

  it('a damaged reference_logps.json in the checkpoint is refused, naming the file and the key', async () => {
    const out = join(dir, 'refs-damaged')
    await train(resolveConfig(base(out, { max_steps: 3, save_steps: 2 }), 'refs-damaged'))
    const file = join(out, 'checkpoint-2', REFERENCE_FILE)
    const doc = JSON.parse(readFileSync(file, 'utf8')) as { version: number; logps: Record<string, unknown> }
    const key = Object.keys(doc.logps)[0]!
    writeFileSync(file, JSON.stringify({ ...doc, logps: { ...doc.logps, [key]: 'x' } }))
    const log = readFileSync(join(out, 'trainer_log.jsonl'), 'utf8')
    await expect(train(resolveConfig(base(out, { max_steps: 3, save_steps: 2, resume_from_checkpoint: 'last' }), 'refs-damaged')))
      .rejects.toThrow(`${file}: logps["${key}"] is "x", not a finite number`)
    // Nothing of the run was touched: its log is as the finished run left it.
    expect(readFileSync(join(out, 'trainer_log.jsonl'), 'utf8')).toBe(log)
  })

  it('SIGKILL during a CLI run; resuming from the last checkpoint finishes with the same losses', async () => {
    const cfgOf = (out: string) => base(out, { max_steps: 30, save_steps: 5, gradient_accumulation_steps: 1 })
    const full = join(dir, 'kill-full')
    await train(resolveConfig(cfgOf(full), 'kill-full'))
    const reference = readLog(full)

    const out = join(dir, 'killed')
    const cfgFile = join(dir, 'killed.json')
    writeFileSync(cfgFile, JSON.stringify(cfgOf(out)))
    const child = spawn(process.execPath, ['--import', 'tsx', 'main/cli.ts', 'train', cfgFile], { cwd: root, stdio: ['ignore', 'pipe', 'pipe'] })
    // Killed once it has written checkpoint-10 and then logged step 11: still training (alive)
    // when the kill is sent. The kill must be delivered and be what ends it, within a limit.
    let stderr = ''
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()))
    const ended = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((r) => child.once('close', (code, signal) => r({ code, signal })))
    let buffered = ''
    let checkpointSeen = false
    const killedAfter = await new Promise<number>((resolve, reject) => {
      const timer = setTimeout(() => {
        child.kill('SIGKILL')
        reject(new Error(`train did not reach step 11 after checkpoint-10 within 60 s: ${stderr.slice(-500)}`))
      }, 60_000)
      child.stdout.on('data', (d: Buffer) => {
        buffered += d.toString()
        for (const line of buffered.split('\n').slice(0, -1)) {
          const e = JSON.parse(line) as { event: string; step?: number; entry?: { current_steps: number } }
          if (e.event === 'checkpoint' && e.step === 10) checkpointSeen = true
          if (checkpointSeen && e.event === 'log' && e.entry?.current_steps === 11) {
            clearTimeout(timer)
            if (!child.kill('SIGKILL')) reject(new Error('process.kill did not deliver SIGKILL to train'))
            resolve(e.entry.current_steps)
          }
        }
        buffered = buffered.slice(buffered.lastIndexOf('\n') + 1)
      })
      void ended.then(({ code, signal }) => {
        clearTimeout(timer)
        reject(new Error(`train ended (code ${code}, signal ${signal}) before the kill: ${stderr.slice(-500)}`))
      })
    })
    expect(killedAfter).toBe(11)
    expect(await ended).toEqual({ code: null, signal: 'SIGKILL' })
    const interrupted = await readRun(out)
    expect(interrupted.summary.state).toBe('interrupted')
    expect(interrupted.summary.checkpoints).toContain('checkpoint-10')
    // Step 11 was logged (the line the kill waited for); the status file may still say step 10.
    expect(readLog(out).map((e) => e.current_steps)).toContain(11)
    expect(interrupted.summary.step).toBeLessThan(30)
    const checkpoint = Math.max(...interrupted.summary.checkpoints.map((c) => Number(c.replace('checkpoint-', ''))))

    // The resume goes on from the newest checkpoint, at the step after it.
    const events: RunEvent[] = []
    await train(resolveConfig({ ...cfgOf(out), resume_from_checkpoint: 'last' }, 'killed'), { onEvent: (e) => events.push(e) })
    const started = events.find((e) => e.type === 'started')
    expect(started?.type === 'started' && started.resumedFrom).toBe(join(out, `checkpoint-${checkpoint}`))
    expect(events.find((e) => e.type === 'progress')).toMatchObject({ step: checkpoint + 1 })
    const resumed = readLog(out)
    expect(resumed.map((e) => e.current_steps)).toEqual(reference.map((e) => e.current_steps))
    resumed.forEach((e, i) => expect(e.loss, `step ${i + 1}`).toBe(reference[i]!.loss))
  }, 120_000)

  it('the saved data position and seed are checked on resume: a tampered value is refused, naming the file', async () => {
    const out = join(dir, 'tamper')
    // Steps of 2 micro-batches of 1 pair over 4 pairs (2 steps an epoch): after step 3 the data
    // position is epoch 1, micro-batch 2.
    await train(resolveConfig(base(out, { max_steps: 5, save_steps: 3 }), 'tamper'))
    const file = join(out, 'checkpoint-3', 'trainer_state.json')
    const state = JSON.parse(readFileSync(file, 'utf8'))
    expect([state.epoch_index, state.micro_batch, state.seed]).toEqual([1, 2, 7])
    const resumeWith = async (edit: Record<string, number>) => {
      writeFileSync(file, JSON.stringify({ ...state, ...edit }))
      return train(resolveConfig(base(out, { max_steps: 5, save_steps: 3, resume_from_checkpoint: 'last' }), 'tamper'))
    }
    await expect(resumeWith({ micro_batch: 0 })).rejects.toThrow(/trainer_state\.json puts step 3 at epoch_index 1, micro_batch 0; this config's data order puts it at 1, 2/)
    await expect(resumeWith({ epoch_index: 0 })).rejects.toThrow(/epoch_index 0, micro_batch 2/)
    await expect(resumeWith({ seed: 8 })).rejects.toThrow(/has seed 8; the config has 7/)
    // Restored, it resumes.
    await resumeWith({})
    expect(readLog(out).map((e) => e.current_steps)).toEqual([1, 2, 3, 4, 5])
  })

  it('NaN loss stops the run with a clear error and keeps the last good checkpoint', async () => {
    const out = join(dir, 'nan')
    const cfg = resolveConfig(base(out, { learning_rate: 1e30, max_grad_norm: 0, save_steps: 1, max_steps: 8, gradient_accumulation_steps: 1 }), 'nan')
    let error: unknown
    await train(cfg).catch((e) => (error = e))
    expect(error).toBeInstanceOf(TrainingError)
    const message = (error as Error).message
    expect(message).toMatch(/step \d+: (loss is NaN|loss is -?Infinity|gradient norm is (NaN|Infinity))/)
    const failedStep = Number(/step (\d+)/.exec(message)![1])
    expect(failedStep).toBeGreaterThan(1)
    expect(message).toContain(`checkpoint-${failedStep - 1}`)
    expect(existsSync(join(out, `checkpoint-${failedStep - 1}`, 'adapter_model.safetensors'))).toBe(true)
    expect(existsSync(join(out, `checkpoint-${failedStep}`))).toBe(false)
    const detail = await readRun(out)
    expect(detail.summary.state).toBe('failed')
    expect(detail.summary.error).toContain(`step ${failedStep}`)
  })
})
