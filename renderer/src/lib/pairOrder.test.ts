import { describe, expect, it } from 'vitest'
import { pairSides, swapSides } from './pairOrder'

describe('pairSides', () => {
  it('swaps about half of the records, not in a simple alternation', () => {
    const swapped = Array.from({ length: 1000 }, (_, i) => swapSides(i + 1))
    const count = swapped.filter(Boolean).length
    expect(count).toBeGreaterThan(400)
    expect(count).toBeLessThan(600)
    const alternating = swapped.every((s, i) => i === 0 || s !== swapped[i - 1])
    expect(alternating).toBe(false)
  })

  it('swaps the ids whose Knuth hash (id * 2654435761 mod 2^32) has bit 16 set, worked out by hand', () => {
    // 1 -> 0x9E3779B1 (bit 16 of 0x9E37.. set), 2 -> 0x3C6EF362 (clear), 3 -> 0xDAA66D13 (clear), 4 -> 0x78DDE6C4 (set)
    const expected = [true, false, false, true, true, false, false, true, true, false, false, true, true, false, false, true]
    expect(Array.from({ length: 16 }, (_, i) => swapSides(i + 1))).toEqual(expected)
    expect(pairSides(1, ['a', 'b'])).toEqual(['b', 'a'])
    expect(pairSides(2, ['a', 'b'])).toEqual(['a', 'b'])
  })

  it('is the same for the same id and keeps both candidates', () => {
    for (let id = 1; id < 50; id++) {
      const sides = pairSides(id, ['a', 'b'])!
      expect(pairSides(id, ['a', 'b'])).toEqual(sides)
      expect([...sides].sort()).toEqual(['a', 'b'])
    }
    expect(pairSides(1, ['only'])).toBeNull()
  })
})
