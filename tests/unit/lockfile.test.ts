// The lock file installs with `npm ci` on every platform (.ci/run uses it with no fallback): each
// optional dependency a locked package declares (the per-platform binaries of rollup, esbuild and
// the like) has an entry of its own, which npm 11 checks for every platform before installing.
import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import { describe, expect, it } from 'vitest'

interface Locked { version?: string; optionalDependencies?: Record<string, string> }

const lock = JSON.parse(readFileSync(join(import.meta.dirname, '..', '..', 'package-lock.json'), 'utf8')) as {
  lockfileVersion: number
  packages: Record<string, Locked>
}

/** Where npm resolves `name` from the package at `path`: its own node_modules, then each parent's. */
function resolves(path: string, name: string): boolean {
  let dir = path
  for (;;) {
    if (lock.packages[`${dir ? `${dir}/` : ''}node_modules/${name}`]) return true
    if (!dir) return false
    const i = dir.lastIndexOf('/node_modules/')
    dir = i >= 0 ? dir.slice(0, i) : ''
  }
}

describe('package-lock.json', () => {
  it('is a v3 lock whose every optional dependency has an entry', () => {
    expect(lock.lockfileVersion).toBe(3)
    const missing: string[] = []
    let checked = 0
    for (const [path, pkg] of Object.entries(lock.packages))
      for (const name of Object.keys(pkg.optionalDependencies ?? {})) {
        checked++
        if (!resolves(path, name)) missing.push(`${path || '(root)'} -> ${name}`)
      }
    expect(checked).toBeGreaterThan(40) // rollup's and esbuild's platform packages at least
    expect(missing).toEqual([])
  })
})
