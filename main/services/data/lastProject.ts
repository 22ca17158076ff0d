// The project the app opens by itself: the one opened last (kept in last-project.json in the
// app data dir, written atomically), so a reload or a restart lands where the user was; on
// the first start, the default project in the app data dir, filled with the bundled demo
// candidates through the normal import, so a newcomer can label without typing a path.
import { existsSync } from 'node:fs'
import { mkdir, readFile } from 'node:fs/promises'
import { dirname, join, resolve } from 'node:path'
import { writeFileAtomic } from '../fsAtomic'
import { DB_FILE, type Project } from './store'

/** Where the default project lives, below the app data dir. */
export const DEFAULT_PROJECT = join('projects', 'default')
/** The bundled unlabeled candidates, below the resources folder. */
export const DEMO_CANDIDATES = join('demo', 'candidates.jsonl')

export class LastProject {
  constructor(private readonly file: string) {}

  /** The folder opened last, or null (none yet, or an unreadable file). */
  async read(): Promise<string | null> {
    try {
      const parsed = JSON.parse(await readFile(this.file, 'utf8')) as { dir?: unknown }
      return typeof parsed?.dir === 'string' && parsed.dir ? parsed.dir : null
    } catch {
      return null
    }
  }

  async remember(dir: string): Promise<void> {
    await mkdir(dirname(this.file), { recursive: true })
    await writeFileAtomic(this.file, JSON.stringify({ dir: resolve(dir) }, null, 2) + '\n')
  }
}

/** Whether a folder already holds a project (its database file). */
export function isProject(dir: string): boolean {
  return existsSync(join(dir, DB_FILE))
}

/**
 * Fills the default project with the demo candidates when it holds no record: just created,
 * or left empty when the app stopped before the import (one transaction) committed. A project
 * with any record is the user's and is left as it is.
 */
export async function fillDefaultProject(project: Project, demoCandidates: string | null): Promise<void> {
  if (project.counts().total > 0 || !demoCandidates || !existsSync(demoCandidates)) return
  await project.importFiles([demoCandidates])
}
