// scripts/electron-sqlite.mjs builds better-sqlite3 from the installed package's sources into a
// folder of its own. The desktop app asks it for Electron's ABI; here it is pointed at the local
// Node and its installed headers (no network), and the store must then run on that build.
// One test: it compiles SQLite (about two minutes on two shared cores).
import { existsSync } from 'node:fs'
import { createRequire } from 'node:module'
import { dirname, join } from 'node:path'
import { afterAll, beforeAll, expect, it } from 'vitest'
import { Project } from '../../main/services/data/store'
import { buildBetterSqlite3, electronBindingPath } from '../../scripts/electron-sqlite.mjs'
import { tempDir } from './data-helpers'

let dir: string
let cleanup: () => void
beforeAll(() => ({ dir, cleanup } = tempDir('tb-electron-sqlite-')))
afterAll(() => cleanup())

// The headers of the running Node, as its install laid them out (/usr/include/node for Debian's).
const nodedir = dirname(dirname(process.execPath))

it('builds better-sqlite3 for a given runtime into its own folder, and the store runs on that build', { timeout: 600_000 }, async () => {
  expect(existsSync(join(nodedir, 'include', 'node', 'node.h')), `Node headers under ${nodedir}`).toBe(true)
  const outFile = join(dir, 'native', process.versions.node, 'better_sqlite3.node')
  expect(await buildBetterSqlite3({ outFile, target: process.versions.node, nodedir, quiet: true })).toBe(outFile)
  expect(existsSync(outFile)).toBe(true)
  // Nothing but the finished file is left beside it.
  expect(existsSync(`${outFile}.${process.pid}.partial`)).toBe(false)

  const p = new Project(join(dir, 'proj'), { sqliteBinding: outFile })
  try {
    p.addRecords([{ prompt: 'Say hi', system: null, candidates: [{ content: 'Hi!', source: 'm1' }, { content: 'No.', source: 'm2' }] }])
    const c = p.getRecord(1).candidates
    expect(p.setLabel(1, { kind: 'pair', chosen: c[0].id, rejected: c[1].id }).status).toBe('labeled')
  } finally {
    p.close()
  }
  expect(Object.keys(createRequire(import.meta.url).cache)).toContain(outFile)
  // The desktop app looks for the Electron build under out/electron-native/<version>/.
  expect(electronBindingPath('38.8.6')).toBe(join(process.cwd(), 'out', 'electron-native', '38.8.6', 'better_sqlite3.node'))
})
