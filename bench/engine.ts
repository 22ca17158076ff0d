// LoRA forward+backward throughput and peak memory: Tunebench's native engine against
// PyTorch + PEFT on the CPU, same checkpoint, same batch, same threads. Each side runs in its
// own process so that peak RSS belongs to one engine only.
//   node --import tsx bench/engine.ts [--quick] [--threads N] [--iters N] [--repeat N] [--baseline DIR]
// --baseline DIR runs a second checkout of the project with its addon built (e.g. main before a
// change: `git worktree add DIR main`, then build it) in the same rounds, so that a change's
// effect on the ratio is measured under one machine state.
import { spawnSync } from 'node:child_process'
import { existsSync, mkdirSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { argv, flag } from './args'

const quick = argv.includes('--quick')
const threads = Number(flag('--threads', '2'))
const iters = Number(flag('--iters', quick ? '3' : '2'))
const batch = quick ? 2 : 4
const seq = quick ? 128 : 256
const rank = 16
const python = process.env.TUNEBENCH_PYTHON ?? 'python3'
const here = fileURLToPath(import.meta.url)

interface Result { seconds_per_step: number; cpu_seconds_per_step: number; tokens_per_s: number; peak_rss_mb: number }

async function ours(modelDir: string): Promise<void> {
  const { Model } = await import('../native/index')
  const m = await Model.load(modelDir, { threads })
  m.addLora({ rank, alpha: 2 * rank, dropout: 0, targets: ['q', 'k', 'v', 'o', 'gate', 'up', 'down'], rslora: false, seed: 1 })
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
  await step()
  const t0 = performance.now()
  const c0 = process.cpuUsage()
  for (let i = 0; i < iters; i++) await step()
  const dt = (performance.now() - t0) / 1000 / iters
  const cu = process.cpuUsage(c0)
  const cpu = (cu.user + cu.system) / 1e6 / iters
  const peak = process.resourceUsage().maxRSS / 1024
  console.log(JSON.stringify({ seconds_per_step: dt, cpu_seconds_per_step: cpu, tokens_per_s: (batch * seq) / dt, peak_rss_mb: peak }))
}

function lastJson(out: string): Result {
  const line = out.trim().split('\n').filter((l) => l.startsWith('{')).pop()
  if (!line) throw new Error(`no result in:\n${out}`)
  return JSON.parse(line) as Result
}

async function main(): Promise<void> {
  if (argv[0] === '--ours') return ours(argv[1])
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
    const t = spawnSync(python, [join(import.meta.dirname, 'engine_torch.py'), 'run', modelDir, String(threads), String(batch), String(seq), String(iters), String(rank)], { encoding: 'utf8', env })
    if (t.status !== 0) throw new Error(`torch run failed:\n${t.stderr}`)
    const p = lastJson(t.stdout)
    torch = best(torch, p)
    pairs.push(n.tokens_per_s / p.tokens_per_s)
    if (o) beforePairs.push(o.tokens_per_s / p.tokens_per_s)
    if (o) changePairs.push(n.tokens_per_s / o.tokens_per_s)
  }
  if (!native || !torch) throw new Error('--repeat must be at least 1')
  console.log(`shape: ${size} (batch ${batch} x ${seq} tokens, LoRA r=${rank} on q,k,v,o,gate,up,down), threads ${threads}, ${iters} timed steps, best of ${runs} runs each`)
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
