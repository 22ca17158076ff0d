// The training loop: epochs of shuffled micro-batches, gradient accumulation, the schedule,
// evaluation, logging to trainer_log.jsonl, sample generations (samples.ts), checkpoints that
// resume exactly, NaN guard and cancel. Heavy work is the engine's (one async call per
// forward/backward/update); what a method does with a micro-batch (reference log-probs,
// batches, loss, metrics) is its Stage's (stages/), so this file names no method.
import { existsSync } from 'node:fs'
import { mkdir, readFile, readdir, rename, rm } from 'node:fs/promises'
import { basename, join, resolve } from 'node:path'
import { stepIntervals, type TrainingConfig } from '../../../preload/types/trainingSchema'
import type { RunEvent, RunStatus, SampleGeneration, TrainerLogEntry } from '../../../preload/types/training'
import { asDiskError, DiskError } from '../diskErrors'
import { appendLineDurable, fsyncDir, writeFileAtomic } from '../fsAtomic'
import { loadExamples } from './datasets'
import { loadNativeModel, loraTargets, type ModelLoader, type TrainableModel } from './engine'
import { checkMemory, memoryRefusal } from './memoryCheck'
import { mixSeed, permutation, SEED_PURPOSE } from './rng'
import { SAMPLES_FILE, SampleGenerations } from './samples'
import { COMPLETIONS_DIR, completionsStep } from './completions'
import { formatDuration, lrFactor, stepsPerEpoch, totalSteps as countTotalSteps, warmupSteps } from './schedule'
import { ChatTokenizer, type Example } from './sequences'
import { createStage, NonFiniteError, type MicroBatch, type MicroOutcome, type Stage } from './stages'

export class TrainingError extends Error {
  constructor(
    message: string,
    readonly lastCheckpoint: string | null = null
  ) {
    super(message)
    this.name = 'TrainingError'
  }
}

export class CancelledError extends Error {
  constructor() {
    super('cancelled')
    this.name = 'CancelledError'
  }
}

export interface TrainOptions {
  onEvent?: (e: RunEvent) => void
  signal?: AbortSignal
  /** Engine loader; the native addon by default. */
  loadModel?: ModelLoader
  /** Free memory in bytes for the check before the model loads; availableMemory() by default
   *  ($TUNEBENCH_MEMORY_AVAILABLE, else MemAvailable). */
  availableMemory?: () => number
}

export interface TrainResult {
  runDir: string
  adapterDir: string
  steps: number
  log: TrainerLogEntry[]
}

/** What a checkpoint's trainer_state.json holds besides adapter and optimiser state. */
export interface TrainerState {
  global_step: number
  total_steps: number
  epoch: number
  /** Data position: the next micro-batch is micro_batch of epoch_index's order. */
  epoch_index: number
  micro_batch: number
  /** Every random draw derives from (seed, purpose, position): this is the whole RNG state. */
  seed: number
  lr_scheduler: { type: string; warmup_steps: number; total_steps: number; step: number }
  train_examples: number
  micro_batches_per_epoch: number
  gradient_accumulation_steps: number
  per_device_train_batch_size: number
}

const CHECKPOINT_RE = /^checkpoint-(\d+)$/

/** Throws a TrainingError when the run's planned memory exceeds the free memory. A model folder
 *  whose config cannot be read is left to the load, which names what is wrong. */
export async function refuseIfTooLarge(cfg: TrainingConfig, available?: number): Promise<void> {
  const check = await checkMemory(cfg as unknown as Record<string, unknown>, { available })
  if (check.plan && !check.fits) throw new TrainingError(memoryRefusal(check))
}

export async function listCheckpoints(outputDir: string): Promise<{ name: string; step: number }[]> {
  if (!existsSync(outputDir)) return []
  const names = await readdir(outputDir)
  return names
    .map((name) => ({ name, m: CHECKPOINT_RE.exec(name) }))
    .filter((x) => x.m && existsSync(join(outputDir, x.name, 'trainer_state.json')))
    .map((x) => ({ name: x.name, step: Number(x.m![1]) }))
    .sort((a, b) => a.step - b.step)
}

/** The checkpoint a run resumes from, with its trainer_state.json (read here, once). */
interface ResumePoint {
  dir: string
  state: TrainerState
}

async function resolveResume(cfg: TrainingConfig): Promise<ResumePoint | null> {
  const r = cfg.resume_from_checkpoint
  if (r === null || r === 'false') return null
  let dir: string
  if (r === 'true' || r === 'last') {
    const all = await listCheckpoints(cfg.output_dir)
    if (!all.length) throw new TrainingError(`resume_from_checkpoint: no checkpoint-N folder in ${cfg.output_dir}`)
    dir = join(cfg.output_dir, all[all.length - 1]!.name)
  } else {
    dir = resolve(r)
    if (!existsSync(join(dir, 'trainer_state.json')))
      throw new TrainingError(`resume_from_checkpoint: ${dir} is not a checkpoint (no trainer_state.json)`)
  }
  return { dir, state: JSON.parse(await readFile(join(dir, 'trainer_state.json'), 'utf8')) as TrainerState }
}

export class Trainer {
  private model!: TrainableModel
  private stage!: Stage
  private train: Example[] = []
  private evalSet: Example[] = []
  private samples: SampleGenerations | null = null
  private readonly emit: (e: RunEvent) => void
  private lastCheckpoint: string | null = null
  private status!: RunStatus
  private cancelled = false

  readonly cfg: TrainingConfig

  constructor(
    cfg: TrainingConfig,
    private readonly opts: TrainOptions = {}
  ) {
    // Events and status name the run by its absolute folder, whoever built the config.
    this.cfg = { ...cfg, output_dir: resolve(cfg.output_dir) }
    this.emit = opts.onEvent ?? (() => {})
  }

  get runDir(): string {
    return this.cfg.output_dir
  }

  async run(): Promise<TrainResult> {
    const cfg = this.cfg
    const onAbort = () => {
      this.cancelled = true
      this.model?.cancel()
    }
    if (this.opts.signal?.aborted) throw new CancelledError()
    // Before anything is written to output_dir or allocated: a run that cannot fit is refused
    // with its estimate, the free memory and what to change (memoryPlan.ts).
    await refuseIfTooLarge(cfg, this.opts.availableMemory?.())
    this.opts.signal?.addEventListener('abort', onAbort, { once: true })
    const resume = await resolveResume(cfg)
    this.status = {
      state: 'running', error: null, pid: process.pid, startedAt: new Date().toISOString(),
      updatedAt: new Date().toISOString(), step: 0, totalSteps: 0, lastCheckpoint: resume ? basename(resume.dir) : null
    }
    this.lastCheckpoint = resume?.dir ?? null
    try {
      await this.prepareOutputDir(resume)
      await this.writeStatus()
    } catch (err) {
      throw this.diskFailure(err, resume ? `the run was not resumed and ${basename(resume.dir)} is intact` : 'the run was not started')
    }
    let step = 0
    try {
      const result = await this.loop(resume, (s) => (step = s))
      this.status.state = 'finished'
      await this.writeStatus()
      this.emit({ type: 'finished', runDir: this.runDir, adapterDir: result.adapterDir, step: result.steps })
      return result
    } catch (err) {
      const cancelled = this.cancelled || err instanceof CancelledError || (err as Error).message === 'cancelled'
      if (cancelled) {
        this.status.state = 'cancelled'
        await this.writeStatus()
        this.emit({ type: 'cancelled', runDir: this.runDir, step, lastCheckpoint: this.lastCheckpoint })
        throw new CancelledError()
      }
      err = this.diskFailure(
        err,
        this.lastCheckpoint
          ? `the run stopped; ${basename(this.lastCheckpoint)} and the files before it are intact, so it can be resumed from there`
          : 'the run stopped before its first checkpoint'
      )
      const message = (err as Error).message
      this.status.state = 'failed'
      this.status.error = message
      await this.writeStatus().catch(() => {})
      this.emit({ type: 'failed', runDir: this.runDir, error: message, lastCheckpoint: this.lastCheckpoint })
      throw err instanceof TrainingError ? err : Object.assign(err as Error, { lastCheckpoint: this.lastCheckpoint })
    } finally {
      this.opts.signal?.removeEventListener('abort', onAbort)
      this.model?.dispose()
    }
  }

  /** A write the disk refused (full, read-only, ...) as a TrainingError naming the run's
   *  folder and saying what is kept; any other error as it is. */
  private diskFailure(err: unknown, kept: string): unknown {
    const disk = asDiskError(err, this.runDir, kept)
    return disk instanceof DiskError ? new TrainingError(disk.message, this.lastCheckpoint) : err
  }

  private async prepareOutputDir(resume: ResumePoint | null): Promise<void> {
    const cfg = this.cfg
    await mkdir(cfg.output_dir, { recursive: true })
    // A resume changes nothing before its checkpoint has been read and checked (trimToCheckpoint).
    if (resume) return
    const log = join(cfg.output_dir, 'trainer_log.jsonl')
    const existing = existsSync(join(cfg.output_dir, 'run.json')) || existsSync(log)
    if (existing && !cfg.overwrite_output_dir)
      throw new TrainingError(
        `output_dir ${cfg.output_dir} already holds a run; set resume_from_checkpoint to continue it or overwrite_output_dir: true to start over`
      )
    for (const c of await listCheckpoints(cfg.output_dir)) await rm(join(cfg.output_dir, c.name), { recursive: true, force: true })
    await writeFileAtomic(log, '')
    await writeFileAtomic(join(cfg.output_dir, SAMPLES_FILE), '')
    await removeCompletions(cfg.output_dir, () => true)
    await this.writeRunConfig()
  }

  /** run.json: this run's resolved config. */
  private async writeRunConfig(): Promise<void> {
    await writeFileAtomic(join(this.cfg.output_dir, 'run.json'), JSON.stringify(this.cfg, null, 2) + '\n')
  }

  /** A resume, once its checkpoint is read and checked: what the stopped run wrote after the
   *  checkpoint is replayed by this run, so its lines go; run.json is this run's config. */
  private async trimToCheckpoint(step: number): Promise<void> {
    const dir = this.cfg.output_dir
    await keepLines(join(dir, 'trainer_log.jsonl'), (l: TrainerLogEntry) => l.current_steps <= step)
    await keepLines(join(dir, SAMPLES_FILE), (l: SampleGeneration) => l.step <= step)
    await removeCompletions(dir, (s) => s > step)
    await this.writeRunConfig()
  }

  private async writeStatus(): Promise<void> {
    this.status.updatedAt = new Date().toISOString()
    await writeFileAtomic(join(this.runDir, 'status.json'), JSON.stringify(this.status, null, 2) + '\n')
  }

  private checkCancel(): void {
    if (this.cancelled) throw new CancelledError()
  }

  private async loop(resume: ResumePoint | null, onStep: (s: number) => void): Promise<TrainResult> {
    const cfg = this.cfg
    const resumeDir = resume?.dir ?? null
    const tok = await ChatTokenizer.load(cfg.model_name_or_path)
    const data = await loadExamples(cfg, tok)
    this.train = data.train
    this.evalSet = data.eval
    if (this.train.length === 0) throw new TrainingError('no training examples')
    this.checkCancel()

    const load = this.opts.loadModel ?? loadNativeModel
    this.model = await load(cfg.model_name_or_path, { threads: cfg.threads || undefined, device: cfg.device, precision: cfg.precision })
    const model = this.model
    if (cfg.finetuning_type === 'lora') {
      const from = resumeDir ?? cfg.adapter_name_or_path
      if (from) await model.loadAdapter(from)
      else
        model.addLora({
          rank: cfg.lora_rank, alpha: cfg.lora_alpha, dropout: cfg.lora_dropout,
          targets: loraTargets(cfg.lora_target), rslora: cfg.use_rslora, dora: cfg.use_dora, seed: cfg.seed
        })
    }
    model.setTrainable(cfg.finetuning_type)
    model.setGradientCheckpointing(!cfg.disable_gradient_checkpointing)
    this.stage = createStage({
      cfg, model, padId: tok.padId, tok, runDir: this.runDir, emit: this.emit, step: () => this.status.step + 1, signal: this.opts.signal
    })
    const stage = this.stage
    // The base answers come first, from the weights as loaded: before the reference pass, a
    // restored checkpoint or any update.
    this.samples = cfg.sample_prompts > 0
      ? await SampleGenerations.create({
          model, tok, modelDir: cfg.model_name_or_path, prompts: data.prompts, count: cfg.sample_prompts,
          maxNewTokens: cfg.sample_max_new_tokens, cutoffLen: cfg.cutoff_len, file: join(this.runDir, SAMPLES_FILE)
        })
      : null
    await this.samples?.generateBase()
    this.checkCancel()

    const layout = stage.layout ?? { examplesPerMicro: cfg.per_device_train_batch_size, microsPerStep: cfg.gradient_accumulation_steps, reuse: 1 }
    const B = layout.examplesPerMicro
    const GA = layout.microsPerStep
    const microPerEpoch = Math.ceil(this.train.length / B)
    // Steps that read new data, per epoch; each is taken `reuse` times.
    const dataSteps = stepsPerEpoch(microPerEpoch, GA)
    const perEpoch = dataSteps * layout.reuse
    const total = countTotalSteps(cfg.max_steps, cfg.num_train_epochs, perEpoch)
    const warmup = warmupSteps(cfg.warmup_steps, cfg.warmup_ratio, total)
    // Unset intervals follow the run's length; run.json and the started event carry the
    // resolved values, so a resume and the dashboard see what this run uses.
    const every = stepIntervals(cfg, total)
    if (every.logging !== cfg.logging_steps || every.save !== cfg.save_steps || every.eval !== cfg.eval_steps) {
      Object.assign(cfg, { logging_steps: every.logging, save_steps: every.save, eval_steps: every.eval })
      await this.writeRunConfig()
    }
    const orderOf = (epoch: number): number[] =>
      cfg.disable_shuffling
        ? Array.from({ length: this.train.length }, (_, i) => i)
        : permutation(this.train.length, mixSeed(cfg.seed, SEED_PURPOSE.shuffle, epoch))
    /** The micro-batches of optimiser step `s`, and the epoch position after it. */
    const plan = (s: number) => {
      const d = Math.floor(s / layout.reuse)
      const epoch = Math.floor(d / dataSteps)
      const first = (d % dataSteps) * GA
      const last = Math.min(first + GA, microPerEpoch)
      const order = orderOf(epoch)
      const micro: MicroBatch[] = []
      for (let m = first; m < last; m++) micro.push(this.microBatch('train', order.slice(m * B, (m + 1) * B)))
      const taken = ((s % layout.reuse) + 1) / layout.reuse
      const reused = (s + 1) % layout.reuse !== 0
      return {
        epoch, micro, epochFloat: epoch + (first + (last - first) * taken) / microPerEpoch,
        // The data position after this step: the same micro-batches while they are reused.
        nextMicro: reused ? first : last % microPerEpoch, nextEpoch: !reused && last === microPerEpoch ? epoch + 1 : epoch
      }
    }

    let startStep = 0
    if (resume) {
      const { state } = resume
      const B0 = cfg.per_device_train_batch_size
      const GA0 = cfg.gradient_accumulation_steps
      if (state.train_examples !== this.train.length || state.per_device_train_batch_size !== B0 || state.gradient_accumulation_steps !== GA0)
        throw new TrainingError(
          `resume_from_checkpoint: ${resume.dir} was written for ${state.train_examples} examples, batch ${state.per_device_train_batch_size} × ${state.gradient_accumulation_steps}; the config now gives ${this.train.length}, ${B0} × ${GA0}`
        )
      startStep = state.global_step
      // The data position and the seed (the whole RNG state) follow from the step and the
      // config; a checkpoint that says otherwise was written by another run or edited.
      const at = startStep > 0 ? plan(startStep - 1) : { nextEpoch: 0, nextMicro: 0 }
      const saved = join(resume.dir, 'trainer_state.json')
      if (state.seed !== cfg.seed)
        throw new TrainingError(`resume_from_checkpoint: ${saved} has seed ${state.seed}; the config has ${cfg.seed}, which would not replay the run`)
      if (state.epoch_index !== at.nextEpoch || state.micro_batch !== at.nextMicro)
        throw new TrainingError(
          `resume_from_checkpoint: ${saved} puts step ${startStep} at epoch_index ${state.epoch_index}, micro_batch ${state.micro_batch}; this config's data order puts it at ${at.nextEpoch}, ${at.nextMicro}`
        )
    }
    // What the stage carries (the reference log-probs taken so far among it) first: the
    // references below are then only those the stopped run had not taken yet.
    if (resumeDir) await stage.checkpoint?.load(resumeDir)
    // Full fine-tuning moves the weights the reference is read from: take every reference
    // log-prob the run will need from the initial weights before any update (or restore).
    if (cfg.finetuning_type === 'full' && stage.usesReference) {
      for (let s = 0; s < total; s++) for (const mb of plan(s).micro) await stage.reference(mb)
      for (const mb of this.evalBatches()) await stage.reference(mb)
    }
    if (resumeDir) {
      await model.loadTrainingState(join(resumeDir, 'training_state.bin'))
      await this.trimToCheckpoint(startStep)
    }

    this.status.totalSteps = total
    this.status.step = startStep
    this.emit({ type: 'started', runDir: this.runDir, totalSteps: total, config: cfg, resumedFrom: resumeDir })
    const t0 = Date.now()
    const log: TrainerLogEntry[] = []
    let window = { loss: 0, steps: 0, metrics: new Map<string, { sum: number; n: number }>(), tokens: 0, t: Date.now() }
    const timing = (step: number) => {
      const elapsed = (Date.now() - t0) / 1000
      const done = step - startStep
      const remaining = done > 0 ? (elapsed / done) * (total - step) : 0
      return { elapsed, remaining }
    }

    for (let step = startStep; step < total; step++) {
      const p = plan(step)
      const runs = stage.step(p.micro)
      let stepLoss = 0
      for (let k = 0; k < runs.length; k++) {
        this.checkCancel()
        const dropoutSeed = mixSeed(cfg.seed, SEED_PURPOSE.dropout, step, k)
        let out: MicroOutcome
        try {
          out = await runs[k]!({ train: true, dropoutSeed })
        } catch (err) {
          if (!(err instanceof NonFiniteError)) throw err
          throw this.nonFinite(step, err.message)
        }
        stepLoss += out.loss ?? 0
        window.tokens += out.tokens
        for (const [name, v] of Object.entries(out.metrics)) {
          const w = window.metrics.get(name) ?? { sum: 0, n: 0 }
          w.sum += v
          w.n++
          window.metrics.set(name, w)
        }
      }
      const gradNorm = model.gradNorm()
      if (!Number.isFinite(stepLoss)) throw this.nonFinite(step, `loss is ${stepLoss}`)
      if (!Number.isFinite(gradNorm)) throw this.nonFinite(step, `gradient norm is ${gradNorm}`)
      const lr = cfg.learning_rate * lrFactor(cfg.lr_scheduler_type, step, warmup, total)
      const { gradNorm: normBeforeClip } = await model.optimizerStep({
        lr, beta1: cfg.adam_beta1, beta2: cfg.adam_beta2, eps: cfg.adam_epsilon,
        weightDecay: cfg.weight_decay, maxGradNorm: cfg.max_grad_norm
      })
      model.zeroGrad()
      const done = step + 1
      onStep(done)
      this.status.step = done
      window.loss += stepLoss
      window.steps++
      const t = timing(done)
      this.emit({ type: 'progress', runDir: this.runDir, step: done, totalSteps: total, elapsedSeconds: t.elapsed, remainingSeconds: t.remaining })

      if (done % every.logging === 0) {
        const seconds = (Date.now() - window.t) / 1000
        const entry: TrainerLogEntry = {
          current_steps: done,
          total_steps: total,
          loss: window.loss / window.steps,
          lr: cfg.learning_rate * lrFactor(cfg.lr_scheduler_type, done, warmup, total),
          grad_norm: normBeforeClip,
          epoch: round(p.epochFloat, 4),
          percentage: round((done / total) * 100, 2),
          elapsed_time: formatDuration(t.elapsed),
          remaining_time: formatDuration(t.remaining),
          ...(seconds > 0 ? { tokens_per_second: window.tokens / seconds } : {})
        }
        for (const [name, w] of window.metrics) entry[name] = w.sum / w.n
        await appendLineDurable(join(this.runDir, 'trainer_log.jsonl'), JSON.stringify(entry))
        log.push(entry)
        this.emit({ type: 'log', runDir: this.runDir, entry })
        window = { loss: 0, steps: 0, metrics: new Map(), tokens: 0, t: Date.now() }
      }
      const evaluates = cfg.eval_strategy === 'steps' && this.evalSet.length > 0 && done % every.eval === 0
      if (evaluates) {
        const entry = await this.evaluate(done, total, p.epochFloat, t)
        await appendLineDurable(join(this.runDir, 'trainer_log.jsonl'), JSON.stringify(entry))
        log.push(entry)
        this.emit({ type: 'eval', runDir: this.runDir, entry })
      }
      // Before the checkpoint of this step, so that a resume from it never lacks them.
      if (this.samples && (evaluates || done === total)) {
        this.checkCancel()
        this.emit({ type: 'samples', runDir: this.runDir, step: done, samples: await this.samples.at(done) })
      }
      // No checkpoint at the last step: the finished run's adapter is written right after.
      if (done % every.save === 0 && done < total) {
        const state: TrainerState = {
          global_step: done, total_steps: total, epoch: p.epochFloat,
          epoch_index: p.nextEpoch, micro_batch: p.nextMicro, seed: cfg.seed,
          lr_scheduler: { type: cfg.lr_scheduler_type, warmup_steps: warmup, total_steps: total, step: done },
          train_examples: this.train.length, micro_batches_per_epoch: microPerEpoch,
          gradient_accumulation_steps: cfg.gradient_accumulation_steps, per_device_train_batch_size: cfg.per_device_train_batch_size
        }
        await this.saveCheckpoint(state)
      }
      await this.writeStatus()
    }

    const adapterDir = this.runDir
    if (cfg.finetuning_type === 'lora') await this.saveFinalAdapter()
    else await model.saveTrainingState(join(this.runDir, 'training_state.bin'))
    return { runDir: this.runDir, adapterDir, steps: total, log }
  }

  private nonFinite(step: number, what: string): TrainingError {
    return new TrainingError(
      `step ${step + 1}: ${what}; the run stopped without applying this update` +
        (this.lastCheckpoint ? ` (last good checkpoint: ${this.lastCheckpoint})` : ' (no checkpoint was written yet)'),
      this.lastCheckpoint
    )
  }

  private microBatch(split: 'train' | 'eval', idx: number[]): MicroBatch {
    const set = split === 'train' ? this.train : this.evalSet
    return { split, idx, examples: idx.map((i) => set[i]!) }
  }

  /** The evaluation set in per_device_eval_batch_size batches, in order. */
  private evalBatches(): MicroBatch[] {
    const bs = this.cfg.per_device_eval_batch_size
    const out: MicroBatch[] = []
    for (let i = 0; i < this.evalSet.length; i += bs) out.push(this.microBatch('eval', range(i, Math.min(i + bs, this.evalSet.length))))
    return out
  }

  private async evaluate(step: number, total: number, epoch: number, t: { elapsed: number; remaining: number }): Promise<TrainerLogEntry> {
    let lossSum: number | null = 0
    let count = 0
    const metrics = new Map<string, { sum: number; n: number }>()
    for (const mb of this.evalBatches()) {
      this.checkCancel()
      // An evaluation batch is weighed as a step of its own.
      const out = await this.stage.step([mb])[0]!({ train: false, dropoutSeed: 0 })
      const n = mb.idx.length
      // Weighted by examples, as transformers averages eval losses over samples.
      lossSum = out.loss === null || lossSum === null ? null : lossSum + out.loss * n
      count += n
      for (const [name, v] of Object.entries(out.metrics)) {
        const w = metrics.get(name) ?? { sum: 0, n: 0 }
        w.sum += v * n
        w.n += n
        metrics.set(name, w)
      }
    }
    const entry: TrainerLogEntry = {
      current_steps: step, total_steps: total, ...(lossSum === null ? {} : { eval_loss: lossSum / count }), epoch: round(epoch, 4),
      percentage: round((step / total) * 100, 2), elapsed_time: formatDuration(t.elapsed), remaining_time: formatDuration(t.remaining)
    }
    for (const [name, w] of metrics) entry[`eval_${name}`] = w.sum / w.n
    return entry
  }

  private async saveCheckpoint(state: TrainerState): Promise<void> {
    const name = `checkpoint-${state.global_step}`
    const final = join(this.runDir, name)
    const tmp = join(this.runDir, `.${name}.tmp-${process.pid}`)
    await rm(tmp, { recursive: true, force: true })
    try {
      if (this.cfg.finetuning_type === 'lora') await this.model.saveAdapter(tmp, this.cfg.model_name_or_path)
      await mkdir(tmp, { recursive: true })
      await this.model.saveTrainingState(join(tmp, 'training_state.bin'))
      await this.stage.checkpoint?.save(tmp)
      await writeFileAtomic(join(tmp, 'trainer_state.json'), JSON.stringify(state, null, 2) + '\n')
    } catch (err) {
      // A half-written checkpoint is never kept: it would hold the space a full disk needs.
      await rm(tmp, { recursive: true, force: true }).catch(() => {})
      throw err
    }
    await rm(final, { recursive: true, force: true })
    await rename(tmp, final)
    await fsyncDir(this.runDir)
    this.lastCheckpoint = final
    this.status.lastCheckpoint = name
    this.emit({ type: 'checkpoint', runDir: this.runDir, step: state.global_step, dir: final })
  }

  /** PEFT files at the top of output_dir, moved in from a finished temp folder. */
  private async saveFinalAdapter(): Promise<void> {
    const tmp = join(this.runDir, `.adapter.tmp-${process.pid}`)
    await rm(tmp, { recursive: true, force: true })
    try {
      await this.model.saveAdapter(tmp, this.cfg.model_name_or_path)
    } catch (err) {
      await rm(tmp, { recursive: true, force: true }).catch(() => {})
      throw err
    }
    for (const f of await readdir(tmp)) await rename(join(tmp, f), join(this.runDir, f))
    await rm(tmp, { recursive: true, force: true })
    await fsyncDir(this.runDir)
  }
}

/** The lines of a run's JSONL file; a torn last line (process killed mid-write) is skipped. */
export async function readJsonLines<T>(file: string): Promise<T[]> {
  if (!existsSync(file)) return []
  const out: T[] = []
  for (const line of (await readFile(file, 'utf8')).split('\n')) {
    if (!line.trim()) continue
    try {
      out.push(JSON.parse(line) as T)
    } catch {
      // only the last line can be torn; anything after it was never acknowledged
    }
  }
  return out
}

/** Removes the completions/step-N.jsonl files (GRPO) whose step `drop` accepts. */
async function removeCompletions(runDir: string, drop: (step: number) => boolean): Promise<void> {
  const dir = join(runDir, COMPLETIONS_DIR)
  if (!existsSync(dir)) return
  for (const name of await readdir(dir)) {
    const step = completionsStep(name)
    if (step !== null && drop(step)) await rm(join(dir, name), { force: true })
  }
}

/** Rewrites a run's JSONL file with the lines that `keep` accepts. */
async function keepLines<T>(file: string, keep: (line: T) => boolean): Promise<void> {
  const kept = (await readJsonLines<T>(file)).filter(keep)
  await writeFileAtomic(file, kept.map((l) => JSON.stringify(l) + '\n').join(''))
}

const range = (a: number, b: number): number[] => Array.from({ length: b - a }, (_, i) => a + i)
const round = (x: number, digits: number): number => Math.round(x * 10 ** digits) / 10 ** digits

export async function train(cfg: TrainingConfig, opts: TrainOptions = {}): Promise<TrainResult> {
  return new Trainer(cfg, opts).run()
}
