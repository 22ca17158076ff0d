// Runs the native test runner (finite-difference gradient checks of every op and of tiny
// models). Builds the native project first when the runner is missing, e.g. in a fresh clone
// installed with --ignore-scripts.
//
// With --all-gemm (and always under CI) it also builds the runner against each other GEMM
// library (OpenBLAS, the built-in kernel) in native/build/gemm-<name> and runs it there, so
// that the fallbacks stay correct while the default build uses the fastest library found.
import { spawnSync } from 'node:child_process'
import { existsSync } from 'node:fs'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'

const root = join(dirname(fileURLToPath(import.meta.url)), '..', '..')
const env = { ...process.env, OMP_NUM_THREADS: process.env.OMP_NUM_THREADS ?? '2' }

function run(cmd, args, label) {
  const r = spawnSync(cmd, args, { cwd: root, stdio: 'inherit', env })
  if (r.error) {
    console.error(`native tests: cannot run ${label}: ${r.error.message}`)
    return 1
  }
  return r.status ?? 1
}

const runner = join(root, 'native', 'build', 'Release', 'tunebench_tests')
if (!existsSync(runner)) {
  const status = run('npm', ['run', 'build:native'], 'npm run build:native')
  if (status !== 0) process.exit(status)
}
let status = run(runner, [], runner)

if (status === 0 && (process.argv.includes('--all-gemm') || process.env.CI)) {
  for (const gemm of ['openblas', 'builtin']) {
    const dir = join(root, 'native', 'build', `gemm-${gemm}`)
    console.log(`\nnative tests with TUNEBENCH_GEMM=${gemm} (${dir})`)
    const configured = spawnSync('cmake', ['-S', join(root, 'native'), '-B', dir, '-DCMAKE_BUILD_TYPE=Release', `-DTUNEBENCH_GEMM=${gemm}`], {
      cwd: root,
      encoding: 'utf8',
      env,
    })
    if (configured.status !== 0) {
      // A library that is not installed is skipped here, but CI installs them all.
      console.log(configured.stdout + configured.stderr)
      if (process.env.CI) process.exit(1)
      console.log(`skipped: TUNEBENCH_GEMM=${gemm} does not configure on this machine`)
      continue
    }
    status = run('cmake', ['--build', dir, '--target', 'tunebench_tests', '--parallel', '2'], `the ${gemm} build`)
    if (status === 0) status = run(join(dir, 'tunebench_tests'), [], `the ${gemm} runner`)
    if (status !== 0) break
  }
}
process.exit(status)
