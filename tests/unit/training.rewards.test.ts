// Reward functions of stage grpo: answer extraction and comparison, each built-in against
// hand-computed values (Open-R1's formulas), the config checks, and command rewards with
// programs that answer, time out, crash, print junk or the wrong number of lines.
import { chmodSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest'
import {
  checkRewardConfig, extractAnswer, RewardError, rewardFunctions, rewardWeights, sameAnswer,
  type RewardItem, type RewardSettings
} from '../../main/services/training/rewards'

const fixtures = join(import.meta.dirname, 'fixtures', 'rewards')

const settings = (over: Partial<RewardSettings> = {}): RewardSettings => ({
  maxCompletionLength: 100,
  lengthTarget: null,
  cosine: { minValueWrong: 0, maxValueWrong: -0.5, minValueCorrect: 0.5, maxValueCorrect: 1, maxLen: 1000 },
  repetition: { nGrams: 3, maxPenalty: -1 },
  timeoutSeconds: 10,
  baseDir: fixtures,
  ...over
})

const item = (completion: string, columns: Record<string, unknown> = {}, over: Partial<RewardItem> = {}): RewardItem => ({
  prompt: 'What is 6 * 2?',
  rawPrompt: 'What is 6 * 2?',
  completion,
  tokens: 10,
  clipped: false,
  columns,
  ...over
})

async function score(name: string, items: RewardItem[], s: RewardSettings = settings()): Promise<(number | null)[]> {
  const [f] = rewardFunctions([name], s)
  expect(f!.name).toBe(name)
  return f!.score(items)
}
const score1 = async (name: string, it: RewardItem, s?: RewardSettings) => (await score(name, [it], s))[0]

function close(actual: number | null | undefined, expected: number) {
  expect(actual).not.toBeNull()
  expect(Math.abs(actual! - expected)).toBeLessThanOrEqual(1e-12)
}

describe('extractAnswer', () => {
  const cases: [string, string, string | null][] = [
    ['boxed', 'so the answer is \\boxed{42}.', '42'],
    ['boxed with nested braces', 'thus \\boxed{\\frac{1}{2}} done', '\\frac{1}{2}'],
    ['last boxed wins', '\\boxed{1} then, correcting, \\boxed{2}', '2'],
    ['boxed inside boxed', '\\boxed{\\boxed{7}}', '7'],
    ['escaped braces inside boxed', '\\boxed{\\{1, 2\\}}', '\\{1, 2\\}'],
    ['unbalanced last boxed falls back to the earlier one', '\\boxed{3} and \\boxed{4', '3'],
    ['empty boxed does not count', '<answer>5</answer> \\boxed{}', '5'],
    ['boxed before the answer block', '<answer>5</answer> \\boxed{6}', '6'],
    ['answer block', '<think>\n6 * 2 = 12\n</think>\n<answer>\n12\n</answer>', '12'],
    ['last answer block', '<answer>1</answer> <answer> Paris </answer>', 'Paris'],
    ['unclosed answer tag: last number', '<think>2 + 3</think><answer>5', '5'],
    ['empty answer block: last number', 'it is 9 <answer></answer>', '9'],
    ['last number', 'First 3 apples, then 4, so 7 in total', '7'],
    ['last number with thousands separators', 'it costs 1,000 dollars', '1,000'],
    ['last number, negative and decimal', 'the result is -3.25.', '-3.25'],
    ['last number, a fraction', 'half is 1/2', '1/2'],
    ['last number, a LaTeX fraction', 'the ratio is \\frac{3}{4}', '\\frac{3}{4}'],
    ['subtraction is not a negative number', 'we compute 5-3', '3'],
    ['digits glued to a word are not numbers', 'use x2 or v1.2', null],
    ['nothing to extract', 'I do not know.', null],
    ['empty text', '', null]
  ]
  for (const [what, text, expected] of cases) it(what, () => expect(extractAnswer(text)).toBe(expected))
})

describe('sameAnswer', () => {
  const cases: [string, string, boolean][] = [
    ['12', '12', true],
    ['12.0', '12', true],
    ['1/2', '0.5', true],
    ['\\frac{1}{2}', '0.5', true],
    ['\\dfrac{1}{2}', '1/2', true],
    ['-\\frac{3}{4}', '-0.75', true],
    ['1,000', '1000', true],
    ['1,000,000', '1e6', false],
    ['1,000,000', '1000000', true],
    ['$5', '5', true],
    ['\\$5', '5.00', true],
    ['-$5', '-5', true],
    ['12 apples.', '12', true],
    ['12\\text{ cm}', '12', true],
    ['x = 4', '4', true],
    ['50%', '50', true],
    ['90^\\circ', '90', true],
    ['$3$', '3', true],
    ['0.1 + 0.2', '0.3', false],
    ['0.30000000000000004', '0.3', true],
    ['0.3001', '0.3', false],
    ['12', '13', false],
    ['-12', '12', false],
    ['1,2', '12', false],
    ['12 or 13', '12', false],
    ['2x', '2', false],
    ['1/0', '0', false],
    [' Paris. ', 'paris', true],
    ['**Paris**', 'Paris', true],
    ['\\text{Paris}', 'Paris', true],
    ['New   York', 'new york', true],
    ['NewYork', 'new york', false],
    ['London', 'Paris', false],
    ['(1, 2)', '[1, 2]', false]
  ]
  for (const [given, solution, expected] of cases) {
    it(`${JSON.stringify(given)} vs ${JSON.stringify(solution)}: ${expected}`, () => {
      expect(sameAnswer(given, solution)).toBe(expected)
      expect(sameAnswer(solution, given)).toBe(expected)
    })
  }
})

describe('accuracy', () => {
  const cases: [string, string, Record<string, unknown>, number | null][] = [
    ['boxed number', 'so \\boxed{12}', { solution: '12' }, 1],
    ['wrong boxed number', 'so \\boxed{13}', { solution: '12' }, 0],
    ['solution with its own boxed', 'I get \\boxed{\\frac{1}{2}}', { solution: 'Half of it: $\\boxed{0.5}$' }, 1],
    ['solution with an answer block', '<answer>1000</answer>', { solution: '<answer>1,000</answer>' }, 1],
    ['GSM8K-style answer column', 'so she has 72 clips', { answer: '48 + 24 = 72 clips\n#### 72' }, 1],
    ['number column', 'the answer: 12 apples.', { answer: 12 }, 1],
    ['solution preferred over answer', '<answer>12</answer>', { solution: '12', answer: '13' }, 1],
    ['text answer', '<answer>\nParis\n</answer>', { solution: 'paris' }, 1],
    ['wrong text answer', '<answer>London</answer>', { solution: 'Paris' }, 0],
    ['no extractable answer', 'I cannot tell.', { solution: '12' }, 0],
    ['no solution column', '\\boxed{12}', { id: 3 }, null],
    ['empty solution', '\\boxed{12}', { solution: '  ' }, null],
    ['solution of the wrong type', '\\boxed{12}', { solution: { value: 12 } }, null]
  ]
  for (const [what, completion, columns, expected] of cases) {
    it(what, async () => expect(await score1('accuracy', item(completion, columns))).toBe(expected))
  }
})

describe('format', () => {
  const cases: [string, string, number][] = [
    ['Open-R1 shape', '<think>\nreasoning\n</think>\n<answer>\n12\n</answer>', 1],
    ['without the newlines', '<think>reasoning</think><answer>12</answer>', 1],
    ['multi-line contents, surrounding whitespace', '  \n<think>\nline 1\nline 2\n</think>\n\n<answer>\n12\n</answer>\n', 1],
    ['text before the think block', 'Sure! <think>x</think><answer>12</answer>', 0],
    ['text after the answer block', '<think>x</think><answer>12</answer> done', 0],
    ['text between the blocks', '<think>x</think> so <answer>12</answer>', 0],
    ['answer block missing', '<think>x</think>', 0],
    ['unclosed answer tag', '<think>x</think><answer>12', 0],
    ['blocks swapped', '<answer>12</answer><think>x</think>', 0],
    ['plain text', '12', 0]
  ]
  for (const [what, completion, expected] of cases) it(what, async () => expect(await score1('format', item(completion))).toBe(expected))
})

describe('tag_count (Open-R1 tag_count_reward)', () => {
  const cases: [string, string, number][] = [
    ['all four once', '<think>\nx\n</think>\n<answer>\n12\n</answer>', 1],
    ['tags without their newlines', '<think>x</think><answer>12</answer>', 0],
    ['answer tags only', 'y\n<answer>\n12\n</answer>', 0.5],
    ['think tags only', '<think>\nx\n</think>\n', 0.5],
    ['a tag twice no longer counts', '<think>\na\n</think>\n<think>\nb\n</think>\n<answer>\n12\n</answer>', 0.5],
    ['nothing', 'just 12', 0]
  ]
  for (const [what, completion, expected] of cases) it(what, async () => expect(await score1('tag_count', item(completion))).toBe(expected))
})

describe('length', () => {
  it('0 up to the target (half of max_completion_length by default), then down to −1 at the maximum', async () => {
    const tokens = [1, 50, 51, 75, 99, 100, 120]
    const got = await score('length', tokens.map((t) => item('x', {}, { tokens: t })))
    expect(got).toEqual([0, 0, -1 / 50, -0.5, -49 / 50, -1, -1])
  })
  it('uses length_target and floors the default', async () => {
    const s = settings({ maxCompletionLength: 101, lengthTarget: 81 })
    expect(await score('length', [80, 81, 91, 101].map((t) => item('x', {}, { tokens: t })), s)).toEqual([0, 0, -0.5, -1])
    const floored = settings({ maxCompletionLength: 101 })
    expect(await score('length', [50, 51].map((t) => item('x', {}, { tokens: t })), floored)).toEqual([0, -1 / 51])
  })
  it('a target at or past the maximum never divides by zero', async () => {
    const s = settings({ maxCompletionLength: 10, lengthTarget: 10 })
    expect(await score('length', [10, 11].map((t) => item('x', {}, { tokens: t })), s)).toEqual([0, -1])
  })
  it('counts tokens, not characters', async () => {
    expect(await score1('length', item('x'.repeat(500), {}, { tokens: 10 }))).toBe(0)
  })
})

describe('cosine (Open-R1 get_cosine_scaled_reward)', () => {
  const c = { minValueWrong: -1, maxValueWrong: -0.5, minValueCorrect: 0.5, maxValueCorrect: 1, maxLen: 100 }
  const s = settings({ cosine: c })
  const expected = (correct: boolean, len: number) => {
    const cos = Math.cos((Math.min(len, c.maxLen) / c.maxLen) * Math.PI)
    const [lo, hi] = correct ? [c.minValueCorrect, c.maxValueCorrect] : [c.maxValueWrong, c.minValueWrong]
    return lo + 0.5 * (hi - lo) * (1 + cos)
  }
  it('end points', async () => {
    const at = (completion: string, tokens: number) => item(completion, { solution: '12' }, { tokens })
    const got = await score('cosine', [at('\\boxed{12}', 0), at('\\boxed{12}', 100), at('\\boxed{13}', 0), at('\\boxed{13}', 100)], s)
    expect(got).toEqual([1, 0.5, -1, -0.5])
  })
  for (const len of [1, 25, 50, 73]) {
    it(`length ${len}`, async () => {
      close(await score1('cosine', item('\\boxed{12}', { solution: '12' }, { tokens: len }), s), expected(true, len))
      close(await score1('cosine', item('\\boxed{13}', { solution: '12' }, { tokens: len }), s), expected(false, len))
    })
  }
  it('stays at the end values past maxLen', async () => {
    expect(await score1('cosine', item('\\boxed{12}', { solution: '12' }, { tokens: 200 }), s)).toBe(0.5)
    expect(await score1('cosine', item('\\boxed{13}', { solution: '12' }, { tokens: 150 }), s)).toBe(-0.5)
  })
  it('a completion without an answer is wrong; a record without a solution gets null', async () => {
    expect(await score1('cosine', item('no idea', { solution: '12' }, { tokens: 0 }), s)).toBe(-1)
    expect(await score1('cosine', item('\\boxed{12}', {}, { tokens: 0 }), s)).toBeNull()
  })
})

describe('repetition (Open-R1 get_repetition_penalty_reward)', () => {
  const cases: [string, string, number, number, number][] = [
    ['no repeated trigram', 'the quick brown fox jumps', 3, -1, 0],
    ['one trigram repeated', 'a b c a b c', 3, -1, -(1 - 3 / 4)],
    ['case and whitespace do not matter', 'A b  C\na B c', 3, -1, -(1 - 3 / 4)],
    ['one word over and over', 'go go go go go go', 3, -1, -(1 - 1 / 4)],
    ['bigrams, max_penalty −0.5', 'x y x y x', 2, -0.5, -0.5 * (1 - 2 / 4)],
    ['fewer words than n', 'hello hello', 3, -1, 0],
    ['empty', '', 3, -1, 0]
  ]
  for (const [what, completion, nGrams, maxPenalty, expected] of cases) {
    it(what, async () => {
      const got = await score1('repetition', item(completion), settings({ repetition: { nGrams, maxPenalty } }))
      close(got, expected)
      expect(Object.is(got, -0)).toBe(false)
    })
  }
})

describe('regex', () => {
  it('searches the completion, pattern after the first colon, no flags', async () => {
    expect(await score('regex:\\d+:\\d+', [item('at 10:30 sharp'), item('at ten')])).toEqual([1, 0])
    expect(await score('regex:^Answer', [item('Answer: 1'), item('The Answer: 1'), item('answer: 1')])).toEqual([1, 0, 0])
  })
})

describe('checkRewardConfig and rewardWeights', () => {
  const cases: [string, string[], string[] | null, 'reward_funcs' | 'reward_weights' | null, RegExp | null][] = [
    ['built-ins, regex and command', ['accuracy', 'format', 'tag_count', 'length', 'cosine', 'repetition', 'regex:a+', 'command:./r.py'], null, null, null],
    ['weights as numbers', ['accuracy', 'format'], ['1', '-0.5'], null, null],
    ['unknown name', ['accuracy', 'formatt'], null, 'reward_funcs', /'formatt'/],
    ['bad regex', ['regex:(unclosed'], null, 'reward_funcs', /regex:\(unclosed/],
    ['empty regex', ['regex:'], null, 'reward_funcs', /'regex:'/],
    ['command without a path', ['command:'], null, 'reward_funcs', /'command:'/],
    ['listed twice', ['format', 'format'], null, 'reward_funcs', /'format' is listed twice/],
    ['no functions', [], null, 'reward_funcs', /at least one/],
    ['too few weights', ['accuracy', 'format'], ['1'], 'reward_weights', /1 weight\(s\) for 2/],
    ['too many weights', ['accuracy'], ['1', '2'], 'reward_weights', /2 weight\(s\) for 1/],
    ['weight not a number', ['accuracy', 'format'], ['1', 'abc'], 'reward_weights', /'abc' \(weight of format\)/],
    ['empty weight', ['accuracy'], [' '], 'reward_weights', /weight of accuracy/],
    ['infinite weight', ['accuracy'], ['Infinity'], 'reward_weights', /'Infinity'/]
  ]
  for (const [what, funcs, weights, key, message] of cases) {
    it(what, () => {
      const got = checkRewardConfig(funcs, weights)
      if (key === null) return expect(got).toBeNull()
      expect(got?.key).toBe(key)
      expect(got?.message).toMatch(message!)
    })
  }
  it('rewardWeights: 1 each when unset, else the numbers, and throws on a bad config', () => {
    expect(rewardWeights(['accuracy', 'format'], null)).toEqual([1, 1])
    expect(rewardWeights(['accuracy', 'format'], ['2', '-0.25'])).toEqual([2, -0.25])
    expect(() => rewardWeights(['accuracy'], ['x'])).toThrow(RewardError)
  })
  it('rewardFunctions throws on what checkRewardConfig rejects', () => {
    expect(() => rewardFunctions(['nope'], settings())).toThrow(RewardError)
  })
})

/** A killed process may stay a zombie until init reaps it, which is as good as gone. */
function alive(pid: number): boolean {
  try {
    process.kill(pid, 0)
  } catch {
    return false
  }
  try {
    return readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]![0] !== 'Z'
  } catch {
    return true
  }
}

/** The pid the reward program wrote for its child, once the file holds one (null before). */
function pidIn(file: string): number | null {
  try {
    const pid = Number(readFileSync(file, 'utf8').trim())
    return Number.isInteger(pid) && pid > 0 ? pid : null
  } catch {
    return null
  }
}

/** Polls `cond` every 10 ms until it holds or `limitMs` have passed; says whether it held. */
async function eventually(cond: () => boolean, limitMs: number): Promise<boolean> {
  for (const end = Date.now() + limitMs; !cond(); await new Promise((r) => setTimeout(r, 10)))
    if (Date.now() > end) return cond()
  return true
}

describe.skipIf(process.platform === 'win32')('command rewards', () => {
  let tmp: string
  beforeAll(() => {
    tmp = mkdtempSync(join(tmpdir(), 'tb-rewards-'))
    // git may drop the executable bits on checkout.
    for (const f of ['good.js', 'slow.sh', 'crash.js', 'junk.js', 'two-lines.sh']) chmodSync(join(fixtures, f), 0o755)
  })
  afterAll(() => rmSync(tmp, { recursive: true, force: true }))
  afterEach(() => {
    delete process.env.TB_REWARD_ECHO
    delete process.env.TB_REWARD_PIDFILE
  })

  it('writes one JSON line per completion and reads one number or null per line', async () => {
    const echo = join(tmp, 'echo.jsonl')
    process.env.TB_REWARD_ECHO = echo
    const conversation = [{ role: 'user', content: 'Hi' }]
    const items = [
      item('abc', { bonus: 5, prompt: 'not me', completion: 'not me either' }, { rawPrompt: conversation, prompt: 'Hi' }),
      item('none', { solution: '12' }),
      item('héllo ✓', {})
    ]
    expect(await score('command:good.js', items)).toEqual([1008, null, 7])
    expect(readFileSync(echo, 'utf8').split('\n').filter((l) => l).map((l) => JSON.parse(l))).toEqual([
      { prompt: conversation, completion: 'abc', bonus: 5 },
      { prompt: 'What is 6 * 2?', completion: 'none', solution: '12' },
      { prompt: 'What is 6 * 2?', completion: 'héllo ✓' }
    ])
  })

  it('absolute paths, and no run for an empty batch', async () => {
    const echo = join(tmp, 'echo-empty.jsonl')
    process.env.TB_REWARD_ECHO = echo
    expect(await score(`command:${join(fixtures, 'good.js')}`, [], settings({ baseDir: tmp }))).toEqual([])
    expect(() => readFileSync(echo)).toThrow()
  })

  it('a large batch gets through the pipe', async () => {
    const items = Array.from({ length: 300 }, (_, i) => item('y'.repeat(1000 + i)))
    expect(await score('command:good.js', items)).toEqual(items.map((_, i) => 1000 + i))
  })

  it('times out: killed with the programs it started, within the timeout', async () => {
    const pidFile = join(tmp, 'slow.pid')
    process.env.TB_REWARD_PIDFILE = pidFile
    const t0 = Date.now()
    let pending = true
    const scored = score('command:slow.sh', [item('a')], settings({ timeoutSeconds: 0.5 })).finally(() => (pending = false))
    scored.catch(() => {})
    // Its child is seen alive while the score waits, before the timeout kills it.
    expect(await eventually(() => pidIn(pidFile) !== null || !pending, 3000)).toBe(true)
    const sleeper = pidIn(pidFile)
    expect(sleeper, 'the reward program started its child before the timeout').not.toBeNull()
    expect(pending && alive(sleeper!), 'its child is alive while the score waits').toBe(true)
    await expect(scored).rejects.toThrow(new RewardError('command:slow.sh: timed out after 0.5 s'))
    expect(Date.now() - t0).toBeLessThan(3000)
    // Its child is killed with it: gone within a second (it would sleep 30 s otherwise).
    expect(await eventually(() => !alive(sleeper!), 1000)).toBe(true)
  })

  it('an abort kills it', async () => {
    const pidFile = join(tmp, 'abort.pid')
    process.env.TB_REWARD_PIDFILE = pidFile
    const [f] = rewardFunctions(['command:slow.sh'], settings({ timeoutSeconds: 30 }))
    const controller = new AbortController()
    let pending = true
    const scored = f!.score([item('a')], controller.signal).finally(() => (pending = false))
    scored.catch(() => {})
    // Aborted once its child is seen alive (and the score still waits), not after a fixed time.
    expect(await eventually(() => pidIn(pidFile) !== null || !pending, 5000)).toBe(true)
    const sleeper = pidIn(pidFile)
    expect(sleeper, 'the reward program started its child').not.toBeNull()
    expect(pending && alive(sleeper!), 'its child is alive while the score waits').toBe(true)
    const t0 = Date.now()
    controller.abort()
    await expect(scored).rejects.toThrow(/command:slow\.sh: aborted/)
    expect(Date.now() - t0).toBeLessThan(3000)
    expect(await eventually(() => !alive(sleeper!), 1000)).toBe(true)
    await expect(f!.score([item('a')], controller.signal)).rejects.toThrow(/aborted/)
  })

  it('a crash rejects with the exit code and the end of stderr', async () => {
    const err = await score('command:crash.js', [item('a')]).catch((e: unknown) => e)
    expect(err).toBeInstanceOf(RewardError)
    const message = (err as Error).message
    expect(message).toMatch(/^command:crash\.js: exited with code 3; stderr: x+\nTraceback: reward exploded on record 1$/)
    expect(message.length).toBeLessThan(2100)
  })

  it('a line that is not a number rejects naming the line and its text', async () => {
    await expect(score('command:junk.js', [item('a'), item('b'), item('c')])).rejects.toThrow(
      new RewardError('command:junk.js: line 2 is not a number or null: hello world')
    )
  })

  it('too few or too many lines reject, also when the program never reads its input', async () => {
    const many = Array.from({ length: 200 }, () => item('z'.repeat(5000)))
    await expect(score('command:two-lines.sh', many)).rejects.toThrow(new RewardError('command:two-lines.sh: printed 2 line(s) for 200 completion(s)'))
    await expect(score('command:two-lines.sh', [item('a')])).rejects.toThrow(
      new RewardError('command:two-lines.sh: line 2 is one more than the 1 completion(s): 0.25')
    )
    expect(await score('command:two-lines.sh', [item('a'), item('b')])).toEqual([0.5, 0.25])
  })

  it('endless output is cut off well before the timeout', async () => {
    const endless = join(tmp, 'endless.sh')
    writeFileSync(endless, '#!/bin/sh\nexec yes 1\n')
    chmodSync(endless, 0o755)
    const t0 = Date.now()
    await expect(score('command:endless.sh', [item('a')], settings({ baseDir: tmp, timeoutSeconds: 30 }))).rejects.toThrow(
      /^command:endless\.sh: printed more than \d+ characters$/
    )
    expect(Date.now() - t0).toBeLessThan(20_000)
  })

  it('a missing, non-executable or unrunnable program', async () => {
    expect(() => rewardFunctions(['command:missing.py'], settings())).toThrow(
      new RewardError(`reward_funcs: command:missing.py: ${join(fixtures, 'missing.py')} does not exist`)
    )
    const plain = join(tmp, 'plain.py')
    writeFileSync(plain, 'print(1)\n')
    expect(() => rewardFunctions(['command:plain.py'], settings({ baseDir: tmp }))).toThrow(/plain\.py is not executable/)
    expect(() => rewardFunctions([`command:${tmp}`], settings())).toThrow(/is not a file/)
    const badInterpreter = join(tmp, 'bad.sh')
    writeFileSync(badInterpreter, '#!/nonexistent/interpreter\n')
    chmodSync(badInterpreter, 0o755)
    await expect(score('command:bad.sh', [item('a')], settings({ baseDir: tmp }))).rejects.toThrow(/^command:bad\.sh: cannot run .*bad\.sh: spawn .* ENOENT/)
  })
})
