#!/usr/bin/env node
// In a development checkout (tsx resolvable from here) runs the TypeScript source, so a stale
// out/main/cli.js from an earlier build is never what answers; in an installed package (no
// devDependencies) runs the built out/main/cli.js.
import { existsSync } from 'node:fs'
import { spawn } from 'node:child_process'
import { createRequire } from 'node:module'
import { fileURLToPath, pathToFileURL } from 'node:url'
import { dirname, join } from 'node:path'

const root = join(dirname(fileURLToPath(import.meta.url)), '..')
const source = join(root, 'main/cli.ts')

/** tsx's loader as a file URL (resolved from this package, not the working directory). */
function tsxLoader() {
  try {
    return pathToFileURL(createRequire(join(root, 'package.json')).resolve('tsx')).href
  } catch {
    return null
  }
}

const tsx = existsSync(source) ? tsxLoader() : null
const built = join(root, 'out/main/cli.js')
if (!tsx && !existsSync(built)) {
  process.stderr.write(`tunebench: ${built} is missing; run npm run build (or npm install for tsx)\n`)
  process.exit(1)
}
const args = tsx ? ['--import', tsx, source, ...process.argv.slice(2)] : [built, ...process.argv.slice(2)]
const child = spawn(process.execPath, args, { stdio: 'inherit' })
// A terminal's Ctrl-C reaches the whole process group, the CLI included, so the wrapper only
// waits for it to finish; a signal sent to this process alone (kill PID, a process manager) is
// passed on, so the CLI shuts down as it would on Ctrl-C rather than being left running.
process.on('SIGINT', () => {})
for (const sig of ['SIGTERM', 'SIGHUP']) process.on(sig, () => child.kill(sig))
child.on('exit', (status, signal) => process.exit(signal ? 1 : (status ?? 1)))
