// Reading tensors for the exports: a Hugging Face model folder (model.safetensors or a sharded
// index), a PEFT adapter folder, and the merged view of both (W + s·B·A folded in), one tensor at
// a time so a model far larger than memory streams through.
import { readFile } from 'node:fs/promises'
import { open } from 'node:fs/promises'
import { join } from 'node:path'
import { readWeights } from '../models/inspect'
import { readSafetensorsHeader, type TensorEntry } from '../models/safetensors'
import { decodeFloats } from './dtype'
import { expertSlice } from './experts'

export interface TensorInfo {
  name: string
  /** The safetensors dtype on disk (F32, F16, BF16, ...). */
  dtype: string
  shape: number[]
}

/** Tensors by name with their bytes read on demand. */
export interface TensorSource {
  /** In the order of the checkpoint's files (the order HF writes them). */
  list(): TensorInfo[]
  info(name: string): TensorInfo | undefined
  readF32(name: string): Promise<Float32Array>
}

interface Located extends TensorInfo {
  file: string
  entry: TensorEntry
}

/** Where the data section of a safetensors file starts: after the 8-byte length and the header. */
async function dataStart(file: string): Promise<number> {
  const h = await open(file, 'r')
  try {
    const prefix = Buffer.alloc(8)
    await h.read(prefix, 0, 8, 0)
    return 8 + Number(prefix.readBigUInt64LE(0))
  } finally {
    await h.close()
  }
}

async function readRange(file: string, start: number, bytes: number): Promise<Buffer> {
  const h = await open(file, 'r')
  try {
    const buf = Buffer.alloc(bytes)
    let done = 0
    while (done < bytes) {
      const { bytesRead } = await h.read(buf, done, bytes - done, start + done)
      if (bytesRead === 0) throw new Error(`${file}: ends before byte ${start + bytes} (truncated?)`)
      done += bytesRead
    }
    return buf
  } finally {
    await h.close()
  }
}

class SafetensorsSource implements TensorSource {
  private starts = new Map<string, number>()
  constructor(private tensors: Map<string, Located>) {}

  list(): TensorInfo[] {
    return [...this.tensors.values()].map(({ name, dtype, shape }) => ({ name, dtype, shape }))
  }

  info(name: string): TensorInfo | undefined {
    const t = this.tensors.get(name)
    return t && { name: t.name, dtype: t.dtype, shape: t.shape }
  }

  async readRaw(name: string): Promise<Buffer> {
    const t = this.tensors.get(name)
    if (!t) throw new Error(`no tensor '${name}'`)
    let start = this.starts.get(t.file)
    if (start === undefined) this.starts.set(t.file, (start = await dataStart(t.file)))
    const [begin, end] = t.entry.dataOffsets
    return readRange(t.file, start + begin, end - begin)
  }

  async readF32(name: string): Promise<Float32Array> {
    const t = this.tensors.get(name)!
    try {
      return decodeFloats(await this.readRaw(name), t.dtype)
    } catch (err) {
      throw new Error(`${t.file}: tensor '${name}': ${(err as Error).message}`)
    }
  }
}

/** The weights of a model folder, whatever their sharding. */
export async function openModelWeights(dir: string): Promise<TensorSource> {
  const weights = await readWeights(dir)
  const located = new Map<string, Located>()
  for (const [name, entry] of weights.tensors)
    located.set(name, { name, dtype: entry.dtype, shape: entry.shape, file: join(dir, weights.fileOf(name)), entry })
  return new SafetensorsSource(located)
}

/** One safetensors file as a source (an adapter, a training state). */
export async function openSafetensors(file: string): Promise<TensorSource> {
  const header = await readSafetensorsHeader(file)
  const located = new Map<string, Located>()
  for (const [name, entry] of header.tensors) located.set(name, { name, dtype: entry.dtype, shape: entry.shape, file, entry })
  return new SafetensorsSource(located)
}

/** The base weights with some replaced (a full fine-tuning run's trained weights). The engine's
 *  training state names a Qwen3-MoE's experts one by one; in a base that stores them fused each
 *  trained matrix replaces its expert's slice of the fused tensor (the output keeps the base's
 *  layout). */
export function withReplacements(base: TensorSource, replaced: TensorSource): TensorSource {
  const slices = new Map<string, { name: string; offset: number; size: number }[]>()
  for (const t of replaced.list()) {
    if (base.info(t.name)) continue
    const s = expertSlice((n) => base.info(n)?.shape, t.name)
    if (!s) continue
    if (t.shape.length !== 2 || t.shape[0] !== s.rows || t.shape[1] !== s.cols)
      throw new Error(`trained tensor '${t.name}' is ${JSON.stringify(t.shape)} but its slice of the base's '${s.tensor}' is [${s.rows}, ${s.cols}]`)
    slices.set(s.tensor, [...(slices.get(s.tensor) ?? []), { name: t.name, offset: s.offset, size: s.rows * s.cols }])
  }
  return {
    list: () => base.list(),
    info: (name) => base.info(name),
    async readF32(name) {
      if (replaced.info(name)) return replaced.readF32(name)
      const w = await base.readF32(name)
      for (const s of slices.get(name) ?? []) {
        const v = await replaced.readF32(s.name)
        if (v.length !== s.size) throw new Error(`trained tensor '${s.name}': ${v.length} values, expected ${s.size}`)
        w.set(v, s.offset)
      }
      return w
    }
  }
}

export async function readJson(file: string): Promise<Record<string, unknown>> {
  let text: string
  try {
    text = await readFile(file, 'utf8')
  } catch (err) {
    throw new Error(`${file}: cannot read (${(err as Error).message})`)
  }
  try {
    const v = JSON.parse(text) as unknown
    if (typeof v !== 'object' || v === null || Array.isArray(v)) throw new Error('expected a JSON object')
    return v as Record<string, unknown>
  } catch (err) {
    throw new Error(`${file}: not a JSON object (${(err as Error).message})`)
  }
}
