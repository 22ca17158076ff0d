// Runs the native test runner (finite-difference gradient checks of every op and of tiny
// models). Builds the native project first when the runner is missing, e.g. in a fresh clone
// installed with --ignore-scripts.
import { spawnSync } from 'node:child_process'
import { existsSync } from 'node:fs'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'

const root = join(dirname(fileURLToPath(import.meta.url)), '..', '..')
const runner = join(root, 'native', 'build', 'Release', 'tunebench_tests')

if (!existsSync(runner)) {
  const build = spawnSync('npm', ['run', 'build:native'], { cwd: root, stdio: 'inherit' })
  if (build.status !== 0) process.exit(build.status ?? 1)
}
const run = spawnSync(runner, [], { cwd: root, stdio: 'inherit', env: { ...process.env, OMP_NUM_THREADS: process.env.OMP_NUM_THREADS ?? '2' } })
if (run.error) {
  console.error(`native tests: cannot run ${runner}: ${run.error.message}`)
  process.exit(1)
}
process.exit(run.status ?? 1)
