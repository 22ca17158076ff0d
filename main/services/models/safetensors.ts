// Reads the JSON header of a .safetensors file: 8 bytes little-endian header length, then the
// header, then the raw tensor bytes. Only the header is read, so huge shards cost nothing.
import { open } from 'node:fs/promises'
import { basename } from 'node:path'

export interface TensorEntry {
  dtype: string
  shape: number[]
  /** Byte range inside the data section (after the header). */
  dataOffsets: [number, number]
}

export interface SafetensorsHeader {
  tensors: Map<string, TensorEntry>
  metadata: Record<string, string>
  /** Bytes of the data section. */
  dataBytes: number
}

/** Bytes per element of each safetensors dtype. */
export const dtypeBytes: Record<string, number> = {
  F64: 8, F32: 4, F16: 2, BF16: 2, F8_E4M3: 1, F8_E5M2: 1,
  I64: 8, I32: 4, I16: 2, I8: 1, U64: 8, U32: 4, U16: 2, U8: 1, BOOL: 1
}

// A header larger than this is not a model header (the format caps it at 100 MB).
const maxHeaderBytes = 100_000_000

export class SafetensorsError extends Error {
  constructor(file: string, message: string) {
    super(`${basename(file)}: ${message}`)
    this.name = 'SafetensorsError'
  }
}

export async function readSafetensorsHeader(file: string): Promise<SafetensorsHeader> {
  const handle = await open(file, 'r')
  try {
    const { size } = await handle.stat()
    if (size < 8) throw new SafetensorsError(file, `file is ${size} bytes, too short for a safetensors header`)
    const prefix = Buffer.alloc(8)
    await handle.read(prefix, 0, 8, 0)
    const headerLength = prefix.readBigUInt64LE(0)
    if (headerLength > BigInt(Math.min(maxHeaderBytes, size - 8))) {
      throw new SafetensorsError(file, `header length ${headerLength} does not fit in a file of ${size} bytes`)
    }
    const headerBytes = Buffer.alloc(Number(headerLength))
    await handle.read(headerBytes, 0, headerBytes.length, 8)
    let raw: unknown
    try {
      raw = JSON.parse(headerBytes.toString('utf8'))
    } catch (err) {
      throw new SafetensorsError(file, `header is not valid JSON (${(err as Error).message})`)
    }
    if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) {
      throw new SafetensorsError(file, 'header is not a JSON object')
    }
    const dataBytes = size - 8 - headerBytes.length
    const tensors = new Map<string, TensorEntry>()
    let metadata: Record<string, string> = {}
    for (const [name, value] of Object.entries(raw as Record<string, unknown>)) {
      if (name === '__metadata__') {
        metadata = (value ?? {}) as Record<string, string>
        continue
      }
      tensors.set(name, parseTensorEntry(file, name, value, dataBytes))
    }
    return { tensors, metadata, dataBytes }
  } finally {
    await handle.close()
  }
}

function parseTensorEntry(file: string, name: string, value: unknown, dataBytes: number): TensorEntry {
  const entry = value as { dtype?: unknown; shape?: unknown; data_offsets?: unknown }
  if (typeof entry !== 'object' || entry === null) throw new SafetensorsError(file, `tensor '${name}' is not an object`)
  const { dtype, shape, data_offsets: offsets } = entry
  if (typeof dtype !== 'string' || !(dtype in dtypeBytes)) {
    throw new SafetensorsError(file, `tensor '${name}' has unknown dtype ${JSON.stringify(dtype)}`)
  }
  if (!Array.isArray(shape) || !shape.every((d) => Number.isSafeInteger(d) && d >= 0)) {
    throw new SafetensorsError(file, `tensor '${name}' has an invalid shape ${JSON.stringify(shape)}`)
  }
  if (
    !Array.isArray(offsets) || offsets.length !== 2 ||
    !offsets.every((o) => Number.isSafeInteger(o) && o >= 0) || offsets[0] > offsets[1]
  ) {
    throw new SafetensorsError(file, `tensor '${name}' has invalid data_offsets ${JSON.stringify(offsets)}`)
  }
  const [begin, end] = offsets as [number, number]
  const expected = (shape as number[]).reduce((a, b) => a * b, 1) * dtypeBytes[dtype]!
  if (end - begin !== expected) {
    throw new SafetensorsError(
      file,
      `tensor '${name}' (${dtype} ${JSON.stringify(shape)}) needs ${expected} bytes but data_offsets span ${end - begin}`
    )
  }
  if (end > dataBytes) {
    throw new SafetensorsError(file, `tensor '${name}' ends at byte ${end} of a ${dataBytes}-byte data section (file truncated?)`)
  }
  return { dtype, shape: shape as number[], dataOffsets: [begin, end] }
}

/** Serialises tensors into safetensors bytes (used by tests and fixtures to make tiny models). */
export function encodeSafetensors(
  tensors: { name: string; dtype: string; shape: number[]; data: Uint8Array }[],
  metadata: Record<string, string> = { format: 'pt' }
): Buffer {
  const header: Record<string, unknown> = { __metadata__: metadata }
  let offset = 0
  for (const t of tensors) {
    header[t.name] = { dtype: t.dtype, shape: t.shape, data_offsets: [offset, offset + t.data.length] }
    offset += t.data.length
  }
  let json = JSON.stringify(header)
  // The format pads the header with spaces so the data section starts 8-byte aligned.
  json += ' '.repeat((8 - (Buffer.byteLength(json) % 8)) % 8)
  const headerBytes = Buffer.from(json, 'utf8')
  const prefix = Buffer.alloc(8)
  prefix.writeBigUInt64LE(BigInt(headerBytes.length))
  return Buffer.concat([prefix, headerBytes, ...tensors.map((t) => Buffer.from(t.data.buffer, t.data.byteOffset, t.data.byteLength))])
}
