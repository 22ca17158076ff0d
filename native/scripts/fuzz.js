// Builds the libFuzzer targets of native/fuzz (native/fuzz/CMakeLists.txt: clang, the engine
// with -fsanitize=fuzzer-no-link,address,undefined) into native/build-fuzz, then for each
// target replays its seed corpus (native/fuzz/corpus/<target>/, crash reproducers included)
// and fuzzes it for a bounded time, printing the executions, the coverage (libFuzzer's cov =
// edges, ft = features) and the crashes. Exits non-zero when any input crashes.
//
//   node native/scripts/fuzz.js [--seconds N] [--target NAME]... [--merge] [--work DIR] [--no-build]
//
// --seconds N   fuzzing time per target (default 60; the replay comes on top, a second or two)
// --target NAME safetensors, config, adapter or training_state (repeatable; default all)
// --work DIR    the writable corpus: DIR/<target> keeps what the runs found (default: a fresh
//               temporary folder, deleted afterwards). The repo corpus is only ever read...
// --merge       ...except with --merge, which afterwards minimises the run's finds into
//               native/fuzz/corpus/<target> (libFuzzer -merge=1: only inputs that add coverage),
//               to be reviewed and committed by hand.
//
// Crash inputs are written to native/build-fuzz/artifacts/<target>/ (printed); reproduce one with
// native/build-fuzz/fuzz_<target> <file>. clang and libFuzzer's runtime (Debian: clang and
// libclang-rt-14-dev) must be installed: under CI (native/scripts/ci.js) a missing one fails,
// elsewhere the step is skipped with a message.
import { spawnSync } from 'node:child_process'
import { existsSync, mkdirSync, mkdtempSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { requireOrSkip } from './ci.js'

const root = join(dirname(fileURLToPath(import.meta.url)), '..', '..')
const native = join(root, 'native')
const build = join(native, 'build-fuzz')
const TARGETS = ['safetensors', 'config', 'adapter', 'training_state']

function parseArgs(argv) {
  const o = { seconds: 60, targets: [], merge: false, work: '', build: true }
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]
    const value = () => {
      if (i + 1 >= argv.length) usage(`${a} needs a value`)
      return argv[++i]
    }
    if (a === '--seconds') {
      o.seconds = Number(value())
      if (!Number.isInteger(o.seconds) || o.seconds < 1) usage('--seconds must be a positive whole number')
    } else if (a === '--target') {
      for (const t of value().split(',')) {
        if (!TARGETS.includes(t)) usage(`unknown target '${t}' (${TARGETS.join(', ')})`)
        o.targets.push(t)
      }
    } else if (a === '--merge') o.merge = true
    else if (a === '--work') o.work = value()
    else if (a === '--no-build') o.build = false
    else usage(`unknown argument '${a}'`)
  }
  if (!o.targets.length) o.targets = TARGETS
  return o
}

function usage(msg) {
  console.error(`fuzz: ${msg}\nusage: node native/scripts/fuzz.js [--seconds N] [--target ${TARGETS.join('|')}]... [--merge] [--work DIR] [--no-build]`)
  process.exit(2)
}

function skipOrFail(reason) {
  try {
    requireOrSkip('native fuzzing', reason)
  } catch (e) {
    console.error(e.message)
    process.exit(1)
  }
  process.exit(0)
}

// The first clang++ that links a libFuzzer program (the runtime is a package of its own on Debian).
function findClang() {
  const probe = mkdtempSync(join(tmpdir(), 'tunebench-fuzz-probe-'))
  try {
    writeFileSync(join(probe, 'p.cpp'), '#include <cstdint>\n#include <cstddef>\nextern "C" int LLVMFuzzerTestOneInput(const uint8_t*, size_t) { return 0; }\n')
    let found = ''
    for (const cxx of [process.env.FUZZ_CXX, 'clang++', 'clang++-19', 'clang++-16', 'clang++-15', 'clang++-14'].filter(Boolean)) {
      const v = spawnSync(cxx, ['--version'], { encoding: 'utf8' })
      if (v.status !== 0) continue
      found ||= cxx
      const l = spawnSync(cxx, ['-fsanitize=fuzzer,address,undefined', join(probe, 'p.cpp'), '-o', join(probe, 'p')], { encoding: 'utf8' })
      if (l.status === 0) return { cxx, cc: cxx.replace('clang++', 'clang') }
      if (found === cxx) found = `${cxx} (${(l.stderr || '').trim().split('\n').pop()})`
    }
    return { missing: found
      ? `${found} cannot link -fsanitize=fuzzer: libFuzzer's runtime is missing (Debian: apt-get install libclang-rt-14-dev)`
      : 'no clang++ (Debian: apt-get install clang libclang-rt-14-dev)' }
  } finally {
    rmSync(probe, { recursive: true, force: true })
  }
}

function run(cmd, args, opts = {}) {
  return spawnSync(cmd, args, { cwd: root, stdio: 'inherit', ...opts })
}

function buildTargets(targets) {
  const clang = findClang()
  if (clang.missing) skipOrFail(clang.missing)
  mkdirSync(build, { recursive: true })
  writeFileSync(join(build, '.gitignore'), '*\n') // a build folder outside native/build: ignore itself
  const configured = run('cmake', ['-S', join(native, 'fuzz'), '-B', build, `-DCMAKE_CXX_COMPILER=${clang.cxx}`, `-DCMAKE_C_COMPILER=${clang.cc}`], { stdio: ['ignore', 'ignore', 'inherit'] })
  if (configured.status !== 0) {
    console.error('fuzz: cmake could not configure native/fuzz')
    process.exit(1)
  }
  const built = run('cmake', ['--build', build, '--parallel', '2', '--target', ...targets.map((t) => `fuzz_${t}`)])
  if (built.status !== 0) {
    console.error('fuzz: the fuzz targets did not build')
    process.exit(1)
  }
}

const files = (dir) => (existsSync(dir) ? readdirSync(dir).map((f) => join(dir, f)).filter((f) => statSync(f).isFile()) : [])

// libFuzzer's status lines: "#123 INITED cov: 456 ft: 789 corp: ..." and the final stats.
function summarise(text) {
  const lines = text.split('\n')
  const covs = lines.filter((l) => /^#\d+\s/.test(l) && / cov: \d+/.test(l))
  const last = covs[covs.length - 1] ?? ''
  const inited = covs.find((l) => /INITED/.test(l)) ?? ''
  const num = (line, key) => Number((line.match(new RegExp(`${key}: (\\d+)`)) ?? [])[1] ?? NaN)
  const stat = (key) => Number((text.match(new RegExp(`stat::${key}:\\s+(\\d+)`)) ?? [])[1] ?? NaN)
  return {
    execs: stat('number_of_executed_units'),
    perSec: stat('average_exec_per_sec'),
    newUnits: stat('new_units_added'),
    rss: stat('peak_rss_mb'),
    cov: num(last, 'cov'),
    ft: num(last, 'ft'),
    corp: (last.match(/corp: (\d+\/\S+)/) ?? [])[1] ?? '?',
    initCov: num(inited, 'cov'),
    initFt: num(inited, 'ft'),
  }
}

function fuzzTarget(name, o, workRoot) {
  const bin = join(build, `fuzz_${name}`)
  const seeds = join(native, 'fuzz', 'corpus', name)
  const dict = join(native, 'fuzz', 'dict', `${name}.dict`)
  const work = join(workRoot, name)
  const artifacts = join(build, 'artifacts', name)
  mkdirSync(work, { recursive: true })
  mkdirSync(artifacts, { recursive: true })
  const env = {
    ...process.env,
    ASAN_OPTIONS: process.env.ASAN_OPTIONS ?? 'abort_on_error=1:detect_leaks=1',
    UBSAN_OPTIONS: process.env.UBSAN_OPTIONS ?? 'print_stacktrace=1:halt_on_error=1',
  }
  const common = [`-artifact_prefix=${artifacts}/`, '-rss_limit_mb=2048', '-timeout=20']
  const t0 = Date.now()

  // 1. Every corpus file as it is (not cut to -max_len): the seeds and the crash reproducers.
  const inputs = files(seeds)
  console.log(`\nfuzz_${name}: replaying ${inputs.length} corpus files of ${seeds}`)
  const replay = spawnSync(bin, [...common, ...inputs], { cwd: root, env, encoding: 'utf8', maxBuffer: 1 << 28 })
  if (replay.status !== 0) {
    process.stdout.write(replay.stdout + replay.stderr)
    return { name, crashed: true, what: 'a corpus file crashes (replay)', seconds: (Date.now() - t0) / 1000 }
  }

  // 2. Fuzzing: new inputs go to the first (writable) folder, the repo corpus is read only.
  console.log(`fuzz_${name}: fuzzing for ${o.seconds} s (work corpus ${work})`)
  const args = [...common, `-max_total_time=${o.seconds}`, '-print_final_stats=1', work, seeds]
  if (existsSync(dict)) args.unshift(`-dict=${dict}`)
  const r = spawnSync(bin, args, { cwd: root, env, encoding: 'utf8', maxBuffer: 1 << 28 })
  const out = (r.stdout ?? '') + (r.stderr ?? '')
  const s = summarise(out)
  const crashed = r.status !== 0
  if (crashed) {
    // the report: the sanitizer's or the property's message, the stack, the artifact line
    const start = out.search(/==\d+==ERROR|runtime error|==fuzz==|ERROR: libFuzzer/)
    process.stdout.write(start >= 0 ? out.slice(start) : out.slice(-6000))
  }
  const artifact = (out.match(/Test unit written to (\S+)/) ?? [])[1] ?? ''
  let merged = ''
  if (o.merge && !crashed) {
    const before = files(seeds).length
    const m = spawnSync(bin, [...common, '-merge=1', seeds, work], { cwd: root, env, encoding: 'utf8', maxBuffer: 1 << 28 })
    merged = m.status === 0 ? `, merged ${files(seeds).length - before} new inputs into ${seeds}` : ', merge FAILED'
    if (m.status !== 0) process.stdout.write(m.stderr.slice(-3000))
  }
  return { name, crashed, what: crashed ? `exit ${r.status ?? r.signal}` : '', artifact, seconds: (Date.now() - t0) / 1000, merged, ...s }
}

const o = parseArgs(process.argv.slice(2))
const t0 = Date.now()
if (o.build) buildTargets(o.targets)
else if (!o.targets.every((t) => existsSync(join(build, `fuzz_${t}`)))) usage('--no-build, but native/build-fuzz has not been built')
const workRoot = o.work || mkdtempSync(join(tmpdir(), 'tunebench-fuzz-'))
const results = []
try {
  for (const t of o.targets) results.push(fuzzTarget(t, o, workRoot))
} finally {
  if (!o.work) rmSync(workRoot, { recursive: true, force: true })
}

console.log('\nfuzz summary (cov: edges, ft: features, at the end; replay: after the corpus replay)')
for (const r of results) {
  const line = r.execs >= 0
    ? `${r.execs} execs (${r.perSec}/s), cov ${r.cov} ft ${r.ft} (replay: cov ${r.initCov} ft ${r.initFt}), corpus ${r.corp}, ${r.newUnits} new, peak ${r.rss} MB${r.merged}`
    : ''
  const crash = r.crashed ? `CRASH (${r.what})${r.artifact ? `: ${r.artifact}` : ''}` : '0 crashes'
  console.log(`  ${r.name.padEnd(15)} ${crash}; ${line} [${r.seconds.toFixed(0)} s]`)
  if (r.artifact) console.log(`    reproduce: native/build-fuzz/fuzz_${r.name} ${r.artifact}`)
}
console.log(`fuzz: ${((Date.now() - t0) / 1000).toFixed(0)} s in all`)
process.exit(results.some((r) => r.crashed) ? 1 : 0)
