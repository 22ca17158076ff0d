import { describe, expect, it } from 'vitest'
import type { GrpoCompletion } from '../../../preload/types/training'
import { filterGroups, formatReward, groupCompletions, noFilter, preview, rewardColumns, stepFacts } from './completions'

const line = (group: number, index: number, reward: number, over: Partial<GrpoCompletion> = {}): GrpoCompletion => ({
  step: 3, group, index, prompt: `prompt ${group}`, completion: `answer ${group}.${index}`, rewards: { accuracy: reward, format: 0 },
  reward, advantage: reward - 0.5, tokens: 10, clipped: false, ...over
})

// Two prompts of three completions, written out of order: group 1 all at reward 0 (no signal).
const lines = [line(1, 2, 0), line(0, 1, 0, { clipped: true }), line(0, 0, 1), line(1, 0, 0, { clipped: true }), line(0, 2, 1), line(1, 1, 0)]

describe('GRPO completions panel', () => {
  it('groups a step by prompt, in group and index order, and marks groups whose rewards are all equal', () => {
    const groups = groupCompletions(lines)
    expect(groups.map((g) => [g.group, g.prompt, g.rows.map((r) => r.index)])).toEqual([[0, 'prompt 0', [0, 1, 2]], [1, 'prompt 1', [0, 1, 2]]])
    expect(groups.map((g) => g.zeroStd)).toEqual([false, true])
    expect(groups[0]!.meanReward).toBeCloseTo(2 / 3)
    expect(stepFacts(groups)).toEqual({ prompts: 2, completions: 6, meanReward: 1 / 3, clipped: 2, rewardZero: 4, zeroStdGroups: 1 })
  })

  it('filters to the completions with reward 0, the clipped ones, or both, keeping their prompts', () => {
    const groups = groupCompletions(lines)
    expect(filterGroups(groups, noFilter)).toEqual(groups)
    const zero = filterGroups(groups, { rewardZero: true, clipped: false })
    expect(zero.map((g) => [g.group, g.rows.map((r) => r.index)])).toEqual([[0, [1]], [1, [0, 1, 2]]])
    const clipped = filterGroups(groups, { rewardZero: false, clipped: true })
    expect(clipped.map((g) => [g.group, g.rows.map((r) => r.index)])).toEqual([[0, [1]], [1, [0]]])
    expect(filterGroups(groups, { rewardZero: true, clipped: true }).flatMap((g) => g.rows).every((r) => r.clipped && r.reward === 0)).toBe(true)
    expect(filterGroups(groupCompletions([line(0, 0, 1)]), { rewardZero: true, clipped: false })).toEqual([])
  })

  it("orders the reward columns as the run's reward_funcs, then names only the lines give", () => {
    const extra = [line(0, 0, 1, { rewards: { 'regex:x': 1, accuracy: 1 } })]
    expect(rewardColumns(extra, ['format', 'accuracy'])).toEqual(['format', 'accuracy', 'regex:x'])
    expect(rewardColumns(extra, null)).toEqual(['regex:x', 'accuracy'])
  })

  it('writes rewards with a real minus, advantages signed, no reward as a dash', () => {
    expect(formatReward(0.87654, true)).toBe('+0.877')
    expect(formatReward(-0.5, true)).toBe('−0.5')
    expect(formatReward(0, true)).toBe('0')
    expect(formatReward(0.0001, true)).toBe('0')
    expect(formatReward(null)).toBe('—')
    expect(formatReward(1)).toBe('1')
  })

  it('cuts long completions for the collapsed row, at a word, and leaves short ones whole', () => {
    expect(preview('short')).toEqual({ text: 'short', cut: false })
    const long = 'word '.repeat(100)
    const p = preview(long)
    expect(p.cut).toBe(true)
    expect(p.text.length).toBeLessThanOrEqual(280)
    expect(p.text.endsWith('word')).toBe(true)
    expect(preview('1\n2\n3\n4\n5\n6\n7\n8\n9\n10')).toEqual({ text: '1\n2\n3\n4\n5\n6\n7\n8', cut: true })
    // The <think>/<answer> shape of a short answer (6 lines) shows whole.
    expect(preview('<think>\n2 + 3 = 5\n</think>\n<answer>\n5\n</answer>').cut).toBe(false)
  })
})
