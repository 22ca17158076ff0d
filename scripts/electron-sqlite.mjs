#!/usr/bin/env node
// Builds better-sqlite3 for the installed Electron into out/electron-native/<electron version>/.
//
// better-sqlite3 is a V8-ABI addon, not a Node-API one: the build in node_modules is for the
// system Node, which the tests, serve mode and the CLI use, and Electron (its own Node, another
// ABI) cannot load it. Rebuilding it in place for Electron would break those, so the desktop app
// gets its own copy: the package sources are copied to a temporary folder and built there with
// node-gyp against Electron's headers (downloaded from electronjs.org the first time, as
// Electron's own binary is), and main/index.ts hands the result to the data service, which passes
// it to better-sqlite3 as nativeBinding. node_modules is never touched.
//
// `npm start` runs this before `electron .`. It does nothing when the build is already there, or
// when the Electron binary is not installed (ELECTRON_SKIP_BINARY_DOWNLOAD=1).
//   node scripts/electron-sqlite.mjs [--force] [--continue-on-error]
import { spawn } from 'node:child_process'
import { copyFileSync, cpSync, existsSync, mkdirSync, mkdtempSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs'
import { createRequire } from 'node:module'
import { tmpdir } from 'node:os'
import { dirname, join, resolve } from 'node:path'
import { fileURLToPath } from 'node:url'

export const ELECTRON_HEADERS_URL = 'https://electronjs.org/headers'
const root = resolve(dirname(fileURLToPath(import.meta.url)), '..')
const requireFromRoot = createRequire(join(root, 'package.json'))
// npm passes its config to scripts as npm_config_* variables, and node-gyp reads them. The
// machine's ~/.npmrc may name a nodedir (the system Node's headers), which would build against
// the wrong ABI, so the build takes its runtime settings from its arguments only.
const NODE_GYP_SETTINGS = /^npm_config_(nodedir|target|runtime|dist_url|disturl|arch|target_arch|devdir|jobs|build_from_source)$/i

function readJson(file) {
  return JSON.parse(readFileSync(file, 'utf8'))
}

/** The folder of the installed better-sqlite3 package, whose sources are built. */
export function betterSqlite3Dir() {
  return dirname(requireFromRoot.resolve('better-sqlite3/package.json'))
}

/** The version of the installed Electron, or null when its binary is not installed. */
export function installedElectronVersion() {
  let dir
  try {
    dir = dirname(requireFromRoot.resolve('electron/package.json'))
  } catch {
    return null
  }
  // The electron package writes path.txt once its binary is downloaded (electron/index.js reads it).
  if (!existsSync(join(dir, 'path.txt')) && !process.env.ELECTRON_OVERRIDE_DIST_PATH) return null
  return readJson(join(dir, 'package.json')).version
}

/** Where the desktop app (main/index.ts) looks for the build for Electron `version`. */
export function electronBindingPath(version) {
  return join(root, 'out', 'electron-native', version, 'better_sqlite3.node')
}

/** node-gyp: a project dependency if there is one, otherwise the copy bundled with npm. */
export function findNodeGyp() {
  try {
    return requireFromRoot.resolve('node-gyp/bin/node-gyp.js')
  } catch {
    // not a dependency of the project; npm's own copy follows
  }
  const candidates = []
  if (process.env.npm_execpath) candidates.push(join(dirname(process.env.npm_execpath), '..', 'node_modules', 'node-gyp', 'bin', 'node-gyp.js'))
  const prefix = dirname(dirname(process.execPath))
  candidates.push(join(prefix, 'lib', 'node_modules', 'npm', 'node_modules', 'node-gyp', 'bin', 'node-gyp.js'))
  candidates.push(join(prefix, 'node_modules', 'npm', 'node_modules', 'node-gyp', 'bin', 'node-gyp.js'))
  const found = candidates.find((file) => existsSync(file))
  if (!found) throw new Error(`node-gyp was not found (looked in ${candidates.join(', ')}); install npm, or run \`npm install -D node-gyp\``)
  return found
}

/**
 * Builds better-sqlite3 from the installed package's sources in a temporary folder and copies
 * better_sqlite3.node to outFile (atomically: a half-written file is never left there).
 * runtime/target/distUrl/nodedir are node-gyp's: { runtime: 'electron', target: '38.8.6',
 * distUrl: ELECTRON_HEADERS_URL } for Electron; { target: process.versions.node, nodedir: '/usr' }
 * for a Node whose headers are installed. Asynchronous, so a caller's event loop keeps running
 * through the minutes of compiling (a test runner's worker would otherwise stop answering).
 */
export async function buildBetterSqlite3({ outFile, target, runtime, distUrl, nodedir, jobs = 2, quiet = false }) {
  if (!outFile || !target) throw new Error('buildBetterSqlite3 needs outFile and target')
  const pkgDir = betterSqlite3Dir()
  const nodeGyp = findNodeGyp()
  const work = mkdtempSync(join(tmpdir(), 'tunebench-better-sqlite3-'))
  try {
    for (const name of ['package.json', 'binding.gyp', 'src', 'deps']) cpSync(join(pkgDir, name), join(work, name), { recursive: true })
    const args = [nodeGyp, 'rebuild', '--release', `--jobs=${jobs}`, `--target=${target}`]
    if (runtime) args.push(`--runtime=${runtime}`)
    if (distUrl) args.push(`--dist-url=${distUrl}`)
    if (nodedir) args.push(`--nodedir=${nodedir}`)
    const env = { ...process.env }
    for (const key of Object.keys(env)) if (NODE_GYP_SETTINGS.test(key)) delete env[key]
    const status = await run(process.execPath, args, { cwd: work, env, quiet })
    if (status.code !== 0) {
      const output = quiet ? `\n${status.output.slice(-4000)}` : ''
      throw new Error(`node-gyp ${args.slice(1).join(' ')} failed with exit code ${status.code}${output}`)
    }
    const built = join(work, 'build', 'Release', 'better_sqlite3.node')
    if (!existsSync(built)) throw new Error(`node-gyp finished but ${built} was not made`)
    mkdirSync(dirname(outFile), { recursive: true })
    const partial = `${outFile}.${process.pid}.partial`
    copyFileSync(built, partial)
    renameSync(partial, outFile)
    return outFile
  } finally {
    rmSync(work, { recursive: true, force: true })
  }
}

/** Runs a command to its end; quiet keeps its output (for the error) instead of showing it. */
function run(command, args, { cwd, env, quiet }) {
  return new Promise((resolvePromise, reject) => {
    const child = spawn(command, args, { cwd, env, stdio: quiet ? ['ignore', 'pipe', 'pipe'] : 'inherit' })
    let output = ''
    const keep = (chunk) => {
      // Only the end is ever shown; SQLite's compile can print a lot of warnings.
      output = (output + chunk.toString()).slice(-16000)
    }
    child.stdout?.on('data', keep)
    child.stderr?.on('data', keep)
    child.on('error', reject)
    child.on('close', (code, signal) => resolvePromise({ code: code ?? `signal ${signal}`, output }))
  })
}

/** The stamp beside a build: the better-sqlite3 version it was built from, so an upgrade rebuilds. */
function stampPath(outFile) {
  return outFile.replace(/\.node$/, '.json')
}

function isUpToDate(outFile, version) {
  if (!existsSync(outFile) || !existsSync(stampPath(outFile))) return false
  try {
    return readJson(stampPath(outFile)).betterSqlite3 === version
  } catch {
    return false
  }
}

async function main(argv) {
  const force = argv.includes('--force')
  const electron = installedElectronVersion()
  if (!electron) {
    console.log('electron-sqlite: the Electron binary is not installed (node_modules/electron/path.txt is missing); nothing to build')
    return
  }
  const outFile = electronBindingPath(electron)
  const betterSqlite3 = readJson(join(betterSqlite3Dir(), 'package.json')).version
  if (!force && isUpToDate(outFile, betterSqlite3)) return
  console.log(
    `electron-sqlite: building better-sqlite3 ${betterSqlite3} for Electron ${electron} into ${outFile}\n` +
      `(compiles SQLite, a few minutes; the first build downloads Electron's headers from ${ELECTRON_HEADERS_URL})`
  )
  rmSync(stampPath(outFile), { force: true })
  await buildBetterSqlite3({ outFile, runtime: 'electron', target: electron, distUrl: ELECTRON_HEADERS_URL })
  writeFileSync(stampPath(outFile), JSON.stringify({ electron, betterSqlite3 }, null, 2) + '\n')
  console.log(`electron-sqlite: built ${outFile}`)
}

if (process.argv[1] && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  const argv = process.argv.slice(2)
  try {
    await main(argv)
  } catch (err) {
    console.error(`electron-sqlite: ${err instanceof Error ? err.message : String(err)}`)
    if (argv.includes('--continue-on-error')) {
      // The app still starts; opening a project then says that SQLite is not built and what to run.
      console.error('electron-sqlite: starting without it; projects cannot be opened until `node scripts/electron-sqlite.mjs` succeeds')
    } else {
      process.exit(1)
    }
  }
}
