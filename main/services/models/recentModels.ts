// The recently opened models list: a small JSON file in the app data dir, written atomically.
import { mkdir, readFile, rename } from 'node:fs/promises'
import { dirname } from 'node:path'
import type { ModelFacts, RecentModel } from '../../../preload/types/models'
import { writeFileAtomic } from '../fsAtomic'

const maxEntries = 20

export class RecentModels {
  // Serialises writes so two opens in a row never lose one of the entries.
  private queue: Promise<unknown> = Promise.resolve()

  constructor(private readonly file: string) {}

  async list(): Promise<RecentModel[]> {
    let text: string
    try {
      text = await readFile(this.file, 'utf8')
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return []
      throw err
    }
    try {
      const parsed: unknown = JSON.parse(text)
      if (!Array.isArray(parsed)) throw new Error('not a list')
      return parsed.filter(isRecentModel)
    } catch {
      // Keep the unreadable file for the user instead of overwriting it; start a fresh list.
      await rename(this.file, `${this.file}.unreadable-${Date.now()}`).catch(() => undefined)
      return []
    }
  }

  remember(facts: ModelFacts, now = new Date()): Promise<RecentModel[]> {
    return this.update((list) => [
      {
        dir: facts.dir, name: facts.name, architecture: facts.architecture, parameters: facts.parameters,
        ...(facts.moe ? { activeParameters: facts.activeParameters } : {}),
        openedAt: now.toISOString()
      },
      ...list.filter((m) => m.dir !== facts.dir)
    ])
  }

  forget(dir: string): Promise<RecentModel[]> {
    return this.update((list) => list.filter((m) => m.dir !== dir))
  }

  private update(change: (list: RecentModel[]) => RecentModel[]): Promise<RecentModel[]> {
    const next = this.queue.then(async () => {
      const list = change(await this.list()).slice(0, maxEntries)
      await mkdir(dirname(this.file), { recursive: true })
      await writeFileAtomic(this.file, JSON.stringify(list, null, 2) + '\n')
      return list
    })
    this.queue = next.catch(() => undefined)
    return next
  }
}

function isRecentModel(value: unknown): value is RecentModel {
  const m = value as RecentModel
  return typeof m === 'object' && m !== null && typeof m.dir === 'string' && typeof m.name === 'string' &&
    typeof m.architecture === 'string' && typeof m.parameters === 'number' && typeof m.openedAt === 'string'
}
