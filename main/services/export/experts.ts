// Qwen3-MoE's experts in the two layouts a checkpoint stores them in, for the exports:
//  - per expert (transformers 4, PEFT, our engine's names): model.layers.L.mlp.experts.{e}.
//    gate_proj.weight [I, C], up_proj.weight [I, C], down_proj.weight [C, I];
//  - fused, as transformers >= 5 saves them: model.layers.L.mlp.experts.gate_up_proj [E, 2I, C]
//    (expert e's rows [0, I) are its gate_proj, rows [I, 2I) its up_proj) and
//    model.layers.L.mlp.experts.down_proj [E, C, I].
// Adapters (ours and PEFT's) and a full fine-tuning run's training state always name the experts
// per expert; expertSlice says where such a name lies in a fused checkpoint (native
// weights.cpp ExpertSlices reads the same offsets).
import { readMoeConfig, type MoeConfig } from '../models/moe'

export type ExpertProjection = 'gate_proj' | 'up_proj' | 'down_proj'
export const EXPERT_PROJECTIONS: readonly ExpertProjection[] = ['gate_proj', 'up_proj', 'down_proj']

/** model.layers.L.mlp.experts.{e}.(gate|up|down)_proj.weight */
const PER_EXPERT = /^model\.layers\.(\d+)\.mlp\.experts\.(\d+)\.(gate_proj|up_proj|down_proj)\.weight$/

export interface ExpertName {
  layer: number
  expert: number
  projection: ExpertProjection
}

export function parseExpertName(name: string): ExpertName | null {
  const m = PER_EXPERT.exec(name)
  return m ? { layer: Number(m[1]), expert: Number(m[2]), projection: m[3] as ExpertProjection } : null
}

export function perExpertName(layer: number, expert: number, projection: ExpertProjection): string {
  return `model.layers.${layer}.mlp.experts.${expert}.${projection}.weight`
}

/** The fused tensor holding a projection of layer L's experts. */
export function fusedName(layer: number, projection: ExpertProjection): string {
  return `model.layers.${layer}.mlp.experts.${projection === 'down_proj' ? 'down_proj' : 'gate_up_proj'}`
}

const FUSED = /^model\.layers\.(\d+)\.mlp\.experts\.(gate_up_proj|down_proj)$/

/** The layer and kind of a fused expert tensor name, or null. */
export function parseFusedName(name: string): { layer: number; kind: 'gate_up_proj' | 'down_proj' } | null {
  const m = FUSED.exec(name)
  return m ? { layer: Number(m[1]), kind: m[2] as 'gate_up_proj' | 'down_proj' } : null
}

/** Where a per-expert matrix lies in a fused tensor: `offset` values in, `rows` × `cols`. */
export interface ExpertSlice {
  tensor: string
  offset: number
  rows: number
  cols: number
}

/**
 * The slice of a fused checkpoint that holds `name` (a per-expert matrix), or null when `name`
 * is no per-expert name or the checkpoint has no fused tensor for it. Throws when the fused
 * tensor is not [E, 2I, C] / [E, C, I] or has no expert e.
 */
export function expertSlice(shapeOf: (name: string) => readonly number[] | undefined, name: string): ExpertSlice | null {
  const n = parseExpertName(name)
  if (!n) return null
  const tensor = fusedName(n.layer, n.projection)
  const shape = shapeOf(tensor)
  if (!shape) return null
  if (shape.length !== 3 || (n.projection !== 'down_proj' && shape[1]! % 2 !== 0))
    throw new Error(`tensor '${tensor}' has shape ${JSON.stringify(shape)}, expected ${n.projection === 'down_proj' ? '[experts, hidden, moe_intermediate]' : '[experts, 2 × moe_intermediate, hidden]'}`)
  const [E, a, b] = shape as [number, number, number]
  if (n.expert >= E) throw new Error(`'${name}' names expert ${n.expert} but '${tensor}' holds ${E} experts`)
  if (n.projection === 'down_proj') return { tensor, offset: n.expert * a * b, rows: a, cols: b }
  const I = a / 2
  return { tensor, offset: (n.expert * 2 + (n.projection === 'up_proj' ? 1 : 0)) * I * b, rows: I, cols: b }
}

/** The MoE keys of a config.json as the engine reads them, or null for a dense model. */
export function moeConfigOf(config: Record<string, unknown>): MoeConfig | null {
  const layers = typeof config.num_hidden_layers === 'number' ? config.num_hidden_layers : 0
  return readMoeConfig(config, layers)
}
