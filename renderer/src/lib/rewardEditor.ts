// The GRPO reward editor as data: the built-in functions (each on or off with a weight), the
// regex rewards and the command rewards, and the config keys they stand for, reward_funcs and
// reward_weights (one weight per function, in the same order). The Train page edits this state;
// the config is made from it, and a config's lists read back into it.
import { REWARD_FUNCS, trainingConfigSchema } from '../../../preload/types/trainingSchema'

export type BuiltinReward = (typeof REWARD_FUNCS)[number]

export interface BuiltinRewardRow {
  name: BuiltinReward
  enabled: boolean
  /** As typed; '' = 1. Kept while the function is off, so ticking it again brings it back. */
  weight: string
}

/** A regex reward (value = the pattern) or a command reward (value = the program's path). */
export interface CustomRewardRow {
  /** Stable key of the row while it is edited. */
  id: number
  value: string
  weight: string
}

export interface RewardEditorState {
  builtins: BuiltinRewardRow[]
  regexes: CustomRewardRow[]
  commands: CustomRewardRow[]
}

export const REGEX_PREFIX = 'regex:'
export const COMMAND_PREFIX = 'command:'

/** What each built-in function gives a completion (main/services/training/rewards.ts). */
export const builtinRewardHelp: Record<BuiltinReward, string> = {
  accuracy:
    "1 when the completion's final answer (its last \\boxed{…}, <answer>…</answer> or number) equals the record's solution (or answer) column, else 0; no reward for a record without one.",
  format: '1 when the completion is <think>…</think> then <answer>…</answer> and nothing else, else 0.',
  tag_count: '0.25 for each of <think>, </think>, <answer>, </answer> (on lines of their own) written exactly once.',
  length: '0 up to length_target tokens, then down to −1 at max_completion_length: favours short answers.',
  cosine: 'Correctness scaled by length (needs a solution column): short right answers earn the most, long wrong ones lose the least.',
  repetition: '0 for text without repeated word n-grams, down to repetition_max_penalty for one n-gram repeated.'
}

/** The config keys that tune a built-in function: those named after it (length_target, cosine_*, ...). */
export function builtinParams(name: BuiltinReward): string[] {
  return trainingConfigSchema.filter((s) => s.group === 'rewards' && s.name.startsWith(`${name}_`)).map((s) => s.name)
}

let nextId = 1
/** A new row of the regex or command list. */
export function customRow(value = '', weight = '1'): CustomRewardRow {
  return { id: nextId++, value, weight }
}

export function emptyRewards(): RewardEditorState {
  return { builtins: REWARD_FUNCS.map((name) => ({ name, enabled: false, weight: '1' })), regexes: [], commands: [] }
}

const isBuiltin = (f: string): f is BuiltinReward => (REWARD_FUNCS as readonly string[]).includes(f)

/**
 * The editor state of a config's reward_funcs and reward_weights (null = 1 each). What the
 * editor cannot hold (an unknown name, a built-in named twice, weights that do not pair up) is
 * left out and said in `problems`.
 */
export function rewardsFromConfig(funcs: readonly string[], weights: readonly (string | number)[] | null): { state: RewardEditorState; problems: string[] } {
  const state = emptyRewards()
  const problems: string[] = []
  if (weights && weights.length !== funcs.length)
    problems.push(`reward_weights has ${weights.length} values for ${funcs.length} reward functions; every weight was set to 1`)
  const weightOf = (i: number) => (weights && weights.length === funcs.length ? String(weights[i]).trim() : '1')
  funcs.forEach((raw, i) => {
    const func = raw.trim()
    if (func.startsWith(REGEX_PREFIX)) state.regexes.push(customRow(func.slice(REGEX_PREFIX.length), weightOf(i)))
    else if (func.startsWith(COMMAND_PREFIX)) state.commands.push(customRow(func.slice(COMMAND_PREFIX.length), weightOf(i)))
    else if (isBuiltin(func)) {
      const row = state.builtins.find((b) => b.name === func)!
      if (row.enabled) problems.push(`${func} is named twice in reward_funcs; it is kept once`)
      else Object.assign(row, { enabled: true, weight: weightOf(i) })
    } else problems.push(`unknown reward function "${func}" (use ${REWARD_FUNCS.join(', ')}, regex:<pattern> or command:<path>)`)
  })
  return { state, problems }
}

const weightNumber = (w: string): number => (w.trim() === '' ? 1 : Number(w))

/** The functions the state stands for, with their weights: built-ins in their fixed order, then
 *  the regex rewards, then the command rewards, as the user listed them. */
export function activeRewards(state: RewardEditorState): { func: string; weight: string }[] {
  return [
    ...state.builtins.filter((b) => b.enabled).map((b) => ({ func: b.name, weight: b.weight })),
    ...state.regexes.map((r) => ({ func: REGEX_PREFIX + r.value, weight: r.weight })),
    ...state.commands.map((c) => ({ func: COMMAND_PREFIX + c.value, weight: c.weight }))
  ]
}

/** reward_funcs and reward_weights of the state; the weights are null (unset) when all are 1. */
export function rewardsToConfig(state: RewardEditorState): { reward_funcs: string[]; reward_weights: string[] | null } {
  const active = activeRewards(state)
  const weights = active.map((a) => (a.weight.trim() === '' ? '1' : a.weight.trim()))
  return { reward_funcs: active.map((a) => a.func), reward_weights: weights.every((w) => weightNumber(w) === 1) ? null : weights }
}

/** Why a weight cannot be used, or null. */
export function weightProblem(weight: string): string | null {
  if (weight.trim() === '') return null
  return Number.isFinite(Number(weight)) ? null : 'the weight must be a number (e.g. 1, 0.5 or -1)'
}

/** Why a regex reward's pattern cannot be used, or null. The rewards are JavaScript regular
 *  expressions searched in the completion. */
export function regexProblem(pattern: string): string | null {
  if (pattern === '') return 'type a pattern, or remove this regex reward'
  if (pattern !== pattern.trim()) return 'starts or ends with a space, which reward_funcs drops: write \\s or [ ] instead'
  try {
    new RegExp(pattern)
  } catch (err) {
    const message = (err as Error).message.replace(/^Invalid regular expression: \/.*\/[a-z]*: /s, '')
    return `not a valid regular expression: ${message}`
  }
  return null
}

/** Why a command reward's path cannot be used, or null. */
export function commandProblem(path: string): string | null {
  if (path.trim() === '') return 'type the path of the program, or remove this command reward'
  if (path !== path.trim()) return 'starts or ends with a space, which reward_funcs drops'
  return null
}

/** Advice that does not block the run: a relative program path resolves against the folder the
 *  app (or the server) was started in, which the user rarely knows. */
export function commandHint(path: string): string | null {
  const p = path.trim()
  if (p === '' || p.startsWith('/') || /^[A-Za-z]:[\\/]/.test(p) || p.startsWith('\\\\')) return null
  return 'a relative path resolves against the folder the app was started in; an absolute path is safer'
}

/** The problems of each row, keyed `builtin:<name>`, `regex:<id>`, `command:<id>` (value
 *  problems) and `weight:<same key>` (weight problems), for the editor to show beside them. */
export function rowProblems(state: RewardEditorState): Record<string, string> {
  const out: Record<string, string> = {}
  for (const b of state.builtins) {
    const w = b.enabled ? weightProblem(b.weight) : null
    if (w) out[`weight:builtin:${b.name}`] = w
  }
  const seen = new Map<string, string>()
  for (const [kind, rows, check] of [['regex', state.regexes, regexProblem], ['command', state.commands, commandProblem]] as const) {
    for (const r of rows) {
      const key = `${kind}:${r.id}`
      const problem = check(r.value)
      const func = `${kind}:${r.value}`
      if (problem) out[key] = problem
      else if (seen.has(func)) out[key] = `the same ${kind === 'regex' ? 'pattern' : 'program'} twice: its reward would count twice under one name; remove one`
      seen.set(func, key)
      const w = weightProblem(r.weight)
      if (w) out[`weight:${key}`] = w
    }
  }
  return out
}

/** The errors of the two config keys the editor stands for, as the Train form reports errors. */
export function rewardErrors(state: RewardEditorState): { reward_funcs?: string; reward_weights?: string } {
  const errors: { reward_funcs?: string; reward_weights?: string } = {}
  if (activeRewards(state).length === 0) errors.reward_funcs = 'choose at least one reward function'
  const problems = rowProblems(state)
  const value = Object.entries(problems).find(([k]) => !k.startsWith('weight:'))
  if (value) errors.reward_funcs ??= `${value[0].startsWith('regex') ? 'a regex reward' : 'a command reward'}: ${value[1]}`
  const weight = Object.entries(problems).find(([k]) => k.startsWith('weight:'))
  if (weight) errors.reward_weights = weight[1]
  return errors
}

/** Whether a value read back from storage is an editor state (anything else is dropped). */
export function isRewardEditorState(value: unknown): value is RewardEditorState {
  const v = value as Partial<RewardEditorState> | null
  const custom = (rows: unknown) =>
    Array.isArray(rows) && rows.every((r) => typeof r?.id === 'number' && typeof r.value === 'string' && typeof r.weight === 'string')
  return (
    typeof v === 'object' && v !== null && Array.isArray(v.builtins) &&
    v.builtins.length === REWARD_FUNCS.length &&
    v.builtins.every((b, i) => b?.name === REWARD_FUNCS[i] && typeof b.enabled === 'boolean' && typeof b.weight === 'string') &&
    custom(v.regexes) && custom(v.commands)
  )
}

/** Row ids of a state read back from storage, so new rows never take an id in use. */
export function reserveIds(state: RewardEditorState): void {
  for (const r of [...state.regexes, ...state.commands]) nextId = Math.max(nextId, r.id + 1)
}
