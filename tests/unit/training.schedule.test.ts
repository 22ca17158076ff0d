// Learning-rate schedules and step counts as transformers' get_scheduler / Trainer define them.
import { describe, expect, it } from 'vitest'
import { formatDuration, lrFactor, stepsPerEpoch, totalSteps, warmupSteps } from '../../main/services/training/schedule'
import { permutation, mixSeed } from '../../main/services/training/rng'

describe('lr schedules', () => {
  it('linear: warmup ramp from 0, then down to 0 at the last step', () => {
    expect([0, 1, 2, 6, 10].map((s) => lrFactor('linear', s, 2, 10))).toEqual([0, 0.5, 1, 0.5, 0])
  })
  it('cosine: half at the middle of the decay, 0 at the end', () => {
    expect(lrFactor('cosine', 1, 2, 10)).toBe(0.5)
    expect(lrFactor('cosine', 6, 2, 10)).toBeCloseTo(0.5, 12)
    expect(lrFactor('cosine', 10, 2, 10)).toBe(0)
  })
  it('constant ignores warmup; constant_with_warmup ramps then holds', () => {
    expect([0, 5].map((s) => lrFactor('constant', s, 3, 10))).toEqual([1, 1])
    expect([0, 1, 3, 9].map((s) => lrFactor('constant_with_warmup', s, 3, 10))).toEqual([0, 1 / 3, 1, 1])
  })
  it('warmup_steps overrides warmup_ratio (ceil of ratio × total)', () => {
    expect(warmupSteps(0, 0.1, 25)).toBe(3)
    expect(warmupSteps(5, 0.1, 25)).toBe(5)
  })
  it('steps: the remainder micro-batches make a last update; max_steps overrides epochs', () => {
    expect(stepsPerEpoch(5, 2)).toBe(3)
    expect(totalSteps(-1, 1.5, 3)).toBe(5)
    expect(totalSteps(7, 3, 3)).toBe(7)
  })
  it('durations as H:MM:SS', () => {
    expect(formatDuration(3725.4)).toBe('1:02:05')
  })
})

describe('seeded order', () => {
  it('permutations are deterministic per seed and differ between epochs', () => {
    const a = permutation(20, mixSeed(42, 2, 0))
    expect(permutation(20, mixSeed(42, 2, 0))).toEqual(a)
    expect([...a].sort((x, y) => x - y)).toEqual(Array.from({ length: 20 }, (_, i) => i))
    expect(permutation(20, mixSeed(42, 2, 1))).not.toEqual(a)
  })
})
