// Qwen3-MoE's keys of config.json, as the engine reads them (native config.cpp parse_moe, with
// transformers' Qwen3MoeConfig defaults where a key is absent), and which layers are sparse.
// Pure: shared by the folder check (inspect.ts) and the memory plan (memoryPlan.ts).

export const MOE_ARCHITECTURE = 'Qwen3MoeForCausalLM'

export interface MoeConfig {
  /** num_experts (128). */
  experts: number
  /** num_experts_per_tok (8): experts the router picks for each token. */
  expertsPerToken: number
  /** moe_intermediate_size (768): each expert's MLP width. */
  expertIntermediate: number
  /** decoder_sparse_step (1). */
  sparseStep: number
  /** mlp_only_layers ([]), the indices below num_hidden_layers (others name no layer). */
  mlpOnlyLayers: number[]
  /** norm_topk_prob (false). */
  normTopkProb: boolean
  /** router_aux_loss_coef (0.001). */
  routerAuxLossCoef: number
  /** The layers whose MLP is the experts, in order. */
  sparseLayers: number[]
}

/** Layer l's MLP is the experts (transformers' Qwen3MoeDecoderLayer, native ModelConfig::sparse_layer). */
export function isSparseLayer(m: Pick<MoeConfig, 'experts' | 'sparseStep' | 'mlpOnlyLayers'>, l: number): boolean {
  return m.experts > 0 && (l + 1) % m.sparseStep === 0 && !m.mlpOnlyLayers.includes(l)
}

/**
 * The MoE settings of a config.json (parsed) with `layers` layers, or null when it is not a
 * Qwen3-MoE config or has no experts (num_experts 0: every layer dense). Throws an Error naming
 * config.json and the field for a value the engine refuses.
 */
export function readMoeConfig(config: Record<string, unknown>, layers: number): MoeConfig | null {
  const archs = config.architectures
  if (!Array.isArray(archs) || archs[0] !== MOE_ARCHITECTURE) return null
  const int = (name: string, fallback: number, min: number): number => {
    const v = config[name]
    if (v === undefined || v === null) return fallback
    if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < min || v > 2 ** 31 - 1)
      throw new Error(`config.json: field "${name}" must be an integer of at least ${min}, got ${JSON.stringify(v)}`)
    return v
  }
  // transformers >= 5 writes num_experts as num_local_experts
  const experts = int(config.num_experts === undefined && config.num_local_experts !== undefined ? 'num_local_experts' : 'num_experts', 128, 0)
  const expertsPerToken = int('num_experts_per_tok', 8, 1)
  const expertIntermediate = int('moe_intermediate_size', 768, 1)
  const sparseStep = int('decoder_sparse_step', 1, 1)
  const norm = config.norm_topk_prob
  if (norm !== undefined && norm !== null && typeof norm !== 'boolean')
    throw new Error(`config.json: field "norm_topk_prob" must be true or false, got ${JSON.stringify(norm)}`)
  const coef = config.router_aux_loss_coef
  if (coef !== undefined && coef !== null && (typeof coef !== 'number' || !Number.isFinite(coef)))
    throw new Error(`config.json: field "router_aux_loss_coef" must be a number, got ${JSON.stringify(coef)}`)
  if (experts > 0 && expertsPerToken > experts)
    throw new Error(`config.json: num_experts_per_tok (${expertsPerToken}) is more than num_experts (${experts})`)
  const only = config.mlp_only_layers
  const mlpOnlyLayers: number[] = []
  if (only !== undefined && only !== null) {
    if (!Array.isArray(only)) throw new Error('config.json: field "mlp_only_layers" must be a list of layer indices')
    for (const v of only) {
      if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < 0)
        throw new Error(`config.json: mlp_only_layers holds ${JSON.stringify(v)}, not a layer index`)
      // an index past the last layer names no layer (transformers and the engine ignore it)
      if (v < layers) mlpOnlyLayers.push(v)
    }
  }
  if (experts === 0) return null
  const m = { experts, sparseStep, mlpOnlyLayers }
  const sparseLayers = Array.from({ length: layers }, (_, l) => l).filter((l) => isSparseLayer(m, l))
  return {
    experts, expertsPerToken, expertIntermediate, sparseStep, mlpOnlyLayers,
    normTopkProb: norm === true,
    routerAuxLossCoef: typeof coef === 'number' ? coef : 0.001,
    sparseLayers
  }
}
