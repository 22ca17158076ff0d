// The project store: one folder per project holding tunebench.db (SQLite, WAL,
// synchronous=FULL so every label write is on disk when the call returns).
// Imports stage into a separate scratch database first and are copied into the project in
// one transaction at the end, so a failed or killed import leaves the project unchanged and
// label writes can go on while a long file is being read.
import { existsSync, mkdirSync, readdirSync, rmSync, statSync } from 'node:fs'
import { join, resolve } from 'node:path'
import { asDiskError } from '../diskErrors'
import { DataError } from './errors'
import { checkString, checkText } from './formats'
import { readRecords } from './importers'
import { processAlive } from '../process'
import { migrate } from './schema'
import { openDatabase, type SqliteDatabase } from './sqlite'
import type {
  Candidate,
  ChatMessage,
  DataRecord,
  ImportOptions,
  ImportProgress,
  ImportResult,
  LabelAction,
  LabelStatus,
  ProjectInfo,
  RecordCounts,
  RecordFilter,
  RecordInput,
  RecordPage,
  Split
} from '../../../preload/types/data'

export const DB_FILE = 'tunebench.db'
const STAGING_PREFIX = '.import-'
const BATCH = 2000

interface RecordRow {
  id: number
  prompt: string
  prompt_text: string
  system: string | null
  split: Split
  source: string | null
  source_index: number | null
  pair_chosen: number | null
  pair_rejected: number | null
  tie: number
  skipped: number
  gold: string | null
  note: string | null
  status: LabelStatus
  excluded: number
  excluded_reason: string | null
  created_at: string
  updated_at: string
}

interface CandidateRow {
  id: number
  record_id: number
  idx: number
  content: string
  source: string
  kto: number | null
}

/** The labels of one record, as saved in label_history for undo: its label columns and the
 *  KTO tag of each candidate ([candidate id, kto]). */
type LabelSnapshot = Pick<RecordRow, 'pair_chosen' | 'pair_rejected' | 'tie' | 'skipped' | 'gold' | 'note'> & {
  kto: [number, number | null][]
}

export function flattenPrompt(prompt: string | ChatMessage[]): string {
  return typeof prompt === 'string' ? prompt : prompt.map((m) => m.content).join('\n')
}

function now(): string {
  return new Date().toISOString()
}

function applySchema(db: SqliteDatabase): void {
  migrate(db)
}

/**
 * The scratch database of an import: the columns of records and candidates without indexes
 * or constraints (rows were validated on the way in; the project's constraints check them
 * again when they are copied over).
 */
const STAGING_SCHEMA = `
  CREATE TABLE records (
    id INTEGER PRIMARY KEY, prompt TEXT, prompt_text TEXT, system TEXT, split TEXT, source TEXT, source_index INTEGER,
    pair_chosen INTEGER, pair_rejected INTEGER, tie INTEGER DEFAULT 0, skipped INTEGER DEFAULT 0, gold TEXT, note TEXT,
    status TEXT, excluded INTEGER DEFAULT 0, excluded_reason TEXT, created_at TEXT, updated_at TEXT);
  CREATE TABLE candidates (id INTEGER PRIMARY KEY, record_id INTEGER, idx INTEGER, content TEXT, source TEXT, kto INTEGER);
`

export interface StoreOptions {
  /** Path of a better_sqlite3.node built for this runtime (the desktop app's Electron build);
   *  without it the build in node_modules is used. */
  sqliteBinding?: string
}

export class Project {
  readonly dir: string
  readonly dbPath: string
  readonly db: SqliteDatabase
  private stmts: ReturnType<Project['prepare']>
  private countsCache: RecordCounts | null = null
  private countsVersion = -1
  private readonly sqliteBinding: string | undefined

  constructor(dir: string, options: StoreOptions = {}) {
    this.dir = resolve(dir)
    this.dbPath = join(this.dir, DB_FILE)
    this.sqliteBinding = options.sqliteBinding
    let db: SqliteDatabase | null = null
    try {
      mkdirSync(this.dir, { recursive: true })
      this.removeStaleStaging()
      db = openDatabase(this.dbPath, this.sqliteBinding)
      db.pragma('journal_mode = WAL')
      // FULL: the WAL is fsynced at every commit, so an acknowledged label survives power loss too.
      db.pragma('synchronous = FULL')
      db.pragma('foreign_keys = ON')
      db.pragma('busy_timeout = 5000')
      // Keep the WAL small after checkpoints: an fsync of a large, mostly stale WAL costs label latency.
      db.pragma('journal_size_limit = 8388608')
      applySchema(db)
    } catch (err) {
      if (db?.open) db.close()
      throw asDiskError(err, this.dbPath, 'the project was not opened and its file is unchanged')
    }
    this.db = db
    this.stmts = this.prepare()
  }

  /** One write transaction; a full or read-only disk becomes a DiskError naming the database
   *  (SQLite has rolled the transaction back, so nothing of it was stored). */
  private write<T>(fn: () => T): T {
    try {
      return this.db.transaction(fn).immediate()
    } catch (err) {
      throw asDiskError(err, this.dbPath, 'this change was not saved and everything saved before is intact')
    }
  }

  private prepare() {
    const db = this.db
    return {
      record: db.prepare<[number], RecordRow>('SELECT * FROM records WHERE id = ?'),
      candidates: db.prepare<[number], CandidateRow>('SELECT * FROM candidates WHERE record_id = ? ORDER BY idx'),
      historyInsert: db.prepare('INSERT INTO label_history (record_id, at, action, before) VALUES (?, ?, ?, ?)'),
      historyLast: db.prepare<[], { id: number; record_id: number; before: string }>(
        'SELECT id, record_id, before FROM label_history ORDER BY id DESC LIMIT 1'
      ),
      historyDelete: db.prepare('DELETE FROM label_history WHERE id = ?'),
      updateLabels: db.prepare(
        `UPDATE records SET pair_chosen = @pair_chosen, pair_rejected = @pair_rejected, tie = @tie, skipped = @skipped,
         gold = @gold, note = @note, status = @status, updated_at = @updated_at WHERE id = @id`
      ),
      updateKto: db.prepare('UPDATE candidates SET kto = ? WHERE id = ? AND record_id = ?')
    }
  }

  /** Scratch databases of imports that were killed before they finished. */
  private removeStaleStaging(): void {
    for (const name of readdirSync(this.dir)) {
      if (!name.startsWith(STAGING_PREFIX)) continue
      // Named .import-PID-...: a live process (this one included) may still be importing.
      const pid = Number(name.slice(STAGING_PREFIX.length).split('-')[0])
      if (pid && processAlive(pid)) continue
      rmSync(join(this.dir, name), { force: true })
    }
  }

  close(): void {
    if (this.db.open) this.db.close()
  }

  info(): ProjectInfo {
    return { dir: this.dir, dbPath: this.dbPath, schemaVersion: this.db.pragma('user_version', { simple: true }) as number, counts: this.counts() }
  }

  /**
   * Counts, kept in memory and moved by each label write's own difference, so a label at 100k
   * records does not rescan the table. A commit from another connection (PRAGMA data_version
   * changes) or a bulk change (import, split, exclusion) recomputes them.
   */
  counts(): RecordCounts {
    const version = this.db.pragma('data_version', { simple: true }) as number
    if (!this.countsCache || version !== this.countsVersion) {
      this.countsCache = this.countAll()
      this.countsVersion = version
    }
    return { ...this.countsCache }
  }

  private invalidateCounts(): void {
    this.countsCache = null
  }

  /** What one record adds to the counts (the same rules as countAll's SQL). */
  private contribution(row: RecordRow, kto: [number, number | null][]): RecordCounts {
    const live = row.excluded === 0
    const on = (b: boolean): number => (b ? 1 : 0)
    return {
      total: 1,
      unlabeled: on(live && row.status === 'unlabeled'),
      labeled: on(live && row.status === 'labeled'),
      skipped: on(live && row.status === 'skipped'),
      excluded: on(!live),
      train: on(live && row.split === 'train'),
      val: on(live && row.split === 'val'),
      pairs: on(live && row.pair_chosen !== null && row.tie === 0 && row.skipped === 0),
      gold: on(live && row.gold !== null && row.skipped === 0),
      kto:
        live && row.skipped === 0
          ? kto.filter(([id, k]) => k !== null || (row.tie === 0 && (id === row.pair_chosen || id === row.pair_rejected))).length
          : 0
    }
  }

  private applyCountsDelta(before: RecordCounts, after: RecordCounts): void {
    if (!this.countsCache) return
    for (const k of Object.keys(before) as (keyof RecordCounts)[]) this.countsCache[k] += after[k] - before[k]
  }

  /** Counts straight from the tables. */
  countAll(): RecordCounts {
    const r = this.db
      .prepare(
        `SELECT COUNT(*) AS total,
          SUM(status = 'unlabeled' AND excluded = 0) AS unlabeled,
          SUM(status = 'labeled' AND excluded = 0) AS labeled,
          SUM(status = 'skipped' AND excluded = 0) AS skipped,
          SUM(excluded) AS excluded,
          SUM(split = 'train' AND excluded = 0) AS train,
          SUM(split = 'val' AND excluded = 0) AS val,
          SUM(pair_chosen IS NOT NULL AND tie = 0 AND skipped = 0 AND excluded = 0) AS pairs,
          SUM(gold IS NOT NULL AND skipped = 0 AND excluded = 0) AS gold
         FROM records`
      )
      .get() as Record<string, number | null>
    const kto = this.db
      .prepare(
        `SELECT COUNT(*) AS n FROM candidates c JOIN records r ON r.id = c.record_id
         WHERE r.excluded = 0 AND r.skipped = 0 AND (c.kto IS NOT NULL
           OR (r.tie = 0 AND (c.id = r.pair_chosen OR c.id = r.pair_rejected)))`
      )
      .get() as { n: number }
    const n = (k: string): number => r[k] ?? 0
    return {
      total: n('total'),
      unlabeled: n('unlabeled'),
      labeled: n('labeled'),
      skipped: n('skipped'),
      excluded: n('excluded'),
      train: n('train'),
      val: n('val'),
      pairs: n('pairs'),
      kto: kto.n,
      gold: n('gold')
    }
  }

  // --- reading ----------------------------------------------------------------------------

  private toRecord(row: RecordRow, cands: CandidateRow[]): DataRecord {
    return {
      id: row.id,
      prompt: JSON.parse(row.prompt) as string | ChatMessage[],
      system: row.system,
      candidates: cands.map(
        (c): Candidate => ({ id: c.id, index: c.idx, content: c.content, source: c.source, kto: c.kto === null ? null : c.kto === 1 })
      ),
      pair: row.pair_chosen !== null && row.pair_rejected !== null ? { chosen: row.pair_chosen, rejected: row.pair_rejected } : null,
      tie: row.tie === 1,
      skipped: row.skipped === 1,
      gold: row.gold,
      note: row.note,
      split: row.split,
      excluded: row.excluded === 1,
      excludedReason: row.excluded_reason,
      source: row.source,
      sourceIndex: row.source_index,
      status: row.status,
      createdAt: row.created_at,
      updatedAt: row.updated_at
    }
  }

  getRecord(id: number): DataRecord {
    const row = this.stmts.record.get(id)
    if (!row) throw new DataError(`no record with id ${id}`)
    return this.toRecord(row, this.stmts.candidates.all(id))
  }

  listRecords(filter: RecordFilter = {}): RecordPage {
    const where: string[] = []
    const params: unknown[] = []
    if (filter.status && filter.status !== 'all') {
      where.push('status = ?')
      params.push(filter.status)
    }
    if (filter.split) {
      where.push('split = ?')
      params.push(filter.split)
    }
    const excluded = filter.excluded ?? false
    if (excluded !== 'all') where.push(excluded ? 'excluded = 1' : 'excluded = 0')
    if (filter.search && filter.search.trim()) {
      const like = '%' + filter.search.trim().replace(/[\\%_]/g, (c) => '\\' + c) + '%'
      where.push(
        `(prompt_text LIKE ? ESCAPE '\\' OR gold LIKE ? ESCAPE '\\' OR note LIKE ? ESCAPE '\\'
          OR EXISTS (SELECT 1 FROM candidates c WHERE c.record_id = records.id AND c.content LIKE ? ESCAPE '\\'))`
      )
      params.push(like, like, like, like)
    }
    const w = where.length ? `WHERE ${where.join(' AND ')}` : ''
    const total = (this.db.prepare(`SELECT COUNT(*) AS n FROM records ${w}`).get(...params) as { n: number }).n
    const limit = Math.max(1, Math.min(filter.limit ?? 50, 1000))
    const offset = Math.max(0, filter.offset ?? 0)
    const rows = this.db.prepare(`SELECT * FROM records ${w} ORDER BY id LIMIT ? OFFSET ?`).all(...params, limit, offset) as RecordRow[]
    const byRecord = new Map<number, CandidateRow[]>()
    if (rows.length) {
      const cands = this.db
        .prepare(`SELECT * FROM candidates WHERE record_id IN (${rows.map(() => '?').join(',')}) ORDER BY record_id, idx`)
        .all(...rows.map((r) => r.id)) as CandidateRow[]
      for (const c of cands) {
        const list = byRecord.get(c.record_id) ?? []
        list.push(c)
        byRecord.set(c.record_id, list)
      }
    }
    return { records: rows.map((r) => this.toRecord(r, byRecord.get(r.id) ?? [])), total, counts: this.counts() }
  }

  /** Every record in id order, streamed (exports and decontamination). */
  *iterateRecords(opts: { split?: Split; includeExcluded?: boolean } = {}): Generator<DataRecord> {
    const where: string[] = []
    const params: unknown[] = []
    if (!opts.includeExcluded) where.push('excluded = 0')
    if (opts.split) {
      where.push('split = ?')
      params.push(opts.split)
    }
    const w = where.length ? `WHERE ${where.join(' AND ')}` : ''
    // Read in id ranges: an open iterate() cursor would block writes on this connection.
    let after = 0
    const page = this.db.prepare(`SELECT * FROM records ${w ? w + ' AND' : 'WHERE'} id > ? ORDER BY id LIMIT 1000`)
    for (;;) {
      const rows = page.all(...params, after) as RecordRow[]
      if (!rows.length) return
      for (const row of rows) yield this.toRecord(row, this.stmts.candidates.all(row.id))
      after = rows[rows.length - 1].id
    }
  }

  // --- labeling ---------------------------------------------------------------------------

  private snapshot(row: RecordRow): LabelSnapshot {
    return {
      pair_chosen: row.pair_chosen,
      pair_rejected: row.pair_rejected,
      tie: row.tie,
      skipped: row.skipped,
      gold: row.gold,
      note: row.note,
      kto: this.stmts.candidates.all(row.id).map((c) => [c.id, c.kto])
    }
  }

  private writeSnapshot(id: number, s: LabelSnapshot): void {
    const row = this.stmts.record.get(id)
    const before = row ? this.contribution(row, this.snapshot(row).kto) : null
    this.writeSnapshotRaw(id, s)
    const after = this.stmts.record.get(id)
    if (before && after) this.applyCountsDelta(before, this.contribution(after, s.kto))
  }

  private writeSnapshotRaw(id: number, s: LabelSnapshot): void {
    const labeled = s.pair_chosen !== null || s.gold !== null || s.kto.some(([, k]) => k !== null)
    const status: LabelStatus = s.skipped ? 'skipped' : labeled ? 'labeled' : 'unlabeled'
    this.stmts.updateLabels.run({ id, pair_chosen: s.pair_chosen, pair_rejected: s.pair_rejected, tie: s.tie, skipped: s.skipped, gold: s.gold, note: s.note, status, updated_at: now() })
    for (const [cid, k] of s.kto) this.stmts.updateKto.run(k, cid, id)
  }

  /** Applies one label action; durable (fsynced) when it returns. */
  setLabel(recordId: number, action: LabelAction): DataRecord {
    this.labelTransaction(() => {
      const row = this.stmts.record.get(recordId)
      if (!row) throw new DataError(`no record with id ${recordId}`)
      const before = this.snapshot(row)
      const next: LabelSnapshot = { ...before, kto: before.kto.map(([c, k]) => [c, k]) }
      const ids = new Set(before.kto.map(([c]) => c))
      const needCandidate = (c: number, field: string): void => {
        if (!ids.has(c)) throw new DataError(`candidate ${c} does not belong to record ${recordId}`, { field })
      }
      switch (action.kind) {
        case 'pair':
        case 'tie': {
          const [a, b] = action.kind === 'pair' ? [action.chosen, action.rejected] : [action.a, action.b]
          needCandidate(a, action.kind === 'pair' ? 'chosen' : 'a')
          needCandidate(b, action.kind === 'pair' ? 'rejected' : 'b')
          if (a === b) throw new DataError('a pair needs two different candidates', { field: 'rejected' })
          next.pair_chosen = a
          next.pair_rejected = b
          next.tie = action.kind === 'tie' ? 1 : 0
          next.skipped = 0
          break
        }
        case 'skip':
          next.skipped = 1
          break
        case 'kto': {
          needCandidate(action.candidate, 'candidate')
          next.kto = next.kto.map(([c, k]) => [c, c === action.candidate ? (action.desirable === null ? null : action.desirable ? 1 : 0) : k])
          next.skipped = 0
          break
        }
        case 'gold':
          if (action.text !== null && typeof action.text !== 'string') throw new DataError('expected a string or null', { field: 'text' })
          next.gold = action.text
          next.skipped = 0
          break
        case 'note':
          next.note = action.text
          break
        case 'clear':
          next.pair_chosen = next.pair_rejected = null
          next.tie = next.skipped = 0
          next.gold = null
          next.kto = next.kto.map(([c]) => [c, null])
          break
        default:
          throw new DataError(`unknown label action ${JSON.stringify((action as { kind?: unknown }).kind)}`, { field: 'kind' })
      }
      this.stmts.historyInsert.run(recordId, now(), JSON.stringify(action), JSON.stringify(before))
      this.writeSnapshot(recordId, next)
    })
    return this.getRecord(recordId)
  }

  /** A write transaction that moves the cached counts; if it does not commit, they are recomputed. */
  private labelTransaction<T>(fn: () => T): T {
    try {
      return this.write(fn)
    } catch (e) {
      this.invalidateCounts()
      throw e
    }
  }

  /** Reverts the most recent label action (repeat to go further back); null when there is none. */
  undo(): DataRecord | null {
    const id = this.labelTransaction(() => {
      const last = this.stmts.historyLast.get()
      if (!last) return null
      if (this.stmts.record.get(last.record_id)) this.writeSnapshot(last.record_id, JSON.parse(last.before) as LabelSnapshot)
      this.stmts.historyDelete.run(last.id)
      return last.record_id
    })
    return id === null ? null : this.getRecord(id)
  }

  setSplit(ids: number[], split: Split): number {
    this.invalidateCounts()
    const stmt = this.db.prepare('UPDATE records SET split = ?, updated_at = ? WHERE id = ?')
    return this.write(() => ids.reduce((n, id) => n + stmt.run(split, now(), id).changes, 0))
  }

  /** Flags records as excluded from training (never deletes them); reason null includes them again. */
  setExcluded(ids: number[], reason: string | null): number {
    this.invalidateCounts()
    const stmt = this.db.prepare('UPDATE records SET excluded = ?, excluded_reason = ?, updated_at = ? WHERE id = ?')
    return this.write(() => ids.reduce((n, id) => n + stmt.run(reason === null ? 0 : 1, reason, now(), id).changes, 0))
  }

  /** Adds records directly (typed in prompts, generated data). */
  addRecords(records: RecordInput[]): number[] {
    if (!Array.isArray(records)) throw new DataError('expected a list of records')
    records.forEach((r, i) => {
      try {
        checkText(r.prompt, 'prompt')
        if (r.system !== null && r.system !== undefined) checkString(r.system, 'system')
        if (!Array.isArray(r.candidates)) throw new DataError('expected a list', { field: 'candidates' })
        r.candidates.forEach((c, j) => checkString(c.content, `candidates[${j}].content`))
        if (r.gold !== null && r.gold !== undefined) checkString(r.gold, 'gold')
      } catch (e) {
        throw e instanceof DataError ? e.at({ row: i + 1 }) : e
      }
    })
    this.invalidateCounts()
    const ins = insertStatements(this.db)
    return this.write(() => {
      ins.sync()
      return records.map((r) => ins.insert(r, r.split ?? 'train', now()))
    })
  }

  /** Adds generated answers to a record. */
  addCandidates(recordId: number, candidates: { content: string; source: string }[]): DataRecord {
    this.addAnswers([{ recordId, candidates }])
    return this.getRecord(recordId)
  }

  /** Adds answers to several records in one transaction (one engine call's answers): all of
   *  them are stored, or none. Returns how many were added. */
  addAnswers(entries: { recordId: number; candidates: { content: string; source: string }[] }[]): number {
    for (const e of entries) {
      if (!Array.isArray(e.candidates)) throw new DataError('expected a list of candidates')
      e.candidates.forEach((c, i) => {
        checkString(c?.content, `candidates[${i}].content`)
        checkString(c?.source, `candidates[${i}].source`)
      })
    }
    this.invalidateCounts()
    const maxIdx = this.db.prepare<[number], { m: number }>('SELECT COALESCE(MAX(idx), -1) AS m FROM candidates WHERE record_id = ?')
    const insert = this.db.prepare('INSERT INTO candidates (record_id, idx, content, source) VALUES (?, ?, ?, ?)')
    const touch = this.db.prepare('UPDATE records SET updated_at = ? WHERE id = ?')
    return this.write(() => {
      let n = 0
      for (const { recordId, candidates } of entries) {
        if (!this.stmts.record.get(recordId)) throw new DataError(`no record with id ${recordId}`)
        const max = maxIdx.get(recordId)!.m
        candidates.forEach((c, i) => insert.run(recordId, max + 1 + i, c.content, c.source))
        touch.run(now(), recordId)
        n += candidates.length
      }
      return n
    })
  }

  /** The records to generate answers for, in id order, excluded ones left out: for each, how
   *  many answers it holds from each source and whether it has a gold answer. */
  answerSources(opts: { ids?: number[]; split?: Split; status?: LabelStatus } = {}): { id: number; gold: boolean; sources: Map<string, number> }[] {
    const where = ['r.excluded = 0']
    const params: unknown[] = []
    if (opts.split) {
      where.push('r.split = ?')
      params.push(opts.split)
    }
    if (opts.status) {
      where.push('r.status = ?')
      params.push(opts.status)
    }
    const wanted = opts.ids ? new Set(opts.ids) : null
    const rows = this.db.prepare(`SELECT r.id AS id, r.gold IS NOT NULL AS gold FROM records r WHERE ${where.join(' AND ')} ORDER BY r.id`)
      .all(...params) as { id: number; gold: number }[]
    const out = new Map<number, { id: number; gold: boolean; sources: Map<string, number> }>()
    for (const r of rows) if (!wanted || wanted.has(r.id)) out.set(r.id, { id: r.id, gold: r.gold === 1, sources: new Map() })
    const counts = this.db.prepare(
      `SELECT c.record_id AS id, c.source AS source, COUNT(*) AS n FROM candidates c JOIN records r ON r.id = c.record_id
       WHERE ${where.join(' AND ')} GROUP BY c.record_id, c.source`
    ).all(...params) as { id: number; source: string; n: number }[]
    for (const c of counts) out.get(c.id)?.sources.set(c.source, c.n)
    return [...out.values()]
  }

  // --- import -----------------------------------------------------------------------------

  /**
   * Imports files as one transaction: every record of every file, or nothing. Rows are staged
   * in a scratch database while the files stream, then copied in with a single commit.
   */
  async importFiles(files: string[], opts: ImportOptions = {}, onProgress?: (p: ImportProgress) => void): Promise<ImportResult> {
    if (!files.length) throw new DataError('no files to import')
    const split = opts.split ?? 'train'
    if (split !== 'train' && split !== 'val') throw new DataError(`split must be train or val, got '${String(split)}'`, { field: 'split' })
    const stagingPath = join(this.dir, `${STAGING_PREFIX}${process.pid}-${Date.now()}-${Math.random().toString(36).slice(2, 8)}.db`)
    const kept = 'nothing was imported and the project is unchanged'
    let staging: SqliteDatabase
    try {
      staging = openDatabase(stagingPath, this.sqliteBinding)
    } catch (err) {
      throw asDiskError(err, this.dir, kept)
    }
    const perFile: { file: string; records: number; format: string | null }[] = []
    try {
      staging.pragma('journal_mode = OFF')
      staging.pragma('synchronous = OFF')
      staging.exec(STAGING_SCHEMA)
      const ins = insertStatements(staging)
      const at = now()
      for (const file of files) {
        const total = existsSync(file) ? statSync(file).size : 0
        let batch: RecordInput[] = []
        let count = 0
        let format: string | null = opts.format ?? null
        const flush = (): void => {
          const rows = batch
          batch = []
          staging.transaction(() => {
            ins.sync()
            for (const r of rows) ins.insert(r, split, at)
          })()
        }
        for await (const row of readRecords(file, opts)) {
          format = row.format
          batch.push(row.record)
          count++
          if (batch.length >= BATCH) {
            flush()
            onProgress?.({ file, records: count, bytesRead: row.bytesRead, totalBytes: total })
          }
        }
        if (batch.length) flush()
        if (!count) throw new DataError('the file holds no records', { file })
        onProgress?.({ file, records: count, bytesRead: total, totalBytes: total })
        perFile.push({ file, records: count, format })
      }
      staging.close()
      this.commitStaging(stagingPath, perFile, at)
    } catch (err) {
      // The staging file is in the project folder too: a disk error there names the folder.
      throw asDiskError(err, this.dir, kept)
    } finally {
      if (staging.open) staging.close()
      rmSync(stagingPath, { force: true })
    }
    // An import puts the whole file through the WAL; fold it into the database now so the next
    // label writes append to a short log. The import is committed already: a disk too full for
    // the checkpoint leaves the WAL as it is (SQLite folds it in later).
    try {
      this.db.pragma('wal_checkpoint(TRUNCATE)')
    } catch {
      // the WAL holds the import durably
    }
    return { files: perFile.map(({ file, records }) => ({ file, records })), records: perFile.reduce((n, f) => n + f.records, 0), counts: this.counts() }
  }

  private commitStaging(stagingPath: string, files: { file: string; records: number; format: string | null }[], at: string): void {
    this.invalidateCounts()
    this.db.prepare('ATTACH DATABASE ? AS staging').run(stagingPath)
    try {
      this.write(() => {
        const ro = (this.db.prepare('SELECT COALESCE(MAX(id), 0) AS m FROM records').get() as { m: number }).m
        const co = (this.db.prepare('SELECT COALESCE(MAX(id), 0) AS m FROM candidates').get() as { m: number }).m
        this.db
          .prepare(
            `INSERT INTO records (id, prompt, prompt_text, system, split, source, source_index, pair_chosen, pair_rejected, tie,
               skipped, gold, note, status, excluded, excluded_reason, created_at, updated_at)
             SELECT id + @ro, prompt, prompt_text, system, split, source, source_index, pair_chosen + @co, pair_rejected + @co, tie,
               skipped, gold, note, status, excluded, excluded_reason, created_at, updated_at
             FROM staging.records ORDER BY id`
          )
          .run({ ro, co })
        this.db
          .prepare(
            `INSERT INTO candidates (id, record_id, idx, content, source, kto)
             SELECT id + @co, record_id + @ro, idx, content, source, kto FROM staging.candidates ORDER BY id`
          )
          .run({ ro, co })
        const log = this.db.prepare('INSERT INTO imports (file, format, records, at) VALUES (?, ?, ?, ?)')
        for (const f of files) log.run(resolve(f.file), f.format, f.records, at)
      })
    } finally {
      this.db.exec('DETACH DATABASE staging')
    }
  }
}

/**
 * Inserts records with ids assigned here (from the current maxima), so a record and its
 * candidates go in with one statement each and the pair needs no second write.
 */
function insertStatements(db: SqliteDatabase) {
  const rec = db.prepare(
    `INSERT INTO records (id, prompt, prompt_text, system, split, source, source_index, pair_chosen, pair_rejected, gold, note, status, created_at, updated_at)
     VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`
  )
  const cand = db.prepare('INSERT INTO candidates (id, record_id, idx, content, source, kto) VALUES (?, ?, ?, ?, ?, ?)')
  const maxRecord = db.prepare('SELECT COALESCE(MAX(id), 0) AS m FROM records')
  const maxCandidate = db.prepare('SELECT COALESCE(MAX(id), 0) AS m FROM candidates')
  let nextRecord = 0
  let nextCandidate = 0
  return {
    /** Call inside each transaction before inserting (the maxima may have moved in between). */
    sync(): void {
      nextRecord = (maxRecord.get() as { m: number }).m
      nextCandidate = (maxCandidate.get() as { m: number }).m
    },
    insert(r: RecordInput, split: Split, at: string): number {
      const labeled = r.pair !== undefined || (r.gold ?? null) !== null || r.candidates.some((c) => c.kto !== undefined && c.kto !== null)
      const id = ++nextRecord
      const first = nextCandidate + 1
      nextCandidate += r.candidates.length
      let chosen: number | null = null
      let rejected: number | null = null
      if (r.pair) {
        const { chosen: ci, rejected: ri } = r.pair
        if (!r.candidates[ci] || !r.candidates[ri] || ci === ri) throw new DataError('pair refers to a missing candidate')
        chosen = first + ci
        rejected = first + ri
      }
      rec.run(
        id,
        JSON.stringify(r.prompt),
        flattenPrompt(r.prompt),
        r.system,
        r.split ?? split,
        r.source ?? null,
        r.sourceIndex ?? null,
        chosen,
        rejected,
        r.gold ?? null,
        r.note ?? null,
        labeled ? 'labeled' : 'unlabeled',
        at,
        at
      )
      r.candidates.forEach((c, i) =>
        cand.run(first + i, id, i, c.content, c.source ?? 'import', c.kto === undefined || c.kto === null ? null : c.kto ? 1 : 0)
      )
      return id
    }
  }
}

const open = new Map<string, Project>()

/** Opens (creating if needed) the project in dir; one shared connection per folder per process. */
export function openProject(dir: string, options: StoreOptions = {}): Project {
  const key = resolve(dir)
  let p = open.get(key)
  if (!p || !p.db.open) {
    p = new Project(key, options)
    open.set(key, p)
  }
  return p
}

export function closeProject(dir: string): void {
  const key = resolve(dir)
  open.get(key)?.close()
  open.delete(key)
}
