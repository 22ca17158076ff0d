// Generation throughput: the native engine's KV-cache decoding against transformers' generate()
// on the CPU, same checkpoint, same prompts, same threads, greedy with no eos, each side in its
// own process. Prefill tokens/s = batch x prompt / time(max_new_tokens 1); decode tokens/s =
// batch x D / (time(1 + D) - time(1)). For batch 1, the fraction of the measured memory
// bandwidth the decode reaches: f32 weight bytes read per token (every weight but the input
// embedding table, of which one row is read) x tokens/s / GB/s of summing a 1 GiB array.
//   node --import tsx bench/generate.ts [--quick] [--qwen3] [--threads N] [--repeat N] [--gguf f32,f16,q8_0] [--precision bf16]
// --precision bf16: the engine in precision bf16 (its weights rounded to bf16 once) against
// transformers with the model loaded in bfloat16, and llama.cpp on the f16 GGUF by default; the
// bandwidth fraction then counts 2 bytes per weight.
// The bench shape is bench/engine.ts's (hidden 512, 8 layers, vocabulary 32k; --quick: its
// small one); --qwen3 adds a random checkpoint of Qwen3-0.6B's shape (2.4 GB in f32).
// At batch 1, llama.cpp (node-llama-cpp's prebuilt CPU build) decodes our own f32 GGUF export
// of the same checkpoint (`tunebench export --format gguf --dtype f32`) as a third side: the
// best CPU inference engine is the mark to reach. The checkpoint gets a byte-level tokenizer
// of its vocabulary size for the GGUF (the prompts are token ids, so its merges do not matter).
import { spawnSync } from 'node:child_process'
import { existsSync, mkdirSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { argv, flag } from './args'

const quick = argv.includes('--quick')
const threads = Number(flag('--threads', '2'))
const repeat = Number(flag('--repeat', '2'))
// llama.cpp's side: our f32 GGUF (the same numbers as the engine) and, for the mark to reach,
// its 16- and 8-bit paths on our f16 / q8_0 exports (--gguf f32,f16,q8_0).
const precisionFlag = flag('--precision', 'f32')
if (precisionFlag !== 'f32' && precisionFlag !== 'bf16') throw new Error(`--precision: f32 or bf16, got ${precisionFlag}`)
const precision: 'f32' | 'bf16' = precisionFlag
const ggufDtypes = flag('--gguf', precision === 'bf16' ? 'f16' : 'f32').split(',').map((d) => {
  if (d !== 'f32' && d !== 'f16' && d !== 'q8_0') throw new Error(`--gguf: f32, f16 or q8_0, got ${d}`)
  return d
})
const python = process.env.TUNEBENCH_PYTHON ?? 'python3'
const here = fileURLToPath(import.meta.url)

interface Timing { prefill_s: number; total_s: number }

/** After a warm-up, the best of `reps` timings of 1 new token (prefill) and of 1 + decode. */
async function bestOf(timed: (tokens: number) => Promise<number>, decode: number, reps: number): Promise<Timing> {
  await timed(2)
  let prefill = Infinity, total = Infinity
  for (let i = 0; i < reps; i++) prefill = Math.min(prefill, await timed(1))
  for (let i = 0; i < reps; i++) total = Math.min(total, await timed(1 + decode))
  return { prefill_s: prefill, total_s: total }
}

/** Best-of-`reps` seconds of the engine's generate at max_new_tokens 1 and 1 + decode. */
async function ours(dir: string, batch: number, prompt: number, decode: number, reps: number): Promise<void> {
  const { Model } = await import('../native/index')
  const m = await Model.load(dir, { threads, precision })
  let s = 1
  const prompts = Array.from({ length: batch }, () => Int32Array.from({ length: prompt }, () => ((s = (s * 48271) % 2147483647), s % m.config.vocab)))
  const timed = async (n: number): Promise<number> => {
    const t0 = performance.now()
    const rows = await m.generate(prompts, { temperature: 0, topK: 0, topP: 1, minP: 0, repetitionPenalty: 1, maxNewTokens: n, eosIds: [], seeds: prompts.map((_, i) => i) })
    if (rows.some((r) => r.tokens.length !== n)) throw new Error('a row ended early')
    return (performance.now() - t0) / 1000
  }
  console.log(JSON.stringify(await bestOf(timed, decode, reps)))
  m.dispose()
}

/** Best-of-`reps` seconds of llama.cpp's greedy decoding of the GGUF at batch 1. */
async function llamacpp(gguf: string, prompt: number, decode: number, reps: number): Promise<void> {
  const { getLlama } = await import('node-llama-cpp')
  const llama = await getLlama({ gpu: false, build: 'never', logLevel: 'error' as never })
  const model = await llama.loadModel({ modelPath: gguf })
  const ctx = await model.createContext({ contextSize: prompt + decode + 16, batchSize: prompt, threads: { ideal: threads, min: threads } })
  const seq = ctx.getSequence()
  // The same prompt ids as the engine's side (the checkpoint folder holds gguf-<dtype>/model.gguf).
  const { vocab_size: vocab } = JSON.parse(readFileSync(join(dirname(dirname(gguf)), 'config.json'), 'utf8')) as { vocab_size: number }
  let s = 1
  const tokens = Array.from({ length: prompt }, () => ((s = (s * 48271) % 2147483647), s % vocab)) as never[]
  const timed = async (n: number): Promise<number> => {
    await seq.clearHistory()
    const t0 = performance.now()
    let k = 0
    for await (const _ of seq.evaluate(tokens, { temperature: 0 })) if (++k >= n) break
    if (k !== n) throw new Error(`llama.cpp stopped after ${k} of ${n} tokens`)
    return (performance.now() - t0) / 1000
  }
  console.log(JSON.stringify(await bestOf(timed, decode, reps)))
  await ctx.dispose()
  await model.dispose()
}

/** A byte-level BPE tokenizer of `vocab` tokens (the 256 bytes, then two-byte fillers) for a bench
 *  checkpoint that has none, so that its GGUF carries a vocabulary of the right size. */
function ensureTokenizer(dir: string, vocab: number): void {
  if (existsSync(join(dir, 'tokenizer.json'))) return
  const bytes: number[] = []
  for (let b = 33; b <= 126; b++) bytes.push(b)
  for (let b = 161; b <= 172; b++) bytes.push(b)
  for (let b = 174; b <= 255; b++) bytes.push(b)
  const chars = new Map<number, string>(bytes.map((b) => [b, String.fromCodePoint(b)]))
  let extra = 0
  for (let b = 0; b < 256; b++) if (!chars.has(b)) chars.set(b, String.fromCodePoint(256 + extra++))
  const entries: [string, number][] = [...Array(256).keys()].map((b) => [chars.get(b)!, b])
  // the fillers: two-byte tokens, each made by one merge
  const merges: string[] = []
  for (let i = 256; i < vocab - 1; i++) {
    const a = chars.get(((i - 256) >> 8) & 255)!, b = chars.get((i - 256) & 255)!
    entries.push([a + b, i])
    merges.push(`${a} ${b}`)
  }
  entries.push(['<|endoftext|>', vocab - 1])
  writeFileSync(join(dir, 'tokenizer.json'), JSON.stringify({
    version: '1.0', truncation: null, padding: null,
    added_tokens: [{ id: vocab - 1, content: '<|endoftext|>', single_word: false, lstrip: false, rstrip: false, normalized: false, special: true }],
    normalizer: null, pre_tokenizer: { type: 'ByteLevel', add_prefix_space: false, trim_offsets: false, use_regex: true },
    post_processor: null, decoder: { type: 'ByteLevel', add_prefix_space: false, trim_offsets: false, use_regex: true },
    model: { type: 'BPE', dropout: null, unk_token: null, continuing_subword_prefix: null, end_of_word_suffix: null, fuse_unk: false, byte_fallback: false, ignore_merges: false, vocab: Object.fromEntries(entries), merges }
  }))
  writeFileSync(join(dir, 'tokenizer_config.json'), JSON.stringify({ eos_token: '<|endoftext|>', bos_token: null, add_bos_token: false, tokenizer_class: 'PreTrainedTokenizerFast' }))
}

/** Our GGUF of the checkpoint in `dtype`, made once. */
async function ggufOf(dir: string, dtype: 'f32' | 'f16' | 'q8_0'): Promise<string> {
  const folder = join(dir, `gguf-${dtype}`)
  const file = join(folder, 'model.gguf')
  if (existsSync(file)) return file
  const c = JSON.parse(readFileSync(join(dir, 'config.json'), 'utf8')) as { vocab_size: number }
  ensureTokenizer(dir, c.vocab_size)
  const { exportModel } = await import('../main/services/export/index')
  const staging = `${folder}.tmp-${process.pid}`
  rmSync(staging, { recursive: true, force: true })
  await exportModel({ format: 'gguf', model: dir, out: staging, dtype })
  renameSync(staging, folder)
  return file
}

/** Bytes per weight of each GGUF dtype relative to f32 (Q8_0: 34 bytes per 32 weights). */
const GGUF_BYTES: Record<string, number> = { f32: 1, f16: 0.5, q8_0: 34 / 32 / 4 }

function lastJson<T>(out: string): T {
  const line = out.trim().split('\n').filter((l) => l.startsWith('{')).pop()
  if (!line) throw new Error(`no result in:\n${out}`)
  return JSON.parse(line) as T
}

type Side = 'tunebench' | 'transformers' | 'llama.cpp'

function runSide(args: string[], side: Side): Timing {
  const env = { ...process.env, OMP_NUM_THREADS: String(threads) }
  const opts = { encoding: 'utf8' as const, env, maxBuffer: 16 << 20 }
  const r = side === 'tunebench' ? spawnSync(process.execPath, ['--import', 'tsx', here, '--ours', ...args, '--precision', precision], opts)
    : side === 'llama.cpp' ? spawnSync(process.execPath, ['--import', 'tsx', here, '--llamacpp', ...args], opts)
    : spawnSync(python, [join(import.meta.dirname, 'generate_torch.py'), 'run', args[0]!, String(threads), ...args.slice(1), String(repeat), precision], opts)
  if (r.status !== 0) throw new Error(`${side} run failed:\n${r.stderr}`)
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
  if (argv[0] === '--llamacpp') return llamacpp(argv[1]!, Number(argv[3]), Number(argv[4]), Number(argv[5]))
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
    const own = precision === 'bf16' ? 0.5 : 1 // the engine's and transformers' bytes per weight relative to f32
    console.log(`\n${s.name}: prompt ${s.prompt}, decode ${s.decode} tokens, ${f((bytes * own) / 1e6)} MB of ${precision} weights read per decode step`)
    console.log('batch  side            prefill tok/s  decode tok/s  decode GB/s of weights read (batch 1)')
    const ggufs = await Promise.all(ggufDtypes.map(async (d) => ({ dtype: d, file: await ggufOf(s.dir, d) })))
    for (const batch of [1, 8]) {
      const args = [s.dir, String(batch), String(s.prompt), String(s.decode)]
      const rate = (t: Timing) => ({ prefill: (batch * s.prompt) / t.prefill_s, decode: (batch * s.decode) / (t.total_s - t.prefill_s) })
      const e = rate(runSide([...args, String(repeat)], 'tunebench'))
      const h = rate(runSide(args, 'transformers'))
      // llama.cpp decodes one sequence per context here: batch 1 only.
      const ls = batch === 1 ? ggufs.map((g) => ({ ...g, r: rate(runSide([g.file, ...args.slice(1), String(repeat)], 'llama.cpp')) })) : []
      const rows: [string, { prefill: number; decode: number }, number][] = [['tunebench', e, own], ['transformers', h, own], ...ls.map((l) => [`llama.cpp ${l.dtype}`, l.r, GGUF_BYTES[l.dtype]!] as [string, { prefill: number; decode: number }, number])]
      for (const [side, r, scale] of rows) {
        const gb = batch === 1 ? `${f((bytes * scale * r.decode) / 1e9, 1)} GB/s = ${f((100 * bytes * scale * r.decode) / 1e9 / gbs)}% of measured` : ''
        console.log(`${String(batch).padEnd(6)} ${side.padEnd(15)} ${f(r.prefill).padStart(11)}  ${f(r.decode, 1).padStart(12)}  ${gb}`)
      }
      console.log(`${''.padEnd(6)} vs transformers ${(f(e.prefill / h.prefill, 2) + 'x').padStart(11)}  ${(f(e.decode / h.decode, 2) + 'x').padStart(12)}`)
      for (const l of ls) console.log(`${''.padEnd(6)} vs llama.cpp ${l.dtype.padEnd(4)} ${(f(e.prefill / l.r.prefill, 2) + 'x').padStart(9)}  ${(f(e.decode / l.r.decode, 2) + 'x').padStart(12)}`)
    }
  }
}

main().catch((err: unknown) => {
  console.error(err)
  process.exit(1)
})
