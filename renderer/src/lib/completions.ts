// One GRPO step's completions as the dashboard's Completions panel shows them: grouped by
// prompt (a group is one prompt's num_generations completions), the reward columns in the
// run's reward_funcs order, and the "reward 0" / "clipped" filters.
import type { GrpoCompletion } from '../../../preload/types/training'

export interface CompletionGroup {
  group: number
  prompt: GrpoCompletion['prompt']
  /** The group's completions by their index. */
  rows: GrpoCompletion[]
  meanReward: number
  /** Every completion got the same reward: the group's advantages are 0, it teaches nothing. */
  zeroStd: boolean
}

export function groupCompletions(lines: readonly GrpoCompletion[]): CompletionGroup[] {
  const byGroup = new Map<number, GrpoCompletion[]>()
  for (const line of lines) {
    let rows = byGroup.get(line.group)
    if (!rows) byGroup.set(line.group, (rows = []))
    rows.push(line)
  }
  return [...byGroup.entries()]
    .sort(([a], [b]) => a - b)
    .map(([group, rows]) => {
      rows.sort((a, b) => a.index - b.index)
      const meanReward = rows.reduce((s, r) => s + r.reward, 0) / rows.length
      return { group, prompt: rows[0]!.prompt, rows, meanReward, zeroStd: rows.every((r) => r.reward === rows[0]!.reward) }
    })
}

export interface CompletionFilter {
  /** Only completions whose total reward is 0. */
  rewardZero: boolean
  /** Only completions cut at max_completion_length. */
  clipped: boolean
}

export const noFilter: CompletionFilter = { rewardZero: false, clipped: false }

export function matches(row: GrpoCompletion, filter: CompletionFilter): boolean {
  return (!filter.rewardZero || row.reward === 0) && (!filter.clipped || row.clipped)
}

/** The groups with a completion the filter keeps, each with only those completions. */
export function filterGroups(groups: readonly CompletionGroup[], filter: CompletionFilter): CompletionGroup[] {
  return groups.flatMap((g) => {
    const rows = g.rows.filter((r) => matches(r, filter))
    return rows.length ? [{ ...g, rows }] : []
  })
}

/** The reward functions of the step's columns: the run's reward_funcs first (its order), then
 *  any other name the lines carry. */
export function rewardColumns(lines: readonly GrpoCompletion[], rewardFuncs: readonly string[] | null): string[] {
  const seen = new Set<string>(rewardFuncs ?? [])
  const out = [...(rewardFuncs ?? [])]
  for (const line of lines)
    for (const name of Object.keys(line.rewards))
      if (!seen.has(name)) {
        seen.add(name)
        out.push(name)
      }
  return out
}

/** A reward or advantage for the table: 3 significant decimals, the sign always shown for
 *  advantages (U+2212 for minus, so + and − line up). */
export function formatReward(x: number | null | undefined, signed = false): string {
  if (x === null || x === undefined || !Number.isFinite(x)) return '—'
  const text = String(+Math.abs(x).toFixed(3))
  if (x === 0 || text === '0') return '0'
  return (x < 0 ? '−' : signed ? '+' : '') + text
}

/** The first part of a long completion, cut at a line or word end, for the collapsed row. */
export function preview(text: string, maxChars = 280, maxLines = 8): { text: string; cut: boolean } {
  const lines = text.split('\n')
  let head = lines.slice(0, maxLines).join('\n')
  if (head.length > maxChars) {
    head = head.slice(0, maxChars)
    const space = head.lastIndexOf(' ')
    if (space > maxChars * 0.6) head = head.slice(0, space)
  }
  return head.length < text.length ? { text: head.trimEnd(), cut: true } : { text, cut: false }
}

export interface StepFacts {
  prompts: number
  completions: number
  meanReward: number
  clipped: number
  rewardZero: number
  zeroStdGroups: number
}

export function stepFacts(groups: readonly CompletionGroup[]): StepFacts {
  const rows = groups.flatMap((g) => g.rows)
  return {
    prompts: groups.length,
    completions: rows.length,
    meanReward: rows.length ? rows.reduce((s, r) => s + r.reward, 0) / rows.length : 0,
    clipped: rows.filter((r) => r.clipped).length,
    rewardZero: rows.filter((r) => r.reward === 0).length,
    zeroStdGroups: groups.filter((g) => g.zeroStd).length
  }
}
