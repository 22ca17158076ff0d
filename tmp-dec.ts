import { Model } from '/work/main/native/index'
const batch = Number(process.argv[2] ?? 1), n = Number(process.argv[3] ?? 200)
const m = await Model.load('/tmp/tunebench-bench-full', { threads: Number(process.env.T ?? 2) })
let s = 1
const prompts = Array.from({ length: batch }, () => Int32Array.from({ length: 128 }, () => ((s = (s * 48271) % 2147483647), s % 32000)))
const run = async (k: number) => { const t0 = performance.now(); await m.generate(prompts, { temperature: 0, topK: 0, topP: 1, minP: 0, repetitionPenalty: 1, maxNewTokens: k, eosIds: [], seeds: prompts.map((_, i) => i) }); return (performance.now() - t0) / 1000 }
await run(2)
const a = await run(1), b = await run(1 + n)
console.log(`batch ${batch}: prefill ${(a*1000).toFixed(1)} ms, decode ${(batch * n / (b - a)).toFixed(1)} tok/s, ${((b - a) / n * 1000).toFixed(2)} ms/step`)
