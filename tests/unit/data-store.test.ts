// Labels, undo, filters, counts, migrations and exports of the project store.
import Database from 'better-sqlite3'
import { readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest'
import { exportProject } from '../../main/services/data/export'
import { createDataHandlers } from '../../main/services/data/handlers'
import { MIGRATIONS, migrate } from '../../main/services/data/schema'
import { Project } from '../../main/services/data/store'
import type { ImportProgress } from '../../preload/types/data'
import { tempDir, writeJsonl } from './data-helpers'

let dir: string
let cleanup: () => void
let p: Project

beforeEach(async () => {
  ;({ dir, cleanup } = tempDir())
  p = new Project(join(dir, 'proj'))
  // Three unlabeled records with two candidates each (as generated answers would be).
  p.addRecords([
    { prompt: 'What is the boiling point of water?', system: null, candidates: [{ content: '100 C', source: 'm1' }, { content: '50 C', source: 'm2' }] },
    { prompt: [{ role: 'user', content: 'Say hi' }], system: 'Be kind', candidates: [{ content: 'Hi!', source: 'm1' }, { content: 'No.', source: 'm2' }] },
    { prompt: 'Name a colour', system: null, candidates: [{ content: 'Blue', source: 'm1' }, { content: 'Table', source: 'm2' }] }
  ])
})
afterEach(() => {
  p.close()
  cleanup()
})

const cand = (id: number, i: number) => p.getRecord(id).candidates[i].id

describe('labels', () => {
  it('pair, tie, skip, kto, gold, note and clear set status and counts', () => {
    expect(p.counts()).toMatchObject({ total: 3, unlabeled: 3, labeled: 0, pairs: 0 })
    let r = p.setLabel(1, { kind: 'pair', chosen: cand(1, 0), rejected: cand(1, 1) })
    expect(r).toMatchObject({ status: 'labeled', tie: false, pair: { chosen: cand(1, 0), rejected: cand(1, 1) } })
    r = p.setLabel(2, { kind: 'tie', a: cand(2, 0), b: cand(2, 1) })
    expect(r).toMatchObject({ status: 'labeled', tie: true })
    r = p.setLabel(3, { kind: 'skip' })
    expect(r.status).toBe('skipped')
    expect(p.counts()).toMatchObject({ labeled: 2, skipped: 1, unlabeled: 0, pairs: 1, kto: 2 })
    r = p.setLabel(3, { kind: 'kto', candidate: cand(3, 1), desirable: false })
    expect(r).toMatchObject({ status: 'labeled', skipped: false })
    expect(r.candidates[1].kto).toBe(false)
    r = p.setLabel(3, { kind: 'gold', text: 'Green' })
    expect(r.gold).toBe('Green')
    r = p.setLabel(3, { kind: 'note', text: 'check spelling' })
    expect(r.note).toBe('check spelling')
    expect(p.counts()).toMatchObject({ gold: 1, kto: 3 })
    r = p.setLabel(3, { kind: 'clear' })
    expect(r).toMatchObject({ status: 'unlabeled', gold: null, pair: null, note: 'check spelling' })
    expect(r.candidates.every((c) => c.kto === null)).toBe(true)
  })

  it('refuses candidates of another record and a pair of one candidate', () => {
    expect(() => p.setLabel(1, { kind: 'pair', chosen: cand(2, 0), rejected: cand(1, 1) })).toThrow(/does not belong to record 1/)
    expect(() => p.setLabel(1, { kind: 'pair', chosen: cand(1, 0), rejected: cand(1, 0) })).toThrow(/two different candidates/)
    expect(() => p.setLabel(99, { kind: 'skip' })).toThrow(/no record with id 99/)
    expect(p.db.prepare('SELECT COUNT(*) AS n FROM label_history').get()).toEqual({ n: 0 })
  })

  it('undo walks back the label history, one write at a time', () => {
    p.setLabel(1, { kind: 'pair', chosen: cand(1, 0), rejected: cand(1, 1) })
    p.setLabel(1, { kind: 'pair', chosen: cand(1, 1), rejected: cand(1, 0) })
    p.setLabel(2, { kind: 'kto', candidate: cand(2, 0), desirable: true })
    let r = p.undo()!
    expect(r.id).toBe(2)
    expect(r.candidates[0].kto).toBe(null)
    expect(r.status).toBe('unlabeled')
    r = p.undo()!
    expect(r.pair).toEqual({ chosen: cand(1, 0), rejected: cand(1, 1) })
    r = p.undo()!
    expect(r).toMatchObject({ pair: null, status: 'unlabeled' })
    expect(p.undo()).toBeNull()
  })

  it('undo survives reopening the project', () => {
    p.setLabel(1, { kind: 'gold', text: 'x' })
    p.close()
    p = new Project(join(dir, 'proj'))
    expect(p.undo()!.gold).toBeNull()
  })
})

describe('counts', () => {
  it('kept in memory, they match a full recount after every kind of write', () => {
    const actions = (id: number) => [
      { kind: 'pair' as const, chosen: cand(id, 0), rejected: cand(id, 1) },
      { kind: 'tie' as const, a: cand(id, 0), b: cand(id, 1) },
      { kind: 'skip' as const },
      { kind: 'kto' as const, candidate: cand(id, 1), desirable: true },
      { kind: 'kto' as const, candidate: cand(id, 0), desirable: null },
      { kind: 'gold' as const, text: 'g' },
      { kind: 'gold' as const, text: null },
      { kind: 'note' as const, text: 'n' },
      { kind: 'clear' as const }
    ]
    let seed = 7
    const rand = (n: number) => (seed = (seed * 48271) % 2147483647) % n
    p.counts()
    for (let i = 0; i < 200; i++) {
      const id = 1 + rand(3)
      if (rand(10) === 0) p.undo()
      else if (rand(25) === 0) p.setExcluded([id], rand(2) ? 'x' : null)
      else if (rand(25) === 0) p.setSplit([id], rand(2) ? 'val' : 'train')
      else p.setLabel(id, actions(id)[rand(9)])
      expect(p.counts()).toEqual(p.countAll())
    }
  })

  it('see writes made by another connection', () => {
    const other = new Project(join(dir, 'proj'))
    expect(p.counts().skipped).toBe(0)
    other.setLabel(1, { kind: 'skip' })
    expect(p.counts().skipped).toBe(1)
    other.close()
  })
})

describe('listing', () => {
  it('filters by status, split, search and excluded; pages', () => {
    p.setLabel(1, { kind: 'pair', chosen: cand(1, 0), rejected: cand(1, 1) })
    p.setLabel(3, { kind: 'skip' })
    p.setSplit([2], 'val')
    expect(p.listRecords({ status: 'unlabeled' }).records.map((r) => r.id)).toEqual([2])
    expect(p.listRecords({ status: 'labeled' }).records.map((r) => r.id)).toEqual([1])
    expect(p.listRecords({ status: 'skipped' }).records.map((r) => r.id)).toEqual([3])
    expect(p.listRecords({ split: 'val' }).records.map((r) => r.id)).toEqual([2])
    expect(p.listRecords({ search: 'COLOUR' }).records.map((r) => r.id)).toEqual([3])
    expect(p.listRecords({ search: 'table' }).records.map((r) => r.id)).toEqual([3]) // in a candidate
    expect(p.listRecords({ search: '100%' }).total).toBe(0) // % is literal, not a wildcard
    const page = p.listRecords({ limit: 2, offset: 1 })
    expect(page.records.map((r) => r.id)).toEqual([2, 3])
    expect(page.total).toBe(3)
    p.setExcluded([3], 'duplicate')
    expect(p.listRecords({}).total).toBe(2)
    expect(p.listRecords({ excluded: true }).records[0]).toMatchObject({ id: 3, excluded: true, excludedReason: 'duplicate' })
    expect(p.counts()).toMatchObject({ total: 3, excluded: 1, train: 1, val: 1 })
  })
})

describe('exports follow the labels', () => {
  it('ties, skips and excluded records stay out; candidates added later are exported', () => {
    p.setLabel(1, { kind: 'pair', chosen: cand(1, 1), rejected: cand(1, 0) })
    p.setLabel(2, { kind: 'tie', a: cand(2, 0), b: cand(2, 1) })
    p.setLabel(3, { kind: 'pair', chosen: cand(3, 0), rejected: cand(3, 1) })
    p.setExcluded([3], 'contaminated')
    const out = join(dir, 'dpo.jsonl')
    exportProject(p, { format: 'trl-dpo', out })
    // Only exported records decide the form: record 2 (conversational) is a tie, so plain strings.
    expect(readFileSync(out, 'utf8')).toBe('{"prompt":"What is the boiling point of water?","chosen":"50 C","rejected":"100 C"}\n')
    p.setLabel(2, { kind: 'pair', chosen: cand(2, 0), rejected: cand(2, 1) })
    exportProject(p, { format: 'trl-dpo', out })
    expect(readFileSync(out, 'utf8').trim().split('\n').map((l) => JSON.parse(l).prompt)).toEqual([
      [{ role: 'user', content: 'What is the boiling point of water?' }],
      [
        { role: 'system', content: 'Be kind' },
        { role: 'user', content: 'Say hi' }
      ]
    ])
    p.setLabel(2, { kind: 'tie', a: cand(2, 0), b: cand(2, 1) })
    p.setExcluded([3], null)
    p.setLabel(1, { kind: 'skip' })
    exportProject(p, { format: 'trl-dpo', out })
    expect(readFileSync(out, 'utf8')).toBe('{"prompt":"Name a colour","chosen":"Blue","rejected":"Table"}\n')
    const r = p.addCandidates(3, [{ content: 'Red', source: 'demo-model' }])
    expect(r.candidates.map((c) => [c.index, c.source])).toEqual([[0, 'm1'], [1, 'm2'], [2, 'demo-model']])
    p.setLabel(3, { kind: 'kto', candidate: r.candidates[2].id, desirable: true })
    exportProject(p, { format: 'trl-kto', out, split: 'train' })
    expect(readFileSync(out, 'utf8').trim().split('\n').map((l) => JSON.parse(l).completion)).toEqual(['Blue', 'Table', 'Red'])
    expect(() => exportProject(p, { format: 'trl-xyz' as 'trl-dpo', out })).toThrow(/unknown export format/)
  })

  it('an export replaces its file whole (temp file + rename)', async () => {
    const out = join(dir, 'dpo.jsonl')
    p.setLabel(3, { kind: 'pair', chosen: cand(3, 0), rejected: cand(3, 1) })
    p.setLabel(1, { kind: 'pair', chosen: cand(1, 0), rejected: cand(1, 1) })
    const expected =
      '{"prompt":"What is the boiling point of water?","chosen":"100 C","rejected":"50 C"}\n' +
      '{"prompt":"Name a colour","chosen":"Blue","rejected":"Table"}\n'
    // A longer file with other content is already there: an append, or an in-place write that
    // does not truncate, would leave some of it behind.
    const old = 'an older export that is longer than the new one\n'.repeat(20)
    writeFileSync(out, old)
    const oldIno = statSync(out).ino

    // Watch the destination while the export is being produced: a reader must see the old file
    // whole at every point until the rename, never an empty or half-written one.
    const seen: string[] = []
    const iterate = p.iterateRecords.bind(p)
    const spy = vi.spyOn(p, 'iterateRecords').mockImplementation(function* (opts) {
      for (const rec of iterate(opts)) {
        seen.push(readFileSync(out, 'utf8'))
        yield rec
      }
    })
    exportProject(p, { format: 'trl-dpo', out })
    const passes = spy.mock.calls.length
    expect(seen.length).toBeGreaterThan(0)
    for (const s of seen) expect(s).toBe(old)
    expect(readFileSync(out, 'utf8')).toBe(expected)
    // Replaced by a rename: a new inode, and no temp file left beside it.
    const newIno = statSync(out).ino
    expect(newIno).not.toBe(oldIno)
    expect(readdirSync(dir).filter((n) => n !== 'proj')).toEqual(['dpo.jsonl'])

    // An export that fails midway (the last pass over the records is the one that writes) keeps
    // the previous export intact under the real name and cleans up its temp file.
    let call = 0
    spy.mockImplementation(function* (opts) {
      const failing = ++call === passes
      let n = 0
      for (const rec of iterate(opts)) {
        if (failing && n++ === 1) throw new Error('disk went away')
        yield rec
      }
    })
    expect(() => exportProject(p, { format: 'trl-dpo', out })).toThrow('disk went away')
    expect(call).toBe(passes)
    expect(readFileSync(out, 'utf8')).toBe(expected)
    expect(statSync(out).ino).toBe(newIno)
    expect(readdirSync(dir).filter((n) => n !== 'proj')).toEqual(['dpo.jsonl'])
    spy.mockRestore()
  })
})

describe('schema', () => {
  it('migrates an older database in order, keeping its records', () => {
    const path = join(dir, 'old', 'tunebench.db')
    const old = new Project(join(dir, 'old'))
    old.close()
    // Build a version-1 database by hand, as a previous Tunebench would have left it.
    const db = new Database(path)
    db.exec('DROP TABLE records; DROP TABLE candidates; DROP TABLE label_history; DROP TABLE imports')
    db.pragma('user_version = 0')
    migrate(db, 1)
    db.prepare(`INSERT INTO records (prompt, prompt_text, created_at, updated_at) VALUES ('"hi"', 'hi', 'then', 'then')`).run()
    expect(db.pragma('user_version', { simple: true })).toBe(1)
    db.close()
    const q = new Project(join(dir, 'old'))
    expect(q.info().schemaVersion).toBe(MIGRATIONS.length)
    expect(q.getRecord(1).prompt).toBe('hi')
    const indexes = q.db.prepare("SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = 'records'").all()
    expect(indexes).toContainEqual({ name: 'records_filter' })
    q.close()
  })

  it('is versioned with user_version and refuses a newer database', () => {
    expect(p.info().schemaVersion).toBe(MIGRATIONS.length)
    expect(p.db.pragma('journal_mode', { simple: true })).toBe('wal')
    expect(p.db.pragma('synchronous', { simple: true })).toBe(2) // FULL
    p.close()
    const db = new Database(join(dir, 'proj', 'tunebench.db'))
    db.pragma(`user_version = ${MIGRATIONS.length + 1}`)
    db.close()
    expect(() => new Project(join(dir, 'proj'))).toThrow(/newer than this Tunebench/)
    const db2 = new Database(join(dir, 'proj', 'tunebench.db'))
    db2.pragma(`user_version = ${MIGRATIONS.length}`)
    db2.close()
    p = new Project(join(dir, 'proj'))
  })
})

describe('IPC handlers', () => {
  it('open, import with progress events, label, undo, export', async () => {
    const events: ImportProgress[] = []
    const closers: (() => void)[] = []
    const h = createDataHandlers(
      { emit: ((channel: string, payload: ImportProgress) => channel === 'data.importProgress' && events.push(payload)) as never },
      (c) => closers.push(c)
    )
    await expect(h['data.list']({})).rejects.toThrow(/no project is open/)
    expect(await h['data.info']()).toBeNull()
    const info = await h['data.open'](join(dir, 'ipc'))
    expect(info.counts.total).toBe(0)
    const src = writeJsonl(
      join(dir, 'x.jsonl'),
      Array.from({ length: 2500 }, (_, i) => ({ prompt: `p${i}`, chosen: 'a', rejected: 'b' }))
    )
    const preview = await h['data.previewImport'](src)
    expect(preview).toMatchObject({ format: 'trl-preference', count: 2500, mapping: { prompt: 'prompt', chosen: 'chosen', rejected: 'rejected' }, problem: null })
    expect(preview.sampleRecords[0]).toMatchObject({ prompt: 'p0', candidates: [{ content: 'a' }, { content: 'b' }] })
    const changed = await h['data.previewImport'](src, { format: 'trl-preference', mapping: { chosen: 'rejected', rejected: 'chosen' } })
    expect(changed.sampleRecords[0].candidates.map((c) => c.content)).toEqual(['b', 'a'])
    const res = await h['data.import']([src], { split: 'val' })
    expect(res.records).toBe(2500)
    expect(res.counts).toMatchObject({ total: 2500, val: 2500, pairs: 2500 })
    expect(events.at(-1)).toMatchObject({ records: 2500 })
    expect(events.length).toBeGreaterThan(1)
    const page = await h['data.list']({ limit: 1 })
    const rec = page.records[0]
    const labeled = await h['data.label'](rec.id, { kind: 'pair', chosen: rec.candidates[1].id, rejected: rec.candidates[0].id })
    expect(labeled.record.pair?.chosen).toBe(rec.candidates[1].id)
    const undone = await h['data.undo']()
    expect(undone?.record.pair?.chosen).toBe(rec.candidates[0].id)
    const ex = await h['data.export']({ format: 'trl-dpo', out: join(dir, 'ipc.jsonl'), split: 'val' })
    expect(ex.files[0].records).toBe(2500)
    for (const c of closers) c()
  })
})
