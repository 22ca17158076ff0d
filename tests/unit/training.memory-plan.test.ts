// The memory plan (main/services/training/memoryPlan.ts) against the engine: random checkpoints
// of several shapes, one real training step each in a child process (fixtures/memory-child.ts,
// the stage's own passes at their worst case), its peak RSS against the plan (within 15%); the
// plan's terms on their own; and a run too large for the (faked) free memory refused before
// its model loads, with the estimate in the message and nothing written to output_dir.
import { spawn } from 'node:child_process'
import { existsSync, mkdtempSync, readdirSync, rmSync } from 'node:fs'
import { tmpdir, totalmem } from 'node:os'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { resolveConfig } from '../../main/services/training/config'
import { availableMemory, checkMemory, parseBytes, planConfigOf, readModelShape } from '../../main/services/training/memoryCheck'
import {
  DEFAULT_PLAN_CONFIG, RUNTIME_BYTES, formatMemory, kvCacheBytes, memoryAdvice, modelShape, parameterCounts, planInference, planTraining,
  stepShape, type EngineFactsForPlan, type PlanConfig
} from '../../main/services/training/memoryPlan'
import { RunsService } from '../../main/services/training/runs'
import { Trainer, TrainingError } from '../../main/services/training/trainer'
import { runCli } from './cli-run'
import { shapeConfig, writeRandomCheckpoint, type CheckpointDtype, type ShapeConfig } from './fixtures/memory-model'
import { writeDatasets } from './training.fixtures'
import { engineBuilt } from './trainingPython'

const repo = join(import.meta.dirname, '..', '..')
const demoModel = join(repo, 'resources', 'demo-model')
const MB = (b: number) => `${(b / 2 ** 20).toFixed(1)} MiB`

const small: ShapeConfig = { hidden: 256, layers: 4, heads: 4, kvHeads: 2, intermediate: 688, vocab: 32000 }
const medium: ShapeConfig = { hidden: 512, layers: 8, heads: 8, kvHeads: 4, intermediate: 1376, vocab: 32000, tied: true }
const long: ShapeConfig = { architecture: 'Qwen3ForCausalLM', hidden: 256, layers: 2, heads: 4, kvHeads: 2, headDim: 64, intermediate: 688, vocab: 32000 }

const plan = (s: ShapeConfig, cfg: Partial<PlanConfig>, engine: EngineFactsForPlan, dtype: CheckpointDtype = 'F32') =>
  planTraining(modelShape(shapeConfig(s, dtype), dtype), { ...DEFAULT_PLAN_CONFIG, sample_prompts: 0, ...cfg }, engine)

describe('memory plan terms', () => {
  const onednn: EngineFactsForPlan = { packs: true, physicalBytes: 64 * 2 ** 30, threads: 2 }
  const shape = modelShape(shapeConfig(small), 'F32')

  it('counts the parameters the engine loads', () => {
    const p = parameterCounts(shape)
    // embed + lm_head, 4 layers of q, k, v, o, gate, up, down and two norms, the final norm
    const layer = 256 * 256 + 2 * 128 * 256 + 256 * 256 + 3 * 688 * 256 + 2 * 256
    expect(p.total).toBe(2 * 32000 * 256 + 4 * layer + 256)
    expect(p.frozen).toBe(32000 * 256 + 4 * (layer - 2 * 256))
  })

  it('f32 weights are 4 bytes a parameter with a packed copy of the frozen ones; bf16 halves the matrices and packs nothing', () => {
    const p = parameterCounts(shape)
    const f32 = plan(small, { precision: 'f32' }, onednn)
    expect(f32.weights).toBe(4 * p.total)
    expect(f32.packed).toBe(4 * p.frozen)
    expect(plan(small, { precision: 'f32' }, { ...onednn, packs: false }).packed).toBe(0)
    // Model::packing_fits: at most an eighth of the physical memory
    expect(plan(small, { precision: 'f32' }, { ...onednn, physicalBytes: 8 * 4 * p.frozen - 1 }).packed).toBe(0)
    const bf16 = plan(small, { precision: 'bf16' }, onednn)
    expect(bf16.precision).toBe('bf16')
    expect(bf16.weights).toBe(2 * p.matrices + 4 * p.vectors)
    expect(bf16.packed).toBe(0)
    // auto follows the checkpoint: a BF16 or F16 file is bf16, F32 is f32
    expect(plan(small, {}, onednn, 'BF16').precision).toBe('bf16')
    expect(plan(small, {}, onednn, 'F16').precision).toBe('bf16')
    expect(plan(small, {}, onednn, 'F32').precision).toBe('f32')
    expect(planConfigOf({ bf16: true }).precision).toBe('bf16')
  })

  it('full fine-tuning is f32 whatever the precision: 16 bytes a parameter, no packed copy', () => {
    const p = parameterCounts(shape)
    const full = plan(small, { finetuning_type: 'full', precision: 'bf16' }, onednn, 'BF16')
    expect(full.precision).toBe('f32')
    expect(full.weights + full.trainable).toBe(16 * p.total)
    expect(full.packed).toBe(0)
  })

  it('LoRA holds A and B, their gradients and both AdamW moments in f32', () => {
    const one = plan(small, { lora_target: ['q_proj'], lora_rank: 8 }, onednn)
    expect(one.trainable).toBe(16 * 4 * 8 * (256 + 256))
    expect(plan(small, { lora_target: ['all'] }, onednn).detail.trainableParameters).toBe(4 * 8 * (2 * 256 + 2 * (256 + 128) + (256 + 256) + 2 * (256 + 688) + (688 + 256)))
  })

  it('DoRA adds a trained magnitude per output row and keeps what it scales', () => {
    const lora = plan(small, { lora_target: ['q_proj'], lora_rank: 8 }, onednn)
    const dora = plan(small, { lora_target: ['q_proj'], lora_rank: 8, use_dora: true }, onednn)
    expect(dora.trainable - lora.trainable).toBe(16 * 4 * 256)
    expect(dora.activations).toBeGreaterThan(lora.activations)
  })

  it('reads as many sequences per micro-batch as each stage runs', () => {
    const base = { ...DEFAULT_PLAN_CONFIG, sample_prompts: 0, per_device_train_batch_size: 4, cutoff_len: 100 }
    expect(stepShape({ ...base, stage: 'sft' })).toMatchObject({ trainSequences: 4, inferRows: 0 })
    // chosen + rejected in one batch, and the reference pass over both
    expect(stepShape({ ...base, stage: 'dpo' })).toMatchObject({ trainSequences: 8, inferRows: 800 })
    expect(stepShape({ ...base, stage: 'dpo', pref_loss: 'simpo' })).toMatchObject({ trainSequences: 8, inferRows: 0 })
    // completions + KL pairs in the reference pass
    expect(stepShape({ ...base, stage: 'kto' })).toMatchObject({ trainSequences: 4, inferRows: 800 })
    // GRPO: B × GA completions generated at once, each prompt + max_completion_length
    const grpo = stepShape({ ...base, stage: 'grpo', gradient_accumulation_steps: 2, max_completion_length: 30 })
    expect(grpo).toMatchObject({ trainSequences: 4, trainLength: 100, decodeSequences: 8, decodeLength: 100, inferRows: 8 * 70 })
    const p = planTraining(shape, { ...base, stage: 'grpo', gradient_accumulation_steps: 2, max_completion_length: 30 }, onednn)
    expect(p.kvCache).toBe(kvCacheBytes(shape, 8, 100))
    expect(kvCacheBytes(shape, 1, 4096)).toBe(2 * 4 * 4096 * 2 * 64 * 4)
  })

  it('gradient checkpointing keeps the layer inputs instead of every activation', () => {
    const on = plan(small, { per_device_train_batch_size: 4, cutoff_len: 512 }, onednn)
    const off = plan(small, { per_device_train_batch_size: 4, cutoff_len: 512, disable_gradient_checkpointing: true }, onednn)
    expect(off.activations).toBeGreaterThan(1.5 * on.activations)
  })

  it('inference needs the weights and one 4096-token KV cache, no packed copy', () => {
    const chat = planInference(shape)
    expect(chat.kvCache).toBe(kvCacheBytes(shape, 1, 4096))
    expect(chat.total).toBe(chat.runtime + chat.weights + chat.kvCache + chat.activations)
    expect(chat.weights).toBe(4 * parameterCounts(shape).total)
  })

  it('advises what saves memory, largest first', () => {
    const cfg = { ...DEFAULT_PLAN_CONFIG, per_device_train_batch_size: 8, cutoff_len: 2048, disable_gradient_checkpointing: true, precision: 'f32' as const }
    const advice = memoryAdvice(shape, cfg, onednn)
    const changes = advice.map((a) => a.change).join('\n')
    expect(changes).toMatch(/per_device_train_batch_size 8 → 4/)
    expect(changes).toMatch(/cutoff_len 2048 → 1024/)
    expect(changes).toMatch(/gradient checkpointing on/)
    expect(changes).toMatch(/precision: bf16/)
    expect(advice.map((a) => a.saves)).toEqual([...advice.map((a) => a.saves)].sort((a, b) => b - a))
    expect(memoryAdvice(shape, { ...cfg, finetuning_type: 'full' }, onednn).map((a) => a.change).join('\n')).toMatch(/LoRA instead of full/)
  })

  it('parses the faked free memory', () => {
    expect(parseBytes('2G')).toBe(2 * 2 ** 30)
    expect(parseBytes('512M')).toBe(512 * 2 ** 20)
    expect(parseBytes('1000')).toBe(1000)
    expect(parseBytes('lots')).toBeNull()
    expect(availableMemory({ TUNEBENCH_MEMORY_AVAILABLE: '3G' })).toBe(3 * 2 ** 30)
    expect(availableMemory({})).toBeGreaterThan(0)
  })
})

describe('memory plan of a Qwen3-MoE model (every expert held, K of E routed per token)', () => {
  const onednn: EngineFactsForPlan = { packs: true, physicalBytes: 64 * 2 ** 30, threads: 2 }
  // Qwen3-30B-A3B's config.json (Qwen/Qwen3-30B-A3B): 30.5B parameters, 3.3B active.
  const a3b: Record<string, unknown> = {
    architectures: ['Qwen3MoeForCausalLM'], model_type: 'qwen3_moe', hidden_size: 2048, intermediate_size: 6144, num_hidden_layers: 48,
    num_attention_heads: 32, num_key_value_heads: 4, head_dim: 128, vocab_size: 151936, tie_word_embeddings: false, torch_dtype: 'bfloat16',
    num_experts: 128, num_experts_per_tok: 8, moe_intermediate_size: 768, decoder_sparse_step: 1, mlp_only_layers: [], norm_topk_prob: true,
    router_aux_loss_coef: 0.001
  }
  const C = 2048, Im = 768, E = 128, K = 8, L = 48
  const shape = modelShape(a3b, 'BF16')

  it("counts every expert's parameters, and the active ones as the model card does", () => {
    expect(shape.qkNorm).toBe(true)
    expect(shape.moe).toEqual({ experts: 128, expertsPerToken: 8, expertIntermediate: 768, sparseLayers: 48, fused: false })
    const p = parameterCounts(shape)
    // embed + lm_head; per layer attention 2·2048·4096 + 2·2048·512, norms 2·2048 + 2·128,
    // the router 128·2048 and 128 experts of 3·2048·768; the final norm
    const attention = 2 * C * 4096 + 2 * C * 512
    const layer = attention + 2 * C + 2 * 128 + E * C + E * 3 * C * Im
    expect(p.total).toBe(2 * 151936 * C + L * layer + C)
    expect(p.total).toBe(30_532_122_624)
    expect(p.active).toBe(p.total - L * (E - K) * 3 * C * Im)
    expect(p.active).toBe(3_353_032_704)
    // routers and experts are matrices (held in 16 bits in bf16), and never packed
    expect(p.vectors).toBe(L * (2 * C + 2 * 128) + C)
    expect(p.frozen).toBe(151936 * C + L * attention)
  })

  it('weights are the parameter count times the bytes of a parameter: 4 in f32, 2 for the matrices in bf16', () => {
    const p = parameterCounts(shape)
    const f32 = planTraining(shape, { ...DEFAULT_PLAN_CONFIG, precision: 'f32' }, onednn)
    expect(f32.weights).toBe(4 * p.total)
    expect(f32.weights).toBe(4 * 30_532_122_624)
    expect(f32.packed).toBe(4 * p.frozen)
    const bf16 = planTraining(shape, DEFAULT_PLAN_CONFIG, onednn)
    expect(bf16.precision).toBe('bf16')
    expect(bf16.weights).toBe(2 * p.matrices + 4 * p.vectors)
    expect(bf16.weights).toBeGreaterThan(2 * 30.5e9)
    expect(planInference(shape).weights).toBe(bf16.weights)
  })

  it('LoRA on gate/up/down trains an adapter per expert', () => {
    const cfg = { ...DEFAULT_PLAN_CONFIG, lora_rank: 8 }
    const attention = planTraining(shape, { ...cfg, lora_target: ['q_proj'] }, onednn).detail.trainableParameters
    expect(attention).toBe(L * 8 * (C + 4096))
    const gate = planTraining(shape, { ...cfg, lora_target: ['gate_proj'] }, onednn).detail.trainableParameters
    expect(gate).toBe(L * E * 8 * (C + Im))
    const down = planTraining(shape, { ...cfg, lora_target: ['down_proj'] }, onednn)
    expect(down.detail.trainableParameters).toBe(L * E * 8 * (Im + C))
    expect(down.trainable).toBe(16 * L * E * 8 * (Im + C))
  })

  it('a sparse layer keeps N·K routed slots and N·E router logits and probabilities, not a dense MLP', () => {
    const small = { ...a3b, hidden_size: 64, intermediate_size: 4096, num_hidden_layers: 4, num_attention_heads: 4, num_key_value_heads: 2, head_dim: 16, vocab_size: 1000 }
    const cfg = { ...DEFAULT_PLAN_CONFIG, sample_prompts: 0, lora_target: ['q_proj'], per_device_train_batch_size: 2, cutoff_len: 64, disable_gradient_checkpointing: true }
    const acts = (c: Record<string, unknown>) => planTraining(modelShape(c, 'F32'), cfg, onednn).activations
    const N = 2 * 64, Cs = 64, Is = 16
    const base = { ...small, num_experts: 8, num_experts_per_tok: 2, moe_intermediate_size: Is }
    // E: two [N, E] buffers in each of the 4 layers, and d logits [N, E] in the backward scratch
    expect(acts({ ...base, num_experts: 16 }) - acts(base)).toBe(4 * N * (4 * 2 * 8 + 8))
    // K: per slot its expert, weight, token (device and host), index and slot weight, the
    // gathered input and output [C], g, u, h [Im]; in the backward scratch d input and output,
    // d weights; 8 host bytes of routing per slot. intermediate_size (4096) is never allocated.
    const perSlot = 6 + 2 * Cs + 3 * Is
    expect(acts({ ...base, num_experts_per_tok: 3 }) - acts(base)).toBe(4 * N * (4 * perSlot + 2 * Cs + 2 + 3 * Is) + 8 * N)
    // a layer made dense by mlp_only_layers keeps the dense MLP's g, u, h [N, I] instead
    const oneDense = acts({ ...base, mlp_only_layers: [3] }) - acts(base)
    expect(oneDense).toBe(4 * N * (3 * 4096 - (2 * 8 + 2 * perSlot)) + 4 * N * 3 * (4096 - 2 * Is))
    expect(modelShape({ ...base, decoder_sparse_step: 2 }, 'F32').moe?.sparseLayers).toBe(2)
  })
})

interface Measured { maxRSS: number; seconds: number }

/** One training step in its own process (fixtures/memory-child.ts); its peak RSS. */
function measure(dir: string, cfg: Record<string, unknown>): Promise<Measured> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ['--import', 'tsx', join(repo, 'tests/unit/fixtures/memory-child.ts'), JSON.stringify({ dir, threads: 2, ...cfg })], {
      cwd: repo, stdio: ['ignore', 'pipe', 'pipe']
    })
    let out = '', err = ''
    child.stdout.on('data', (d: Buffer) => (out += d.toString()))
    child.stderr.on('data', (d: Buffer) => (err += d.toString()))
    child.on('close', (code) => (code === 0 ? resolve(JSON.parse(out.trim().split('\n').pop()!) as Measured) : reject(new Error(`memory child failed (${code}): ${err}`))))
  })
}

interface Case {
  name: string
  shape: ShapeConfig
  dtype?: CheckpointDtype
  cfg: Partial<PlanConfig>
  bf16?: boolean
}

const cases: Case[] = [
  { name: 'small (hidden 256, 4 layers, vocab 32000): SFT LoRA, 4 × 512 tokens, every activation kept', shape: small,
    cfg: { stage: 'sft', per_device_train_batch_size: 4, cutoff_len: 512, disable_gradient_checkpointing: true } },
  { name: 'medium (hidden 512, 8 layers, tied): DPO LoRA with its reference pass, 1 pair × 384 tokens, checkpointing', shape: medium,
    cfg: { stage: 'dpo', pref_loss: 'sigmoid', per_device_train_batch_size: 1, cutoff_len: 384 } },
  { name: 'long cutoff (Qwen3, 2 layers): SFT LoRA, 1 × 4096 tokens, checkpointing', shape: long,
    cfg: { stage: 'sft', per_device_train_batch_size: 1, cutoff_len: 4096 } },
  { name: 'small: SFT DoRA, 4 × 512 tokens, every activation kept', shape: small,
    cfg: { stage: 'sft', use_dora: true, per_device_train_batch_size: 4, cutoff_len: 512, disable_gradient_checkpointing: true } },
  { name: 'small: full fine-tuning, 2 × 512 tokens', shape: small,
    cfg: { stage: 'sft', finetuning_type: 'full', per_device_train_batch_size: 2, cutoff_len: 512 } },
  { name: 'small: GRPO, 8 completions generated with a KV cache, 4 trained, KL reference', shape: small,
    cfg: { stage: 'grpo', per_device_train_batch_size: 4, gradient_accumulation_steps: 2, num_generations: 4, cutoff_len: 80, max_completion_length: 12, beta: 0.04 } },
  { name: 'small, BF16 checkpoint: SFT LoRA in bf16 (memory-mapped weights), 4 × 512 tokens', shape: small, dtype: 'BF16', bf16: true,
    cfg: { stage: 'sft', per_device_train_batch_size: 4, cutoff_len: 512, precision: 'bf16' } },
  { name: 'medium, F16 checkpoint: DPO LoRA in bf16 (converted once), 1 pair × 512 tokens', shape: medium, dtype: 'F16', bf16: true,
    cfg: { stage: 'dpo', pref_loss: 'sigmoid', per_device_train_batch_size: 1, cutoff_len: 512, precision: 'bf16' } }
]

describe.runIf(engineBuilt('memory plan calibration'))('memory plan against the peak RSS of a real step', () => {
  let root: string
  let engine: EngineFactsForPlan
  const figures: string[] = []
  beforeAll(async () => {
    root = mkdtempSync(join(tmpdir(), 'tb-memory-'))
    const native = await import('../../native/index')
    const facts = native.engineFacts()
    engine = { packs: facts.blas === 'onednn', physicalBytes: totalmem(), threads: 2 }
  })
  afterAll(() => {
    rmSync(root, { recursive: true, force: true })
    if (figures.length) console.log(`memory plan calibration (estimate / measured peak RSS):\n${figures.join('\n')}`)
  })

  it('the runtime overhead (Node, the addon, oneDNN) is the peak of a step on a tiny model', async () => {
    const dir = writeRandomCheckpoint(join(root, 'tiny'), { hidden: 32, layers: 2, heads: 4, kvHeads: 2, intermediate: 64, vocab: 64 })
    const m = await measure(dir, { stage: 'sft', finetuning_type: 'lora', lora_rank: 8, per_device_train_batch_size: 1, cutoff_len: 16, disable_gradient_checkpointing: false })
    figures.push(`  runtime: RUNTIME_BYTES ${MB(RUNTIME_BYTES)} / tiny model's step ${MB(m.maxRSS)}`)
    expect(Math.abs(RUNTIME_BYTES / m.maxRSS - 1)).toBeLessThan(0.15)
  }, 60_000)

  for (const c of cases) {
    it(c.name, async () => {
      const dir = writeRandomCheckpoint(join(root, c.name.replace(/[^a-z0-9]+/gi, '-').slice(0, 40)), c.shape, c.dtype ?? 'F32')
      const cfg = { ...DEFAULT_PLAN_CONFIG, sample_prompts: 0, ...c.cfg }
      const shape = await readModelShape(dir)
      const estimate = planTraining(shape, cfg, engine)
      const m = await measure(dir, { ...cfg, ...(c.bf16 ? { precision: 'bf16' } : {}) })
      const ratio = estimate.total / m.maxRSS
      figures.push(`  ${c.name}: ${MB(estimate.total)} / ${MB(m.maxRSS)} = ${ratio.toFixed(3)} (${m.seconds.toFixed(1)} s; ` +
        `weights ${MB(estimate.weights)}, packed ${MB(estimate.packed)}, trainable ${MB(estimate.trainable)}, activations ${MB(estimate.activations)}, KV ${MB(estimate.kvCache)})`)
      expect(ratio, `estimate ${MB(estimate.total)}, measured ${MB(m.maxRSS)}`).toBeGreaterThan(0.85)
      expect(ratio, `estimate ${MB(estimate.total)}, measured ${MB(m.maxRSS)}`).toBeLessThan(1.15)
    }, 120_000)
  }
})

describe.runIf(engineBuilt('memory refusal'))('a run too large for the free memory', () => {
  let root: string
  let data: Record<string, string>
  beforeAll(() => {
    root = mkdtempSync(join(tmpdir(), 'tb-memory-refuse-'))
    data = writeDatasets(join(root, 'data'))
  })
  afterAll(() => rmSync(root, { recursive: true, force: true }))

  const config = (out: string) => ({
    model_name_or_path: demoModel, stage: 'dpo', dataset: data.pairs_plain, output_dir: out, max_steps: 1,
    per_device_train_batch_size: 8, cutoff_len: 2048, disable_gradient_checkpointing: true, threads: 1
  })

  it('is refused before its model loads, with the estimate, the free memory and what to change; nothing is written', async () => {
    const out = join(root, 'refused')
    const cfg = resolveConfig(config(out), 'test')
    let loaded = false
    const trainer = new Trainer(cfg, {
      availableMemory: () => 20 * 2 ** 20,
      loadModel: async () => {
        loaded = true
        throw new Error('the model must not load')
      }
    })
    const err = await trainer.run().catch((e: unknown) => e)
    expect(err).toBeInstanceOf(TrainingError)
    const message = (err as Error).message
    expect(message).toMatch(/^not enough memory for this run: it needs about [\d.]+ [MG]B \(weights \(f32\) /)
    expect(message).toMatch(/and 21 MB is free/)
    expect(message).toMatch(/per_device_train_batch_size 8 → 4/)
    expect(message).toMatch(/cutoff_len 2048 → 1024/)
    expect(message).toMatch(/gradient checkpointing on/)
    expect(message).toMatch(/precision: bf16/)
    const check = await checkMemory(cfg as unknown as Record<string, unknown>, { available: 20 * 2 ** 20 })
    expect(message).toContain(`it needs about ${formatMemory(check.plan!.need)}`)
    expect(loaded).toBe(false)
    expect(existsSync(out) ? readdirSync(out) : []).toEqual([])
  })

  it('is refused by runs.start (the Train page shows the error) and by `tunebench train`, with $TUNEBENCH_MEMORY_AVAILABLE', async () => {
    const prev = process.env.TUNEBENCH_MEMORY_AVAILABLE
    process.env.TUNEBENCH_MEMORY_AVAILABLE = '20M'
    try {
      const runs = new RunsService({ runsRoot: join(root, 'runs') })
      await expect(runs.start({ config: config(join(root, 'runs', 'service')) })).rejects.toThrow(/not enough memory for this run: it needs about .* and 21 MB is free/)
      expect(existsSync(join(root, 'runs', 'service'))).toBe(false)
      // A free-memory figure that fits lets the same run through the check.
      process.env.TUNEBENCH_MEMORY_AVAILABLE = '64G'
      expect((await checkMemory(config(join(root, 'x')))).fits).toBe(true)
    } finally {
      if (prev === undefined) delete process.env.TUNEBENCH_MEMORY_AVAILABLE
      else process.env.TUNEBENCH_MEMORY_AVAILABLE = prev
    }
    const yaml = join(root, 'refused.json')
    const out = join(root, 'cli-out')
    const { writeFileSync } = await import('node:fs')
    writeFileSync(yaml, JSON.stringify(config(out)))
    const prevCli = process.env.TUNEBENCH_MEMORY_AVAILABLE
    process.env.TUNEBENCH_MEMORY_AVAILABLE = '20M'
    try {
      const r = await runCli(['train', yaml])
      expect(r.code).toBe(1)
      expect(r.stderr).toMatch(/^tunebench train: not enough memory for this run: it needs about [\d.]+ [MG]B .* and 21 MB is free/)
      expect(existsSync(out)).toBe(false)
    } finally {
      if (prevCli === undefined) delete process.env.TUNEBENCH_MEMORY_AVAILABLE
      else process.env.TUNEBENCH_MEMORY_AVAILABLE = prevCli
    }
  }, 60_000)

  it('the Train form gets the plan of a half-typed config, and none without a model', async () => {
    const none = await checkMemory({})
    expect(none.plan).toBeNull()
    expect(none.error).toMatch(/no model/)
    const check = await checkMemory({ model_name_or_path: demoModel, per_device_train_batch_size: 'abc', cutoff_len: 512 }, { available: 2 ** 40 })
    expect(check.plan!.detail.trainSequences).toBe(8) // the default batch where the field does not parse yet
    expect(check.plan!.detail.trainTokens).toBe(8 * 512)
    expect(check.fits).toBe(true)
  })
})
