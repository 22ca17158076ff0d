import { describe, expect, it } from 'vitest'
import { REWARD_FUNCS } from '../../../preload/types/trainingSchema'
import {
  builtinParams,
  commandHint,
  customRow,
  emptyRewards,
  isRewardEditorState,
  regexProblem,
  rewardErrors,
  rewardsFromConfig,
  rewardsToConfig,
  rowProblems,
  type RewardEditorState
} from './rewardEditor'

/** The (function, weight) pairs a config stands for: what a run sums, whatever the order. */
const pairs = (funcs: string[], weights: string[] | null) => funcs.map((f, i) => `${f} × ${Number(weights?.[i] ?? 1)}`).sort()

function state(change: (s: RewardEditorState) => void): RewardEditorState {
  const s = emptyRewards()
  change(s)
  return s
}

describe('reward editor', () => {
  it('turns a config into the editor and back to the same functions and weights', () => {
    const cases: [string[], string[] | null][] = [
      [['accuracy', 'format'], null],
      [['format', 'accuracy'], ['0.5', '1']],
      [['accuracy', 'regex:^\\d{1,3}$', 'command:/opt/judge.py', 'length'], ['1', '2', '-1', '0.25']],
      [['regex:a', 'regex:b'], ['1', '1']],
      [['command:/x'], null]
    ]
    for (const [funcs, weights] of cases) {
      const { state: s, problems } = rewardsFromConfig(funcs, weights)
      expect(problems, funcs.join()).toEqual([])
      const back = rewardsToConfig(s)
      expect(pairs(back.reward_funcs, back.reward_weights), funcs.join()).toEqual(pairs(funcs, weights))
      // And the editor of the config it makes is the editor it came from.
      const again = rewardsFromConfig(back.reward_funcs, back.reward_weights).state
      expect(rewardsToConfig(again)).toEqual(back)
    }
  })

  it('leaves reward_weights unset when every weight is 1, and an empty weight counts as 1', () => {
    const s = state((s) => {
      s.builtins[0]!.enabled = true
      s.builtins[1]!.enabled = true
      s.builtins[1]!.weight = ''
      s.regexes.push(customRow('x', '1.0'))
    })
    expect(rewardsToConfig(s)).toEqual({ reward_funcs: ['accuracy', 'format', 'regex:x'], reward_weights: null })
    s.builtins[1]!.weight = '0.5'
    expect(rewardsToConfig(s).reward_weights).toEqual(['1', '0.5', '1.0'])
  })

  it('keeps an unticked function out of the config but keeps its weight for when it is ticked again', () => {
    const s = rewardsFromConfig(['accuracy', 'format'], ['1', '0.3']).state
    s.builtins[1]!.enabled = false
    expect(rewardsToConfig(s)).toEqual({ reward_funcs: ['accuracy'], reward_weights: null })
    s.builtins[1]!.enabled = true
    expect(rewardsToConfig(s).reward_weights).toEqual(['1', '0.3'])
  })

  it('says what a config holds that the editor cannot', () => {
    expect(rewardsFromConfig(['accuracy', 'accuracy'], null).problems).toEqual(['accuracy is named twice in reward_funcs; it is kept once'])
    expect(rewardsFromConfig(['bleu'], null).problems[0]).toMatch(/unknown reward function "bleu"/)
    expect(rewardsFromConfig(['accuracy', 'format'], ['1']).problems[0]).toMatch(/1 values for 2 reward functions/)
  })

  it('checks regex patterns as they are typed, with the reason', () => {
    expect(regexProblem('^\\d+$')).toBeNull()
    expect(regexProblem('')).toMatch(/type a pattern/)
    expect(regexProblem('(unclosed')).toBe('not a valid regular expression: Unterminated group')
    expect(regexProblem('a{2,1}')).toMatch(/^not a valid regular expression: /)
    expect(regexProblem(' x')).toMatch(/space/)
  })

  it('names the key of each problem for the form, and the row for the editor', () => {
    expect(rewardErrors(emptyRewards())).toEqual({ reward_funcs: 'choose at least one reward function' })
    const s = state((s) => {
      s.builtins[0]!.enabled = true
      s.builtins[0]!.weight = 'heavy'
      s.regexes.push(customRow('[a-'), customRow('ok'), customRow('ok'))
      s.commands.push(customRow(''))
    })
    const rows = rowProblems(s)
    const [bad, ok1, ok2] = s.regexes
    expect(rows[`regex:${bad!.id}`]).toMatch(/not a valid regular expression/)
    expect(rows[`regex:${ok1!.id}`]).toBeUndefined()
    expect(rows[`regex:${ok2!.id}`]).toMatch(/same pattern twice/)
    expect(rows[`command:${s.commands[0]!.id}`]).toMatch(/type the path/)
    expect(rows['weight:builtin:accuracy']).toMatch(/must be a number/)
    const errors = rewardErrors(s)
    expect(errors.reward_funcs).toMatch(/^a regex reward: not a valid regular expression/)
    expect(errors.reward_weights).toMatch(/must be a number/)
  })

  it('advises an absolute program path without blocking the run', () => {
    expect(commandHint('judge.py')).toMatch(/absolute path/)
    expect(commandHint('/opt/judge.py')).toBeNull()
    expect(commandHint('C:\\judge.exe')).toBeNull()
    expect(rewardErrors(state((s) => s.commands.push(customRow('judge.py'))))).toEqual({})
  })

  it("finds each built-in function's settings in the schema by its name", () => {
    expect(builtinParams('length')).toEqual(['length_target'])
    expect(builtinParams('cosine')).toEqual(['cosine_min_value_wrong', 'cosine_max_value_wrong', 'cosine_min_value_correct', 'cosine_max_value_correct', 'cosine_max_len'])
    expect(builtinParams('repetition')).toEqual(['repetition_n_grams', 'repetition_max_penalty'])
    expect(builtinParams('accuracy')).toEqual([])
  })

  it('accepts only a whole editor state read back from storage', () => {
    expect(isRewardEditorState(emptyRewards())).toBe(true)
    expect(isRewardEditorState(JSON.parse(JSON.stringify(rewardsFromConfig(['regex:x'], null).state)))).toBe(true)
    expect(isRewardEditorState({ builtins: [], regexes: [], commands: [] })).toBe(false)
    expect(isRewardEditorState({ ...emptyRewards(), regexes: [{ value: 'x' }] })).toBe(false)
    expect(isRewardEditorState(null)).toBe(false)
    expect(emptyRewards().builtins.map((b) => b.name)).toEqual([...REWARD_FUNCS])
  })
})
