// Memory planned before allocation: how many bytes a training run (or a chat) will hold, from
// the model's config.json, the checkpoint's dtype and the training config, counted buffer by
// buffer as the native engine allocates them (native/src/engine: weights.cpp, passes.cpp,
// transformer.cpp, head.cpp, cpu/ops.cpp). Pure functions: no file, no addon; the caller
// (memoryCheck.ts) reads the folder and the machine. Calibrated against measured peak RSS by
// tests/unit/training.memory-plan.test.ts (within 15%).
//
// Notation: C hidden, I intermediate, Hq/Hk heads/KV heads, D head_dim, q = Hq·D, k = Hk·D,
// L layers, V vocabulary, r LoRA rank, n the LoRA targets, N rows of a pass (the packed tokens
// of a micro-batch: sequences × cutoff_len, the worst case), M head rows (the masked-in tokens,
// at most N). Bytes are f32 (4) unless said.
// Qwen3-MoE: E experts, K of them per token, Im each expert's MLP width, Ls sparse layers (their
// MLP is a router [E, C] and E experts of gate/up [Im, C] and down [C, Im]), Ld = L − Ls dense
// ones; S = N·K routed slots (token, choice) of a pass.
//
//   total = runtime + weights + packed + trainable + activations + kvCache
//           (or, when larger, the load: runtime + weights + one tensor's f32 copy)
//
// precision    auto = bf16 when the first layer's q_proj is BF16 or F16 in the checkpoint (as
//              weights.cpp decides), else f32; LLaMA-Factory's bf16: true is bf16.
// weights      f32: 4 · every base parameter. bf16 (LoRA): 2 · (projections, embedding, lm_head,
//              routers, experts) + 4 · (norms, biases); a bf16 file is memory-mapped (file pages, in
//              RSS once touched), an f16/f32 file converted once. Full fine-tuning: 4 · every
//              parameter whatever the precision. Every expert is held, not only the K a token uses.
// packed       oneDNN builds, f32, not full fine-tuning: a blocked copy of the frozen projections
//              and the head, 4 · (V·C + L·Σ in·out), made when it needs at most 1/8 of physical
//              memory (Model::packing_fits); none in bf16 mode. A sparse layer's router and experts
//              are not packed (its attention is).
// trainable    LoRA: 16 · L · Σ_targets r·(in + out) (weight, grad, AdamW m and v, all f32);
//              on a sparse layer gate/up/down are targeted in each expert: E · r·(C + Im) each.
//              DoRA adds 16 · L · Σ_targets out (the magnitudes).
//              Full: 12 · every parameter (grad, m, v; the weight is under weights).
// activations  the training pass's state, kept between steps (passes.h TrainState):
//                residual ping-pong x, x2          2C·N
//                per layer (LayerActs)             A = 4C + 2q + 2k + 3I + Hq + 2 (+ q + k + Hq + Hk with
//                                                  qk-norm) (+ n·r LoRA)     [x_in, xn1, x_mid, xn2; q, att;
//                                                  k, v; g, u, h; lse; rstd1, rstd2]
//                  a sparse layer (MoeActs) in place of 3I (+ the MLP's LoRA):
//                                                  As = A − 3I + 2E + 6K + 2K·C + 3K·Im (+ n_mlp·K·r)
//                                                  [router logits, probs; chosen experts, weights,
//                                                  slot token (device, host), slot index, slot weight;
//                                                  gathered inputs, outputs; g, u, h of each slot]
//                  DoRA                            + Σ_targets out in the trained pass (dz)
//                  all layers kept                 (Ld·A + Ls·As)·N
//                  gradient checkpointing          (L·C + A)·N: the layer inputs, one layer recomputed
//                                                  (a model with both kinds: the scratch holds both
//                                                  MLPs' buffers, which only grow)
//                backward scratch (LayerGrads)     (3I + C + 2q + 2k (+ q + k qk-norm))·N, and dx C·N;
//                                                  sparse layers: 3·max(I, K·Im) for dh, dg, du, and
//                                                  2K·C + 2K + E (slot gradients in and out, d slot
//                                                  weights, d router logits)
//                head rows                         (2C + C expected rows when frozen + 2C backward)·M
//              + the no-grad passes' state (reference, KL, evaluation, prefill: one scratch layer)
//                                                  (2C + A − C)·N' + 2C·M'
//              + the head's logits chunk (kept by the backend): M·1024 packed, else ≈ max(M·256, 4Mi)
//              + transients of a pass: attention scratch 2·64·T·threads, DoRA's scratch
//                (3·max(out), with dropout + 5·max(out) + 2·max(in))·N, LoRA dropout copies
//                2·N·max(in), bf16's copy of the largest product input 2 bytes·max(N·max(in), the
//                head chunk) (kept by the engine thread), the batch on both sides
//                ~32 bytes·N, decoding logits 20 bytes·rows·V (logits, host copies, sampler),
//                a sparse layer's host routing (chosen experts, slots) 8 bytes·K·N
// kvCache      2 · L · rows · (prompt + new tokens) · k floats (f32 in both precisions), for GRPO's
//              generation batch (per_device_train_batch_size × gradient_accumulation_steps
//              completions; evaluation: per_device_eval_batch_size × num_generations) and the
//              run's sample generations (up to 16 of the sample_prompts, cutoff_len +
//              sample_max_new_tokens each); the largest of them, as one generation runs at a time
// runtime      the process itself: Node, the addon, oneDNN and OpenMP (RUNTIME_BYTES, measured as
//              the peak of a step on a tiny model). The app's process is already running when a
//              run starts, so the free-memory check compares need = total − runtime.
//
// Summing keeps the plan an upper bound where phases overlap only in part (a GRPO generation
// runs beside the previous step's saved state, not beside its backward scratch); the load's
// transient (one tensor's f32 copy) rarely exceeds a step's.
//
// Rows per micro-batch by stage (stages/*.ts, batches.ts): sft B sequences; dpo 2B (chosen then
// rejected in one batch) and the reference pass over the same 2B; kto B trained, 2B in the
// reference pass (completions + KL pairs) and B in the KL policy pass; grpo B completions of
// prompt + completion ≤ cutoff_len trained, B × GA generated at once. B =
// per_device_train_batch_size.
import type { MemoryPlan, MemoryPrecision } from '../../../preload/types/training'
import type { ModelMemory } from '../../../preload/types/models'
import { LORA_TARGET_MODULES, type TrainingConfig } from '../../../preload/types/trainingSchema'
import { MOE_ARCHITECTURE, readMoeConfig } from '../models/moe'

export type { MemoryPlan, MemoryPrecision, ModelMemory }

/** The model as the engine sees it (native config.cpp), plus the checkpoint's weight dtype. */
export interface ModelShape {
  architecture: string
  layers: number
  hidden: number
  intermediate: number
  heads: number
  kvHeads: number
  headDim: number
  vocab: number
  tiedEmbeddings: boolean
  /** Qwen3's per-head q/k RMSNorm. */
  qkNorm: boolean
  qkvBias: boolean
  oBias: boolean
  mlpBias: boolean
  /** The safetensors dtype of the weight matrices (F32, BF16, F16). */
  weightDtype: string
  /** Qwen3-MoE's sparse layers (absent for a dense model). */
  moe?: MoeShape
}

/** The experts of a Qwen3-MoE model as the engine holds them (native config.cpp parse_moe). */
export interface MoeShape {
  /** E: experts of each sparse layer. */
  experts: number
  /** K: experts each token is routed to. */
  expertsPerToken: number
  /** Im: each expert's MLP width. */
  expertIntermediate: number
  /** Ls: layers whose MLP is the experts. */
  sparseLayers: number
  /** The checkpoint stores them fused (mlp.experts.gate_up_proj [E, 2Im, C]): loading reads a
   *  whole fused tensor into f32 at once (weights.cpp ExpertSlices). */
  fused: boolean
}

/** What the engine build and the machine change in the plan. */
export interface EngineFactsForPlan {
  /** The build keeps a packed copy of frozen f32 weights (oneDNN: engineFacts().blas === 'onednn'). */
  packs: boolean
  /** Physical memory in bytes: the packed copy is made when it needs at most an eighth of it. */
  physicalBytes: number
  /** Engine threads (per-thread attention scratch). */
  threads: number
}

/** The keys of a training config the plan reads. */
export type PlanConfig = Pick<
  TrainingConfig,
  | 'stage' | 'finetuning_type' | 'lora_rank' | 'lora_target' | 'lora_dropout' | 'use_dora' | 'per_device_train_batch_size'
  | 'per_device_eval_batch_size' | 'gradient_accumulation_steps' | 'cutoff_len' | 'disable_gradient_checkpointing'
  | 'precision' | 'pref_loss' | 'num_generations' | 'max_completion_length' | 'beta' | 'val_size' | 'sample_prompts'
  | 'sample_max_new_tokens'
>

/** Node + the addon + oneDNN/OpenMP of a process that has run a training step: measured peak RSS
 *  of a step on a tiny model (tests/unit/training.memory-plan.test.ts measures it again). */
export const RUNTIME_BYTES = 88 * 2 ** 20

const F32 = 4
const MI = 2 ** 20
/** Query rows per attention block (cpu/ops.cpp kQBlock). */
const Q_BLOCK = 64
/** Vocabulary rows per chunk of a packed head (cpu/ops.cpp kPackedHeadRows). */
const PACKED_HEAD_ROWS = 1024
/** Rows per engine call of the sample generations (generation/generate.ts batchSize). */
const GENERATION_BATCH = 16

/** config.json (as parsed JSON) into the engine's view of the model, as native config.cpp reads it.
 *  fusedExperts: the checkpoint's experts are in transformers 5's fused layout (fusedExpertsOf). */
export function modelShape(config: Record<string, unknown>, weightDtype: string, opts: { fusedExperts?: boolean } = {}): ModelShape {
  const int = (name: string, fallback?: number): number => {
    const v = config[name] ?? fallback
    if (typeof v !== 'number' || !Number.isSafeInteger(v) || v <= 0) throw new Error(`config.json: field "${name}" must be a positive integer`)
    return v
  }
  const archs = config.architectures
  const architecture = Array.isArray(archs) && typeof archs[0] === 'string' ? archs[0] : ''
  const hidden = int('hidden_size')
  const heads = int('num_attention_heads')
  const attentionBias = config.attention_bias === true
  const qwen2 = architecture === 'Qwen2ForCausalLM'
  const layers = int('num_hidden_layers')
  const moe = readMoeConfig(config, layers)
  return {
    architecture,
    layers,
    hidden,
    intermediate: int('intermediate_size'),
    heads,
    kvHeads: int('num_key_value_heads', heads),
    headDim: int('head_dim', Math.floor(hidden / heads)),
    vocab: int('vocab_size'),
    tiedEmbeddings: config.tie_word_embeddings === true,
    qkNorm: architecture === 'Qwen3ForCausalLM' || architecture === MOE_ARCHITECTURE,
    qkvBias: qwen2 || attentionBias,
    oBias: !qwen2 && attentionBias,
    mlpBias: config.mlp_bias === true,
    weightDtype: weightDtype.toUpperCase(),
    ...(moe
      ? {
          moe: {
            experts: moe.experts, expertsPerToken: moe.expertsPerToken, expertIntermediate: moe.expertIntermediate,
            sparseLayers: moe.sparseLayers.length, fused: opts.fusedExperts === true
          }
        }
      : {})
  }
}

/** The checkpoint holds experts in transformers 5's fused layout (mlp.experts.gate_up_proj). */
export function fusedExpertsOf(tensors: Map<string, unknown>): boolean {
  for (const name of tensors.keys()) if (name.endsWith('.mlp.experts.gate_up_proj')) return true
  return false
}

/** Dense and sparse layers: Ld, Ls. */
function layerKinds(s: ModelShape): { dense: number; sparse: number } {
  const sparse = s.moe?.sparseLayers ?? 0
  return { dense: s.layers - sparse, sparse }
}

/** [in, out] of an expert's gate, up and down. */
function expertProjections(s: ModelShape): [number, number][] {
  const C = s.hidden, Im = s.moe?.expertIntermediate ?? 0
  return [[C, Im], [C, Im], [Im, C]]
}

/** [in, out] of each projection, in the engine's order q, k, v, o, gate, up, down (gate, up and
 *  down: a dense layer's MLP). */
function projections(s: ModelShape): [number, number][] {
  const C = s.hidden, q = s.heads * s.headDim, k = s.kvHeads * s.headDim, I = s.intermediate
  return [[C, q], [C, k], [C, k], [q, C], [C, I], [C, I], [I, C]]
}

/** Parameter counts: the matrices a bf16 model holds in 16 bits, and the f32 rest. */
/** The dtype precision auto follows: the first layer's q_proj, as the engine reads it (weights.cpp
 *  Model::load), else the most common dtype by elements. */
export function weightDtypeOf(tensors: Map<string, { dtype: string; shape: number[] }>): string {
  const q = tensors.get('model.layers.0.self_attn.q_proj.weight')
  if (q) return q.dtype
  const counts = new Map<string, number>()
  for (const t of tensors.values()) counts.set(t.dtype, (counts.get(t.dtype) ?? 0) + t.shape.reduce((a, b) => a * b, 1))
  return [...counts.entries()].sort((a, b) => b[1] - a[1])[0]?.[0] ?? 'F32'
}

export function parameterCounts(s: ModelShape): {
  matrices: number; vectors: number; total: number; frozen: number; largest: number
  /** Parameters one token uses: all but the (E − K) experts of each sparse layer it is not routed to. */
  active: number
} {
  const C = s.hidden, q = s.heads * s.headDim, k = s.kvHeads * s.headDim, I = s.intermediate
  const proj = projections(s)
  const { dense, sparse } = layerKinds(s)
  const attention = proj.slice(0, 4).reduce((a, [i, o]) => a + i * o, 0)
  const mlp = proj.slice(4).reduce((a, [i, o]) => a + i * o, 0)
  const E = s.moe?.experts ?? 0
  const expert = expertProjections(s).reduce((a, [i, o]) => a + i * o, 0)
  const router = E * C
  const attentionVectors = 2 * C + (s.qkNorm ? 2 * s.headDim : 0) + (s.qkvBias ? q + 2 * k : 0) + (s.oBias ? C : 0)
  const mlpVectors = s.mlpBias ? 2 * I + C : 0
  const head = s.vocab * C
  const matrices = s.layers * attention + dense * mlp + sparse * (router + E * expert) + head * (s.tiedEmbeddings ? 1 : 2)
  const vectors = s.layers * attentionVectors + dense * mlpVectors + C
  const total = matrices + vectors
  return {
    matrices, vectors, total,
    // Model::frozen_weights: every layer's projections and the head (the embedding when tied);
    // not a sparse layer's router and experts
    frozen: s.layers * attention + dense * mlp + head,
    largest: Math.max(head, ...proj.slice(0, dense > 0 ? 7 : 4).map(([i, o]) => i * o), ...(sparse > 0 ? [router, ...expertProjections(s).map(([i, o]) => i * o)] : [])),
    active: total - sparse * (E - (s.moe?.expertsPerToken ?? 0)) * expert
  }
}

/** auto = bf16 when the checkpoint's weights are BF16 or F16, else f32; full fine-tuning is f32. */
export function resolvePrecision(precision: TrainingConfig['precision'] | undefined, s: ModelShape, full: boolean): MemoryPrecision {
  if (full) return 'f32'
  if (precision === 'bf16' || precision === 'f32') return precision
  return s.weightDtype === 'BF16' || s.weightDtype === 'F16' ? 'bf16' : 'f32'
}

function loraTargetCount(targets: readonly string[]): { n: number; which: number[] } {
  const all = targets.includes('all')
  const which = LORA_TARGET_MODULES.map((m, i) => (all || targets.includes(m) ? i : -1)).filter((i) => i >= 0)
  return { n: which.length, which }
}

/**
 * Floats per row of the layer state (see the header), with LoRA of `rank` on the targets `which`
 * (LORA_TARGET_MODULES indices). layer: one layer's state as a scratch shared by every layer
 * holds it (both MLPs' buffers in a model with dense and sparse layers); layers: the sum over the
 * layers when each keeps its own; grads: the backward scratch; maxIn: the widest product input.
 */
function rowFloats(s: ModelShape, which: readonly number[], rank: number) {
  const C = s.hidden, q = s.heads * s.headDim, k = s.kvHeads * s.headDim, I = s.intermediate
  const { dense, sparse } = layerKinds(s)
  const attnTargets = which.filter((t) => t < 4).length
  const mlpTargets = which.length - attnTargets
  const qk = s.qkNorm ? q + k + s.heads + s.kvHeads : 0
  const attention = 4 * C + 2 * q + 2 * k + s.heads + 2 + qk + attnTargets * rank
  const denseMlp = 3 * I + mlpTargets * rank
  const m = s.moe
  const K = m?.expertsPerToken ?? 0, E = m?.experts ?? 0, Im = m?.expertIntermediate ?? 0
  // MoeActs: logits, probs [N,E]; idx, w [N,K]; tok (device and host), slot, sw [S]; xs, ys [S,C]; g, u, h [S,Im]; LoRA [S,r]
  const sparseMlp = m ? 2 * E + 6 * K + 2 * K * C + 3 * K * Im + mlpTargets * K * rank : 0
  const layer = attention + (dense > 0 ? denseMlp : 0) + (sparse > 0 ? sparseMlp : 0)
  const layers = dense * (attention + denseMlp) + sparse * (attention + sparseMlp)
  const grads = C + 2 * q + 2 * k + (s.qkNorm ? q + k : 0) + 3 * Math.max(dense > 0 ? I : 0, sparse > 0 ? K * Im : 0) +
    (sparse > 0 ? 2 * K * C + 2 * K + E : 0)
  return { layer, layers, grads, maxIn: Math.max(C, q, dense > 0 ? I : 0, sparse > 0 ? Im : 0) }
}

/** The passes of one training step, by stage: sequences of the trained pass and of the largest
 *  pass without gradients, their length, and the decoding batches. */
export interface StepShape {
  /** Sequences of the pass that keeps activations for backward, and their length (tokens). */
  trainSequences: number
  trainLength: number
  /** Rows (tokens) of the largest pass without gradients (reference, KL, evaluation, prefill),
   *  and the head rows of such a pass (every token when scoring, one per sequence in a prefill). */
  inferRows: number
  inferHeadRows: number
  /** Decoding: sequences generated at once and tokens each holds at the end (GRPO, samples). */
  decodeSequences: number
  decodeLength: number
}

export function stepShape(cfg: PlanConfig): StepShape {
  const B = cfg.per_device_train_batch_size, T = cfg.cutoff_len
  const evalB = cfg.val_size > 0 ? cfg.per_device_eval_batch_size : 0
  let trainSequences = B
  let trainLength = T
  let infer = 0
  let inferHead = 0
  let decodeSequences = 0
  let decodeLength = 0
  if (cfg.stage === 'dpo') {
    trainSequences = 2 * B
    const reference = !(cfg.pref_loss === 'orpo' || cfg.pref_loss === 'simpo')
    infer = inferHead = Math.max(reference ? 2 * B : 0, 2 * evalB) * T
  } else if (cfg.stage === 'kto') {
    infer = inferHead = Math.max(2 * B, 2 * evalB) * T
  } else if (cfg.stage === 'grpo') {
    const prompt = Math.max(1, T - cfg.max_completion_length)
    trainLength = Math.min(T, prompt + cfg.max_completion_length)
    const generated = B * cfg.gradient_accumulation_steps
    const evalGenerated = evalB * cfg.num_generations
    decodeSequences = Math.max(generated, evalGenerated)
    decodeLength = prompt + cfg.max_completion_length
    const reference = cfg.beta > 0 ? B * trainLength : 0
    infer = Math.max(decodeSequences * prompt, reference)
    inferHead = Math.max(decodeSequences, reference)
  } else {
    infer = inferHead = evalB * T
  }
  if (cfg.sample_prompts > 0) {
    const rows = Math.min(cfg.sample_prompts, GENERATION_BATCH)
    infer = Math.max(infer, rows * T)
    inferHead = Math.max(inferHead, rows)
    if (rows * (T + cfg.sample_max_new_tokens) > decodeSequences * decodeLength) {
      decodeSequences = rows
      decodeLength = T + cfg.sample_max_new_tokens
    }
  }
  return { trainSequences, trainLength, inferRows: infer, inferHeadRows: inferHead, decodeSequences, decodeLength }
}

/** Bytes of a KV cache of `sequences` × `capacity` tokens (Model::kv_cache_bytes). */
export function kvCacheBytes(s: ModelShape, sequences: number, capacity: number): number {
  return 2 * s.layers * sequences * capacity * s.kvHeads * s.headDim * F32
}

/** Bytes of the weights as the engine holds them in `precision`. */
export function weightBytes(s: ModelShape, precision: MemoryPrecision): number {
  const p = parameterCounts(s)
  return precision === 'bf16' ? 2 * p.matrices + F32 * p.vectors : F32 * p.total
}

/** The head's logits chunk the backend keeps (cpu/ops.cpp vocab_chunk, PackedHead rows), bytes. */
function headScratchBytes(M: number, V: number, packed: boolean): number {
  if (M <= 0) return 0
  if (packed) return F32 * M * PACKED_HEAD_ROWS
  const chunk = Math.min(V, Math.max(256, Math.floor((4 * MI) / M)))
  return F32 * M * chunk
}

/** The memory a training run will hold at its peak (see the header for every term). */
export function planTraining(s: ModelShape, cfg: PlanConfig, engine: EngineFactsForPlan): MemoryPlan {
  const full = cfg.finetuning_type === 'full'
  const precision = resolvePrecision(cfg.precision, s, full)
  const counts = parameterCounts(s)
  const C = s.hidden, V = s.vocab
  const weights = weightBytes(s, precision)
  const packs = engine.packs && precision === 'f32' && !full && F32 * counts.frozen <= engine.physicalBytes / 8
  const packed = packs ? F32 * counts.frozen : 0

  const lora = full ? null : loraTargetCount(cfg.lora_target)
  const proj = projections(s)
  const expertProj = expertProjections(s)
  const { dense, sparse } = layerKinds(s)
  const E = s.moe?.experts ?? 0
  const dora = lora !== null && cfg.use_dora === true
  // DoRA: a magnitude per output row of each target; its pass keeps what the magnitude scales
  // (LayerActs dz) and has per-pass scratch (passes.h DoraScratch). The engine refuses DoRA on
  // the experts, so a sparse layer's share is its attention's.
  const doraOutOf = (mlpToo: boolean) => (dora ? lora.which.reduce((a, t) => a + (t < 4 || mlpToo ? proj[t]![1] : 0), 0) : 0)
  const doraOut = doraOutOf(dense > 0)
  const doraAll = dense * doraOutOf(true) + sparse * doraOutOf(false)
  const maxOut = Math.max(...proj.map(([, out]) => out))
  const r = cfg.lora_rank
  // LoRA on a sparse layer's gate/up/down: one A, B pair per expert
  const loraOf = (t: number) =>
    t < 4 ? s.layers * r * (proj[t]![0] + proj[t]![1]) : dense * r * (proj[t]![0] + proj[t]![1]) + sparse * E * r * (expertProj[t - 4]![0] + expertProj[t - 4]![1])
  const loraParams = lora ? lora.which.reduce((a, t) => a + loraOf(t), 0) + doraAll : 0
  const trainable = full ? 3 * F32 * counts.total : 4 * F32 * loraParams
  const trainableParams = full ? counts.total : loraParams

  const step = stepShape(cfg)
  const N = step.trainSequences * step.trainLength
  const M = N - step.trainSequences // position 0 of a sequence predicts nothing
  const rows = rowFloats(s, lora ? lora.which : [], cfg.lora_rank)
  const checkpointing = !cfg.disable_gradient_checkpointing
  const layers = checkpointing ? s.layers * C + rows.layer + doraOut : rows.layers + doraAll
  const headRow = (full ? 4 : 5) * C + 4
  const trainState = F32 * (N * (2 * C + layers + rows.grads + C) + M * headRow)
  const Ni = step.inferRows
  const Mi = step.inferHeadRows
  const inferState = F32 * (Ni * (2 * C + rows.layer - C) + Mi * (2 * C + 3))
  const headScratch = headScratchBytes(Math.max(M, Mi), V, packs)
  const longest = Math.max(step.trainLength, step.decodeLength)
  const attention = F32 * 2 * Q_BLOCK * longest * Math.max(1, engine.threads)
  const dropout = !full && cfg.lora_dropout > 0 ? F32 * 2 * N * rows.maxIn : 0
  const doraScratch = dora ? F32 * N * (3 * maxOut + (cfg.lora_dropout > 0 ? 5 * maxOut + 2 * rows.maxIn : 0)) : 0
  // bf16: each product's f32 input rounded into a bf16 copy the engine thread keeps (gemm_bf16.cpp)
  const bf16Inputs = precision === 'bf16' ? 2 * Math.max(N * rows.maxIn, headScratch / F32) : 0
  const batchArrays = 32 * Math.max(N, Ni)
  const decodeLogits = 20 * step.decodeSequences * V
  const routing = s.moe ? 8 * s.moe.expertsPerToken * Math.max(N, Ni) : 0
  const activations = trainState + inferState + headScratch + attention + dropout + doraScratch + bf16Inputs + batchArrays + decodeLogits + routing
  const kvCache = step.decodeSequences ? kvCacheBytes(s, step.decodeSequences, step.decodeLength) : 0

  const running = RUNTIME_BYTES + weights + packed + trainable + activations + kvCache
  // Loading: each tensor is read into an f32 copy, then uploaded (weights.cpp Model::load); in
  // bf16 a BF16 file's matrices are mapped in place, others rounded through a 2-byte copy.
  const mapped = precision === 'bf16' && s.weightDtype === 'BF16'
  const copy = F32 + (precision === 'bf16' ? 2 : 0)
  // fused experts: the whole gate_up_proj [E, 2Im, C] in f32, and one expert's slice copied out of it
  const fusedCopy = s.moe?.fused && !mapped ? F32 * s.moe.experts * 2 * s.moe.expertIntermediate * C + copy * s.moe.expertIntermediate * C : 0
  const loading = RUNTIME_BYTES + weights + Math.max(mapped ? 0 : copy * counts.largest, fusedCopy)
  const total = Math.max(running, loading)
  return {
    precision, weights, packed, trainable, activations, kvCache, runtime: RUNTIME_BYTES, total,
    need: total - RUNTIME_BYTES,
    detail: {
      parameters: counts.total, trainableParameters: trainableParams, trainSequences: step.trainSequences,
      trainTokens: N, inferTokens: Ni, decodeSequences: step.decodeSequences, decodeTokens: step.decodeLength, checkpointing
    }
  }
}

/** A chat's memory: the weights (auto precision), a KV cache of `sequences` × `tokens`, the
 *  prefill's one scratch layer and the decoding logits. No packed copy: decoding never packs.
 *  The prefill runs `promptTokens` of each sequence at once (all `tokens` when not given: a
 *  context filled by its prompt). */
export function planInference(s: ModelShape, opts: { tokens?: number; sequences?: number; threads?: number; promptTokens?: number } = {}): { precision: MemoryPrecision; weights: number; kvCache: number; activations: number; runtime: number; total: number } {
  const tokens = opts.tokens ?? 4096
  const sequences = opts.sequences ?? 1
  const precision = resolvePrecision('auto', s, false)
  const weights = weightBytes(s, precision)
  const kvCache = kvCacheBytes(s, sequences, tokens)
  const rows = rowFloats(s, [], 0)
  const N = sequences * Math.min(tokens, opts.promptTokens ?? tokens)
  const activations =
    F32 * N * (2 * s.hidden + rows.layer - s.hidden) + F32 * 2 * Q_BLOCK * tokens * Math.max(1, opts.threads ?? 1) + 20 * sequences * s.vocab + 32 * N +
    (precision === 'bf16' ? 2 * N * rows.maxIn : 0) + (s.moe ? 8 * s.moe.expertsPerToken * N : 0)
  const total = RUNTIME_BYTES + weights + kvCache + activations
  return { precision, weights, kvCache, activations, runtime: RUNTIME_BYTES, total }
}

/** The schema's defaults for what the plan reads (the Models page's "LoRA training" figure). */
export const DEFAULT_PLAN_CONFIG: PlanConfig = {
  stage: 'sft', finetuning_type: 'lora', lora_rank: 8, lora_target: ['all'], lora_dropout: 0, use_dora: false, per_device_train_batch_size: 8,
  per_device_eval_batch_size: 8, gradient_accumulation_steps: 1, cutoff_len: 2048, disable_gradient_checkpointing: false,
  precision: 'auto', pref_loss: 'sigmoid', num_generations: 8, max_completion_length: 512, beta: 0, val_size: 0,
  sample_prompts: 3, sample_max_new_tokens: 64
}

/** Inference (1 × 4096 tokens) and LoRA training with the default settings, for the Models page. */
export function modelMemory(s: ModelShape, engine: EngineFactsForPlan): ModelMemory {
  const chat = planInference(s, { threads: engine.threads })
  const lora = planTraining(s, DEFAULT_PLAN_CONFIG, engine)
  return { inference: chat.total, loraTraining: lora.total, inferenceTokens: 4096, precision: chat.precision }
}

/** What to change when the plan does not fit: each change with the bytes it saves, largest first. */
export function memoryAdvice(s: ModelShape, cfg: PlanConfig, engine: EngineFactsForPlan): { change: string; saves: number }[] {
  const base = planTraining(s, cfg, engine).total
  const out: { change: string; saves: number }[] = []
  const tryChange = (change: string, next: Partial<PlanConfig>) => {
    const saves = base - planTraining(s, { ...cfg, ...next }, engine).total
    if (saves > 0) out.push({ change, saves })
  }
  const B = cfg.per_device_train_batch_size
  if (B > 1) {
    const half = Math.max(1, Math.floor(B / 2))
    tryChange(`per_device_train_batch_size ${B} → ${half}${cfg.stage === 'grpo' ? '' : `, with gradient_accumulation_steps ${cfg.gradient_accumulation_steps} → ${cfg.gradient_accumulation_steps * Math.ceil(B / half)} to keep the batch`}`, { per_device_train_batch_size: half })
  }
  if (cfg.cutoff_len > 256) {
    const half = Math.floor(cfg.cutoff_len / 2)
    if (cfg.stage !== 'grpo' || half > cfg.max_completion_length) tryChange(`cutoff_len ${cfg.cutoff_len} → ${half}`, { cutoff_len: half })
  }
  if (cfg.disable_gradient_checkpointing) tryChange('gradient checkpointing on (disable_gradient_checkpointing: false)', { disable_gradient_checkpointing: false })
  if (cfg.finetuning_type === 'full') tryChange('LoRA instead of full fine-tuning (finetuning_type: lora)', { finetuning_type: 'lora' })
  else if (resolvePrecision(cfg.precision, s, false) === 'f32') tryChange('precision: bf16 (frozen weights in 16 bits, no packed copy)', { precision: 'bf16' })
  if (cfg.stage === 'grpo' && cfg.gradient_accumulation_steps > 1)
    tryChange(`gradient_accumulation_steps ${cfg.gradient_accumulation_steps} → 1 (fewer completions generated at once)`, { gradient_accumulation_steps: 1 })
  return out.sort((a, b) => b.saves - a.saves)
}

/** 2.1 GB, 340 MB: decimal units, as the pages show sizes. */
export function formatMemory(bytes: number): string {
  if (bytes >= 1e9) return `${(bytes / 1e9).toFixed(bytes >= 1e10 ? 0 : 1)} GB`
  if (bytes >= 1e6) return `${Math.round(bytes / 1e6)} MB`
  return `${Math.max(0, Math.round(bytes / 1e3))} kB`
}
