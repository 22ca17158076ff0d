// Reward functions of stage grpo: each scores a batch of sampled completions, one number per
// completion, or null where it gives no reward (a record without a solution for accuracy).
// The built-ins follow Open-R1's open_r1/rewards.py (accuracy with a plain-text answer check in
// place of math_verify; lengths in tokens); `regex:<pattern>` scores a match and
// `command:<path>` runs an external program once per batch: JSON lines in, one number or null
// per line out.
import { spawn } from 'node:child_process'
import { accessSync, constants, statSync } from 'node:fs'
import { resolve } from 'node:path'
import { REWARD_FUNCS } from '../../../preload/types/trainingSchema'

export interface RewardItem {
  /** The prompt as plain text (a conversation's last user message content, or the plain string). */
  prompt: string
  /** The conversation or string as the record gives it (passed to command rewards as `prompt`). */
  rawPrompt: unknown
  /** The sampled completion decoded to text (special tokens skipped). */
  completion: string
  /** Completion tokens (eos included when sampled). */
  tokens: number
  /** Stopped by max_completion_length rather than eos. */
  clipped: boolean
  /** The dataset record's other columns (solution, answer, ...), as read from the file. */
  columns: Record<string, unknown>
}

export interface RewardSettings {
  maxCompletionLength: number
  /** null = floor(maxCompletionLength / 2). */
  lengthTarget: number | null
  cosine: { minValueWrong: number; maxValueWrong: number; minValueCorrect: number; maxValueCorrect: number; maxLen: number }
  repetition: { nGrams: number; maxPenalty: number }
  timeoutSeconds: number
  /** Relative command paths resolve against it (the config's folder or the working directory). */
  baseDir: string
}

export interface RewardFunction {
  /** As written in reward_funcs ('accuracy', 'regex:<pattern>', 'command:<path>'). */
  name: string
  score(items: RewardItem[], signal?: AbortSignal): Promise<(number | null)[]>
}

export class RewardError extends Error {}

const REGEX_PREFIX = 'regex:'
const COMMAND_PREFIX = 'command:'
/** What a command may print before it is stopped: far more than a number per completion. */
const MAX_STDOUT_CHARS = 16 * 1024 * 1024
const STDERR_TAIL_CHARS = 2000

const isBuiltin = (name: string): name is (typeof REWARD_FUNCS)[number] => (REWARD_FUNCS as readonly string[]).includes(name)

/** A weight as written: a finite number, or null. */
function parseWeight(text: string): number | null {
  const w = text.trim() === '' ? NaN : Number(text)
  return Number.isFinite(w) ? w : null
}

/** Checks reward_funcs / reward_weights without touching the disk: unknown names, bad regexes,
 *  weights that are not numbers or whose count differs from reward_funcs. Returns the key at
 *  fault and a message naming the offending entry, or null. */
export function checkRewardConfig(funcs: string[], weights: string[] | null): { key: 'reward_funcs' | 'reward_weights'; message: string } | null {
  const funcError = (message: string) => ({ key: 'reward_funcs' as const, message })
  if (funcs.length === 0) return funcError('at least one reward function is needed')
  const seen = new Set<string>()
  for (const name of funcs) {
    // Rewards are logged and stored by name, so a name may appear only once.
    if (seen.has(name)) return funcError(`'${name}' is listed twice`)
    seen.add(name)
    if (isBuiltin(name)) continue
    if (name.startsWith(REGEX_PREFIX)) {
      const pattern = name.slice(REGEX_PREFIX.length)
      if (pattern === '') return funcError(`'${name}' has no pattern`)
      try {
        new RegExp(pattern)
      } catch (err) {
        return funcError(`'${name}' is not a valid regular expression: ${(err as Error).message}`)
      }
    } else if (name.startsWith(COMMAND_PREFIX)) {
      if (name.slice(COMMAND_PREFIX.length).trim() === '') return funcError(`'${name}' has no program path`)
    } else {
      return funcError(`unknown reward function '${name}' (known: ${REWARD_FUNCS.join(', ')}, regex:<pattern>, command:<path>)`)
    }
  }
  if (weights === null) return null
  if (weights.length !== funcs.length) {
    return { key: 'reward_weights', message: `${weights.length} weight(s) for ${funcs.length} reward function(s)` }
  }
  const bad = weights.findIndex((w) => parseWeight(w) === null)
  if (bad >= 0) return { key: 'reward_weights', message: `'${weights[bad]}' (weight of ${funcs[bad]}) is not a number` }
  return null
}

/** The weight of each function, in reward_funcs order (1 each when unset). */
export function rewardWeights(funcs: string[], weights: string[] | null): number[] {
  const problem = checkRewardConfig(funcs, weights)
  if (problem) throw new RewardError(`${problem.key}: ${problem.message}`)
  return weights === null ? funcs.map(() => 1) : weights.map((w) => parseWeight(w)!)
}

// --- answers -------------------------------------------------------------------------------

const NUM = String.raw`(?:\d{1,3}(?:,\d{3})+(?!\d)|\d+)(?:\.\d+)?|\.\d+`
/** A number in running text: not glued to a word (x2, v1.2), optionally signed, a fraction or
 *  a LaTeX \frac of integers. */
const NUMBER_IN_TEXT = new RegExp(String.raw`(?<![\w.])(?:[-−]\s?)?(?:\\[dt]?frac\{\d+\}\{\d+\}|(?:${NUM})(?:/(?:${NUM}))?)`, 'g')
/** A whole answer that is a number: currency sign, sign, value or fraction, then at most a
 *  unit (after a space, or %, °) and a period. */
const NUMBER_ANSWER = new RegExp(String.raw`^(?:[$€£]\s*)?([-−+]?)\s*(?:[$€£]\s*)?(${NUM})(?:\s*/\s*(${NUM}))?(?:\s*[%°]|\s+[a-z][a-z\s./]*)?\.?$`, 'i')

/** Content of the last \boxed{…} whose braces balance (\{ and \} are not structural). */
function lastBoxed(text: string): string | null {
  let found: string | null = null
  for (const m of text.matchAll(/\\boxed\s*\{/g)) {
    const start = m.index + m[0].length
    let depth = 1
    for (let i = start; i < text.length; i++) {
      const c = text[i]
      if (c === '\\') i++
      else if (c === '{') depth++
      else if (c === '}' && --depth === 0) {
        found = text.slice(start, i)
        break
      }
    }
  }
  return found
}

/** The final answer of a text: the last balanced \boxed{…}, else the last <answer>…</answer>
 *  block, else the last number; empty contents do not count. */
export function extractAnswer(completion: string): string | null {
  const boxed = lastBoxed(completion)?.trim()
  if (boxed) return boxed
  const block = [...completion.matchAll(/<answer>([\s\S]*?)<\/answer>/g)].at(-1)?.[1]?.trim()
  if (block) return block
  return [...completion.matchAll(NUMBER_IN_TEXT)].at(-1)?.[0] ?? null
}

/** Drops LaTeX that does not change an answer: math delimiters, spacing, \left/\right, \text{}
 *  wrappers; \dfrac and \tfrac become \frac, \$ \% ^\circ plain signs. */
function unwrapLatex(s: string): string {
  let t = s.trim()
  const math = /^\$+([\s\S]*?)\$+$|^\\\(([\s\S]*)\\\)$|^\\\[([\s\S]*)\\\]$/.exec(t)
  if (math) t = (math[1] ?? math[2] ?? math[3]!).trim()
  return t
    .replace(/\\(?:text|textbf|textrm|mathrm|mbox)\s*\{([^{}]*)\}/g, ' $1')
    .replace(/\\[!,;: ]/g, ' ')
    .replace(/\\left|\\right/g, '')
    .replace(/\\[dt]frac/g, '\\frac')
    .replace(/\\([$%])/g, '$1')
    .replace(/\^\s*\{?\\circ\}?/g, '°')
    .trim()
}

/** The value of an answer that is a number ("1,000", "$5", "-1/2", "\frac{1}{2}", "12 apples."). */
function answerNumber(answer: string): number | null {
  const s = unwrapLatex(answer)
    .replace(/\\frac\{([^{}]*)\}\{([^{}]*)\}/g, '$1/$2')
    .replace(/^[a-z]\w*\s*=\s*/i, '')
  const m = NUMBER_ANSWER.exec(s)
  if (!m) return null
  const value = (t: string) => Number(t.replace(/,/g, ''))
  const x = value(m[2]!) / (m[3] === undefined ? 1 : value(m[3]))
  if (!Number.isFinite(x)) return null
  return m[1] === '-' || m[1] === '−' ? -x : x
}

function normaliseText(answer: string): string {
  return unwrapLatex(answer)
    .toLowerCase()
    .replace(/\s+/g, ' ')
    .replace(/^[\s.,;:!?'"`*]+|[\s.,;:!?'"`*]+$/g, '')
}

/** Two answers agree: as numbers (relative tolerance 1e-9) when both are numbers, else as
 *  normalised text (case, surrounding whitespace and punctuation, inner whitespace). */
export function sameAnswer(given: string, solution: string): boolean {
  const a = answerNumber(given)
  const b = answerNumber(solution)
  if (a !== null && b !== null) return Math.abs(a - b) <= 1e-9 * Math.max(Math.abs(a), Math.abs(b))
  return normaliseText(given) === normaliseText(solution)
}

/** The record's reference answer: its `solution` column, else `answer`, extracted like a
 *  completion's answer or taken whole; null when there is none. */
function referenceAnswer(columns: Record<string, unknown>): string | null {
  const v = columns.solution ?? columns.answer
  if (typeof v !== 'string' && typeof v !== 'number' && typeof v !== 'boolean') return null
  const text = String(v)
  return extractAnswer(text) ?? (text.trim() || null)
}

/** accuracy: 1 when the completion's answer equals the reference, 0 when not or when it has
 *  none, null when the record has no reference. */
function accuracy(item: RewardItem): number | null {
  const reference = referenceAnswer(item.columns)
  if (reference === null) return null
  const given = extractAnswer(item.completion)
  return given !== null && sameAnswer(given, reference) ? 1 : 0
}

// --- built-in rewards ------------------------------------------------------------------------

const FORMAT = /^<think>\n?[\s\S]*?\n?<\/think>\s*<answer>\n?[\s\S]*?\n?<\/answer>$/

const occurrences = (text: string, part: string): number => text.split(part).length - 1

/** Open-R1's tag_count_reward: 0.25 for each tag (with its newlines) present exactly once. */
function tagCount(text: string): number {
  return ['<think>\n', '\n</think>\n', '\n<answer>\n', '\n</answer>'].filter((tag) => occurrences(text, tag) === 1).length * 0.25
}

/** 0 up to `target` tokens, then linearly down to −1 at `max` (DAPO's soft overlong punishment,
 *  Open-R1's get_soft_overlong_punishment with cache = max − target). */
function lengthPenalty(tokens: number, target: number, max: number): number {
  if (tokens <= target) return 0
  return tokens >= max ? -1 : -(tokens - target) / (max - target)
}

/** Open-R1's get_cosine_scaled_reward over token lengths, the length capped at maxLen so the
 *  value stays at its end point beyond it. */
function cosineScaled(correct: boolean, tokens: number, c: RewardSettings['cosine']): number {
  const progress = Math.min(tokens / c.maxLen, 1)
  const cosine = Math.cos(progress * Math.PI)
  // A wrong answer goes from minValueWrong at length 0 to maxValueWrong at maxLen.
  const [lo, hi] = correct ? [c.minValueCorrect, c.maxValueCorrect] : [c.maxValueWrong, c.minValueWrong]
  return lo + 0.5 * (hi - lo) * (1 + cosine)
}

/** Open-R1's get_repetition_penalty_reward: (1 − unique/total word n-grams) · maxPenalty, 0 for
 *  completions of fewer than n words (words: lower-cased, split on whitespace). */
function repetitionPenalty(text: string, n: number, maxPenalty: number): number {
  const words = text.toLowerCase().split(/\s+/).filter((w) => w !== '')
  if (words.length < n) return 0
  const total = words.length - n + 1
  const unique = new Set<string>()
  for (let i = 0; i < total; i++) unique.add(words.slice(i, i + n).join(' '))
  // unique = total gives 0 · maxPenalty = −0; the reward is a plain 0 then.
  return unique.size === total ? 0 : (1 - unique.size / total) * maxPenalty
}

function builtin(name: (typeof REWARD_FUNCS)[number], s: RewardSettings): (item: RewardItem) => number | null {
  switch (name) {
    case 'accuracy':
      return accuracy
    case 'format':
      return (item) => (FORMAT.test(item.completion.trim()) ? 1 : 0)
    case 'tag_count':
      return (item) => tagCount(item.completion)
    case 'length': {
      const target = s.lengthTarget ?? Math.floor(s.maxCompletionLength / 2)
      return (item) => lengthPenalty(item.tokens, target, s.maxCompletionLength)
    }
    case 'cosine':
      return (item) => {
        const correct = accuracy(item)
        return correct === null ? null : cosineScaled(correct === 1, item.tokens, s.cosine)
      }
    case 'repetition':
      return (item) => repetitionPenalty(item.completion, s.repetition.nGrams, s.repetition.maxPenalty)
  }
}

const perItem = (name: string, f: (item: RewardItem) => number | null): RewardFunction => ({
  name,
  score: async (items) => items.map(f)
})

// --- command rewards -------------------------------------------------------------------------

/** The program's reply: one JSON number or null per completion (blank lines skipped). */
function parseScores(name: string, stdout: string, count: number): (number | null)[] {
  const scores: (number | null)[] = []
  const lines = stdout.split('\n')
  for (let i = 0; i < lines.length; i++) {
    const text = lines[i]!.trim()
    if (text === '') continue
    if (scores.length === count) throw new RewardError(`${name}: line ${i + 1} is one more than the ${count} completion(s): ${text.slice(0, 200)}`)
    let value: unknown
    try {
      value = JSON.parse(text)
    } catch {
      value = undefined
    }
    if (value !== null && !(typeof value === 'number' && Number.isFinite(value))) {
      throw new RewardError(`${name}: line ${i + 1} is not a number or null: ${text.slice(0, 200)}`)
    }
    scores.push(value)
  }
  if (scores.length < count) throw new RewardError(`${name}: printed ${scores.length} line(s) for ${count} completion(s)`)
  return scores
}

/** Runs the program once for the batch. It gets its own process group (POSIX), killed whole on
 *  timeout or abort, so programs it started cannot keep the pipes and the caller waiting. */
function runCommand(name: string, file: string, items: RewardItem[], s: RewardSettings, signal?: AbortSignal): Promise<(number | null)[]> {
  return new Promise((resolvePromise, rejectPromise) => {
    if (signal?.aborted) return rejectPromise(new RewardError(`${name}: aborted`))
    const input = items.map((item) => {
      const record: Record<string, unknown> = { prompt: item.rawPrompt, completion: item.completion }
      for (const [k, v] of Object.entries(item.columns)) if (!(k in record)) record[k] = v
      return JSON.stringify(record) + '\n'
    }).join('')

    const child = spawn(file, [], { cwd: s.baseDir, stdio: ['pipe', 'pipe', 'pipe'], detached: process.platform !== 'win32' })
    let stdout = ''
    let stderr = ''
    let settled = false
    let closed = false
    const kill = () => {
      if (closed) return
      try {
        if (process.platform !== 'win32' && child.pid !== undefined) process.kill(-child.pid, 'SIGKILL')
        else child.kill('SIGKILL')
      } catch {
        // Already gone.
      }
    }
    const finish = (err: Error | null, scores?: (number | null)[]) => {
      if (settled) return
      settled = true
      clearTimeout(timer)
      signal?.removeEventListener('abort', onAbort)
      if (err) {
        kill()
        child.stdout.destroy()
        child.stderr.destroy()
        rejectPromise(err)
      } else resolvePromise(scores!)
    }
    const onAbort = () => finish(new RewardError(`${name}: aborted`))
    // setTimeout fires at once beyond 2³¹ − 1 ms.
    const timer = setTimeout(() => finish(new RewardError(`${name}: timed out after ${s.timeoutSeconds} s`)), Math.min(s.timeoutSeconds * 1000, 2 ** 31 - 1))
    signal?.addEventListener('abort', onAbort, { once: true })

    child.on('error', (err) => finish(new RewardError(`${name}: cannot run ${file}: ${err.message}`)))
    // A program that exits without reading its input breaks the pipe (EPIPE); its exit
    // status and output decide the result.
    child.stdin.on('error', () => {})
    child.stdout.setEncoding('utf8')
    child.stderr.setEncoding('utf8')
    child.stdout.on('data', (chunk: string) => {
      stdout += chunk
      if (stdout.length > MAX_STDOUT_CHARS) finish(new RewardError(`${name}: printed more than ${MAX_STDOUT_CHARS} characters`))
    })
    child.stderr.on('data', (chunk: string) => (stderr = (stderr + chunk).slice(-STDERR_TAIL_CHARS)))
    child.on('close', (code, sig) => {
      closed = true
      if (code !== 0) {
        const how = sig ? `was killed by ${sig}` : `exited with code ${code}`
        return finish(new RewardError(`${name}: ${how}${stderr.trim() ? `; stderr: ${stderr.trim()}` : ''}`))
      }
      try {
        finish(null, parseScores(name, stdout, items.length))
      } catch (err) {
        finish(err as Error)
      }
    })
    child.stdin.end(input)
  })
}

function commandReward(name: string, s: RewardSettings): RewardFunction {
  const path = name.slice(COMMAND_PREFIX.length)
  const file = resolve(s.baseDir, path)
  let isFile: boolean
  try {
    isFile = statSync(file).isFile()
  } catch {
    throw new RewardError(`reward_funcs: ${name}: ${file} does not exist`)
  }
  if (!isFile) throw new RewardError(`reward_funcs: ${name}: ${file} is not a file`)
  try {
    accessSync(file, constants.X_OK)
  } catch {
    throw new RewardError(`reward_funcs: ${name}: ${file} is not executable (chmod +x it)`)
  }
  return {
    name,
    score: async (items, signal) => (items.length === 0 ? [] : runCommand(name, file, items, s, signal))
  }
}

/** Builds the functions (a command path that does not exist or is not executable is a
 *  RewardError naming it). */
export function rewardFunctions(funcs: string[], settings: RewardSettings): RewardFunction[] {
  const problem = checkRewardConfig(funcs, null)
  if (problem) throw new RewardError(`${problem.key}: ${problem.message}`)
  return funcs.map((name) => {
    if (isBuiltin(name)) return perItem(name, builtin(name, settings))
    if (name.startsWith(REGEX_PREFIX)) {
      const re = new RegExp(name.slice(REGEX_PREFIX.length))
      return perItem(name, (item) => (re.test(item.completion) ? 1 : 0))
    }
    return commandReward(name, settings)
  })
}
