// Property test of the GGUF writer (main/services/export/gguf.ts): metadata of every value type
// and small tensors of every type the writer produces, all drawn from a stream of bytes, are
// written with planGgufFile + writeGgufFile and read back with an independent GGUF v3 reader
// (below, after ggml's docs/gguf.md); every key, value, tensor name, shape, type, offset and the
// data must come back (F32 bit for bit, F16 / BF16 / Q8_0 as encodeTensor's bytes of the same
// values), the data section and each tensor at a multiple of general.alignment, padding zero,
// and the file exactly plan.bytes long. Inputs the writer must refuse are drawn too and must
// throw: numbers a type cannot hold (scalars and array items; 1e39 as f32), text with a lone
// surrogate (no UTF-8 form), a tensor name of 64 bytes, a key or tensor twice, a non-finite
// tensor value, a general.alignment ggml would not read.
//
// The bytes come from a seeded generator (cases 0..CASES-1, each reproducible alone with
// GGUF_ROUNDTRIP_CASE=<n>). This stands in for a coverage-guided target: @jazzer.js/core 4.0.0
// (the only release with prebuilt binaries) needs glibc 2.38 (__isoc23_strtol), Debian 12 has 2.36.
import { describe, expect, it } from 'vitest'
import { planGgufFile, writeGgufFile, encodeTensor, GgufMetadata, GGML_TYPE, GGUF_ALIGNMENT, type GgmlTypeName, type GgufTensor, type GgufValue } from '../../main/services/export/gguf'

const CASES = Number(process.env.GGUF_ROUNDTRIP_CASES ?? 400)

// ---- the byte stream ------------------------------------------------------------------------

/** Bytes drawn one by one: from a seed (xorshift32), the way a fuzzer's input would be read. */
class Bytes {
  private s: number
  constructor(seed: number) {
    this.s = (seed * 2654435761 + 1) >>> 0 || 1
  }
  byte(): number {
    let x = this.s
    x ^= x << 13
    x >>>= 0
    x ^= x >>> 17
    x ^= x << 5
    this.s = x >>> 0
    return this.s & 0xff
  }
  u32(): number {
    return (this.byte() | (this.byte() << 8) | (this.byte() << 16) | (this.byte() << 24)) >>> 0
  }
  below(n: number): number {
    return this.u32() % n
  }
  chance(per256: number): boolean {
    return this.byte() < per256
  }
  pick<T>(xs: readonly T[]): T {
    return xs[this.below(xs.length)]!
  }
  f32(): number {
    const b = new DataView(new ArrayBuffer(4))
    b.setUint32(0, this.u32())
    return b.getFloat32(0)
  }
  f64(): number {
    const b = new DataView(new ArrayBuffer(8))
    b.setUint32(0, this.u32())
    b.setUint32(4, this.u32())
    return b.getFloat64(0)
  }
  /** Well-formed text: ASCII, Latin-1, CJK, astral (emoji), control characters, NUL. */
  text(max: number): string {
    const n = this.below(max + 1)
    let s = ''
    for (let i = 0; i < n; i++) {
      const k = this.below(10)
      const cp = k < 5 ? 0x20 + this.below(0x5f) : k === 5 ? this.below(0x20) : k === 6 ? 0xa0 + this.below(0x60) : k === 7 ? 0x4e00 + this.below(0x5000) : k === 8 ? 0x1f600 + this.below(0x50) : this.pick([0, 0x7f, 0xfffd, 0xfeff, 0x10ffff])
      s += String.fromCodePoint(cp)
    }
    return s
  }
}

// ---- a case: metadata and tensors, and what must come back ----------------------------------

interface Expected {
  key: string
  type: number // gguf_type
  itemType?: number
  value: unknown // as read back: number | bigint | boolean | string | arrays of them
}

const GT = { UINT8: 0, INT8: 1, UINT16: 2, INT16: 3, UINT32: 4, INT32: 5, FLOAT32: 6, BOOL: 7, STRING: 8, ARRAY: 9, UINT64: 10, INT64: 11, FLOAT64: 12 }

/** A finite f32 value of every kind: ordinary, zero, -0, subnormal, f16's edges, large. */
function value(b: Bytes): number {
  switch (b.below(8)) {
    case 0: return 0
    case 1: return -0
    case 2: return b.pick([65504, 65519, 65520, -65504, 6.1e-5, 5.96e-8, 2.9e-8, 1e-45, 3.4e38, -3.4e38, 1 / 3])
    case 3: {
      const x = b.f32()
      return Number.isFinite(x) ? x : 1.5
    }
    default: return Math.fround((b.u32() / 2 ** 32 - 0.5) * 2 ** (b.below(20) - 10))
  }
}

interface Case {
  meta: GgufMetadata
  expected: Expected[]
  tensors: GgufTensor[]
  data: Float32Array[]
  /** The writer's errors for what it must refuse in this case (empty: it must write the file). */
  refuse: RegExp[]
}

function makeCase(b: Bytes): Case {
  const meta = new GgufMetadata()
  const expected: Expected[] = []
  const refuse: RegExp[] = []
  const keys = new Set<string>()
  const n = b.below(14)
  for (let i = 0; i < n; i++) {
    let key = b.chance(200) ? `general.k${i}.${b.text(6)}` : b.text(12)
    if (key === 'general.alignment') key += '.x'
    if (keys.has(key)) {
      // a key set twice is refused by the setter itself
      expect(() => meta.bool(key, true)).toThrow(/set twice/)
      continue
    }
    keys.add(key)
    const kind = b.below(12)
    const put = (type: number, v: unknown, itemType?: number) => expected.push({ key, type, value: v, itemType })
    switch (kind) {
      case 0: {
        const v = b.chance(20) ? b.pick([-1, 2 ** 32, 1.5, NaN]) : b.pick([0, 1, 0xffffffff, b.u32()])
        if (Number.isInteger(v) && v >= 0 && v <= 0xffffffff) put(GT.UINT32, (meta.uint32(key, v), v))
        else { expect(() => meta.uint32(key, v)).toThrow(/is not a uint32/); keys.delete(key) }
        break
      }
      case 1: {
        const v = b.chance(20) ? b.pick([2 ** 31, -(2 ** 31) - 1, 0.5, Infinity]) : b.pick([0, -1, 2 ** 31 - 1, -(2 ** 31), b.u32() | 0])
        if (Number.isInteger(v) && v >= -(2 ** 31) && v < 2 ** 31) put(GT.INT32, (meta.int32(key, v), v))
        else { expect(() => meta.int32(key, v)).toThrow(/is not an int32/); keys.delete(key) }
        break
      }
      case 2: {
        // beyond f32's range (3.4e38) a finite double would be written as infinity
        const v = b.chance(20) ? b.pick([NaN, Infinity, -Infinity, 1e39, -3.5e38]) : b.chance(128) ? value(b) : b.f64() % 1e30 || 0.1
        if (Number.isFinite(Math.fround(v))) put(GT.FLOAT32, (meta.float32(key, v), Math.fround(v)))
        else { expect(() => meta.float32(key, v)).toThrow(/is not a finite (f32 )?number/); keys.delete(key) }
        break
      }
      case 3: { const v = b.chance(128); meta.bool(key, v); put(GT.BOOL, v); break }
      case 4: {
        // a lone surrogate has no UTF-8 form: Buffer.from would write U+FFFD in its place
        if (b.chance(12)) {
          const v = b.text(5) + String.fromCharCode(0xd800 + b.below(0x800)) + b.text(5)
          expect(() => meta.string(key, v)).toThrow(/lone surrogate/)
          keys.delete(key)
          break
        }
        const v = b.text(40)
        meta.string(key, v)
        put(GT.STRING, v)
        break
      }
      case 5: {
        const v = Array.from({ length: b.below(b.chance(16) ? 300 : 8) }, () => b.text(b.chance(30) ? 0 : 10))
        if (v.length && b.chance(12)) {
          v[b.below(v.length)] += String.fromCharCode(0xdc00 + b.below(0x400))
          expect(() => meta.strings(key, v)).toThrow(/lone surrogate/)
          keys.delete(key)
          break
        }
        meta.strings(key, v)
        put(GT.ARRAY, v, GT.STRING)
        break
      }
      // Arrays: an item the type cannot hold must be refused as the scalar setters refuse it
      // (Buffer's writers would truncate 1.5, write NaN as 0, or throw a RangeError).
      case 6: {
        const v = Array.from({ length: 1 + b.below(20) }, () => b.u32() | 0)
        if (b.chance(20)) {
          v[b.below(v.length)] = b.pick([1.5, NaN, 2 ** 31, -(2 ** 31) - 1])
          expect(() => meta.int32s(key, v)).toThrow(/is not an int32/)
          keys.delete(key)
          break
        }
        meta.int32s(key, b.chance(128) ? Int32Array.from(v) : v)
        put(GT.ARRAY, v, GT.INT32)
        break
      }
      case 7: {
        const v = Array.from({ length: b.below(20) }, () => b.u32())
        if (v.length && b.chance(20)) {
          v[b.below(v.length)] = b.pick([-1, 0.5, NaN, 2 ** 32])
          expect(() => meta.uint32s(key, v)).toThrow(/is not a uint32/)
          keys.delete(key)
          break
        }
        meta.uint32s(key, b.chance(128) ? Uint32Array.from(v) : v)
        put(GT.ARRAY, v, GT.UINT32)
        break
      }
      case 8: {
        const v = Array.from({ length: b.below(20) }, () => value(b))
        if (v.length && b.chance(20)) {
          v[b.below(v.length)] = b.pick([NaN, Infinity, 1e39])
          expect(() => meta.float32s(key, v)).toThrow(/is not a finite (f32 )?number/)
          keys.delete(key)
          break
        }
        meta.float32s(key, b.chance(128) ? Float32Array.from(v) : v)
        put(GT.ARRAY, v.map(Math.fround), GT.FLOAT32)
        break
      }
      // The value types without a setter, which GgufValue allows (uint64 as number or bigint).
      case 9: {
        const v = b.chance(128) ? BigInt(b.u32()) * 2n ** 32n + BigInt(b.u32()) : b.u32() * 2 ** b.below(21)
        meta.entries.set(key, { type: 'uint64', value: v })
        put(GT.UINT64, BigInt(v))
        break
      }
      case 10: {
        const v = b.chance(200) ? b.f64() : b.pick([NaN, -0, Infinity])
        meta.entries.set(key, { type: 'float64', value: v })
        put(GT.FLOAT64, v)
        break
      }
      default: {
        meta.string(key, '')
        put(GT.STRING, '')
      }
    }
  }
  // general.alignment: absent (the writer adds 32), a power of two of at least 8 given by the
  // caller, or one that ggml would not read (refused).
  if (b.chance(60)) {
    const a = b.pick([8, 16, 32, 64, 128, 256])
    meta.uint32('general.alignment', a)
    expected.push({ key: 'general.alignment', type: GT.UINT32, value: a })
  } else if (b.chance(10)) {
    if (b.chance(128)) meta.uint32('general.alignment', b.pick([0, 1, 4, 12, 48, 0xffffffff]))
    else meta.string('general.alignment', '32')
    refuse.push(/general\.alignment must be a uint32 power of two/)
  }

  const tensors: GgufTensor[] = []
  const data: Float32Array[] = []
  const names = new Set<string>()
  const nt = b.below(5)
  for (let i = 0; i < nt; i++) {
    const type = b.pick(['F32', 'F16', 'BF16', 'Q8_0'] as const)
    const dims = 1 + b.below(4)
    const shape = Array.from({ length: dims }, () => 1 + b.below(4))
    if (type === 'Q8_0') shape[dims - 1] = 32 * (1 + b.below(2))
    let name = b.chance(240) ? `blk.${i}.${b.text(8)}` : b.text(70)
    if (b.chance(4)) {
      name += String.fromCharCode(0xd800 + b.below(0x400))
      refuse.push(/lone surrogate/)
    }
    if (names.has(name)) {
      refuse.push(/written twice/)
    } else if (Buffer.byteLength(name) >= 64) {
      refuse.push(/longer than ggml's 63 bytes/)
    }
    names.add(name)
    const values = Float32Array.from({ length: shape.reduce((x, y) => x * y, 1) }, () => value(b))
    if (b.chance(6)) {
      values[b.below(values.length)] = b.pick([NaN, Infinity, -Infinity])
      refuse.push(/not finite/)
    }
    tensors.push({ name, shape, type, read: async () => values })
    data.push(values)
  }
  return { meta, expected, tensors, data, refuse }
}

// ---- an independent GGUF v3 reader ----------------------------------------------------------

interface ReadTensor {
  name: string
  dims: bigint[] // ggml order (fastest first)
  type: number
  offset: bigint
}

function readGguf(buf: Buffer) {
  let at = 0
  const need = (n: number) => {
    if (at + n > buf.length) throw new Error(`GGUF read past the end (${at} + ${n} > ${buf.length})`)
  }
  const u8 = () => (need(1), buf.readUInt8(at++))
  const u32 = () => (need(4), (at += 4), buf.readUInt32LE(at - 4))
  const i32 = () => (need(4), (at += 4), buf.readInt32LE(at - 4))
  const f32 = () => (need(4), (at += 4), buf.readFloatLE(at - 4))
  const f64 = () => (need(8), (at += 8), buf.readDoubleLE(at - 8))
  const u64 = () => (need(8), (at += 8), buf.readBigUInt64LE(at - 8))
  const str = () => {
    const n = Number(u64())
    need(n)
    const bytes = buf.subarray(at, at + n)
    at += n
    // GGUF strings are UTF-8; a leading U+FEFF is text here, not a byte order mark to drop
    return new TextDecoder('utf-8', { fatal: true, ignoreBOM: true }).decode(bytes)
  }
  const scalar = (type: number): unknown => {
    switch (type) {
      case GT.UINT8: return u8()
      case GT.INT8: return (need(1), (at += 1), buf.readInt8(at - 1))
      case GT.UINT16: return (need(2), (at += 2), buf.readUInt16LE(at - 2))
      case GT.INT16: return (need(2), (at += 2), buf.readInt16LE(at - 2))
      case GT.UINT32: return u32()
      case GT.INT32: return i32()
      case GT.FLOAT32: return f32()
      case GT.BOOL: {
        const v = u8()
        if (v > 1) throw new Error(`bool byte ${v}`)
        return v === 1
      }
      case GT.STRING: return str()
      case GT.UINT64: return u64()
      case GT.INT64: return (need(8), (at += 8), buf.readBigInt64LE(at - 8))
      case GT.FLOAT64: return f64()
      default: throw new Error(`unknown value type ${type}`)
    }
  }
  if (u32() !== 0x46554747) throw new Error('bad magic')
  const version = u32()
  const nTensors = Number(u64())
  const nKv = Number(u64())
  const kvs: Expected[] = []
  for (let i = 0; i < nKv; i++) {
    const key = str()
    const type = u32()
    if (type === GT.ARRAY) {
      const itemType = u32()
      const count = Number(u64())
      const value = Array.from({ length: count }, () => scalar(itemType))
      kvs.push({ key, type, itemType, value })
    } else kvs.push({ key, type, value: scalar(type) })
  }
  const tensors: ReadTensor[] = []
  for (let i = 0; i < nTensors; i++) {
    const name = str()
    const nDims = u32()
    const dims = Array.from({ length: nDims }, () => u64())
    tensors.push({ name, dims, type: u32(), offset: u64() })
  }
  const alignKv = kvs.find((k) => k.key === 'general.alignment')
  const alignment = alignKv ? Number(alignKv.value) : GGUF_ALIGNMENT
  const infoEnd = at
  const dataStart = Math.ceil(infoEnd / alignment) * alignment
  return { version, kvs, tensors, alignment, infoEnd, dataStart }
}

// ggml's sizes per type, from the type alone (block size, bytes per block).
const BLOCK: Record<number, [number, number]> = { [GGML_TYPE.F32]: [1, 4], [GGML_TYPE.F16]: [1, 2], [GGML_TYPE.BF16]: [1, 2], [GGML_TYPE.Q8_0]: [32, 34] }

async function roundTrip(c: Case): Promise<void> {
  const chunks: Uint8Array[] = []
  let plan
  try {
    plan = planGgufFile(c.meta, c.tensors)
    await writeGgufFile(plan, async (chunk) => void chunks.push(Uint8Array.from(chunk)))
  } catch (err) {
    if (c.refuse.some((r) => r.test((err as Error).message))) return
    throw err
  }
  if (c.refuse.length) throw new Error(`the writer accepted what it must refuse (${c.refuse.join(', ')})`)
  const file = Buffer.concat(chunks)
  expect(file.length).toBe(plan.bytes)
  const g = readGguf(file)
  expect(g.version).toBe(3)

  // Metadata: every entry in insertion order, general.alignment added when absent.
  const want = [...c.expected]
  if (!want.some((e) => e.key === 'general.alignment')) want.push({ key: 'general.alignment', type: GT.UINT32, value: GGUF_ALIGNMENT })
  const order = [...c.meta.entries.keys()]
  want.sort((a, b) => order.indexOf(a.key) - order.indexOf(b.key))
  expect(g.kvs.map((k) => k.key)).toEqual(want.map((k) => k.key))
  for (let i = 0; i < want.length; i++) {
    const got = g.kvs[i]!
    const w = want[i]!
    expect({ key: got.key, type: got.type, itemType: got.itemType }).toEqual({ key: w.key, type: w.type, itemType: w.itemType })
    if (w.type === GT.FLOAT64 || w.type === GT.FLOAT32 || w.itemType === GT.FLOAT32) {
      // bit for bit: -0 and NaN included
      const bits = (v: unknown) => {
        const d = new DataView(new ArrayBuffer(8))
        d.setFloat64(0, v as number)
        return Number.isNaN(v) ? 'NaN' : d.getBigUint64(0).toString(16)
      }
      const wv = Array.isArray(w.value) ? w.value : [w.value]
      const gv = Array.isArray(got.value) ? got.value : [got.value]
      expect(gv.map(bits), w.key).toEqual(wv.map(bits))
    } else {
      expect(got.value, w.key).toEqual(w.value)
    }
  }

  // Tensor infos and data.
  expect(g.alignment % 8).toBe(0)
  expect(plan.header.length).toBe(g.dataStart)
  expect([...file.subarray(g.infoEnd, g.dataStart)].every((x) => x === 0)).toBe(true)
  expect(g.tensors.map((t) => t.name)).toEqual(c.tensors.map((t) => t.name))
  let end = 0
  for (let i = 0; i < c.tensors.length; i++) {
    const t = c.tensors[i]!
    const r = g.tensors[i]!
    expect(r.dims.map(Number)).toEqual([...t.shape].reverse())
    expect(r.type).toBe(GGML_TYPE[t.type as GgmlTypeName])
    const offset = Number(r.offset)
    expect(offset % g.alignment, `${t.name} offset ${offset}`).toBe(0)
    expect(offset).toBeGreaterThanOrEqual(end) // no overlap with the previous tensor
    expect([...file.subarray(g.dataStart + end, g.dataStart + offset)].every((x) => x === 0)).toBe(true)
    const [block, blockBytes] = BLOCK[r.type]!
    const count = r.dims.reduce((x, y) => x * Number(y), 1)
    expect(count % block).toBe(0)
    const bytes = (count / block) * blockBytes
    const got = file.subarray(g.dataStart + offset, g.dataStart + offset + bytes)
    expect(got.length).toBe(bytes)
    const wantBytes = encodeTensor(c.data[i]!, t.shape, t.type, t.name)
    expect(Buffer.compare(Buffer.from(got), Buffer.from(wantBytes)), `${t.name} data`).toBe(0)
    if (t.type === 'F32') {
      const back = new Float32Array(Uint8Array.from(got).buffer)
      expect(Buffer.from(back.buffer).equals(Buffer.from(c.data[i]!.buffer))).toBe(true)
    }
    end = offset + bytes
  }
  const tail = file.subarray(g.dataStart + end)
  expect(tail.length).toBeLessThan(g.alignment)
  expect([...tail].every((x) => x === 0)).toBe(true)
}

describe('GGUF writer round trip (seeded property test)', () => {
  const only = process.env.GGUF_ROUNDTRIP_CASE
  const cases = only !== undefined ? [Number(only)] : Array.from({ length: CASES }, (_, i) => i)
  it(`${cases.length} cases of metadata and tensors read back by an independent reader`, async () => {
    let refused = 0, tensors = 0, keys = 0
    for (const n of cases) {
      let c: Case
      try {
        c = makeCase(new Bytes(n))
        await roundTrip(c)
      } catch (err) {
        throw new Error(`case ${n} (rerun alone: GGUF_ROUNDTRIP_CASE=${n} npx vitest run tests/unit/export.gguf.roundtrip.test.ts): ${(err as Error).message}`)
      }
      if (c.refuse.length) refused++
      tensors += c.tensors.length
      keys += c.expected.length
    }
    // the generator reaches both sides: files written and read back, and inputs refused
    if (cases.length > 50) {
      expect(refused).toBeGreaterThan(cases.length / 50)
      expect(refused).toBeLessThan(cases.length / 2)
      expect(tensors).toBeGreaterThan(cases.length)
      expect(keys).toBeGreaterThan(cases.length * 3)
    }
  })
})
