#!/usr/bin/env node
// Runs the built CLI (npm run build), or the TypeScript source through tsx in a checkout.
import { existsSync } from 'node:fs'
import { spawnSync } from 'node:child_process'
import { fileURLToPath } from 'node:url'
import { dirname, join } from 'node:path'

const root = join(dirname(fileURLToPath(import.meta.url)), '..')
const built = join(root, 'out/main/cli.js')
const args = existsSync(built)
  ? [built, ...process.argv.slice(2)]
  : ['--import', 'tsx', join(root, 'main/cli.ts'), ...process.argv.slice(2)]
const { status, signal } = spawnSync(process.execPath, args, { stdio: 'inherit' })
process.exit(signal ? 1 : (status ?? 1))
