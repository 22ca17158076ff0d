// Runs the PyTorch reference scripts of tests/python for the training tests. Without python
// and torch the tests skip locally, but under CI=true they fail: a reference that silently
// disappears would turn the parity tests into tests that cannot fail.
import { spawnSync } from 'node:child_process'
import { join } from 'node:path'

export const pythonExe = process.env.TUNEBENCH_PYTHON ?? 'python3'
const root = join(import.meta.dirname, '..', '..')

let available: boolean | null = null
export function torchAvailable(): boolean {
  if (available === null) {
    const r = spawnSync(pythonExe, ['-c', 'import torch, transformers, peft, safetensors, tokenizers'], { encoding: 'utf8' })
    available = r.status === 0
    if (!available && process.env.CI === 'true')
      throw new Error(`python reference unavailable under CI (${pythonExe}): ${r.stderr || r.error?.message}`)
  }
  return available
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
