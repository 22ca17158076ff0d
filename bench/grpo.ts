// GRPO step time: Tunebench's stage grpo against TRL's GRPOTrainer on the CPU, same checkpoint,
// same prompts, same threads, each side in its own process, the two alternating --repeat times.
//   node --import tsx bench/grpo.ts [--quick] [--threads N] [--repeat N] [--steps N] [--max-length L]
// The Python side needs TRL (`pip install trl`, beside torch, transformers and peft) in
// TUNEBENCH_PYTHON's environment (default python3). Defaults: 2 threads, 2 runs a side, 6 steps
// a run, L = 64 (--quick: 5 steps, L = 32). On a busy machine 2 threads stall both sides while
// a team thread waits for a core, torch's many small ops most; --threads 1 is steadier there.
// Both sides: LoRA r 8 / alpha 16 / dropout 0 on q,k,v,o,gate,up,down, num_generations 4,
// per_device_train_batch_size 8 completions (2 prompts a step), gradient_accumulation_steps 1,
// temperature 1, beta 0, loss_type dapo, learning rate 1e-5, gradient checkpointing (both
// defaults), a regex reward (1 when the completion contains "ee"), logging every step, no
// checkpoints. The checkpoint (bench/grpo_trl.py make) is bench/engine.ts's shape (hidden 512,
// 8 layers, vocabulary 32k; --quick: its small one) with a byte-level BPE tokenizer of the same
// vocabulary and 16 chat prompts of exactly 24 templated tokens.
// Equal work: the checkpoint's special tokens (eos among them) can never be sampled (their
// logit is below -150, the others' within +-2.5; see grpo_trl.py), so every completion on both sides runs to
// max_completion_length with each side's ordinary sampler and eos handling; the bench checks
// that every step's completion tokens are 8 x L on both sides.
// Timing: a step is the time between consecutive step ends (ours: the trainer's progress event
// after the optimizer step; TRL: on_step_end), so start-up (imports, loading, LoRA set-up) and
// the first step (warm-up) are left out, and the rest (reward, logging to disk, data) is in.
// Generation is the model's generate call (ours: tokens_per_second/generation of the step's
// log line, completion tokens / that rate; TRL: _generate_single_turn, i.e. transformers'
// generate and its mask); training is the policy forward + loss + backward (ours:
// tokens_per_second/training; TRL: training_step minus _prepare_inputs); other = step - both,
// chiefly the optimizer step, rewards, decoding and logging.
// Each run's figure is the mean over its timed steps; the table gives each side's best run, the
// spread of its runs, and the median of the ratios of back-to-back pairs of runs.
import { spawnSync } from 'node:child_process'
import { existsSync, mkdirSync, mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { argv, flag } from './args'

const quick = argv.includes('--quick')
const threads = Number(flag('--threads', '2'))
const repeat = Number(flag('--repeat', '2'))
const steps = Number(flag('--steps', quick ? '5' : '6'))
const maxLen = Number(flag('--max-length', quick ? '32' : '64'))
const PROMPT_TOKENS = 24
const PATTERN = 'ee'
const COMPLETIONS = 8
const SEED = 0
const python = process.env.TUNEBENCH_PYTHON ?? 'python3'
const here = fileURLToPath(import.meta.url)

interface Step { step_s: number | null; generation_s: number; training_s: number; tokens: number }
interface Run { steps: Step[]; reward: number[] }

/** One run of stage grpo in this process, timed from its events. */
async function ours(dir: string): Promise<void> {
  const { resolveConfig } = await import('../main/services/training/config')
  const { Trainer } = await import('../main/services/training/trainer')
  const out = mkdtempSync(join(tmpdir(), 'tunebench-bench-grpo-ours-'))
  const cfg = resolveConfig({
    model_name_or_path: dir, stage: 'grpo', dataset: join(dir, 'prompts.jsonl'), output_dir: out, overwrite_output_dir: true,
    num_generations: 4, per_device_train_batch_size: COMPLETIONS, gradient_accumulation_steps: 1,
    max_completion_length: maxLen, max_steps: steps, temperature: 1, beta: 0, loss_type: 'dapo',
    reward_funcs: [`regex:${PATTERN}`], lora_rank: 8, lora_alpha: 16, lora_dropout: 0, lora_target: ['all'],
    learning_rate: 1e-5, seed: SEED, logging_steps: 1, save_steps: steps, sample_prompts: 0, threads
  }, 'bench/grpo.ts')
  const ends: number[] = []
  const logs: Record<string, number>[] = []
  await new Trainer(cfg, {
    onEvent: (e) => {
      if (e.type === 'progress') ends.push(performance.now())
      if (e.type === 'log') logs.push(e.entry as unknown as Record<string, number>)
    }
  }).run()
  rmSync(out, { recursive: true, force: true })
  const result: Run = {
    steps: logs.map((l, i) => {
      const tokens = Math.round(l['completions/mean_length']! * COMPLETIONS)
      return {
        step_s: i > 0 ? (ends[i]! - ends[i - 1]!) / 1000 : null,
        generation_s: tokens / l['tokens_per_second/generation']!,
        training_s: tokens / l['tokens_per_second/training']!,
        tokens
      }
    }),
    reward: logs.map((l) => l.reward!)
  }
  console.log(JSON.stringify(result))
}

function lastJson<T>(out: string): T {
  const line = out.trim().split('\n').filter((l) => l.startsWith('{"')).pop()
  if (!line) throw new Error(`no result in:\n${out}`)
  return JSON.parse(line) as T
}

function checkpoint(size: 'quick' | 'full'): string {
  const dir = join(tmpdir(), `tunebench-bench-grpo-${size}`)
  if (!existsSync(join(dir, 'prompts.jsonl'))) {
    mkdirSync(dir, { recursive: true })
    const r = spawnSync(python, [join(import.meta.dirname, 'grpo_trl.py'), 'make', dir, size, String(PROMPT_TOKENS)], { stdio: 'inherit' })
    if (r.status !== 0) throw new Error('making the bench checkpoint failed')
  }
  return dir
}

interface Summary { step: number; generation: number; training: number; tokens: number }

/** Means over the timed steps (all but the first), after checking the completions' lengths. */
function summarise(side: string, run: Run): Summary {
  const timed = run.steps.slice(1)
  if (timed.length === 0) throw new Error('--steps must be at least 2 (the first is not timed)')
  for (const s of run.steps)
    if (s.tokens !== COMPLETIONS * maxLen) throw new Error(`${side}: a step generated ${s.tokens} completion tokens, not ${COMPLETIONS} x ${maxLen}`)
  const mean = (f: (s: Step) => number) => timed.reduce((a, s) => a + f(s), 0) / timed.length
  return { step: mean((s) => s.step_s!), generation: mean((s) => s.generation_s), training: mean((s) => s.training_s), tokens: COMPLETIONS * maxLen }
}

const f = (x: number, d = 0): string => x.toLocaleString('en-US', { maximumFractionDigits: d, minimumFractionDigits: d })

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b)
  return s.length % 2 ? s[(s.length - 1) / 2]! : (s[s.length / 2 - 1]! + s[s.length / 2]!) / 2
}

async function main(): Promise<void> {
  if (argv[0] === '--ours') return ours(argv[1]!)
  const size = quick ? 'quick' : 'full'
  const dir = checkpoint(size)
  const env = { ...process.env, OMP_NUM_THREADS: String(threads) }
  const runs: { ours: Summary; trl: Summary }[] = []
  let versions = ''
  for (let r = 0; r < repeat; r++) {
    const a = spawnSync(process.execPath, ['--import', 'tsx', here, '--ours', dir, ...argv], { encoding: 'utf8', env, maxBuffer: 64 << 20 })
    if (a.status !== 0) throw new Error(`tunebench run failed:\n${a.stderr}`)
    const b = spawnSync(python, [join(import.meta.dirname, 'grpo_trl.py'), 'run', dir, String(threads), String(steps), String(maxLen), PATTERN, String(SEED)],
      { encoding: 'utf8', env, maxBuffer: 64 << 20 })
    if (b.status !== 0) throw new Error(`TRL run failed:\n${b.stderr}`)
    const t = lastJson<Run & { trl: string; transformers: string; torch: string; threads: number }>(b.stdout)
    versions = `TRL ${t.trl}, transformers ${t.transformers}, torch ${t.torch} (${t.threads} threads)`
    runs.push({ ours: summarise('tunebench', lastJson<Run>(a.stdout)), trl: summarise('TRL', t) })
  }
  if (runs.length === 0) throw new Error('--repeat must be at least 1')
  const best = (side: 'ours' | 'trl') => runs.map((r) => r[side]).reduce((x, y) => (y.step < x.step ? y : x))
  const spread = (side: 'ours' | 'trl', k: keyof Summary) => {
    const v = runs.map((r) => r[side][k])
    return `${f(Math.min(...v), 2)}-${f(Math.max(...v), 2)}`
  }
  console.log(`${size} shape, LoRA r 8 on all linear layers, ${COMPLETIONS} completions of ${maxLen} tokens a step (2 prompts x 4, prompt ${PROMPT_TOKENS} tokens), threads ${threads}`)
  console.log(`${steps - 1} timed steps a run (the first left out), ${runs.length} runs a side, alternating; ${versions}`)
  console.log('side        step s  generation s  training s  other s  generation tok/s  training tok/s   (best run; spread of runs: step, generation, training)')
  for (const [name, side] of [['tunebench', 'ours'], ['TRL', 'trl']] as const) {
    const b = best(side)
    console.log(`${name.padEnd(10)} ${f(b.step, 2).padStart(7)}  ${f(b.generation, 2).padStart(12)}  ${f(b.training, 2).padStart(10)}  ${f(b.step - b.generation - b.training, 2).padStart(7)}  ${f(b.tokens / b.generation).padStart(16)}  ${f(b.tokens / b.training).padStart(14)}   (${spread(side, 'step')}, ${spread(side, 'generation')}, ${spread(side, 'training')})`)
  }
  const o = best('ours'), t = best('trl')
  const x = (v: number) => `${f(v, 2)}x`
  console.log(`ratio (TRL / tunebench time): step ${x(t.step / o.step)}, generation ${x(t.generation / o.generation)}, training ${x(t.training / o.training)}, other ${x((t.step - t.generation - t.training) / (o.step - o.generation - o.training))}`)
  const paired = (k: keyof Summary) => {
    const v = runs.map((r) => r.trl[k] / r.ours[k])
    return `${x(median(v))} (${x(Math.min(...v))}-${x(Math.max(...v))})`
  }
  console.log(`paired (median of ${runs.length} back-to-back runs): step ${paired('step')}, generation ${paired('generation')}, training ${paired('training')}`)
  console.log('(figures depend on other load on the machine; the paired median is the steadier comparison)')
}

main().catch((err: unknown) => {
  console.error(err)
  process.exit(1)
})
