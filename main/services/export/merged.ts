// `merged`: the base model with the adapter folded in (or a full fine-tuning run's weights), as a
// Hugging Face folder transformers loads as it is: safetensors in the base's dtype (sharded with
// model.safetensors.index.json past a size limit), config.json, generation_config.json and the
// tokenizer files.
import { existsSync } from 'node:fs'
import { readFile } from 'node:fs/promises'
import { join } from 'node:path'
import { encodeFloats, floatBytes, type FloatDtype } from './dtype'
import type { TensorInfo, TensorSource } from './checkpoint'
import type { StagedFolder } from './staged'

/** Files of a model folder an export carries along as they are (those that exist). */
export const TOKENIZER_FILES = [
  'tokenizer.json', 'tokenizer_config.json', 'special_tokens_map.json', 'added_tokens.json',
  'vocab.json', 'merges.txt', 'tokenizer.model', 'chat_template.jinja', 'chat_template.json'
]

export interface OutTensor {
  name: string
  shape: number[]
  dtype: FloatDtype
}

/** transformers' default max_shard_size. */
export const DEFAULT_SHARD_BYTES = 5 * 1000 ** 3

const torchName: Record<FloatDtype, string> = { F32: 'float32', F16: 'float16', BF16: 'bfloat16' }

export function tensorBytes(t: OutTensor): number {
  return t.shape.reduce((a, b) => a * b, 1) * floatBytes[t.dtype]
}

/** The dtype each tensor is written in: `dtype` when given, else its own (a float type). */
export function outTensors(list: TensorInfo[], dtype?: FloatDtype): OutTensor[] {
  return list.map((t) => {
    const own = t.dtype as FloatDtype
    if (!dtype && !(own in floatBytes)) throw new Error(`tensor '${t.name}' is ${t.dtype}; only F32, F16 and BF16 checkpoints can be exported`)
    return { name: t.name, shape: t.shape, dtype: dtype ?? own }
  })
}

/** Consecutive groups of at most maxBytes each (a tensor larger than that gets a shard alone). */
export function planShards(tensors: OutTensor[], maxBytes: number): OutTensor[][] {
  const shards: OutTensor[][] = []
  let cur: OutTensor[] = []
  let size = 0
  for (const t of tensors) {
    const b = tensorBytes(t)
    if (cur.length && size + b > maxBytes) {
      shards.push(cur)
      cur = []
      size = 0
    }
    cur.push(t)
    size += b
  }
  if (cur.length) shards.push(cur)
  return shards
}

export function shardName(i: number, n: number): string {
  return n === 1 ? 'model.safetensors' : `model-${String(i + 1).padStart(5, '0')}-of-${String(n).padStart(5, '0')}.safetensors`
}

function safetensorsHeader(tensors: OutTensor[], metadata: Record<string, string>): Buffer {
  const header: Record<string, unknown> = { __metadata__: metadata }
  let offset = 0
  for (const t of tensors) {
    const b = tensorBytes(t)
    header[t.name] = { dtype: t.dtype, shape: t.shape, data_offsets: [offset, offset + b] }
    offset += b
  }
  let json = JSON.stringify(header)
  json += ' '.repeat((8 - (Buffer.byteLength(json) % 8)) % 8)
  const body = Buffer.from(json, 'utf8')
  const prefix = Buffer.alloc(8)
  prefix.writeBigUInt64LE(BigInt(body.length))
  return Buffer.concat([prefix, body])
}

/** Header bytes plus data bytes of each shard file. */
export function shardFileBytes(shards: OutTensor[][]): number {
  return shards.reduce((sum, s) => sum + safetensorsHeader(s, { format: 'pt' }).length + s.reduce((a, t) => a + tensorBytes(t), 0), 0)
}

export async function writeSafetensorsFile(
  folder: StagedFolder, name: string, tensors: OutTensor[], source: TensorSource
): Promise<void> {
  await folder.stream(name, async (write) => {
    await write(safetensorsHeader(tensors, { format: 'pt' }))
    for (const t of tensors) await write(encodeFloats(await source.readF32(t.name), t.dtype))
  })
}

export interface MergedPlan {
  shards: OutTensor[][]
  files: string[]
  bytes: number
}

export function planMerged(source: TensorSource, modelDir: string, opts: { dtype?: FloatDtype; maxShardBytes?: number }): MergedPlan {
  const shards = planShards(outTensors(source.list(), opts.dtype), opts.maxShardBytes ?? DEFAULT_SHARD_BYTES)
  const files = shards.map((_, i) => shardName(i, shards.length))
  if (shards.length > 1) files.push('model.safetensors.index.json')
  files.push('config.json')
  for (const f of ['generation_config.json', ...TOKENIZER_FILES]) if (existsSync(join(modelDir, f))) files.push(f)
  return { shards, files, bytes: shardFileBytes(shards) }
}

export async function writeMerged(folder: StagedFolder, source: TensorSource, modelDir: string, plan: MergedPlan): Promise<void> {
  const { shards } = plan
  const weightMap: Record<string, string> = {}
  for (const [i, shard] of shards.entries()) {
    const name = shardName(i, shards.length)
    await writeSafetensorsFile(folder, name, shard, source)
    for (const t of shard) weightMap[t.name] = name
  }
  if (shards.length > 1) {
    const totalSize = shards.flat().reduce((a, t) => a + tensorBytes(t), 0)
    await folder.writeFile('model.safetensors.index.json', JSON.stringify({ metadata: { total_size: totalSize }, weight_map: weightMap }, null, 2) + '\n')
  }
  const config = JSON.parse(await readFile(join(modelDir, 'config.json'), 'utf8')) as Record<string, unknown>
  const dtypes = new Set(shards.flat().map((t) => t.dtype))
  if (dtypes.size === 1) {
    const d = torchName[[...dtypes][0]!]
    if ('dtype' in config) config.dtype = d
    else config.torch_dtype = d
  }
  await folder.writeFile('config.json', JSON.stringify(config, null, 2) + '\n')
  for (const f of plan.files)
    if (f === 'generation_config.json' || TOKENIZER_FILES.includes(f)) await folder.stream(f, async (write) => write(await readFile(join(modelDir, f))))
}

