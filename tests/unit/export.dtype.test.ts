// The number formats of the exports: f16 and bf16 rounding as torch's .to(dtype) (nearest, ties
// to even, overflow to infinity, f16 subnormals) and ggml's Q8_0 blocks.
import { describe, expect, test } from 'vitest'
import { bf16Bits, bf16Value, decodeFloats, dequantizeQ8_0, encodeFloats, f16Bits, f16Value, quantizeQ8_0 } from '../../main/services/export/dtype'

describe('f16 and bf16', () => {
  test.each([
    [1, 0x3c00], [-2, 0xc000], [1 / 3, 0x3555], [65504, 0x7bff], [65519, 0x7bff], [65520, 0x7c00], [1e6, 0x7c00],
    [2 ** -24, 0x0001], [2 ** -25, 0x0000], [3 * 2 ** -25, 0x0002], [2 ** -14, 0x0400], [2 ** -14 - 2 ** -25, 0x0400],
    [1 + 2 ** -11, 0x3c00], [1 + 3 * 2 ** -11, 0x3c02], [0, 0], [-0, 0x8000], [Infinity, 0x7c00]
  ])('f16 of %d is %i', (v, bits) => {
    expect(f16Bits(v)).toBe(bits)
  })

  test.each([
    [1, 0x3f80], [1 / 3, 0x3eab], [1 + 2 ** -8, 0x3f80], [1 + 3 * 2 ** -8, 0x3f82], [-1.5, 0xbfc0], [3.4e38, 0x7f80], [1e-40, 0x0001]
  ])('bf16 of %d is %i', (v, bits) => {
    expect(bf16Bits(v)).toBe(bits)
  })

  test('NaN stays NaN; values read back', () => {
    expect(Number.isNaN(f16Value(f16Bits(NaN)))).toBe(true)
    expect(Number.isNaN(bf16Value(bf16Bits(NaN)))).toBe(true)
    const x = Float32Array.from([0.1, -3.75, 1024.5, 6e-5])
    for (const d of ['F16', 'BF16'] as const) {
      const back = decodeFloats(encodeFloats(x, d), d)
      for (let i = 0; i < x.length; i++) expect(Math.abs(back[i]! - x[i]!)).toBeLessThanOrEqual(Math.abs(x[i]!) * (d === 'F16' ? 2 ** -11 : 2 ** -8) + 6e-8)
    }
    expect([...decodeFloats(encodeFloats(x, 'F32'), 'F32')]).toEqual([...x])
    expect(() => decodeFloats(new Uint8Array(4), 'I32')).toThrow(/F32, F16 and BF16 only/)
  })
})

describe('Q8_0', () => {
  test('34 bytes per 32 values; error at most half a step of each block', () => {
    const x = new Float32Array(96)
    for (let i = 0; i < x.length; i++) x[i] = Math.sin(i * 1.7) * (i < 32 ? 0.01 : i < 64 ? 3 : 0)
    const q = quantizeQ8_0(x)
    expect(q.length).toBe(3 * 34)
    const back = dequantizeQ8_0(q)
    for (let b = 0; b < 3; b++) {
      const block = x.subarray(b * 32, b * 32 + 32)
      const d = Math.max(...block.map(Math.abs)) / 127
      for (let j = 0; j < 32; j++) expect(Math.abs(back[b * 32 + j]! - block[j]!)).toBeLessThanOrEqual(d / 2 + d * 2 ** -10 * 127 + 1e-12)
    }
    expect([...back.subarray(64)]).toEqual(new Array(32).fill(0))
    expect(() => quantizeQ8_0(new Float32Array(33))).toThrow(/multiple of 32/)
  })
})
