// Runs the native test runner (finite-difference gradient checks of every op and of tiny
// models). It always runs `npm run build:native` first: cmake-js builds incrementally, so when
// nothing changed this costs a second or two, and when native/src changed the addon and the
// runner are rebuilt before anything tests them (npm test runs this step before the unit
// tests, which load the addon). A fresh clone installed with --ignore-scripts is built here too.
// --no-build skips that step; either way the runner refuses binaries older than their sources.
//
// With --all-gemm (and always under CI: native/scripts/ci.js, CI set to anything but
// ''/false/0) it also builds the runner against each other GEMM library (OpenBLAS, the
// built-in kernel) in native/build/gemm-<name> (incrementally, with cmake --build) and runs it
// there, so that the fallbacks stay correct while the default build uses the fastest library
// found; then without OpenMP (native/build/no-openmp, as Apple clang builds), and cross-compiles
// the engine and the runner for Windows with MinGW-w64 (native/build/windows; built, not run:
// there is no Windows or Wine here). --windows runs that cross-compile alone.
import { spawnSync } from 'node:child_process'
import { existsSync, readdirSync, statSync } from 'node:fs'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { mustRun, requireOrSkip } from './ci.js'

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
if (!process.argv.includes('--no-build')) {
  const status = run('npm', ['run', 'build:native'], 'npm run build:native')
  if (status !== 0) process.exit(status)
}

// Refuse to test stale binaries: each must be newer than every source it is built from (the
// runner: the engine and native/tests; the addon: all of native/src), else the build step above
// did not run or did not rebuild.
function newest(paths) {
  let best = { path: '', mtime: 0 }
  for (const p of paths) {
    const st = statSync(p)
    if (st.isDirectory()) {
      for (const e of readdirSync(p)) {
        const n = newest([join(p, e)])
        if (n.mtime > best.mtime) best = n
      }
    } else if (st.mtimeMs > best.mtime) best = { path: p, mtime: st.mtimeMs }
  }
  return best
}
const native = join(root, 'native')
const addon = join(native, 'build', 'Release', 'tunebench.node')
for (const [binary, sources] of [
  [runner, [join(native, 'src', 'engine'), join(native, 'tests'), join(native, 'CMakeLists.txt')]],
  [addon, [join(native, 'src'), join(native, 'CMakeLists.txt')]],
]) {
  const src = newest(sources)
  const built = existsSync(binary) ? statSync(binary).mtimeMs : 0
  if (src.mtime > built) {
    console.error(`native tests: ${binary} is ${built ? 'older than' : 'missing, but'} ${src.path}: stale binary (run npm run build:native)`)
    process.exit(1)
  }
}

let status = run(runner, [], runner)

const all = process.argv.includes('--all-gemm') || mustRun()
const variants = all
  ? [
      ...['openblas', 'builtin'].map((gemm) => ({ what: `TUNEBENCH_GEMM=${gemm}`, dir: `gemm-${gemm}`, args: [`-DTUNEBENCH_GEMM=${gemm}`] })),
      { what: 'TUNEBENCH_OPENMP=OFF', dir: 'no-openmp', args: ['-DTUNEBENCH_GEMM=builtin', '-DTUNEBENCH_OPENMP=OFF'] },
    ]
  : []
if (all || process.argv.includes('--windows')) {
  // Compiled only: tunebench_tests.exe cannot run here (no Windows or Wine).
  const mingw = ['x86_64-w64-mingw32-g++-posix', 'x86_64-w64-mingw32-g++'].some((cxx) => spawnSync(cxx, ['--version']).status === 0)
  variants.push({
    what: 'the Windows cross-compile',
    dir: 'windows',
    args: ['-DTUNEBENCH_GEMM=builtin', `-DCMAKE_TOOLCHAIN_FILE=${join(root, 'native', 'cmake', 'mingw-w64.cmake')}`],
    noRun: true,
    missing: mingw ? '' : 'no x86_64-w64-mingw32-g++ (Debian: apt-get install g++-mingw-w64-x86-64-posix)',
  })
}

function skip(what, reason) {
  try {
    requireOrSkip(`native tests with ${what}`, reason)
  } catch (e) {
    console.error(e.message)
    process.exit(1)
  }
}

for (const v of status === 0 ? variants : []) {
  const dir = join(root, 'native', 'build', v.dir)
  console.log(`\nnative tests with ${v.what} (${dir})`)
  if (v.missing) {
    skip(v.what, v.missing)
    continue
  }
  const configured = spawnSync('cmake', ['-S', join(root, 'native'), '-B', dir, '-DCMAKE_BUILD_TYPE=Release', ...v.args], {
    cwd: root,
    encoding: 'utf8',
    env,
  })
  if (configured.status !== 0) {
    // A library that is not installed is skipped here, but CI installs them all.
    console.log(configured.stdout + configured.stderr)
    skip(v.what, `${v.what} does not configure on this machine`)
    continue
  }
  status = run('cmake', ['--build', dir, '--target', 'tunebench_tests', '--parallel', '2'], `the ${v.dir} build`)
  if (status === 0 && v.noRun) console.log(`native tests with ${v.what}: ${join(dir, 'tunebench_tests.exe')} built (not run: no Windows here)`)
  else if (status === 0) status = run(join(dir, 'tunebench_tests'), [], `the ${v.dir} runner`)
  if (status !== 0) break
}
process.exit(status)
