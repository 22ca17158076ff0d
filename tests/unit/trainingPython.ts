// Runs the PyTorch reference scripts of tests/python for the training tests. Without python
// and torch (or without the native addon) the tests skip locally, printing why, but under CI
// (CI set to anything but ''/false/0: native/scripts/ci.js, the rule the native test runner
// follows too) they fail: a reference that silently disappears would turn the parity tests
// into tests that cannot fail.
import { spawn, spawnSync } from 'node:child_process'
import { existsSync } from 'node:fs'
import { join } from 'node:path'
import { mustRun, requireOrSkip } from '../../native/scripts/ci.js'

export { mustRun, requireOrSkip }

export const pythonExe = process.env.TUNEBENCH_PYTHON ?? 'python3'
const root = join(import.meta.dirname, '..', '..')

let probe: { ok: boolean; why: string } | null = null
/** Python with torch, transformers, peft, safetensors and tokenizers is there. When it is not,
 *  throws under CI (the file fails) and elsewhere prints why `what` is skipped. */
export function torchAvailable(what = 'PyTorch reference tests'): boolean {
  if (probe === null) {
    const r = spawnSync(pythonExe, ['-c', 'import torch, transformers, peft, safetensors, tokenizers'], { encoding: 'utf8' })
    const err = (r.stderr || r.error?.message || '').trim().split('\n').pop()
    probe = { ok: r.status === 0, why: `${pythonExe} with torch, transformers, peft, safetensors and tokenizers is not available (${err}; set TUNEBENCH_PYTHON or put .venv/bin on PATH)` }
  }
  return probe.ok || requireOrSkip(what, probe.why)
}

/** Runs tests/python/<script> with JSON on stdin; returns its parsed stdout. */
export function runPythonJson<T>(script: string, input: unknown, args: string[] = []): T {
  const r = spawnSync(pythonExe, [join(root, 'tests', 'python', script), ...args], {
    input: JSON.stringify(input),
    encoding: 'utf8',
    maxBuffer: 64 << 20,
    env: { ...process.env, OMP_NUM_THREADS: '1', MKL_NUM_THREADS: '1' }
  })
  if (r.status !== 0) throw new Error(`${script} failed (${r.status}): ${r.stderr}`)
  return JSON.parse(r.stdout) as T
}

/** Runs a python command without blocking the event loop (vitest's worker must keep talking). */
export function runPython(args: string[], input = ''): Promise<string> {
  return new Promise((resolvePromise, reject) => {
    const child = spawn(pythonExe, args, { env: { ...process.env, OMP_NUM_THREADS: '1', MKL_NUM_THREADS: '1' } })
    let out = ''
    let err = ''
    child.stdout.on('data', (d: Buffer) => (out += d.toString()))
    child.stderr.on('data', (d: Buffer) => (err += d.toString()))
    child.on('error', reject)
    child.on('close', (code) => (code === 0 ? resolvePromise(out) : reject(new Error(`${args[0]} failed (${code}): ${err}`))))
    child.stdin.end(input)
  })
}

export async function runPythonJsonAsync<T>(script: string, input: unknown): Promise<T> {
  return JSON.parse(await runPython([join(root, 'tests', 'python', script)], JSON.stringify(input))) as T
}

/** The native addon is built (the training loop tests need it); under CI it must be, elsewhere
 *  `what` is skipped, saying why. */
export function engineBuilt(what = 'native engine tests'): boolean {
  const ok = existsSync(join(root, 'native', 'build', 'Release', 'tunebench.node')) || Boolean(process.env.TUNEBENCH_NATIVE)
  return ok || requireOrSkip(what, 'the native addon is not built (npm run build:native)')
}
