// What vLLM's LoRA loader refuses or needs a flag for, checked on an adapter_config.json so the
// PEFT export can warn before a user finds out at serve time. vLLM's max_lora_rank must be one of
// MAX_LORA_RANKS (default 16) and at least the adapter's r; DoRA, trained biases, modules_to_save
// and per-module rank/alpha patterns are not served.

export const VLLM_MAX_LORA_RANKS = [1, 8, 16, 32, 64, 128, 256, 320, 512] as const
export const VLLM_DEFAULT_MAX_LORA_RANK = 16

export function vllmWarnings(config: Record<string, unknown>, opts: { experts?: boolean } = {}): string[] {
  const out: string[] = []
  const r = config.r
  if (typeof r === 'number') {
    const fit = VLLM_MAX_LORA_RANKS.find((m) => m >= r)
    if (fit === undefined) out.push(`vLLM: r = ${r} is above the largest max_lora_rank vLLM accepts (512); vLLM cannot serve this adapter (export it as merged instead)`)
    else if (r > VLLM_DEFAULT_MAX_LORA_RANK) out.push(`vLLM: r = ${r} is above vLLM's default max_lora_rank (16); start vLLM with --max-lora-rank ${fit}`)
  }
  if (config.use_dora === true) out.push('vLLM: DoRA adapters (use_dora) are not supported; export it as merged instead')
  if (typeof config.bias === 'string' && config.bias !== 'none') out.push(`vLLM: bias "${config.bias}" (trained biases) is not supported`)
  if (config.lora_bias === true) out.push('vLLM: lora_bias is not supported')
  if (Array.isArray(config.modules_to_save) && config.modules_to_save.length > 0)
    out.push(`vLLM: modules_to_save (${config.modules_to_save.join(', ')}) is not supported`)
  for (const k of ['rank_pattern', 'alpha_pattern'])
    if (config[k] && typeof config[k] === 'object' && Object.keys(config[k] as object).length > 0) out.push(`vLLM: ${k} (per-module ranks) is not supported`)
  // A Qwen3-MoE adapter on the experts (mlp.experts.{e}.*): vLLM serves it through its fused-MoE
  // LoRA layer (vllm/lora/layers/fused_moe.py), which older releases lack ("does not support fused
  // MoE LoRA") and which refuses expert parallelism.
  if (opts.experts)
    out.push('vLLM: LoRA on the experts (mlp.experts.*) needs a vLLM with LoRA on fused MoE layers, without --enable-expert-parallel; older vLLM refuses adapters with expert weights (serve the merged model instead)')
  return out
}
