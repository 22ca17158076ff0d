// Comparisons of the engine's numbers with a reference's, shared by the parity tests.
import { expect } from 'vitest'

/** max |a - b| (same lengths). */
export function maxAbsDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  expect(a.length).toBe(b.length)
  let d = 0
  for (let i = 0; i < a.length; i++) d = Math.max(d, Math.abs(a[i]! - b[i]!))
  return d
}

/** Worst over the reference's tensors of max |ours - ref| / max |ref|, and which tensor it is;
 *  every reference tensor must be in ours and non-zero. */
export function worstRelative(ours: Record<string, ArrayLike<number>>, ref: Map<string, { data: Float32Array }>): { worst: number; name: string; count: number } {
  let worst = 0, name = ''
  for (const [n, t] of ref) {
    const o = ours[n]
    expect(o, `gradient of ${n}`).toBeDefined()
    let scale = 0
    for (const v of t.data) scale = Math.max(scale, Math.abs(v))
    expect(scale, `reference gradient of ${n} is non-trivial`).toBeGreaterThan(0)
    const rel = maxAbsDiff(o!, t.data) / scale
    if (rel > worst) { worst = rel; name = n }
  }
  return { worst, name, count: ref.size }
}
