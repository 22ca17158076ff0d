// Versioned migrations of the project database. PRAGMA user_version holds the number of
// migrations applied; each runs in its own transaction, in order, so a killed upgrade leaves
// the database at the previous version.
import type Database from 'better-sqlite3'

export const MIGRATIONS: string[] = [
  // 1: records, their candidate answers, the label history (for undo) and the import log.
  `
  CREATE TABLE records (
    id INTEGER PRIMARY KEY,
    prompt TEXT NOT NULL,            -- JSON: a string or a list of {role, content}
    prompt_text TEXT NOT NULL,       -- the prompt flattened, for search and decontamination
    system TEXT,
    split TEXT NOT NULL DEFAULT 'train' CHECK (split IN ('train', 'val')),
    source TEXT,
    source_index INTEGER,
    pair_chosen INTEGER,             -- candidate ids
    pair_rejected INTEGER,
    tie INTEGER NOT NULL DEFAULT 0,
    skipped INTEGER NOT NULL DEFAULT 0,
    gold TEXT,
    note TEXT,
    status TEXT NOT NULL DEFAULT 'unlabeled' CHECK (status IN ('unlabeled', 'labeled', 'skipped')),
    excluded INTEGER NOT NULL DEFAULT 0,
    excluded_reason TEXT,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL
  );
  CREATE INDEX records_status ON records (status, split);
  CREATE TABLE candidates (
    id INTEGER PRIMARY KEY,
    record_id INTEGER NOT NULL REFERENCES records (id) ON DELETE CASCADE,
    idx INTEGER NOT NULL,
    content TEXT NOT NULL,
    source TEXT NOT NULL,
    kto INTEGER CHECK (kto IN (0, 1)),
    UNIQUE (record_id, idx)
  );
  CREATE TABLE label_history (
    id INTEGER PRIMARY KEY,
    record_id INTEGER NOT NULL,
    at TEXT NOT NULL,
    action TEXT NOT NULL,            -- JSON of the LabelAction
    before TEXT NOT NULL             -- JSON snapshot of the record's labels before it
  );
  CREATE TABLE imports (
    id INTEGER PRIMARY KEY,
    file TEXT NOT NULL,
    format TEXT,
    records INTEGER NOT NULL,
    at TEXT NOT NULL
  );
  `,
  // 2: list filters test excluded first, then status and split; one index serves them and the counts.
  `
  DROP INDEX records_status;
  CREATE INDEX records_filter ON records (excluded, status, split);
  `
]

export function migrate(db: Database.Database, upTo = MIGRATIONS.length): number {
  const current = db.pragma('user_version', { simple: true }) as number
  if (current > MIGRATIONS.length)
    throw new Error(`the project database is at schema version ${current}, newer than this Tunebench (${MIGRATIONS.length}); update Tunebench`)
  for (let v = current; v < upTo; v++) {
    db.transaction(() => {
      db.exec(MIGRATIONS[v])
      db.pragma(`user_version = ${v + 1}`)
    })()
  }
  return db.pragma('user_version', { simple: true }) as number
}
