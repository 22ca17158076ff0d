import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest'
import { throttle } from './throttle'

describe('throttle', () => {
  beforeEach(() => vi.useFakeTimers())
  afterEach(() => vi.useRealTimers())

  it('runs the first call at once, folds a burst into one trailing call', () => {
    const fn = vi.fn()
    const t = throttle(fn, 200)
    t()
    expect(fn).toHaveBeenCalledTimes(1)
    for (let i = 0; i < 50; i++) t()
    expect(fn).toHaveBeenCalledTimes(1)
    vi.advanceTimersByTime(200)
    expect(fn).toHaveBeenCalledTimes(2)
    vi.advanceTimersByTime(1000)
    expect(fn).toHaveBeenCalledTimes(2)
  })

  it('flush runs a pending call now; cancel drops it', () => {
    const fn = vi.fn()
    const t = throttle(fn, 200)
    t()
    t()
    t.flush()
    expect(fn).toHaveBeenCalledTimes(2)
    t()
    t.cancel()
    vi.advanceTimersByTime(1000)
    expect(fn).toHaveBeenCalledTimes(2)
  })
})
