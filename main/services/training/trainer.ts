// The training loop: epochs of shuffled micro-batches, gradient accumulation, the schedule,
// evaluation, logging to trainer_log.jsonl, checkpoints that resume exactly, NaN guard and
// cancel. Heavy work is the engine's (one async call per forward/backward/update); this file
// only decides what to run and computes losses from the returned log-probs (losses.ts).
import { existsSync } from 'node:fs'
import { mkdir, readFile, readdir, rename, rm, writeFile } from 'node:fs/promises'
import { join, resolve } from 'node:path'
import type { TrainingConfig } from '../../../preload/types/trainingSchema'
import type { RunEvent, RunStatus, TrainerLogEntry } from '../../../preload/types/training'
import { collate, klSequences, pairSequences, sequenceSums, tokenGradients, type PairExample, type UnpairedExample } from './batches'
import { loadExamples } from './datasets'
import { loadNativeModel, loraTargets, type Batch, type ModelLoader, type TrainableModel } from './engine'
import { appendLineDurable, fsyncDir, writeFileAtomic } from './fsAtomic'
import { ktoLoss, pairLoss, type Metrics } from './losses'
import { mixSeed, permutation, SEED_PURPOSE } from './rng'
import { formatDuration, lrFactor, stepsPerEpoch, totalSteps as countTotalSteps, warmupSteps } from './schedule'
import { ChatTokenizer, joinSequence, maskedCount, type Example } from './sequences'

export class TrainingError extends Error {
  constructor(
    message: string,
    readonly lastCheckpoint: string | null = null
  ) {
    super(message)
    this.name = 'TrainingError'
  }
}

/** A loss or log-prob that is NaN/Inf: caught by the loop, which names the step. */
class NonFiniteError extends Error {}

function assertFinite(what: string, values: ArrayLike<number>): void {
  for (let i = 0; i < values.length; i++)
    if (!Number.isFinite(values[i]!)) throw new NonFiniteError(`${what} is ${values[i]}`)
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

export async function listCheckpoints(outputDir: string): Promise<{ name: string; step: number }[]> {
  if (!existsSync(outputDir)) return []
  const names = await readdir(outputDir)
  return names
    .map((name) => ({ name, m: CHECKPOINT_RE.exec(name) }))
    .filter((x) => x.m && existsSync(join(outputDir, x.name, 'trainer_state.json')))
    .map((x) => ({ name: x.name, step: Number(x.m![1]) }))
    .sort((a, b) => a.step - b.step)
}

async function resolveResume(cfg: TrainingConfig): Promise<string | null> {
  const r = cfg.resume_from_checkpoint
  if (r === null || r === 'false') return null
  if (r === 'true' || r === 'last') {
    const all = await listCheckpoints(cfg.output_dir)
    if (!all.length) throw new TrainingError(`resume_from_checkpoint: no checkpoint-N folder in ${cfg.output_dir}`)
    return join(cfg.output_dir, all[all.length - 1]!.name)
  }
  const dir = resolve(r)
  if (!existsSync(join(dir, 'trainer_state.json')))
    throw new TrainingError(`resume_from_checkpoint: ${dir} is not a checkpoint (no trainer_state.json)`)
  return dir
}

/** Per-token loss sums and counts of SFT, and per-method glue, for one micro-batch. */
interface MicroOutcome {
  /** This micro-batch's contribution to the step loss (already scaled). */
  loss: number
  metrics: Metrics
  tokens: number
}

export class Trainer {
  private model!: TrainableModel
  private tok!: ChatTokenizer
  private train: Example[] = []
  private evalSet: Example[] = []
  private readonly refCache = new Map<string, number>()
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
    this.opts.signal?.addEventListener('abort', onAbort, { once: true })
    const resumeDir = await resolveResume(cfg)
    await this.prepareOutputDir(resumeDir)
    this.status = {
      state: 'running', error: null, pid: process.pid, startedAt: new Date().toISOString(),
      updatedAt: new Date().toISOString(), step: 0, totalSteps: 0, lastCheckpoint: resumeDir ? resumeDir.split('/').pop()! : null
    }
    this.lastCheckpoint = resumeDir
    await this.writeStatus()
    let step = 0
    try {
      const result = await this.loop(resumeDir, (s) => (step = s))
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

  private async prepareOutputDir(resumeDir: string | null): Promise<void> {
    const cfg = this.cfg
    await mkdir(cfg.output_dir, { recursive: true })
    const log = join(cfg.output_dir, 'trainer_log.jsonl')
    if (resumeDir) {
      // Lines written after the checkpoint (by the run that died) are replayed by this run.
      const state = JSON.parse(await readFile(join(resumeDir, 'trainer_state.json'), 'utf8')) as TrainerState
      const kept = existsSync(log)
        ? (await readFile(log, 'utf8')).split('\n').filter((l) => l.trim() && (JSON.parse(l) as TrainerLogEntry).current_steps <= state.global_step)
        : []
      await writeFileAtomic(log, kept.map((l) => l + '\n').join(''))
    } else {
      const existing = existsSync(join(cfg.output_dir, 'run.json')) || existsSync(log)
      if (existing && !cfg.overwrite_output_dir)
        throw new TrainingError(
          `output_dir ${cfg.output_dir} already holds a run; set resume_from_checkpoint to continue it or overwrite_output_dir: true to start over`
        )
      for (const c of await listCheckpoints(cfg.output_dir)) await rm(join(cfg.output_dir, c.name), { recursive: true, force: true })
      await writeFileAtomic(log, '')
    }
    await writeFileAtomic(join(cfg.output_dir, 'run.json'), JSON.stringify(cfg, null, 2) + '\n')
  }

  private async writeStatus(): Promise<void> {
    this.status.updatedAt = new Date().toISOString()
    await writeFileAtomic(join(this.runDir, 'status.json'), JSON.stringify(this.status, null, 2) + '\n')
  }

  private checkCancel(): void {
    if (this.cancelled) throw new CancelledError()
  }

  private async loop(resumeDir: string | null, onStep: (s: number) => void): Promise<TrainResult> {
    const cfg = this.cfg
    this.tok = await ChatTokenizer.load(cfg.model_name_or_path)
    const data = await loadExamples(cfg, this.tok)
    this.train = data.train
    this.evalSet = data.eval
    if (this.train.length === 0) throw new TrainingError('no training examples')
    this.checkCancel()

    const load = this.opts.loadModel ?? loadNativeModel
    this.model = await load(cfg.model_name_or_path, { threads: cfg.threads || undefined, device: cfg.device })
    const model = this.model
    if (cfg.finetuning_type === 'lora') {
      const from = resumeDir ?? cfg.adapter_name_or_path
      if (from) await model.loadAdapter(from)
      else
        model.addLora({
          rank: cfg.lora_rank, alpha: cfg.lora_alpha, dropout: cfg.lora_dropout,
          targets: loraTargets(cfg.lora_target), rslora: cfg.use_rslora, seed: cfg.seed
        })
    }
    model.setTrainable(cfg.finetuning_type)
    model.setGradientCheckpointing(!cfg.disable_gradient_checkpointing)

    const B = cfg.per_device_train_batch_size
    const GA = cfg.gradient_accumulation_steps
    const microPerEpoch = Math.ceil(this.train.length / B)
    const perEpoch = stepsPerEpoch(microPerEpoch, GA)
    const total = countTotalSteps(cfg.max_steps, cfg.num_train_epochs, perEpoch)
    const warmup = warmupSteps(cfg.warmup_steps, cfg.warmup_ratio, total)
    const orderOf = (epoch: number): number[] =>
      cfg.disable_shuffling
        ? Array.from({ length: this.train.length }, (_, i) => i)
        : permutation(this.train.length, mixSeed(cfg.seed, SEED_PURPOSE.shuffle, epoch))
    /** The micro-batches (example indices) of optimiser step `s`, and the epoch position after it. */
    const plan = (s: number) => {
      const epoch = Math.floor(s / perEpoch)
      const first = (s % perEpoch) * GA
      const last = Math.min(first + GA, microPerEpoch)
      const order = orderOf(epoch)
      const micro: number[][] = []
      for (let m = first; m < last; m++) micro.push(order.slice(m * B, (m + 1) * B))
      return { epoch, micro, epochFloat: epoch + last / microPerEpoch, nextMicro: last % microPerEpoch }
    }

    let startStep = 0
    if (resumeDir) {
      const state = JSON.parse(await readFile(join(resumeDir, 'trainer_state.json'), 'utf8')) as TrainerState
      if (state.train_examples !== this.train.length || state.per_device_train_batch_size !== B || state.gradient_accumulation_steps !== GA)
        throw new TrainingError(
          `resume_from_checkpoint: ${resumeDir} was written for ${state.train_examples} examples, batch ${state.per_device_train_batch_size} × ${state.gradient_accumulation_steps}; the config now gives ${this.train.length}, ${B} × ${GA}`
        )
      startStep = state.global_step
    }
    // Full fine-tuning moves the weights the reference is read from: take every reference
    // log-prob the run will need from the initial weights before any update (or restore).
    if (cfg.finetuning_type === 'full' && cfg.stage !== 'sft' && !(cfg.pref_loss === 'orpo' || cfg.pref_loss === 'simpo')) {
      for (let s = 0; s < total; s++) for (const m of plan(s).micro) await this.referenceLogps(m, 'train')
      for (let i = 0; i < this.evalSet.length; i += cfg.per_device_eval_batch_size)
        await this.referenceLogps(range(i, Math.min(i + cfg.per_device_eval_batch_size, this.evalSet.length)), 'eval')
    }
    if (resumeDir) await model.loadTrainingState(join(resumeDir, 'training_state.bin'))

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
      const accumulated = p.micro.length
      // SFT normalises by the masked tokens of the whole accumulated batch (ALGORITHMS.md).
      const sftTokens = cfg.stage === 'sft' ? p.micro.reduce((n, m) => n + m.reduce((k, i) => k + maskedCount(this.sftSeq(this.train[i]!)), 0), 0) : 0
      let stepLoss = 0
      for (let k = 0; k < accumulated; k++) {
        this.checkCancel()
        const dropoutSeed = mixSeed(cfg.seed, SEED_PURPOSE.dropout, step, k)
        let out: MicroOutcome
        try {
          out = await this.micro(p.micro[k]!, 'train', { scale: 1 / accumulated, sftTokens, dropoutSeed })
        } catch (err) {
          if (!(err instanceof NonFiniteError)) throw err
          throw this.nonFinite(step, err.message)
        }
        stepLoss += out.loss
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

      if (done % cfg.logging_steps === 0) {
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
      if (cfg.eval_strategy === 'steps' && this.evalSet.length > 0 && done % cfg.eval_steps === 0) {
        const entry = await this.evaluate(done, total, p.epochFloat, t)
        await appendLineDurable(join(this.runDir, 'trainer_log.jsonl'), JSON.stringify(entry))
        log.push(entry)
        this.emit({ type: 'eval', runDir: this.runDir, entry })
      }
      // No checkpoint at the last step: the finished run's adapter is written right after.
      if (done % cfg.save_steps === 0 && done < total) {
        const state: TrainerState = {
          global_step: done, total_steps: total, epoch: p.epochFloat,
          epoch_index: p.nextMicro === 0 ? p.epoch + 1 : p.epoch, micro_batch: p.nextMicro, seed: cfg.seed,
          lr_scheduler: { type: cfg.lr_scheduler_type, warmup_steps: warmup, total_steps: total, step: done },
          train_examples: this.train.length, micro_batches_per_epoch: microPerEpoch,
          gradient_accumulation_steps: GA, per_device_train_batch_size: B
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

  /** The example as an SFT sequence (only SFT examples have one). */
  private sftSeq(ex: Example) {
    if (ex.kind !== 'sft') throw new Error(`internal: expected an sft example, got ${ex.kind}`)
    return ex.sequence
  }

  private examples(split: 'train' | 'eval', idx: number[]): Example[] {
    const set = split === 'train' ? this.train : this.evalSet
    return idx.map((i) => set[i]!)
  }

  /** Reference (adapters off) summed log-probs, computed once per sequence and cached. Keys:
   *  "<split>:<i>:c|r" for pairs, "<split>:<i>" for KTO completions, "<split>:<i>:kl:<j>" for
   *  KTO's KL pair of prompt i with completion j. */
  private async referenceLogps(idx: number[], split: 'train' | 'eval'): Promise<void> {
    const cfg = this.cfg
    const ex = this.examples(split, idx)
    if (cfg.stage === 'dpo') {
      if (cfg.pref_loss === 'orpo' || cfg.pref_loss === 'simpo') return
      const keys = idx.flatMap((i) => [`${split}:${i}:c`, `${split}:${i}:r`])
      if (keys.every((k) => this.refCache.has(k))) return
      const batch = collate(pairSequences(ex as PairExample[], cfg.cutoff_len), this.tok.padId)
      const { logps } = sequenceSums(await this.model.logps(batch, { adapters: false, train: false }), batch)
      const n = idx.length
      idx.forEach((i, b) => {
        this.refCache.set(`${split}:${i}:c`, logps[b]!)
        this.refCache.set(`${split}:${i}:r`, logps[n + b]!)
      })
    } else if (cfg.stage === 'kto') {
      const n = idx.length
      const keys = idx.flatMap((i, b) => [`${split}:${i}`, `${split}:${i}:kl:${idx[(b - 1 + n) % n]}`])
      if (keys.every((k) => this.refCache.has(k))) return
      const u = ex as UnpairedExample[]
      const seqs = [...u.map((r) => joinCompletion(r, this.cfg.cutoff_len)), ...klSequences(u, cfg.cutoff_len)]
      const batch = collate(seqs, this.tok.padId)
      const { logps } = sequenceSums(await this.model.logps(batch, { adapters: false, train: false }), batch)
      keys.forEach((k, j) => this.refCache.set(k, logps[j % 2 === 0 ? j / 2 : n + (j - 1) / 2]!))
    }
  }

  private async micro(
    idx: number[],
    split: 'train' | 'eval',
    o: { scale: number; sftTokens: number; dropoutSeed: number }
  ): Promise<MicroOutcome> {
    const cfg = this.cfg
    const train = split === 'train'
    const ex = this.examples(split, idx)
    const model = this.model
    const policy = async (batch: Batch) => model.logps(batch, { adapters: true, train, dropoutSeed: o.dropoutSeed })

    if (cfg.stage === 'sft') {
      const seqs = ex.map((e) => this.sftSeq(e))
      const batch = collate(seqs, this.tok.padId)
      const lp = await policy(batch)
      const { logps, tokens } = sequenceSums(lp, batch)
      let nll = 0
      let n = 0
      for (let b = 0; b < batch.batch; b++) {
        nll -= logps[b]!
        n += tokens[b]!
      }
      const denom = train ? o.sftTokens : n
      assertFinite('loss', [nll])
      if (train) {
        const g = new Float64Array(batch.batch).fill(-1 / denom)
        await model.backward(tokenGradients(batch, g))
      }
      return { loss: nll / denom, metrics: {}, tokens: n }
    }

    await this.referenceLogps(idx, split)
    if (cfg.stage === 'dpo') {
      const pairs = ex as PairExample[]
      const n = pairs.length
      const batch = collate(pairSequences(pairs, cfg.cutoff_len), this.tok.padId)
      const lp = await policy(batch)
      const { logps, tokens } = sequenceSums(lp, batch)
      const usesRef = cfg.pref_loss !== 'orpo' && cfg.pref_loss !== 'simpo'
      const res = pairLoss(
        {
          policyChosen: logps.subarray(0, n), policyRejected: logps.subarray(n),
          refChosen: usesRef ? Float64Array.from(idx, (i) => this.refCache.get(`${split}:${i}:c`)!) : null,
          refRejected: usesRef ? Float64Array.from(idx, (i) => this.refCache.get(`${split}:${i}:r`)!) : null,
          chosenTokens: tokens.subarray(0, n), rejectedTokens: tokens.subarray(n)
        },
        { kind: cfg.pref_loss, beta: cfg.pref_beta, labelSmoothing: cfg.dpo_label_smoothing, ftx: cfg.pref_ftx, simpoGamma: cfg.simpo_gamma }
      )
      assertFinite('loss', [res.loss])
      if (train) {
        assertFinite('loss gradient', [...res.gradChosen, ...res.gradRejected])
        const g = new Float64Array(2 * n)
        for (let b = 0; b < n; b++) {
          g[b] = res.gradChosen[b]! * o.scale
          g[n + b] = res.gradRejected[b]! * o.scale
        }
        await model.backward(tokenGradients(batch, g))
      }
      return { loss: res.loss * o.scale, metrics: res.metrics, tokens: tokens.reduce((a, b) => a + b, 0) }
    }

    // KTO: the KL pairs only feed the detached z₀, so they run before the train=true pass.
    const u = ex as UnpairedExample[]
    const n = u.length
    const klBatch = collate(klSequences(u, cfg.cutoff_len), this.tok.padId)
    const policyKl = sequenceSums(await model.logps(klBatch, { adapters: true, train: false }), klBatch).logps
    const batch = collate(u.map((r) => joinCompletion(r, cfg.cutoff_len)), this.tok.padId)
    const { logps, tokens } = sequenceSums(await policy(batch), batch)
    const res = ktoLoss(
      {
        policy: logps,
        ref: Float64Array.from(idx, (i) => this.refCache.get(`${split}:${i}`)!),
        policyKl,
        refKl: Float64Array.from(idx, (i, b) => this.refCache.get(`${split}:${i}:kl:${idx[(b - 1 + n) % n]}`)!),
        desirable: u.map((r) => r.desirable)
      },
      { beta: cfg.pref_beta, desirableWeight: cfg.kto_chosen_weight, undesirableWeight: cfg.kto_rejected_weight }
    )
    assertFinite('loss', [res.loss])
    assertFinite('loss gradient', res.grad)
    if (train) await model.backward(tokenGradients(batch, res.grad.map((g) => g * o.scale)))
    return { loss: res.loss * o.scale, metrics: res.metrics, tokens: tokens.reduce((a, b) => a + b, 0) }
  }

  private async evaluate(step: number, total: number, epoch: number, t: { elapsed: number; remaining: number }): Promise<TrainerLogEntry> {
    const bs = this.cfg.per_device_eval_batch_size
    let lossSum = 0
    let count = 0
    const metrics = new Map<string, { sum: number; n: number }>()
    for (let i = 0; i < this.evalSet.length; i += bs) {
      this.checkCancel()
      const idx = range(i, Math.min(i + bs, this.evalSet.length))
      const out = await this.micro(idx, 'eval', { scale: 1, sftTokens: 0, dropoutSeed: 0 })
      // Weighted by examples, as transformers averages eval losses over samples.
      lossSum += out.loss * idx.length
      count += idx.length
      for (const [name, v] of Object.entries(out.metrics)) {
        const w = metrics.get(name) ?? { sum: 0, n: 0 }
        w.sum += v * idx.length
        w.n += idx.length
        metrics.set(name, w)
      }
    }
    const entry: TrainerLogEntry = {
      current_steps: step, total_steps: total, eval_loss: lossSum / count, epoch: round(epoch, 4),
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
    if (this.cfg.finetuning_type === 'lora') await this.model.saveAdapter(tmp, this.cfg.model_name_or_path)
    await mkdir(tmp, { recursive: true })
    await this.model.saveTrainingState(join(tmp, 'training_state.bin'))
    await writeFile(join(tmp, 'trainer_state.json'), JSON.stringify(state, null, 2) + '\n')
    await fsyncDir(tmp)
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
    await this.model.saveAdapter(tmp, this.cfg.model_name_or_path)
    for (const f of await readdir(tmp)) await rename(join(tmp, f), join(this.runDir, f))
    await rm(tmp, { recursive: true, force: true })
    await fsyncDir(this.runDir)
  }
}

const range = (a: number, b: number): number[] => Array.from({ length: b - a }, (_, i) => a + i)
const round = (x: number, digits: number): number => Math.round(x * 10 ** digits) / 10 ** digits

const joinCompletion = (r: UnpairedExample, cutoffLen: number) => joinSequence(r.prompt, r.completion, cutoffLen)

export async function train(cfg: TrainingConfig, opts: TrainOptions = {}): Promise<TrainResult> {
  return new Trainer(cfg, opts).run()
}
