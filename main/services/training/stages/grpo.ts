// Stage grpo: Group Relative Policy Optimization with verifiable rewards (docs/algorithms.md
// "GRPO", TRL's GRPOTrainer). A step's micro-batch is a generation batch of prompts: each is
// answered num_generations times by the policy (the engine's sampler, which reports every token's
// log-prob at the sampling temperature), the answers are scored by the reward functions
// (rewards.ts), turned into group-relative advantages, written to completions/step-N.jsonl and
// streamed, then trained on in gradient_accumulation_steps micro-batches of completions
// (per_device_train_batch_size each). With num_iterations > 1 the next steps reuse the batch,
// with the sampling-time log-probs as the old policy; a checkpoint taken meanwhile keeps it.
import { existsSync } from 'node:fs'
import { mkdir, readFile } from 'node:fs/promises'
import { dirname, join } from 'node:path'
import type { GrpoCompletion } from '../../../../preload/types/training'
import type { Text } from '../../data/formats'
import { writeFileAtomic } from '../../fsAtomic'
import { readEosIds } from '../../generation/pool'
import { collate } from '../batches'
import { completionsFile } from '../completions'
import type { GeneratedRow } from '../engine'
import { advantages, grpoLoss } from '../grpoLoss'
import type { Metrics } from '../losses'
import { rewardFunctions, rewardWeights, type RewardFunction, type RewardItem } from '../rewards'
import { mixSeed, SEED_PURPOSE } from '../rng'
import type { Example, Sequence } from '../sequences'
import { assertFinite, auxTerm, backward, withAux, type MicroBatch, type MicroOutcome, type MicroRun, type RunOptions, type Stage, type StageContext, type StageCheckpoint, type StageLayout } from './stage'

type PromptExample = Extract<Example, { kind: 'prompt' }>

/** One sampled completion with what the loss needs of it. */
interface Completion {
  prompt: number[]
  tokens: number[]
  /** Sampling-time log-probs (the old policy when num_iterations > 1). */
  logps: number[]
  clipped: boolean
  advantage: number
}

/** A scored generation batch, as sampled at `step` (1-based). */
interface GenerationBatch {
  step: number
  completions: Completion[]
  /** Σ of the loss mask over the batch (dapo and cispo divide by it). */
  maskedTokens: number
}

const BATCH_FILE = 'grpo_batch.json'

/** The plain text a reward sees of a prompt: the string, or the last user turn. */
function promptText(p: Text): string {
  if (typeof p === 'string') return p
  const users = p.filter((m) => m.role === 'user')
  return (users[users.length - 1] ?? p[p.length - 1])?.content ?? ''
}

export class GrpoStage implements Stage {
  readonly usesReference = false
  readonly layout: StageLayout
  readonly checkpoint: StageCheckpoint
  private readonly G: number
  private readonly funcs: RewardFunction[]
  private readonly weights: number[]
  private eosIds: number[] | null = null
  private batch: GenerationBatch | null = null

  constructor(private readonly ctx: StageContext) {
    const { cfg } = ctx
    this.G = cfg.num_generations
    const prompts = (cfg.per_device_train_batch_size * cfg.gradient_accumulation_steps) / this.G
    this.layout = { examplesPerMicro: prompts, microsPerStep: 1, reuse: cfg.num_iterations }
    this.funcs = rewardFunctions(cfg.reward_funcs, {
      maxCompletionLength: cfg.max_completion_length,
      lengthTarget: cfg.length_target,
      cosine: {
        minValueWrong: cfg.cosine_min_value_wrong, maxValueWrong: cfg.cosine_max_value_wrong,
        minValueCorrect: cfg.cosine_min_value_correct, maxValueCorrect: cfg.cosine_max_value_correct, maxLen: cfg.cosine_max_len
      },
      repetition: { nGrams: cfg.repetition_n_grams, maxPenalty: cfg.repetition_max_penalty },
      timeoutSeconds: cfg.reward_timeout,
      baseDir: process.cwd()
    })
    this.weights = rewardWeights(cfg.reward_funcs, cfg.reward_weights)
    this.checkpoint = {
      save: async (dir) => {
        // Only a batch that later steps still reuse is state; a fresh one is sampled again exactly.
        if (this.batch && cfg.num_iterations > 1) await writeFileAtomic(join(dir, BATCH_FILE), JSON.stringify(this.batch))
      },
      load: async (dir) => {
        const file = join(dir, BATCH_FILE)
        this.batch = existsSync(file) ? (JSON.parse(await readFile(file, 'utf8')) as GenerationBatch) : null
      }
    }
  }

  async reference(): Promise<void> {
    // The KL reference (beta > 0) is read with each micro-batch: its completions are new.
  }

  step(micros: MicroBatch[]): MicroRun[] {
    const mb = micros[0]!
    if (mb.split === 'eval') return [() => this.evaluate(mb)]
    const GA = this.ctx.cfg.gradient_accumulation_steps
    return Array.from({ length: GA }, (_, k) => (o: RunOptions) => this.train(mb, k, GA, o))
  }

  /** Samples G completions of each prompt and scores them; the metrics are TRL's. */
  private async sample(mb: MicroBatch, seedPurpose: number, step: number): Promise<{ completions: Completion[]; lines: GrpoCompletion[]; metrics: Metrics }> {
    const { cfg, model, tok } = this.ctx
    this.eosIds ??= await readEosIds(cfg.model_name_or_path, tok)
    const examples = mb.examples as PromptExample[]
    const prompts = examples.flatMap((e) => Array.from({ length: this.G }, () => Int32Array.from(e.prompt)))
    const t0 = performance.now()
    const rows: GeneratedRow[] = await model.generate(prompts, {
      temperature: cfg.temperature, topK: cfg.top_k, topP: cfg.top_p, minP: 0, repetitionPenalty: 1,
      maxNewTokens: cfg.max_completion_length, eosIds: this.eosIds, adapters: true,
      seeds: prompts.map((_, r) => mixSeed(cfg.seed, seedPurpose, step, r))
    })
    const seconds = (performance.now() - t0) / 1000
    const exampleOf = (r: number) => examples[Math.floor(r / this.G)]!
    const items: RewardItem[] = rows.map((row, r) => {
      const e = exampleOf(r)
      return {
        prompt: promptText(e.text), rawPrompt: e.text, completion: tok.decode(Array.from(row.tokens), true),
        tokens: row.tokens.length, clipped: row.finish === 'length', columns: e.columns
      }
    })
    const perFunc: (number | null)[][] = []
    for (const f of this.funcs) {
      const values = await f.score(items, this.ctx.signal)
      if (values.length !== items.length) throw new Error(`reward ${f.name}: ${values.length} rewards for ${items.length} completions`)
      perFunc.push(values)
    }
    const names = this.funcs.map((f) => f.name)
    const adv = advantages({ perFunc, weights: this.weights, groupSize: this.G }, cfg.scale_rewards, names)
    const completions: Completion[] = rows.map((row, r) => ({
      prompt: exampleOf(r).prompt, tokens: Array.from(row.tokens), logps: Array.from(row.logps), clipped: items[r]!.clipped, advantage: adv.advantage[r]!
    }))
    const lines: GrpoCompletion[] = items.map((it, r) => ({
      step, group: Math.floor(r / this.G), index: r % this.G, prompt: it.rawPrompt as GrpoCompletion['prompt'],
      completion: it.completion, rewards: Object.fromEntries(names.map((n, k) => [n, perFunc[k]![r] ?? null])),
      reward: adv.total[r]!, advantage: adv.advantage[r]!, tokens: it.tokens, clipped: it.clipped
    }))
    const lengths = items.map((it) => it.tokens)
    const terminated = items.filter((it) => !it.clipped).map((it) => it.tokens)
    const total = lengths.reduce((a, b) => a + b, 0)
    const metrics: Metrics = {
      ...adv.metrics,
      'completions/mean_length': total / lengths.length,
      'completions/min_length': Math.min(...lengths),
      'completions/max_length': Math.max(...lengths),
      'completions/clipped_ratio': (lengths.length - terminated.length) / lengths.length,
      'completions/mean_terminated_length': terminated.length ? terminated.reduce((a, b) => a + b, 0) / terminated.length : 0,
      ...(seconds > 0 ? { 'tokens_per_second/generation': total / seconds } : {})
    }
    return { completions, lines, metrics }
  }

  private async train(mb: MicroBatch, k: number, GA: number, o: RunOptions): Promise<MicroOutcome> {
    const { cfg, model } = this.ctx
    const step = this.ctx.step()
    const generatedAt = step - ((step - 1) % cfg.num_iterations)
    let metrics: Metrics = {}
    if (k === 0 && this.batch?.step !== generatedAt) {
      const s = await this.sample(mb, SEED_PURPOSE.sampling, generatedAt)
      const masked = (c: Completion) => (cfg.mask_truncated_completions && c.clipped ? 0 : c.tokens.length)
      this.batch = { step: generatedAt, completions: s.completions, maskedTokens: s.completions.reduce((a, c) => a + masked(c), 0) }
      const file = completionsFile(this.ctx.runDir, generatedAt)
      await mkdir(dirname(file), { recursive: true })
      await writeFileAtomic(file, s.lines.map((l) => JSON.stringify(l) + '\n').join(''))
      this.ctx.emit({ type: 'completions', runDir: this.ctx.runDir, step: generatedAt, completions: s.lines })
      metrics = s.metrics
    }
    const batch = this.batch!
    const n = batch.completions.length
    const per = Math.ceil(n / GA)
    const mine = batch.completions.slice(k * per, Math.min((k + 1) * per, n))
    if (!mine.length) return { loss: 0, metrics, tokens: 0 }

    const t0 = performance.now()
    const seqs: Sequence[] = mine.map((c) => ({
      ids: [...c.prompt, ...c.tokens],
      mask: [...c.prompt.map(() => 0), ...c.tokens.map(() => 1)]
    }))
    const eb = collate(seqs, this.ctx.padId)
    const at = (i: number, t: number) => i * eb.seqLen + mine[i]!.prompt.length + t
    const opts = { adapters: true, train: o.train, dropoutSeed: o.dropoutSeed, temperature: cfg.temperature }
    const scored = await model.scoreTokens(eb, opts)
    // Before the reference pass, which would be the last logps call.
    const aux = auxTerm(this.ctx, GA, o.train)
    const ref = cfg.beta > 0 ? await model.logps(eb, { adapters: false, train: false, temperature: cfg.temperature }) : null
    const tokensOf = (src: Float32Array) => mine.map((c, i) => Float64Array.from(c.tokens, (_, t) => src[at(i, t)]!))
    const lp = tokensOf(scored.logps)
    assertFinite('policy log-prob', lp.flatMap((x) => Array.from(x)))
    const res = grpoLoss(
      {
        lp,
        oldLp: cfg.num_iterations > 1 ? mine.map((c) => Float64Array.from(c.logps)) : null,
        refLp: ref ? tokensOf(ref) : null,
        entropy: tokensOf(scored.entropy),
        mask: mine.map((c) => new Uint8Array(c.tokens.length).fill(cfg.mask_truncated_completions && c.clipped ? 0 : 1)),
        advantage: mine.map((c) => c.advantage)
      },
      {
        lossType: cfg.loss_type, beta: cfg.beta, epsilon: cfg.epsilon, epsilonHigh: cfg.epsilon_high,
        maxCompletionLength: cfg.max_completion_length, microBatches: GA, generationTokens: batch.maskedTokens
      }
    )
    assertFinite('loss', [res.loss])
    if (o.train) {
      const g = new Float32Array(eb.batch * eb.seqLen)
      res.grad.forEach((row, i) => row.forEach((v, t) => (g[at(i, t)] = v)))
      assertFinite('loss gradient', g)
      await backward(model, g, aux)
    }
    const tokens = mine.reduce((a, c) => a + c.tokens.length, 0)
    const seconds = (performance.now() - t0) / 1000
    return withAux({
      loss: res.loss,
      metrics: { ...metrics, ...res.metrics, ...(seconds > 0 ? { 'tokens_per_second/training': tokens / seconds } : {}) },
      tokens
    }, aux)
  }

  /** Evaluation samples and scores the held-out prompts (no loss, as nothing is trained). */
  private async evaluate(mb: MicroBatch): Promise<MicroOutcome> {
    const s = await this.sample(mb, SEED_PURPOSE.evalSampling, this.ctx.step())
    const { 'tokens_per_second/generation': _, ...metrics } = s.metrics
    return { loss: null, metrics, tokens: s.completions.reduce((a, c) => a + c.tokens.length, 0) }
  }
}
