// The merged and PEFT exports: transformers loads the merged folder as it is and its log-probs
// equal our engine's base + adapter; PEFT's own merge_and_unload gives the same tensors (f32:
// within float rounding; bf16: within one unit in the last place, since PEFT rounds the delta to
// bf16 before adding it and we round the f32 sum once); sharded folders, full fine-tuning runs,
// refusals and an interrupted export that leaves nothing under a final name. Qwen3-MoE: PEFT's
// per-expert LoRA folded into per-expert or fused experts, written in the base's layout, which
// transformers loads; its log-probs (ours and transformers') equal base + adapter (ours and
// PEFT's); a full fine-tuning run's per-expert weights go into a fused base's slices.
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, test } from 'vitest'
import { exportModel } from '../../main/services/export/index'
import { vllmWarnings } from '../../main/services/export/vllm'
import { encodeSafetensors, readSafetensors, writeTinyModel } from './engine-fixture'
import { writeByteLevelTokenizer } from './generation-fixture'
import { engineBuilt, runPython, runPythonJsonAsync, torchAvailable } from './trainingPython'

const root = join(import.meta.dirname, '..', '..')
const run = torchAvailable('merged export tests') && engineBuilt('merged export tests')
const tmp = mkdtempSync(join(tmpdir(), 'tunebench-export-merged-'))
afterAll(() => rmSync(tmp, { recursive: true, force: true }))

const IDS = [[1, 5, 9, 13, 2, 40, 33, 7, 60, 11], [3, 62, 17, 17, 29, 4]]

interface Ref { logps: number[][]; peft_logps?: number[][]; dtypes: Record<string, string>; merge?: { max_abs: number; max_ulps: number; missing: string[] } }

async function engineLogps(model: string, adapter?: string): Promise<number[][]> {
  const { Model } = await import('../../native/index')
  // f32 precision: the references run transformers in float32 on the same (16-bit) weights
  const m = await Model.load(model, { threads: 1, precision: 'f32' })
  try {
    if (adapter) await m.loadAdapter(adapter)
    const out: number[][] = []
    for (const row of IDS) {
      const lp = await m.logps({ ids: Int32Array.from(row), batch: 1, seqLen: row.length, lengths: Int32Array.of(row.length), mask: new Uint8Array(row.length).fill(1, 1) }, { adapters: !!adapter, train: false })
      out.push([...lp.subarray(1)])
    }
    return out
  } finally {
    m.dispose()
  }
}

function maxDiff(a: number[][], b: number[][]): number {
  let d = 0
  a.forEach((row, i) => row.forEach((v, j) => (d = Math.max(d, Math.abs(v - b[i]![j]!)))))
  return d
}

/** The tiny model's config.json with what transformers needs to pick the class (and a dtype). */
function patchConfig(dir: string, extra: Record<string, unknown>): void {
  const cfg = JSON.parse(readFileSync(join(dir, 'config.json'), 'utf8'))
  writeFileSync(join(dir, 'config.json'), JSON.stringify({ ...cfg, ...extra }, null, 2))
}

async function makeAdapter(model: string, out: string, extra: string[] = []): Promise<string> {
  await runPython([join(root, 'tests/python/train_make_adapter.py'), model, out, '--rank', '4', '--alpha', '8', '--seed', '2', ...extra])
  return out
}

describe.skipIf(!run)('merged export', () => {
  const llama = join(tmp, 'llama')
  const qwen3 = join(tmp, 'qwen3-bf16')
  let llamaAdapter = ''
  let qwenAdapter = ''
  beforeAll(async () => {
    writeTinyModel(llama, { architecture: 'LlamaForCausalLM', seed: 5 })
    patchConfig(llama, { model_type: 'llama' })
    writeByteLevelTokenizer(llama)
    writeFileSync(join(llama, 'generation_config.json'), JSON.stringify({ eos_token_id: 2, do_sample: false }))
    writeTinyModel(qwen3, { architecture: 'Qwen3ForCausalLM', tied: true, seed: 6 }, 'BF16')
    patchConfig(qwen3, { model_type: 'qwen3', torch_dtype: 'bfloat16' })
    llamaAdapter = await makeAdapter(llama, join(tmp, 'llama-adapter'))
    qwenAdapter = await makeAdapter(qwen3, join(tmp, 'qwen3-adapter'), ['--rslora'])
  }, 120_000)

  test('f32 Llama: transformers loads the folder; log-probs equal base + adapter; tensors equal PEFT merge_and_unload', async () => {
    const out = join(tmp, 'out-llama')
    const res = await exportModel({ format: 'merged', adapter: llamaAdapter, model: llama, out })
    expect(res.files.map((f) => f.name)).toEqual(['model.safetensors', 'config.json', 'generation_config.json', 'tokenizer.json', 'tokenizer_config.json'])
    expect(readFileSync(join(out, 'tokenizer.json'))).toEqual(readFileSync(join(llama, 'tokenizer.json')))
    expect(JSON.parse(readFileSync(join(out, 'config.json'), 'utf8')).torch_dtype).toBe('float32')
    const ref = await runPythonJsonAsync<Ref>('export_merged_ref.py', { merged: out, ids: IDS, base: llama, adapter: llamaAdapter })
    expect(new Set(Object.values(ref.dtypes))).toEqual(new Set(['float32']))
    expect(maxDiff(ref.logps, ref.peft_logps!)).toBeLessThan(1e-4)
    expect(ref.merge!.missing).toEqual([])
    expect(ref.merge!.max_abs).toBeLessThan(1e-6)
    const ours = await engineLogps(llama, llamaAdapter)
    expect(maxDiff(ref.logps, ours)).toBeLessThan(1e-4)
    // and the adapter did change the model, so the comparison above is not base vs base
    expect(maxDiff(await engineLogps(llama), ours)).toBeGreaterThan(1e-3)
    expect(maxDiff(await engineLogps(out), ours)).toBeLessThan(1e-5)
  }, 120_000)

  test('bf16 Qwen3 (tied, rsLoRA): written in bf16, within one bf16 ulp of PEFT; transformers = our engine on it', async () => {
    const out = join(tmp, 'out-qwen3')
    await exportModel({ format: 'merged', adapter: qwenAdapter, model: qwen3, out })
    expect(JSON.parse(readFileSync(join(out, 'config.json'), 'utf8')).torch_dtype).toBe('bfloat16')
    const ref = await runPythonJsonAsync<Ref>('export_merged_ref.py', { merged: out, ids: IDS, base: qwen3, adapter: qwenAdapter })
    expect(new Set(Object.values(ref.dtypes))).toEqual(new Set(['bfloat16']))
    expect(Object.keys(ref.dtypes)).not.toContain('lm_head.weight')
    expect(ref.merge!.max_ulps).toBeLessThanOrEqual(1)
    expect(maxDiff(ref.logps, await engineLogps(out))).toBeLessThan(1e-4)
    // rsLoRA's scale (alpha/sqrt(r)) was used: the merged model matches base + adapter in bf16 rounding
    expect(maxDiff(await engineLogps(out), await engineLogps(qwen3, qwenAdapter))).toBeLessThan(0.05)
  }, 120_000)

  test('DoRA: W\' = m / ‖W + s·B·A‖ · (W + s·B·A) per output row, as PEFT merges and applies it', async () => {
    const dora = await makeAdapter(llama, join(tmp, 'llama-dora'), ['--dora'])
    const out = join(tmp, 'out-dora')
    await exportModel({ format: 'merged', adapter: dora, model: llama, out })
    const ref = await runPythonJsonAsync<Ref>('export_merged_ref.py', { merged: out, ids: IDS, base: llama, adapter: dora })
    expect(ref.merge!.max_abs).toBeLessThan(1e-6)
    expect(maxDiff(ref.logps, ref.peft_logps!)).toBeLessThan(1e-4)
    // the same tensors without use_dora are refused, and the adapter did change the model
    const plain = join(tmp, 'llama-dora-as-lora')
    mkdirSync(plain)
    const config = JSON.parse(readFileSync(join(dora, 'adapter_config.json'), 'utf8'))
    writeFileSync(join(plain, 'adapter_config.json'), JSON.stringify({ ...config, use_dora: false }))
    writeFileSync(join(plain, 'adapter_model.safetensors'), readFileSync(join(dora, 'adapter_model.safetensors')))
    await expect(exportModel({ format: 'merged', adapter: plain, model: llama, out: join(tmp, 'none') })).rejects.toThrow(/is a DoRA magnitude but adapter_config\.json does not set use_dora/)
    expect(maxDiff(ref.logps, await engineLogps(llama))).toBeGreaterThan(1e-3)
    await expect(exportModel({ format: 'gguf-lora', adapter: dora, model: llama, out: join(tmp, 'none') })).rejects.toThrow(/llama\.cpp applies W \+ \(alpha\/r\)·B·A only and has no DoRA magnitude; export the merged model instead/)
  }, 120_000)

  test('sharded past the size limit, with model.safetensors.index.json, and --dtype f16', async () => {
    const out = join(tmp, 'out-sharded')
    const res = await exportModel({ format: 'merged', adapter: llamaAdapter, model: llama, out, maxShardBytes: 20_000, dtype: 'f16' })
    const shards = res.files.map((f) => f.name).filter((n) => n.endsWith('.safetensors'))
    expect(shards.length).toBeGreaterThan(2)
    expect(shards[0]).toMatch(/^model-00001-of-000\d\d\.safetensors$/)
    const index = JSON.parse(readFileSync(join(out, 'model.safetensors.index.json'), 'utf8'))
    expect(new Set(Object.values(index.weight_map))).toEqual(new Set(shards))
    const ref = await runPythonJsonAsync<Ref>('export_merged_ref.py', { merged: out, ids: IDS })
    expect(new Set(Object.values(ref.dtypes))).toEqual(new Set(['float16']))
    expect(maxDiff(ref.logps, await engineLogps(out))).toBeLessThan(1e-4)
    expect(maxDiff(ref.logps, await engineLogps(llama, llamaAdapter))).toBeLessThan(0.02)
  }, 120_000)

  test("a full fine-tuning run's trained weights, from its run folder", async () => {
    const { Model } = await import('../../native/index')
    const runDir = join(tmp, 'full-run')
    mkdirSync(runDir)
    const m = await Model.load(llama, { threads: 1 })
    const row = IDS[0]!
    const batch = { ids: Int32Array.from(row), batch: 1, seqLen: row.length, lengths: Int32Array.of(row.length), mask: new Uint8Array(row.length).fill(1, 1) }
    let trained: number[]
    try {
      m.setTrainable('full')
      const lp = await m.logps(batch, { adapters: false, train: true })
      await m.backward(new Float32Array(lp.length).fill(-1))
      await m.optimizerStep({ lr: 0.05, beta1: 0.9, beta2: 0.999, eps: 1e-8, weightDecay: 0, maxGradNorm: 1 })
      trained = [...(await m.logps(batch, { adapters: false, train: false })).subarray(1)]
      await m.saveTrainingState(join(runDir, 'training_state.bin'))
    } finally {
      m.dispose()
    }
    writeFileSync(join(runDir, 'run.json'), JSON.stringify({ model_name_or_path: llama, finetuning_type: 'full', stage: 'sft' }))
    const out = join(tmp, 'out-full')
    await exportModel({ format: 'merged', run: runDir, out })
    const exported = await engineLogps(out)
    expect(maxDiff([exported[0]!], [trained])).toBeLessThan(1e-6)
    expect(maxDiff([exported[0]!], [(await engineLogps(llama))[0]!])).toBeGreaterThan(1e-3)
    await expect(exportModel({ format: 'peft', run: runDir, out: join(tmp, 'out-full-peft') })).rejects.toThrow(/full fine-tuning run has no adapter/)
  }, 120_000)

  test('refusals change nothing; a cancelled export leaves no file under a final name and no temp file', async () => {
    const out = join(tmp, 'out-refused')
    mkdirSync(out)
    writeFileSync(join(out, 'config.json'), 'mine')
    await expect(exportModel({ format: 'merged', adapter: llamaAdapter, model: llama, out })).rejects.toThrow(/config\.json already exists/)
    expect(readdirSync(out)).toEqual(['config.json'])
    expect(readFileSync(join(out, 'config.json'), 'utf8')).toBe('mine')
    await expect(exportModel({ format: 'merged', adapter: llamaAdapter, model: llama, out: join(tmp, 'q8'), dtype: 'q8_0' })).rejects.toThrow(/q8_0 is for GGUF/)
    await expect(exportModel({ format: 'merged', out: join(tmp, 'none') })).rejects.toThrow(/a base model folder \(--model\) to export the base alone/)
    await expect(exportModel({ format: 'peft', model: llama, out: join(tmp, 'none') })).rejects.toThrow(/not a base model alone/)
    await expect(exportModel({ format: 'merged', run: join(tmp, 'x'), adapter: llamaAdapter, out: join(tmp, 'none') })).rejects.toThrow(/not both/)
    await expect(exportModel({ format: 'merged', adapter: join(tmp, 'nope'), model: llama, out: join(tmp, 'none') })).rejects.toThrow(/adapter_config\.json is missing/)
    const hubNamed = join(tmp, 'hub-named-adapter')
    mkdirSync(hubNamed)
    const config = JSON.parse(readFileSync(join(llamaAdapter, 'adapter_config.json'), 'utf8'))
    writeFileSync(join(hubNamed, 'adapter_config.json'), JSON.stringify({ ...config, base_model_name_or_path: 'Qwen/Qwen3-0.6B' }))
    writeFileSync(join(hubNamed, 'adapter_model.safetensors'), readFileSync(join(llamaAdapter, 'adapter_model.safetensors')))
    await expect(exportModel({ format: 'merged', adapter: hubNamed, out: join(tmp, 'none') })).rejects.toThrow(/"Qwen\/Qwen3-0.6B" is not a local model folder: give the base model folder/)
    expect(existsSync(join(tmp, 'none'))).toBe(false)

    const cancelled = join(tmp, 'out-cancelled')
    const controller = new AbortController()
    let seen = 0
    await expect(exportModel({ format: 'merged', adapter: llamaAdapter, model: llama, out: cancelled, maxShardBytes: 20_000 }, {
      signal: controller.signal,
      onProgress: () => {
        if (++seen === 3) controller.abort()
      }
    })).rejects.toThrow(/cancelled/)
    expect(readdirSync(cancelled)).toEqual([])
  }, 60_000)

  test('peft: the adapter as trained, with what vLLM would refuse named', async () => {
    const out = join(tmp, 'out-peft')
    const res = await exportModel({ format: 'peft', adapter: llamaAdapter, out })
    expect(res.files.map((f) => f.name)).toEqual(['adapter_config.json', 'adapter_model.safetensors'])
    for (const f of res.files) expect(readFileSync(join(out, f.name))).toEqual(readFileSync(join(llamaAdapter, f.name)))
    expect(res.warnings).toEqual([])
    expect(res.usage.join('\n')).toContain('--lora-modules')
    expect(vllmWarnings({ r: 8 })).toEqual([])
    expect(vllmWarnings({ r: 32 })).toEqual(['vLLM: r = 32 is above vLLM\'s default max_lora_rank (16); start vLLM with --max-lora-rank 32'])
    expect(vllmWarnings({ r: 100 })[0]).toContain('--max-lora-rank 128')
    expect(vllmWarnings({ r: 1024 })[0]).toContain('cannot serve')
    expect(vllmWarnings({ r: 8, use_dora: true, modules_to_save: ['lm_head'], bias: 'all' })).toHaveLength(3)
    expect(existsSync(join(out, '.adapter_model.safetensors.tmp-' + process.pid))).toBe(false)
  })
})

// ---- Qwen3-MoE ------------------------------------------------------------------------------
// Fixtures from tests/python/engine_moe_parity.py make: tiny Qwen3-MoE checkpoints (3 layers, the
// middle one dense via mlp_only_layers) with the experts fused as transformers >= 5 saves them
// (fused_norm) or per expert (experts_nonorm), and a PEFT adapter on attention, the dense MLP and
// every expert's gate/up/down (per-expert names), with PEFT's own log-probs of base + adapter.

interface MoeExpected {
  batch: { ids: number[]; batch: number; seqLen: number; lengths: number[]; mask: number[] }
  logpsBase: number[]
  logpsLora: number[]
}

async function engineBatchLogps(model: string, batch: MoeExpected['batch'], adapter?: string): Promise<Float32Array> {
  const { Model } = await import('../../native/index')
  const m = await Model.load(model, { threads: 2, precision: 'f32' })
  try {
    if (adapter) await m.loadAdapter(adapter)
    return await m.logps({
      ids: Int32Array.from(batch.ids), batch: batch.batch, seqLen: batch.seqLen,
      lengths: Int32Array.from(batch.lengths), mask: Uint8Array.from(batch.mask)
    }, { adapters: !!adapter, train: false })
  } finally {
    m.dispose()
  }
}

function maxAbs(a: ArrayLike<number>, b: ArrayLike<number>): number {
  expect(a.length).toBe(b.length)
  let d = 0
  for (let i = 0; i < a.length; i++) d = Math.max(d, Math.abs(a[i]! - b[i]!))
  return d
}

function headerOf(file: string): Record<string, { dtype: string; shape: number[] }> {
  const buf = readFileSync(file)
  const h = JSON.parse(buf.subarray(8, 8 + Number(buf.readBigUInt64LE(0))).toString('utf8')) as Record<string, { dtype: string; shape: number[] }>
  delete h.__metadata__
  return h
}

describe.skipIf(!run)('merged export of Qwen3-MoE (per-expert LoRA into per-expert or fused experts)', () => {
  const moe = join(tmp, 'moe')
  const variant = (v: string) => ({
    model: join(moe, v, 'model'), adapter: join(moe, v, 'peft_adapter'),
    expected: JSON.parse(readFileSync(join(moe, v, 'expected.json'), 'utf8')) as MoeExpected
  })
  beforeAll(async () => {
    mkdirSync(moe, { recursive: true })
    await runPython([join(root, 'tests/python/engine_moe_parity.py'), 'make', moe])
  }, 300_000)

  for (const [name, fused] of [['fused_norm', true], ['experts_nonorm', false]] as const) {
    test(`${name}: written in the base's layout; our engine and transformers on it equal base + adapter (ours and PEFT's)`, async () => {
      const { model, adapter, expected } = variant(name)
      const out = join(tmp, `out-moe-${name}`)
      await exportModel({ format: 'merged', adapter, model, out })
      // the same tensor names, shapes and dtypes as the base: transformers loads it as it loads the base
      const ours = headerOf(join(out, 'model.safetensors'))
      expect(ours).toEqual(headerOf(join(model, 'model.safetensors')))
      expect(Object.keys(ours).some((n) => n.endsWith('.mlp.experts.gate_up_proj'))).toBe(fused)
      expect(Object.keys(ours).some((n) => n.endsWith('.mlp.experts.3.down_proj.weight'))).toBe(!fused)
      const { torch_dtype: _, ...config } = JSON.parse(readFileSync(join(out, 'config.json'), 'utf8'))
      expect(config).toEqual(JSON.parse(readFileSync(join(model, 'config.json'), 'utf8')))

      const merged = await engineBatchLogps(out, expected.batch)
      const unmerged = await engineBatchLogps(model, expected.batch, adapter)
      measuredMoe[`${name}: merged vs base + adapter (engine)`] = maxAbs(merged, unmerged)
      expect(maxAbs(merged, unmerged)).toBeLessThan(1e-4)
      expect(maxAbs(merged, expected.logpsLora)).toBeLessThan(1e-4) // PEFT's base + adapter
      expect(maxAbs(merged, expected.logpsBase)).toBeGreaterThan(1e-3) // the adapter (its experts too) changed it

      const ref = await runPythonJsonAsync<Ref>('export_merged_ref.py', { merged: out, ids: IDS })
      expect(new Set(Object.values(ref.dtypes))).toEqual(new Set(['float32']))
      measuredMoe[`${name}: transformers vs engine on the merged folder`] = maxDiff(ref.logps, await engineLogps(out))
      expect(maxDiff(ref.logps, await engineLogps(out))).toBeLessThan(1e-4)
      expect(maxDiff(ref.logps, await engineLogps(model, adapter))).toBeLessThan(1e-4)
    }, 180_000)
  }

  test('fused in bf16 (--dtype bf16): 3-D expert tensors written in bf16, transformers = our engine on them', async () => {
    const { model, adapter } = variant('fused_norm')
    const out = join(tmp, 'out-moe-bf16')
    await exportModel({ format: 'merged', adapter, model, out, dtype: 'bf16' })
    const h = headerOf(join(out, 'model.safetensors'))
    expect(h['model.layers.0.mlp.experts.gate_up_proj']).toEqual({ dtype: 'BF16', shape: [4, 48, 32], data_offsets: expect.any(Array) })
    const ref = await runPythonJsonAsync<Ref>('export_merged_ref.py', { merged: out, ids: IDS })
    expect(new Set(Object.values(ref.dtypes))).toEqual(new Set(['bfloat16']))
    expect(maxDiff(ref.logps, await engineLogps(out))).toBeLessThan(1e-4)
    expect(maxDiff(await engineLogps(out), await engineLogps(model, adapter))).toBeLessThan(0.05)
  }, 120_000)

  test('one adapter into both layouts of the same weights: each fused slice equals its per-expert matrix (LoRA and DoRA)', async () => {
    const { model, adapter } = variant('experts_nonorm')
    // the per-expert base fused as transformers >= 5 would save it
    const fusedDir = join(tmp, 'moe-refused')
    mkdirSync(fusedDir, { recursive: true })
    writeFileSync(join(fusedDir, 'config.json'), readFileSync(join(model, 'config.json')))
    const perExpert = readSafetensors(join(model, 'model.safetensors'))
    const fusedTensors = new Map<string, { shape: number[]; data: Float32Array }>()
    const E = 4, I = 24, C = 32
    for (const [n, t] of perExpert) {
      const m = /^(model\.layers\.\d+\.mlp\.experts)\.(\d+)\.(gate|up|down)_proj\.weight$/.exec(n)
      if (!m) { fusedTensors.set(n, t); continue }
      const [pre, e, p] = [m[1]!, Number(m[2]), m[3]!]
      const key = `${pre}.${p === 'down' ? 'down_proj' : 'gate_up_proj'}`
      const f = fusedTensors.get(key) ?? { shape: p === 'down' ? [E, C, I] : [E, 2 * I, C], data: new Float32Array(E * 2 * I * C / (p === 'down' ? 2 : 1)) }
      f.data.set(t.data, p === 'down' ? e * C * I : (2 * e + (p === 'up' ? 1 : 0)) * I * C)
      fusedTensors.set(key, f)
    }
    writeFileSync(join(fusedDir, 'model.safetensors'), encodeSafetensors(fusedTensors))
    expect(maxDiff(await engineLogps(fusedDir), await engineLogps(model))).toBe(0)

    // the PEFT adapter, and the same with a DoRA magnitude on every pair
    const doraDir = join(tmp, 'moe-dora')
    mkdirSync(doraDir, { recursive: true })
    const lora = readSafetensors(join(adapter, 'adapter_model.safetensors'))
    let s = 1
    for (const [n, t] of [...lora]) {
      if (!n.endsWith('.lora_B.weight')) continue
      const mag = new Float32Array(t.shape[0]!).map(() => 0.5 + ((s = (s * 48271) % 2147483647) / 2147483647))
      lora.set(n.replace('.lora_B.weight', '.lora_magnitude_vector'), { shape: [t.shape[0]!], data: mag })
    }
    writeFileSync(join(doraDir, 'adapter_model.safetensors'), encodeSafetensors(lora))
    const cfg = JSON.parse(readFileSync(join(adapter, 'adapter_config.json'), 'utf8'))
    writeFileSync(join(doraDir, 'adapter_config.json'), JSON.stringify({ ...cfg, use_dora: true }))

    for (const [tag, a] of [['lora', adapter], ['dora', doraDir]] as const) {
      const outPer = join(tmp, `out-moe-per-${tag}`), outFused = join(tmp, `out-moe-fused-${tag}`)
      await exportModel({ format: 'merged', adapter: a, model, out: outPer })
      await exportModel({ format: 'merged', adapter: a, model: fusedDir, out: outFused })
      const per = readSafetensors(join(outPer, 'model.safetensors'))
      const fu = readSafetensors(join(outFused, 'model.safetensors'))
      let changed = 0
      for (const [n, t] of per) {
        const m = /^(model\.layers\.\d+\.mlp\.experts)\.(\d+)\.(gate|up|down)_proj\.weight$/.exec(n)
        if (!m) { expect(fu.get(n)!.data, n).toEqual(t.data); continue }
        const [pre, e, p] = [m[1]!, Number(m[2]), m[3]!]
        const f = fu.get(`${pre}.${p === 'down' ? 'down_proj' : 'gate_up_proj'}`)!
        const at = p === 'down' ? e * C * I : (2 * e + (p === 'up' ? 1 : 0)) * I * C
        expect(f.data.subarray(at, at + t.data.length), `${tag} ${n}`).toEqual(t.data)
        if (maxAbs(t.data, perExpert.get(n)!.data) > 1e-4) changed++
      }
      expect(changed).toBe(2 * E * 3) // every expert matrix of both sparse layers moved
    }
  }, 120_000)

  test("a full fine-tuning run on a fused base: the trained experts go into the fused tensors", async () => {
    const { Model } = await import('../../native/index')
    const { model, expected } = variant('fused_norm')
    const runDir = join(tmp, 'moe-full-run')
    mkdirSync(runDir)
    const m = await Model.load(model, { threads: 2 })
    const b = expected.batch
    const batch = { ids: Int32Array.from(b.ids), batch: b.batch, seqLen: b.seqLen, lengths: Int32Array.from(b.lengths), mask: Uint8Array.from(b.mask) }
    let trained: Float32Array
    try {
      m.setTrainable('full')
      const lp = await m.logps(batch, { adapters: false, train: true })
      await m.backward(new Float32Array(lp.length).fill(-1))
      await m.optimizerStep({ lr: 0.05, beta1: 0.9, beta2: 0.999, eps: 1e-8, weightDecay: 0, maxGradNorm: 1 })
      trained = await m.logps(batch, { adapters: false, train: false })
      await m.saveTrainingState(join(runDir, 'training_state.bin'))
    } finally {
      m.dispose()
    }
    writeFileSync(join(runDir, 'run.json'), JSON.stringify({ model_name_or_path: model, finetuning_type: 'full', stage: 'sft' }))
    const out = join(tmp, 'out-moe-full')
    await exportModel({ format: 'merged', run: runDir, out })
    expect(headerOf(join(out, 'model.safetensors'))).toEqual(headerOf(join(model, 'model.safetensors')))
    const before = readSafetensors(join(model, 'model.safetensors')).get('model.layers.2.mlp.experts.down_proj')!.data
    const after = readSafetensors(join(out, 'model.safetensors')).get('model.layers.2.mlp.experts.down_proj')!.data
    expect(maxAbs(before, after)).toBeGreaterThan(1e-3)
    const exported = await engineBatchLogps(out, b)
    expect(maxAbs(exported, trained)).toBeLessThan(1e-5)
    expect(maxAbs(exported, expected.logpsBase)).toBeGreaterThan(1e-3)
  }, 120_000)

  test('refusals: an expert the base does not have, a projection of the wrong size, PEFT target_parameters; vLLM warned of expert LoRA', async () => {
    const { model, adapter } = variant('fused_norm')
    const bad = join(tmp, 'moe-bad-adapter')
    mkdirSync(bad, { recursive: true })
    const cfg = JSON.parse(readFileSync(join(adapter, 'adapter_config.json'), 'utf8'))
    writeFileSync(join(bad, 'adapter_config.json'), JSON.stringify(cfg))
    const lora = readSafetensors(join(adapter, 'adapter_model.safetensors'))
    const a = lora.get('base_model.model.model.layers.0.mlp.experts.3.gate_proj.lora_A.weight')!
    const bb = lora.get('base_model.model.model.layers.0.mlp.experts.3.gate_proj.lora_B.weight')!
    const extra = new Map([...lora, ['base_model.model.model.layers.0.mlp.experts.4.gate_proj.lora_A.weight', a], ['base_model.model.model.layers.0.mlp.experts.4.gate_proj.lora_B.weight', bb]])
    writeFileSync(join(bad, 'adapter_model.safetensors'), encodeSafetensors(extra))
    await expect(exportModel({ format: 'merged', adapter: bad, model, out: join(tmp, 'none') }))
      .rejects.toThrow(/adapts 'model\.layers\.0\.mlp\.experts\.4\.gate_proj\.weight': 'model\.layers\.0\.mlp\.experts\.4\.gate_proj\.weight' names expert 4 but 'model\.layers\.0\.mlp\.experts\.gate_up_proj' holds 4 experts/)
    const wrong = new Map(lora)
    wrong.set('base_model.model.model.layers.0.mlp.experts.1.down_proj.lora_A.weight', { shape: [4, 48], data: new Float32Array(4 * 48) })
    writeFileSync(join(bad, 'adapter_model.safetensors'), encodeSafetensors(wrong))
    await expect(exportModel({ format: 'merged', adapter: bad, model, out: join(tmp, 'none') }))
      .rejects.toThrow(/experts\.1\.down_proj\.weight is \[32, 24\] in the base's 'model\.layers\.0\.mlp\.experts\.down_proj' but the adapter is for \[32, 48\]/)
    writeFileSync(join(bad, 'adapter_model.safetensors'), encodeSafetensors(lora))
    writeFileSync(join(bad, 'adapter_config.json'), JSON.stringify({ ...cfg, target_parameters: ['gate_up_proj', 'down_proj'] }))
    await expect(exportModel({ format: 'merged', adapter: bad, model, out: join(tmp, 'none') })).rejects.toThrow(/"target_parameters" \["gate_up_proj","down_proj"\] \(PEFT.s LoRA on whole 3-D parameters.*is not supported/)
    expect(existsSync(join(tmp, 'none'))).toBe(false)
    const res = await exportModel({ format: 'peft', adapter, model, out: join(tmp, 'out-moe-peft') })
    expect(res.warnings).toEqual([expect.stringMatching(/^vLLM: LoRA on the experts \(mlp\.experts\.\*\) needs a vLLM with LoRA on fused MoE layers/)])
  }, 60_000)
})

const measuredMoe: Record<string, number> = {}
afterAll(() => {
  if (Object.keys(measuredMoe).length) console.log('Qwen3-MoE merged export, max |Δ log p|:\n' + Object.entries(measuredMoe).map(([k, v]) => `  ${k}: ${v.toExponential(2)}`).join('\n'))
})
