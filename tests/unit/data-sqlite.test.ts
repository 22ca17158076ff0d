// The data service loads better-sqlite3 on first project open, from an explicit build when one
// is given (the desktop app's Electron build), and says what to run when it cannot load it.
import { copyFileSync, mkdirSync, writeFileSync } from 'node:fs'
import { createRequire } from 'node:module'
import { join } from 'node:path'
import { afterEach, beforeEach, describe, expect, it } from 'vitest'
import { createServices } from '../../main/services'
import { DataError } from '../../main/services/data/errors'
import { closeProject, openProject, Project } from '../../main/services/data/store'
import { cand, contentOf, rec, tempDir, writeJsonl } from './data-helpers'

const requireCjs = createRequire(import.meta.url)
const defaultBuild = join(requireCjs.resolve('better-sqlite3/package.json'), '..', 'build', 'Release', 'better_sqlite3.node')
const loadedFiles = (): string[] => Object.keys(requireCjs.cache)

let dir: string
let cleanup: () => void
beforeEach(() => ({ dir, cleanup } = tempDir()))
afterEach(() => cleanup())

// The order matters: the first two tests check what this test process has loaded so far.
describe('loading better-sqlite3', () => {
  it('services start without it; opening a project with a missing build says what is missing, and the rest still works', async () => {
    const missing = join(dir, 'electron-native', '38.0.0', 'better_sqlite3.node')
    const services = createServices({ dataDir: join(dir, 'data'), emit: () => {}, sqliteBinding: missing })
    try {
      expect(loadedFiles().filter((f) => f.includes('better-sqlite3') || f.endsWith('.node'))).toEqual([])
      const err = await services.handlers['data.open'](join(dir, 'proj')).catch((e: unknown) => e)
      expect(err).toBeInstanceOf(DataError)
      expect((err as Error).message).toContain(missing)
      expect((err as Error).message).toMatch(/does not exist/)
      expect(await services.handlers['data.info']()).toBeNull()
      await expect(services.handlers['data.list']({})).rejects.toThrow(/no project is open/)
    } finally {
      await services.close()
    }
  })

  it('opens, imports into and reopens a project with an explicit build (nativeBinding)', async () => {
    const binding = join(dir, 'bindings', 'better_sqlite3.node')
    mkdirSync(join(dir, 'bindings'))
    copyFileSync(defaultBuild, binding)
    const proj = join(dir, 'proj')
    const p = new Project(proj, { sqliteBinding: binding })
    p.addRecords([{ prompt: 'Name a colour', system: null, candidates: [{ content: 'Blue', source: 'm1' }, { content: 'Table', source: 'm2' }] }])
    const c = p.getRecord(1).candidates
    p.setLabel(1, { kind: 'pair', chosen: c[0].id, rejected: c[1].id })
    // Imports stage into a scratch database, which must be opened with the same build.
    const src = writeJsonl(join(dir, 'pairs.jsonl'), [{ prompt: 'Say hi', chosen: 'Hi!', rejected: 'No.' }])
    const res = await p.importFiles([src])
    expect(res.counts).toMatchObject({ total: 2, pairs: 2 })
    const expected = [
      rec({ prompt: 'Name a colour', candidates: [cand('Blue', { source: 'm1' }), cand('Table', { source: 'm2' })], pair: [0, 1], status: 'labeled' }),
      rec({ prompt: 'Say hi', candidates: ['Hi!', 'No.'], pair: [0, 1], status: 'labeled' })
    ]
    expect(contentOf(p)).toEqual(expected)
    p.close()

    expect(loadedFiles()).toContain(binding)
    expect(loadedFiles()).not.toContain(defaultBuild)

    const again = openProject(proj, { sqliteBinding: binding })
    try {
      expect(contentOf(again)).toEqual(expected)
    } finally {
      closeProject(proj)
    }
  })

  it('a build that is not an addon for this runtime gives an error that names it and the runtime', () => {
    const bogus = join(dir, 'better_sqlite3.node')
    writeFileSync(bogus, 'not a shared object')
    const err = (() => {
      try {
        new Project(join(dir, 'proj'), { sqliteBinding: bogus })
      } catch (e) {
        return e
      }
      return null
    })()
    expect(err).toBeInstanceOf(DataError)
    expect((err as Error).message).toContain(bogus)
    expect((err as Error).message).toContain(`Node ${process.version} (Node ABI ${process.versions.modules})`)
  })
})
