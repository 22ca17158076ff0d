// LoRA forward+backward throughput and peak memory: Tunebench's native engine against
// PyTorch + PEFT on the CPU, same checkpoint, same batch, same threads. Each side runs in its
// own process so that peak RSS belongs to one engine only.
//   node --import tsx bench/engine.ts [--quick] [--threads N] [--iters N] [--repeat N] [--baseline DIR]
// --baseline DIR runs a second checkout of the project with its addon built (e.g. main before a
// change: `git worktree add DIR main`, then build it) in the same rounds, so that a change's
// effect on the ratio is measured under one machine state.
//
// Real model shapes, bf16 and f32 on both engines (four sides, each in its own process, run one
// after another, never two at once):
//   TUNEBENCH_PYTHON=.venv/bin/python node --import tsx bench/engine.ts --shape qwen3-0.6b
//   TUNEBENCH_PYTHON=.venv/bin/python node --import tsx bench/engine.ts --shape qwen3-1.7b --sides ours-bf16,ours-f32,torch-bf16
//   ... [--sides ours-bf16,ours-f32,torch-bf16,torch-f32] [--threads N] [--iters N] [--repeat N]
// --shape qwen3-0.6b / qwen3-1.7b: a Qwen3ForCausalLM of that model's shape (28 layers, 16/8
// heads, head_dim 128, vocab 151936, tied embeddings; hidden/intermediate 1024/3072 and
// 2048/6144), random weights written once by engine_torch.py in bfloat16 safetensors under
// the OS tmpdir (tunebench-bench-<shape>-bf16, 1.2 GB and 3.4 GB), batch 2 x 512 tokens, LoRA
// r16 on all projections, gradient checkpointing on both sides (the training default). Sides: ours-bf16 (Model.load precision 'bf16'), ours-f32 (precision
// 'f32'), torch-bf16 (PyTorch + PEFT, bf16 weights, f32 LoRA, torch.autocast bf16; see
// engine_torch.py), torch-f32 (weights loaded as float32). --sides picks some (torch-f32 at
// 1.7B takes long and ~2x the memory); --iters timed steps after one warm-up step (default 2),
// --repeat rounds (default 1). Prints s/step, tokens/s and peak RSS per side, and the ratios
// ours-bf16/torch-bf16, ours-bf16/torch-f32, ours-f32/torch-f32 (and ours-bf16/ours-f32).
// --dora (any form): DoRA (use_dora) instead of plain LoRA on both sides.
// --shape qwen3-moe: a Qwen3MoeForCausalLM of Qwen3-30B-A3B's proportions scaled down (8 sparse
// layers, 32 experts of which 4 per token, expert MLP 384, hidden 1024, vocab 32000; 0.4 B
// parameters, bf16 0.8 GB), LoRA on q,k,v,o on both sides (see engine_torch.py).
import { spawnSync } from 'node:child_process'
import { existsSync, mkdirSync, renameSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { argv, flag } from './args'

const quick = argv.includes('--quick')
const threads = Number(flag('--threads', '2'))
const iters = Number(flag('--iters', quick ? '3' : '2'))
// '' is the original bench (--quick or full, Llama shapes, f32, both engines).
const SHAPES = ['qwen3-0.6b', 'qwen3-1.7b', 'qwen3-moe'] as const
const shape = flag('--shape', '')
if (shape && !(SHAPES as readonly string[]).includes(shape)) throw new Error(`--shape ${shape}: one of ${SHAPES.join(', ')}`)
// qwen3-moe: LoRA on the attention projections on both sides (transformers 5 holds the experts as
// 3-D parameters, which PEFT's LoRA does not wrap as modules)
const moe = shape === 'qwen3-moe'
const targets = moe ? ['q', 'k', 'v', 'o'] as const : ['q', 'k', 'v', 'o', 'gate', 'up', 'down'] as const
const batch = shape ? 2 : quick ? 2 : 4
const seq = shape ? 512 : quick ? 128 : 256
const rank = 16
const dora = argv.includes('--dora')
const python = process.env.TUNEBENCH_PYTHON ?? 'python3'
const here = fileURLToPath(import.meta.url)

interface Result { seconds_per_step: number; cpu_seconds_per_step: number; tokens_per_s: number; peak_rss_mb: number }

async function ours(modelDir: string): Promise<void> {
  const { Model } = await import('../native/index')
  // --precision (the --shape runs): Model.load's precision; the shapes train as the Train page
  // does by default, with gradient checkpointing (both sides).
  const precision = flag('--precision', '') as '' | 'bf16' | 'f32'
  const m = await Model.load(modelDir, { threads, ...(precision ? { precision } : {}) })
  if (shape) m.setGradientCheckpointing(true)
  m.addLora({ rank, alpha: 2 * rank, dropout: 0, targets: [...targets], rslora: false, dora, seed: 1 })
  const V = m.config.vocab
  const ids = new Int32Array(batch * seq)
  let s = 1
  for (let i = 0; i < ids.length; i++) { s = (s * 48271) % 2147483647; ids[i] = s % V }
  const mask = new Uint8Array(batch * seq).fill(1)
  for (let b = 0; b < batch; b++) mask[b * seq] = 0
  const count = mask.reduce((a, v) => a + v, 0)
  const grad = Float32Array.from(mask, (v) => (v ? -1 / count : 0))
  const b = { ids, batch, seqLen: seq, lengths: new Int32Array(batch).fill(seq), mask }
  const step = async (): Promise<void> => {
    await m.logps(b, { adapters: true, train: true })
    await m.backward(grad)
    m.zeroGrad()
  }
  if (shape) {
    // The warm-up step, checked: random bf16 weights must give finite log-probs and gradients.
    const lp = await m.logps(b, { adapters: true, train: true })
    await m.backward(grad)
    const norm = m.gradNorm()
    m.zeroGrad()
    if (!lp.every(Number.isFinite) || !Number.isFinite(norm)) throw new Error(`non-finite log-probs or gradient norm (${norm})`)
  } else await step()
  const t0 = performance.now()
  const c0 = process.cpuUsage()
  for (let i = 0; i < iters; i++) await step()
  const dt = (performance.now() - t0) / 1000 / iters
  const cu = process.cpuUsage(c0)
  const cpu = (cu.user + cu.system) / 1e6 / iters
  const peak = process.resourceUsage().maxRSS / 1024
  const reported = shape ? { engine_precision: m.config.precision, checkpoint_dtype: m.config.dtype } : {}
  console.log(JSON.stringify({ seconds_per_step: dt, cpu_seconds_per_step: cpu, tokens_per_s: (batch * seq) / dt, peak_rss_mb: peak, ...reported }))
}

function lastJson(out: string): Result {
  const line = out.trim().split('\n').filter((l) => l.startsWith('{')).pop()
  if (!line) throw new Error(`no result in:\n${out}`)
  return JSON.parse(line) as Result
}

type Side = 'ours-bf16' | 'ours-f32' | 'torch-bf16' | 'torch-f32'
const SIDES: readonly Side[] = ['ours-bf16', 'ours-f32', 'torch-bf16', 'torch-f32']
const SIDE_NAMES: Record<Side, string> = {
  'ours-bf16': 'tunebench bf16         ',
  'ours-f32': 'tunebench f32          ',
  'torch-bf16': 'pytorch+peft bf16 autoc',
  'torch-f32': 'pytorch+peft f32       ',
}

/** --shape: the Qwen3-shaped checkpoint (bf16), made once; sides one after another. */
async function shapeBench(): Promise<void> {
  if (quick || argv.includes('--baseline')) throw new Error('--shape does not combine with --quick or --baseline')
  const sides = flag('--sides', SIDES.join(',')).split(',').map((x) => x.trim()).filter(Boolean)
  for (const x of sides) if (!(SIDES as readonly string[]).includes(x)) throw new Error(`--sides: unknown side '${x}' (${SIDES.join(', ')})`)
  const chosen = SIDES.filter((x) => sides.includes(x))
  const runs = Number(flag('--repeat', '1'))
  if (!(Number.isInteger(runs) && runs >= 1)) throw new Error('--repeat must be at least 1')
  const modelDir = join(tmpdir(), `tunebench-bench-${shape}-bf16`)
  if (!existsSync(join(modelDir, 'model.safetensors')) || !existsSync(join(modelDir, 'config.json'))) {
    // Written to a temporary folder and renamed, so that an interrupted write is not reused.
    const part = `${modelDir}.part-${process.pid}`
    rmSync(part, { recursive: true, force: true })
    mkdirSync(part, { recursive: true })
    console.log(`writing the ${shape} checkpoint (bf16) to ${modelDir}`)
    const r = spawnSync(python, [join(import.meta.dirname, 'engine_torch.py'), 'make', part, shape], { stdio: 'inherit' })
    if (r.status !== 0) throw new Error('making the bench checkpoint failed')
    rmSync(modelDir, { recursive: true, force: true })
    renameSync(part, modelDir)
  }
  const env = { ...process.env, OMP_NUM_THREADS: String(threads) }
  const passOn = ['--shape', shape, '--threads', String(threads), '--iters', String(iters), ...(dora ? ['--dora'] : [])]
  const runSide = (side: Side): Result | Error => {
    const r = side.startsWith('ours')
      ? spawnSync(process.execPath, ['--import', 'tsx', here, '--ours', modelDir, ...passOn, '--precision', side === 'ours-bf16' ? 'bf16' : 'f32'], { encoding: 'utf8', env })
      : spawnSync(python, [join(import.meta.dirname, 'engine_torch.py'), 'run', modelDir, String(threads), String(batch), String(seq), String(iters), String(rank),
        side === 'torch-bf16' ? 'bf16-autocast' : 'f32', 'checkpointing', dora ? 'dora' : 'lora'], { encoding: 'utf8', env })
    if (r.status !== 0) return new Error(`${side} failed (status ${r.status}, signal ${r.signal}):\n${r.stderr.slice(-4000)}`)
    try { return lastJson(r.stdout) } catch (e) { return e as Error }
  }
  const line = (name: string, r: Result): string =>
    `${name}: ${r.seconds_per_step.toFixed(2)} s/step wall, ${r.tokens_per_s.toFixed(1)} tokens/s, ${r.cpu_seconds_per_step.toFixed(2)} s/step CPU, peak RSS ${r.peak_rss_mb.toFixed(0)} MB`
  const best = new Map<Side, Result>()
  const failed = new Map<Side, Error>()
  const rounds: Map<Side, Result>[] = []
  console.log(`shape: ${shape} (bf16 checkpoint ${modelDir}; batch ${batch} x ${seq} tokens, LoRA r=${rank} on ${targets.join(',')}), threads ${threads}, ${iters} timed steps after 1 warm-up, ${runs} round(s), sides ${chosen.join(',')}`)
  for (let round = 0; round < runs; round++) {
    const got = new Map<Side, Result>()
    for (const side of chosen) {
      if (failed.has(side)) continue
      const r = runSide(side)
      if (r instanceof Error) { failed.set(side, r); console.log(`${SIDE_NAMES[side]}: FAILED\n${r.message}`); continue }
      got.set(side, r)
      const prev = best.get(side)
      if (!prev || r.seconds_per_step < prev.seconds_per_step) best.set(side, r)
      const extra = 'engine_precision' in r ? ` (precision ${String((r as Record<string, unknown>).engine_precision)})` : ''
      console.log(`${line(SIDE_NAMES[side], r)}   [round ${round + 1}]${extra}`)
    }
    rounds.push(got)
  }
  console.log(`--- best of ${runs} round(s) per side`)
  for (const side of chosen) {
    const r = best.get(side)
    console.log(r ? line(SIDE_NAMES[side], r) : `${SIDE_NAMES[side]}: failed`)
  }
  const ratio = (a: Side, b: Side, label: string): void => {
    const x = best.get(a)
    const y = best.get(b)
    if (!x || !y) return
    let s = `${label}: ${(x.tokens_per_s / y.tokens_per_s).toFixed(2)}x tokens/s (wall), ${(y.cpu_seconds_per_step / x.cpu_seconds_per_step).toFixed(2)}x less CPU time per step, ${(x.peak_rss_mb / y.peak_rss_mb).toFixed(2)}x peak memory`
    const pairs = rounds.filter((g) => g.has(a) && g.has(b)).map((g) => g.get(a)!.tokens_per_s / g.get(b)!.tokens_per_s).sort((p, q) => p - q)
    if (pairs.length > 1) {
      const median = pairs.length % 2 ? pairs[(pairs.length - 1) / 2] : (pairs[pairs.length / 2 - 1] + pairs[pairs.length / 2]) / 2
      s += `; ${median.toFixed(2)}x median of ${pairs.length} rounds (${pairs[0].toFixed(2)}x-${pairs[pairs.length - 1].toFixed(2)}x)`
    }
    console.log(s)
  }
  ratio('ours-bf16', 'torch-bf16', 'ours bf16 / torch bf16 autocast')
  ratio('ours-bf16', 'torch-f32', 'ours bf16 / torch f32          ')
  ratio('ours-f32', 'torch-f32', 'ours f32  / torch f32          ')
  ratio('ours-bf16', 'ours-f32', 'ours bf16 / ours f32           ')
  console.log('(figures depend on other load on the machine)')
  if (failed.size) process.exitCode = 1
}

async function main(): Promise<void> {
  if (argv[0] === '--ours') return ours(argv[1])
  if (shape) return shapeBench()
  const size = quick ? 'quick' : 'full'
  const modelDir = join(tmpdir(), `tunebench-bench-${size}`)
  if (!existsSync(join(modelDir, 'model.safetensors'))) {
    mkdirSync(modelDir, { recursive: true })
    const r = spawnSync(python, [join(import.meta.dirname, 'engine_torch.py'), 'make', modelDir, size], { stdio: 'inherit' })
    if (r.status !== 0) throw new Error('making the bench checkpoint failed')
  }
  const env = { ...process.env, OMP_NUM_THREADS: String(threads) }
  // The two engines alternate. Each keeps its best run, so that a burst of other load does not
  // decide the ratio; and each pair of back-to-back runs gives a ratio of its own, taken while
  // the machine was in one state, whose median is the steadier figure on a shared machine.
  const runs = Number(flag('--repeat', '2'))
  const baseline = argv.includes('--baseline') ? flag('--baseline', '') : ''
  const baselineBench = join(baseline, 'bench', 'engine.ts')
  if (baseline && !existsSync(join(baseline, 'native', 'build', 'Release', 'tunebench.node')))
    throw new Error(`--baseline: ${baseline} has no built addon (native/build/Release/tunebench.node)`)
  const oursArgs = argv.filter((a, i) => a !== '--baseline' && argv[i - 1] !== '--baseline')
  const runOurs = (bench: string): Result => {
    const a = spawnSync(process.execPath, ['--import', 'tsx', bench, '--ours', modelDir, ...oursArgs], { encoding: 'utf8', env })
    if (a.status !== 0) throw new Error(`native run failed:\n${a.stderr}`)
    return lastJson(a.stdout)
  }
  let native: Result | null = null
  let before: Result | null = null
  let torch: Result | null = null
  const pairs: number[] = []
  const beforePairs: number[] = []
  const changePairs: number[] = []
  const best = (a: Result | null, b: Result): Result => (a && a.seconds_per_step <= b.seconds_per_step ? a : b)
  for (let r = 0; r < runs; r++) {
    const n = runOurs(here)
    native = best(native, n)
    const o = baseline ? runOurs(baselineBench) : null
    if (o) before = best(before, o)
    const t = spawnSync(python, [join(import.meta.dirname, 'engine_torch.py'), 'run', modelDir, String(threads), String(batch), String(seq), String(iters), String(rank), 'f32', 'no', dora ? 'dora' : 'lora'], { encoding: 'utf8', env })
    if (t.status !== 0) throw new Error(`torch run failed:\n${t.stderr}`)
    const p = lastJson(t.stdout)
    torch = best(torch, p)
    pairs.push(n.tokens_per_s / p.tokens_per_s)
    if (o) beforePairs.push(o.tokens_per_s / p.tokens_per_s)
    if (o) changePairs.push(n.tokens_per_s / o.tokens_per_s)
  }
  if (!native || !torch) throw new Error('--repeat must be at least 1')
  console.log(`shape: ${size} (batch ${batch} x ${seq} tokens, ${dora ? 'DoRA' : 'LoRA'} r=${rank} on q,k,v,o,gate,up,down), threads ${threads}, ${iters} timed steps, best of ${runs} runs each`)
  const line = (name: string, r: Result): string =>
    `${name}: ${r.tokens_per_s.toFixed(1)} tokens/s, ${r.seconds_per_step.toFixed(3)} s/step wall, ${r.cpu_seconds_per_step.toFixed(3)} s/step CPU, peak RSS ${r.peak_rss_mb.toFixed(0)} MB`
  console.log(line('tunebench   ', native))
  console.log(line('pytorch+peft', torch))
  console.log(`ratio       : ${(native.tokens_per_s / torch.tokens_per_s).toFixed(2)}x tokens/s (wall), ${(torch.cpu_seconds_per_step / native.cpu_seconds_per_step).toFixed(2)}x less CPU time per step, ${(native.peak_rss_mb / torch.peak_rss_mb).toFixed(2)}x peak memory`)
  const paired = (name: string, ratios: number[]): void => {
    ratios.sort((x, y) => x - y)
    const median = ratios.length % 2 ? ratios[(ratios.length - 1) / 2] : (ratios[ratios.length / 2 - 1] + ratios[ratios.length / 2]) / 2
    console.log(`${name}: ${median.toFixed(2)}x tokens/s median of ${ratios.length} back-to-back pairs (${ratios[0].toFixed(2)}x-${ratios[ratios.length - 1].toFixed(2)}x)`)
  }
  paired('paired      ', pairs)
  if (before) {
    console.log(line('baseline    ', before))
    console.log(`baseline    : ${(before.tokens_per_s / torch.tokens_per_s).toFixed(2)}x tokens/s (wall) against pytorch+peft (${baseline})`)
    paired('paired base ', beforePairs)
    paired('this / base ', changePairs)
  }
  console.log('(figures depend on other load on the machine; the paired median is the steadier comparison)')
}

await main()
