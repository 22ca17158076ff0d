// Number formats of the exports: f32 <-> f16 / bf16 with round-to-nearest-even (what torch's
// .to(dtype) does), and ggml's Q8_0 blocks (32 values, one f16 scale, 32 int8).

export type FloatDtype = 'F32' | 'F16' | 'BF16'

const f32 = new Float32Array(1)
const u32 = new Uint32Array(f32.buffer)

export function bf16Bits(v: number): number {
  f32[0] = v
  const x = u32[0]!
  if ((x & 0x7fffffff) > 0x7f800000) return ((x >>> 16) | 0x40) & 0xffff // NaN stays a quiet NaN
  return ((x + 0x7fff + ((x >>> 16) & 1)) >>> 16) & 0xffff
}

export function bf16Value(bits: number): number {
  u32[0] = bits << 16
  return f32[0]!
}

export function f16Bits(v: number): number {
  f32[0] = v
  const x = u32[0]!
  const sign = (x >>> 16) & 0x8000
  const abs = x & 0x7fffffff
  if (abs > 0x7f800000) return sign | 0x7e00 // NaN
  if (abs >= 0x477ff000) return sign | 0x7c00 // rounds past 65504: infinity
  if (abs < 0x38800000) {
    // Subnormal or zero in f16: the value in units of 2^-24, rounded half to even (exact in doubles).
    const units = Math.abs(f32[0]!) * 2 ** 24
    let q = Math.floor(units)
    const frac = units - q
    if (frac > 0.5 || (frac === 0.5 && q % 2 === 1)) q++
    return sign | q
  }
  const rounded = abs + 0xfff + ((abs >>> 13) & 1)
  return sign | (((rounded >>> 13) - ((127 - 15) << 10)) & 0x7fff)
}

export function f16Value(bits: number): number {
  const sign = bits & 0x8000 ? -1 : 1
  const exp = (bits >>> 10) & 0x1f
  const man = bits & 0x3ff
  if (exp === 0) return sign * man * 2 ** -24
  if (exp === 31) return man ? NaN : sign * Infinity
  return sign * (1 + man / 1024) * 2 ** (exp - 15)
}

export const floatBytes: Record<FloatDtype, number> = { F32: 4, F16: 2, BF16: 2 }

/** Little-endian bytes of `data` in `dtype`. */
export function encodeFloats(data: Float32Array, dtype: FloatDtype): Uint8Array {
  if (dtype === 'F32') return new Uint8Array(data.buffer, data.byteOffset, data.byteLength)
  const out = new Uint16Array(data.length)
  const bits = dtype === 'F16' ? f16Bits : bf16Bits
  for (let i = 0; i < data.length; i++) out[i] = bits(data[i]!)
  return new Uint8Array(out.buffer)
}

/** f32 values of little-endian `bytes` in `dtype` (a copy, aligned). */
export function decodeFloats(bytes: Uint8Array, dtype: string): Float32Array {
  if (dtype === 'F32') {
    const out = new Float32Array(bytes.byteLength / 4)
    new Uint8Array(out.buffer).set(bytes)
    return out
  }
  if (dtype !== 'F16' && dtype !== 'BF16') throw new Error(`cannot read ${dtype} tensors as floats (F32, F16 and BF16 only)`)
  const bits = new Uint16Array(bytes.byteLength / 2)
  new Uint8Array(bits.buffer).set(bytes)
  const out = new Float32Array(bits.length)
  if (dtype === 'BF16') {
    const wide = new Uint32Array(out.buffer)
    for (let i = 0; i < bits.length; i++) wide[i] = bits[i]! << 16
  } else {
    for (let i = 0; i < bits.length; i++) out[i] = f16Value(bits[i]!)
  }
  return out
}

/** ggml's Q8_0: per block of 32, d = max|x| / 127 stored as f16, q = round(x / d). */
export const Q8_0_BLOCK = 32
export const Q8_0_BLOCK_BYTES = 34

export function quantizeQ8_0(data: Float32Array): Uint8Array {
  if (data.length % Q8_0_BLOCK !== 0) throw new Error(`Q8_0 needs a multiple of ${Q8_0_BLOCK} values, got ${data.length}`)
  const blocks = data.length / Q8_0_BLOCK
  const out = new Uint8Array(blocks * Q8_0_BLOCK_BYTES)
  const view = new DataView(out.buffer)
  for (let b = 0; b < blocks; b++) {
    const base = b * Q8_0_BLOCK
    let amax = 0
    for (let j = 0; j < Q8_0_BLOCK; j++) amax = Math.max(amax, Math.abs(data[base + j]!))
    const d = amax / 127
    const id = d ? 1 / d : 0
    const o = b * Q8_0_BLOCK_BYTES
    view.setUint16(o, f16Bits(d), true)
    // roundf as ggml: halves away from zero
    for (let j = 0; j < Q8_0_BLOCK; j++) {
      const v = data[base + j]! * id
      view.setInt8(o + 2 + j, Math.sign(v) * Math.round(Math.abs(v)))
    }
  }
  return out
}

export function dequantizeQ8_0(bytes: Uint8Array): Float32Array {
  const blocks = bytes.byteLength / Q8_0_BLOCK_BYTES
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength)
  const out = new Float32Array(blocks * Q8_0_BLOCK)
  for (let b = 0; b < blocks; b++) {
    const o = b * Q8_0_BLOCK_BYTES
    const d = f16Value(view.getUint16(o, true))
    for (let j = 0; j < Q8_0_BLOCK; j++) out[b * Q8_0_BLOCK + j] = d * view.getInt8(o + 2 + j)
  }
  return out
}
