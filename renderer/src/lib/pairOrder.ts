// Which answer of a pair shows on the left. Imported pairs store the chosen answer first, so
// showing them in stored order would put every chosen answer on the left and teach the
// labeler a position habit. The order is a fixed function of the record id: the same record
// always shows the same way (also after a reload), and about half of them are swapped.
export function swapSides(recordId: number): boolean {
  // Knuth's multiplicative hash spreads consecutive ids; one high bit decides.
  return ((Math.imul(recordId, 2654435761) >>> 16) & 1) === 1
}

/** The two candidates of a pair record in display order: [left, right]. */
export function pairSides<T>(recordId: number, candidates: readonly T[]): [T, T] | null {
  if (candidates.length < 2) return null
  return swapSides(recordId) ? [candidates[1], candidates[0]] : [candidates[0], candidates[1]]
}
