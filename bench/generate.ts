// Generation throughput: the native engine's KV-cache decoding against transformers' generate()
// on the CPU, same checkpoint, same prompts, same threads, greedy with no eos, each side in its
// own process. Prefill tokens/s = batch x prompt / time(max_new_tokens 1); decode tokens/s =
// batch x D / (time(1 + D) - time(1)). For batch 1, the fraction of the measured memory
// bandwidth the decode reaches: f32 weight bytes read per token (every weight but the input
// embedding table, of which one row is read) x tokens/s / GB/s of summing a 1 GiB array.
//   node --import tsx bench/generate.ts [--quick] [--qwen3] [--threads N] [--repeat N]
// The bench shape is bench/engine.ts's (hidden 512, 8 layers, vocabulary 32k; --quick: its
// small one); --qwen3 adds a random checkpoint of Qwen3-0.6B's shape (2.4 GB in f32).
import { spawnSync } from 'node:child_process'
import { existsSync, mkdirSync, readFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { argv, flag } from './args'

const quick = argv.includes('--quick')
const threads = Number(flag('--threads', '2'))
const repeat = Number(flag('--repeat', '2'))
const python = process.env.TUNEBENCH_PYTHON ?? 'python3'
const here = fileURLToPath(import.meta.url)

interface Timing { prefill_s: number; total_s: number }

/** Best-of-`reps` seconds of the engine's generate at max_new_tokens 1 and 1 + decode. */
async function ours(dir: string, batch: number, prompt: number, decode: number, reps: number): Promise<void> {
  const { Model } = await import('../native/index')
  const m = await Model.load(dir, { threads })
  let s = 1
  const prompts = Array.from({ length: batch }, () => Int32Array.from({ length: prompt }, () => ((s = (s * 48271) % 2147483647), s % m.config.vocab)))
  const timed = async (n: number): Promise<number> => {
    const t0 = performance.now()
    const rows = await m.generate(prompts, { temperature: 0, topK: 0, topP: 1, minP: 0, repetitionPenalty: 1, maxNewTokens: n, eosIds: [], seeds: prompts.map((_, i) => i) })
    if (rows.some((r) => r.tokens.length !== n)) throw new Error('a row ended early')
    return (performance.now() - t0) / 1000
  }
  await timed(2)
  let prefill = Infinity, total = Infinity
  for (let i = 0; i < reps; i++) prefill = Math.min(prefill, await timed(1))
  for (let i = 0; i < reps; i++) total = Math.min(total, await timed(1 + decode))
  console.log(JSON.stringify({ prefill_s: prefill, total_s: total }))
  m.dispose()
}

function lastJson<T>(out: string): T {
  const line = out.trim().split('\n').filter((l) => l.startsWith('{')).pop()
  if (!line) throw new Error(`no result in:\n${out}`)
  return JSON.parse(line) as T
}

function runSide(args: string[], node: boolean): Timing {
  const env = { ...process.env, OMP_NUM_THREADS: String(threads) }
  const r = node
    ? spawnSync(process.execPath, ['--import', 'tsx', here, '--ours', ...args], { encoding: 'utf8', env, maxBuffer: 16 << 20 })
    : spawnSync(python, [join(import.meta.dirname, 'generate_torch.py'), 'run', args[0]!, String(threads), ...args.slice(1), String(repeat)], { encoding: 'utf8', env, maxBuffer: 16 << 20 })
  if (r.status !== 0) throw new Error(`${node ? 'engine' : 'transformers'} run failed:\n${r.stderr}`)
  return lastJson<Timing>(r.stdout)
}

/** f32 bytes of the weights a batch-1 decode step reads. */
function weightBytes(dir: string): number {
  const c = JSON.parse(readFileSync(join(dir, 'config.json'), 'utf8')) as Record<string, number | boolean>
  const C = c.hidden_size as number, I = c.intermediate_size as number, L = c.num_hidden_layers as number, V = c.vocab_size as number
  const H = c.num_attention_heads as number, KV = c.num_key_value_heads as number
  const D = (c.head_dim as number | undefined) ?? C / H
  const layer = C * H * D + 2 * C * KV * D + H * D * C + 3 * C * I + 2 * C
  return 4 * (L * layer + C + V * C) // + lm_head (the embedding when tied); the embedding table itself: one row
}

function checkpoint(size: 'quick' | 'full' | 'qwen3'): string {
  const dir = join(tmpdir(), size === 'qwen3' ? 'tunebench-bench-qwen3-0.6b' : `tunebench-bench-${size}`)
  if (!existsSync(join(dir, 'model.safetensors'))) {
    mkdirSync(dir, { recursive: true })
    const r = size === 'qwen3'
      ? spawnSync(python, [join(import.meta.dirname, 'generate_torch.py'), 'make-qwen3', dir], { stdio: 'inherit' })
      : spawnSync(python, [join(import.meta.dirname, 'engine_torch.py'), 'make', dir, size], { stdio: 'inherit' })
    if (r.status !== 0) throw new Error('making the bench checkpoint failed')
  }
  return dir
}

const f = (x: number, d = 0): string => x.toLocaleString('en-US', { maximumFractionDigits: d, minimumFractionDigits: d })

async function main(): Promise<void> {
  if (argv[0] === '--ours') return ours(argv[1]!, Number(argv[2]), Number(argv[3]), Number(argv[4]), Number(argv[5]))
  const shapes: { name: string; dir: string; prompt: number; decode: number }[] = [
    quick ? { name: 'bench shape (quick)', dir: checkpoint('quick'), prompt: 64, decode: 32 }
      : { name: 'bench shape', dir: checkpoint('full'), prompt: 128, decode: 64 }
  ]
  if (argv.includes('--qwen3')) shapes.push({ name: 'Qwen3-0.6B shape', dir: checkpoint('qwen3'), prompt: 128, decode: 16 })
  const bw = spawnSync(python, [join(import.meta.dirname, 'generate_torch.py'), 'bandwidth', String(threads)], { encoding: 'utf8' })
  if (bw.status !== 0) throw new Error(`bandwidth failed:\n${bw.stderr}`)
  const { numpy_gbs, torch_gbs } = lastJson<{ numpy_gbs: number; torch_gbs: number }>(bw.stdout)
  const gbs = Math.max(numpy_gbs, torch_gbs)
  console.log(`threads ${threads}, best of ${repeat}; memory bandwidth (sum of 1 GiB f32): numpy ${f(numpy_gbs, 1)} GB/s, torch ${f(torch_gbs, 1)} GB/s`)
  for (const s of shapes) {
    const bytes = weightBytes(s.dir)
    console.log(`\n${s.name}: prompt ${s.prompt}, decode ${s.decode} tokens, ${f(bytes / 1e6)} MB of f32 weights read per decode step`)
    console.log('batch  side          prefill tok/s  decode tok/s  decode GB/s of weights (batch 1)')
    for (const batch of [1, 8]) {
      const args = [s.dir, String(batch), String(s.prompt), String(s.decode)]
      const eng = runSide([...args, String(repeat)], true)
      const hf = runSide(args, false)
      const rate = (t: Timing) => ({ prefill: (batch * s.prompt) / t.prefill_s, decode: (batch * s.decode) / (t.total_s - t.prefill_s) })
      const e = rate(eng), h = rate(hf)
      for (const [side, r] of [['tunebench', e], ['transformers', h]] as const) {
        const gb = batch === 1 ? `${f((bytes * r.decode) / 1e9, 1)} GB/s = ${f((100 * bytes * r.decode) / 1e9 / gbs)}% of measured` : ''
        console.log(`${String(batch).padEnd(6)} ${side.padEnd(13)} ${f(r.prefill).padStart(13)}  ${f(r.decode, 1).padStart(12)}  ${gb}`)
      }
      console.log(`${''.padEnd(6)} ratio         ${(f(e.prefill / h.prefill, 2) + 'x').padStart(13)}  ${(f(e.decode / h.decode, 2) + 'x').padStart(12)}`)
    }
  }
}

main().catch((err: unknown) => {
  console.error(err)
  process.exit(1)
})
