// The one rule for optional test dependencies (native/scripts/ci.js, used by trainingPython.ts,
// engine.parity and native/scripts/test-native.js): any CI but ''/false/0 means "must run", so a
// missing python/torch/addon fails; otherwise the suite skips and prints why.
import { spawnSync } from 'node:child_process'
import { join } from 'node:path'
import { afterEach, describe, expect, it, vi } from 'vitest'
import { mustRun, requireOrSkip } from '../../native/scripts/ci.js'

const root = join(import.meta.dirname, '..', '..')
const cases: [string | undefined, boolean][] = [
  [undefined, false], ['', false], ['false', false], ['FALSE', false], ['0', false],
  ['1', true], ['yes', true], ['true', true], ['True', true]
]

/** Runs `fn` with CI unset when the case is undefined (the suite itself may run under CI). */
function unsetWhenUndefined<T>(ci: string | undefined, fn: () => T): T {
  if (ci !== undefined) return fn()
  const saved = process.env.CI
  delete process.env.CI
  try {
    return fn()
  } finally {
    if (saved !== undefined) process.env.CI = saved
  }
}

describe('mustRun', () => {
  it.each(cases)('CI=%j → %s', (ci, expected) => expect(unsetWhenUndefined(ci, () => mustRun(ci))).toBe(expected))

  it('reads process.env.CI by default', () => {
    vi.stubEnv('CI', '1')
    expect(mustRun()).toBe(true)
    vi.stubEnv('CI', '0')
    expect(mustRun()).toBe(false)
  })
  afterEach(() => vi.unstubAllEnvs())
})

describe('requireOrSkip', () => {
  afterEach(() => vi.restoreAllMocks())
  it.each(cases)('CI=%j: %s → throws, else prints the reason and returns false', (ci, throws) => {
    const warn = vi.spyOn(console, 'warn').mockImplementation(() => {})
    if (throws) {
      expect(() => unsetWhenUndefined(ci, () => requireOrSkip('some suite', 'torch is missing', ci))).toThrow(/some suite.*torch is missing/)
      expect(warn).not.toHaveBeenCalled()
    } else {
      expect(unsetWhenUndefined(ci, () => requireOrSkip('some suite', 'torch is missing', ci))).toBe(false)
      expect(warn).toHaveBeenCalledWith(expect.stringMatching(/some suite SKIPPED: torch is missing/))
    }
  })
})

// The suites' gate, as they call it: a python without torch skips (saying why) or fails.
describe('torchAvailable() with a python that is missing', () => {
  const probe = (ci: string | undefined) => {
    const env: NodeJS.ProcessEnv = { ...process.env, TUNEBENCH_PYTHON: join(root, 'no-such-python') }
    delete env.CI
    if (ci !== undefined) env.CI = ci
    return spawnSync(process.execPath, ['--import', 'tsx', '--input-type=module', '--eval',
      "const m = await import('./tests/unit/trainingPython.ts'); console.log('available=' + m.torchAvailable('probe suite'))"],
    { cwd: root, env, encoding: 'utf8' })
  }
  it.each([[undefined], [''], ['false'], ['0']])('CI=%j skips and prints why', (ci) => {
    const r = probe(ci)
    expect(r.status, r.stderr).toBe(0)
    expect(r.stdout).toContain('available=false')
    expect(r.stderr).toMatch(/probe suite SKIPPED: .*no-such-python/)
  })
  it.each([['1'], ['yes'], ['true']])('CI=%j fails', (ci) => {
    const r = probe(ci)
    expect(r.status).not.toBe(0)
    expect(r.stdout).not.toContain('available=')
    expect(r.stderr).toMatch(/probe suite: required under CI/)
  })
})
