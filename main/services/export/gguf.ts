// A GGUF v3 writer (the file format of llama.cpp, ggml's docs/gguf.md): the header (magic
// "GGUF", version 3, tensor count, metadata count), typed key-value metadata, the tensor infos
// (name, dims in ggml order, i.e. the row-major shape reversed, ggml type, offset in the data
// section) and the tensor data, each tensor at a multiple of general.alignment. Sizes and
// offsets follow from the shapes alone, so the header is built up front and the tensors stream
// through one at a time: a model far larger than memory is written with one tensor in memory.
import { encodeFloats, quantizeQ8_0, Q8_0_BLOCK, Q8_0_BLOCK_BYTES } from './dtype'

export const GGUF_MAGIC = 0x46554747 // "GGUF" read as a little-endian uint32
export const GGUF_VERSION = 3
export const GGUF_ALIGNMENT = 32

/** ggml's tensor types this writer produces (ggml.h enum ggml_type). */
export const GGML_TYPE = { F32: 0, F16: 1, Q8_0: 8, BF16: 30 } as const
export type GgmlTypeName = keyof typeof GGML_TYPE

/** GGUF metadata value types (gguf.h enum gguf_type). */
const T = { UINT8: 0, INT8: 1, UINT16: 2, INT16: 3, UINT32: 4, INT32: 5, FLOAT32: 6, BOOL: 7, STRING: 8, ARRAY: 9, UINT64: 10, INT64: 11, FLOAT64: 12 } as const

/** llama.cpp's general.file_type (enum llama_ftype) for a file written in one dtype. */
export const LLAMA_FTYPE: Record<GgmlTypeName, number> = { F32: 0, F16: 1, Q8_0: 7, BF16: 32 }

/** GGML_QNT_VERSION, which llama.cpp's converter writes as general.quantization_version. */
export const GGML_QUANT_VERSION = 2

type Scalar = 'uint32' | 'int32' | 'float32' | 'bool' | 'string' | 'uint64' | 'float64'
type ArrayItem = 'string' | 'int32' | 'uint32' | 'float32'

export type GgufValue =
  | { type: 'uint32' | 'int32' | 'float32' | 'float64'; value: number }
  | { type: 'uint64'; value: number | bigint }
  | { type: 'bool'; value: boolean }
  | { type: 'string'; value: string }
  | { type: 'array'; itemType: 'string'; value: readonly string[] }
  | { type: 'array'; itemType: 'int32' | 'uint32' | 'float32'; value: ArrayLike<number> }

/** GGUF strings are UTF-8, which a lone UTF-16 surrogate has no form in (Buffer.from would
 *  write U+FFFD instead): refused, naming where it is. */
function checkText(what: string, s: string): void {
  const lone = /\p{Surrogate}/u.exec(s)
  if (lone) throw new Error(`GGUF ${what}: ${JSON.stringify(s.slice(0, 60))} has a lone surrogate U+${lone[0].charCodeAt(0).toString(16).toUpperCase()}, which UTF-8 cannot encode`)
}

// Each number as the file holds it, or an error: the array setters check every item as the
// scalar ones do (Buffer's writers would truncate 1.5, write NaN as 0, or throw a RangeError).
const isUint32 = (v: number) => Number.isInteger(v) && v >= 0 && v <= 0xffffffff
const isInt32 = (v: number) => Number.isInteger(v) && v >= -0x80000000 && v <= 0x7fffffff
const isF32 = (v: number) => Number.isFinite(Math.fround(v)) // beyond 3.4e38 a double is written as infinity
function checkItems(key: string, value: ArrayLike<number>, ok: (v: number) => boolean, what: string): void {
  for (let i = 0; i < value.length; i++)
    if (!ok(value[i]!)) throw new Error(`GGUF ${key}[${i}]: ${value[i]} is not ${what}`)
}

/** Metadata in insertion order; a key set twice is a bug of the caller. */
export class GgufMetadata {
  readonly entries = new Map<string, GgufValue>()

  private set(key: string, v: GgufValue): this {
    if (this.entries.has(key)) throw new Error(`GGUF metadata key ${key} set twice`)
    checkText('metadata key', key)
    this.entries.set(key, v)
    return this
  }

  uint32(key: string, value: number): this {
    if (!isUint32(value)) throw new Error(`GGUF ${key}: ${value} is not a uint32`)
    return this.set(key, { type: 'uint32', value })
  }
  int32(key: string, value: number): this {
    if (!isInt32(value)) throw new Error(`GGUF ${key}: ${value} is not an int32`)
    return this.set(key, { type: 'int32', value })
  }
  float32(key: string, value: number): this {
    if (!isF32(value)) throw new Error(`GGUF ${key}: ${value} is not a finite f32 number`)
    return this.set(key, { type: 'float32', value })
  }
  bool(key: string, value: boolean): this {
    return this.set(key, { type: 'bool', value })
  }
  string(key: string, value: string): this {
    checkText(key, value)
    return this.set(key, { type: 'string', value })
  }
  strings(key: string, value: readonly string[]): this {
    for (let i = 0; i < value.length; i++) checkText(`${key}[${i}]`, value[i]!)
    return this.set(key, { type: 'array', itemType: 'string', value })
  }
  int32s(key: string, value: ArrayLike<number>): this {
    checkItems(key, value, isInt32, 'an int32')
    return this.set(key, { type: 'array', itemType: 'int32', value })
  }
  uint32s(key: string, value: ArrayLike<number>): this {
    checkItems(key, value, isUint32, 'a uint32')
    return this.set(key, { type: 'array', itemType: 'uint32', value })
  }
  float32s(key: string, value: ArrayLike<number>): this {
    checkItems(key, value, isF32, 'a finite f32 number')
    return this.set(key, { type: 'array', itemType: 'float32', value })
  }
  get(key: string): GgufValue | undefined {
    return this.entries.get(key)
  }
}

/** One tensor of the file: its row-major shape (as torch / safetensors write it), its ggml
 *  type and a reader of its f32 values in that row-major order. */
export interface GgufTensor {
  name: string
  shape: number[]
  type: GgmlTypeName
  read(): Promise<Float32Array>
}

export function elementCount(shape: readonly number[]): number {
  return shape.reduce((a, b) => a * b, 1)
}

/** Bytes of a tensor's data (unpadded). */
export function ggmlTensorBytes(shape: readonly number[], type: GgmlTypeName): number {
  const n = elementCount(shape)
  switch (type) {
    case 'F32': return 4 * n
    case 'F16': case 'BF16': return 2 * n
    case 'Q8_0': {
      const row = shape[shape.length - 1] ?? 1
      if (row % Q8_0_BLOCK !== 0) throw new Error(`Q8_0 needs rows of a multiple of ${Q8_0_BLOCK} values; a row has ${row}`)
      return (n / Q8_0_BLOCK) * Q8_0_BLOCK_BYTES
    }
  }
}

const pad = (n: number, align: number): number => (align - (n % align)) % align

/** Little-endian bytes appended in chunks (a header of a few MB: a vocabulary and its merges). */
class Bytes {
  private chunks: Uint8Array[] = []
  private cur = Buffer.alloc(1 << 16)
  private pos = 0
  length = 0

  private room(n: number): void {
    if (this.pos + n <= this.cur.length) return
    this.flush()
    if (n > this.cur.length) this.cur = Buffer.alloc(n)
  }
  private flush(): void {
    if (this.pos) this.chunks.push(Buffer.from(this.cur.subarray(0, this.pos)))
    this.pos = 0
  }
  u8(v: number): void { this.room(1); this.cur.writeUInt8(v, this.pos); this.pos += 1; this.length += 1 }
  u32(v: number): void { this.room(4); this.cur.writeUInt32LE(v, this.pos); this.pos += 4; this.length += 4 }
  i32(v: number): void { this.room(4); this.cur.writeInt32LE(v, this.pos); this.pos += 4; this.length += 4 }
  f32(v: number): void { this.room(4); this.cur.writeFloatLE(v, this.pos); this.pos += 4; this.length += 4 }
  f64(v: number): void { this.room(8); this.cur.writeDoubleLE(v, this.pos); this.pos += 8; this.length += 8 }
  u64(v: number | bigint): void { this.room(8); this.cur.writeBigUInt64LE(BigInt(v), this.pos); this.pos += 8; this.length += 8 }
  str(s: string): void {
    const b = Buffer.from(s, 'utf8')
    this.u64(b.length)
    this.room(b.length)
    b.copy(this.cur, this.pos)
    this.pos += b.length
    this.length += b.length
  }
  zeros(n: number): void { this.room(n); this.cur.fill(0, this.pos, this.pos + n); this.pos += n; this.length += n }
  done(): Buffer {
    this.flush()
    return Buffer.concat(this.chunks)
  }
}

const SCALAR_TYPE: Record<Scalar, number> = { uint32: T.UINT32, int32: T.INT32, float32: T.FLOAT32, bool: T.BOOL, string: T.STRING, uint64: T.UINT64, float64: T.FLOAT64 }
const ITEM_TYPE: Record<ArrayItem, number> = { string: T.STRING, int32: T.INT32, uint32: T.UINT32, float32: T.FLOAT32 }

function writeValue(out: Bytes, v: GgufValue): void {
  switch (v.type) {
    case 'uint32': out.u32(v.value); break
    case 'int32': out.i32(v.value); break
    case 'float32': out.f32(v.value); break
    case 'float64': out.f64(v.value); break
    case 'uint64': out.u64(v.value); break
    case 'bool': out.u8(v.value ? 1 : 0); break
    case 'string': out.str(v.value); break
    case 'array': {
      out.u32(ITEM_TYPE[v.itemType])
      out.u64(v.value.length)
      if (v.itemType === 'string') for (const s of v.value) out.str(s)
      else {
        const put = v.itemType === 'int32' ? (x: number) => out.i32(x) : v.itemType === 'uint32' ? (x: number) => out.u32(x) : (x: number) => out.f32(x)
        for (let i = 0; i < v.value.length; i++) put(v.value[i]!)
      }
      break
    }
  }
}

export interface GgufFilePlan {
  /** Header, metadata, tensor infos and the padding up to the data section. */
  header: Uint8Array
  /** The whole file's size. */
  bytes: number
  tensors: { tensor: GgufTensor; offset: number; bytes: number }[]
}

/** Lays the file out: general.alignment is added to the metadata when it is not there. */
export function planGgufFile(metadata: GgufMetadata, tensors: GgufTensor[]): GgufFilePlan {
  const align = metadata.get('general.alignment')
  // ggml reads it as a uint32 power of two (gguf.cpp), the format asks for a multiple of 8: any
  // other value would lay the file out in a way no reader follows (0 made every offset NaN).
  if (align && (align.type !== 'uint32' || align.value < 8 || (align.value & (align.value - 1)) !== 0))
    throw new Error(`GGUF general.alignment must be a uint32 power of two of at least 8, got ${align.type} ${String(align.value)}`)
  if (!align) metadata.uint32('general.alignment', GGUF_ALIGNMENT)
  const alignment = align?.type === 'uint32' ? align.value : GGUF_ALIGNMENT
  const names = new Set<string>()
  let offset = 0
  const laid = tensors.map((tensor) => {
    if (names.has(tensor.name)) throw new Error(`GGUF tensor ${tensor.name} written twice`)
    checkText('tensor name', tensor.name)
    names.add(tensor.name)
    if (Buffer.byteLength(tensor.name) >= 64) throw new Error(`GGUF tensor name ${tensor.name} is longer than ggml's 63 bytes`)
    if (tensor.shape.length < 1 || tensor.shape.length > 4 || tensor.shape.some((d) => !Number.isInteger(d) || d < 1))
      throw new Error(`GGUF tensor ${tensor.name}: shape ${JSON.stringify(tensor.shape)} is not 1 to 4 positive dims`)
    const bytes = ggmlTensorBytes(tensor.shape, tensor.type)
    const at = { tensor, offset, bytes }
    offset += bytes + pad(bytes, alignment)
    return at
  })
  const out = new Bytes()
  out.u32(GGUF_MAGIC)
  out.u32(GGUF_VERSION)
  out.u64(tensors.length)
  out.u64(metadata.entries.size)
  for (const [key, v] of metadata.entries) {
    out.str(key)
    out.u32(v.type === 'array' ? T.ARRAY : SCALAR_TYPE[v.type])
    writeValue(out, v)
  }
  for (const { tensor, offset: at } of laid) {
    out.str(tensor.name)
    out.u32(tensor.shape.length)
    for (const d of [...tensor.shape].reverse()) out.u64(d)
    out.u32(GGML_TYPE[tensor.type])
    out.u64(at)
  }
  out.zeros(pad(out.length, alignment))
  const header = out.done()
  return { header, bytes: header.length + offset, tensors: laid }
}

/** The bytes of `data` (row-major, `shape`) in ggml type `type`. */
export function encodeTensor(data: Float32Array, shape: readonly number[], type: GgmlTypeName, name = 'tensor'): Uint8Array {
  if (data.length !== elementCount(shape)) throw new Error(`${name}: ${data.length} values for shape ${JSON.stringify(shape)}`)
  for (let i = 0; i < data.length; i++) if (!Number.isFinite(data[i]!)) throw new Error(`${name}: value ${i} is ${data[i]} (not finite); nothing written`)
  if (type === 'Q8_0') return quantizeQ8_0(data) // blocks never cross a row: the row length is a multiple of 32
  return encodeFloats(data, type)
}

/** Streams the planned file: the header, then each tensor (read, encoded, padded) in turn. */
export async function writeGgufFile(plan: GgufFilePlan, write: (chunk: Uint8Array) => Promise<void>): Promise<void> {
  await write(plan.header)
  let at = 0
  for (const { tensor, offset, bytes } of plan.tensors) {
    if (offset !== at) await write(new Uint8Array(offset - at))
    const data = encodeTensor(await tensor.read(), tensor.shape, tensor.type, tensor.name)
    if (data.byteLength !== bytes) throw new Error(`${tensor.name}: ${data.byteLength} bytes encoded, ${bytes} planned`)
    await write(data)
    at = offset + bytes
  }
  const end = plan.bytes - plan.header.length
  if (end > at) await write(new Uint8Array(end - at))
}
