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

  it('is the same for the same id and keeps both candidates', () => {
    for (let id = 1; id < 50; id++) {
      const sides = pairSides(id, ['a', 'b'])!
      expect(pairSides(id, ['a', 'b'])).toEqual(sides)
      expect([...sides].sort()).toEqual(['a', 'b'])
    }
    expect(pairSides(1, ['only'])).toBeNull()
  })
})
