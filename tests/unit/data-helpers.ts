// Shared helpers of the data tests: temp folders and a normalised view of a project's records.
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import type { Project } from '../../main/services/data/store'

export function tempDir(prefix = 'tb-data-'): { dir: string; cleanup: () => void } {
  const dir = mkdtempSync(join(tmpdir(), prefix))
  return { dir, cleanup: () => rmSync(dir, { recursive: true, force: true }) }
}

export function writeJsonl(file: string, rows: unknown[]): string {
  writeFileSync(file, rows.map((r) => JSON.stringify(r)).join('\n') + '\n')
  return file
}

/** Records without ids or timestamps: what must survive a round trip. */
export function contentOf(project: Project): unknown[] {
  const out: unknown[] = []
  for (const r of project.iterateRecords({ includeExcluded: true })) {
    const idx = new Map(r.candidates.map((c) => [c.id, c.index]))
    out.push({
      prompt: r.prompt,
      system: r.system,
      candidates: r.candidates.map((c) => ({ content: c.content, source: c.source, kto: c.kto })),
      pair: r.pair ? { chosen: idx.get(r.pair.chosen), rejected: idx.get(r.pair.rejected) } : null,
      tie: r.tie,
      skipped: r.skipped,
      gold: r.gold,
      split: r.split,
      status: r.status
    })
  }
  return out
}

/** Everything in the database, for "the store is unchanged" checks. */
export function dump(project: Project): string {
  const tables = ['records', 'candidates', 'label_history', 'imports']
  return JSON.stringify(tables.map((t) => project.db.prepare(`SELECT * FROM ${t} ORDER BY id`).all()))
}

/** One candidate as contentOf shows it, written out: source 'import' and no KTO label unless given. */
export function cand(content: string, over: { source?: string; kto?: boolean | null } = {}): { content: string; source: string; kto: boolean | null } {
  return { content, source: over.source ?? 'import', kto: over.kto ?? null }
}

/**
 * An expected record in contentOf's shape, written out by hand in a test (never read from the
 * store): only what a case sets differs from an unlabeled train record with no answers. A
 * string candidate is cand(string); `pair` is [chosen, rejected] by candidate index.
 */
export function rec(r: {
  prompt: string | { role: string; content: string }[]
  system?: string | null
  candidates?: (string | ReturnType<typeof cand>)[]
  pair?: [number, number] | null
  gold?: string | null
  status: 'labeled' | 'unlabeled' | 'skipped'
  split?: 'train' | 'val'
}): unknown {
  return {
    prompt: r.prompt,
    system: r.system ?? null,
    candidates: (r.candidates ?? []).map((c) => (typeof c === 'string' ? cand(c) : c)),
    pair: r.pair ? { chosen: r.pair[0], rejected: r.pair[1] } : null,
    tie: false,
    skipped: false,
    gold: r.gold ?? null,
    split: r.split ?? 'train',
    status: r.status
  }
}
