import { mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterEach, beforeEach, describe, expect, it } from 'vitest'
import type { ModelFacts } from '../../../preload/types/models'
import { RecentModels } from '../../../main/services/models/recentModels'

let root: string
beforeEach(async () => {
  root = await mkdtemp(join(tmpdir(), 'tunebench-recent-'))
})
afterEach(async () => {
  await rm(root, { recursive: true, force: true })
})

const facts = (dir: string) => ({ dir, name: dir.split('/').pop()!, architecture: 'LlamaForCausalLM', parameters: 10 }) as ModelFacts

describe('RecentModels', () => {
  it('keeps the latest open first, without duplicates, across instances', async () => {
    const file = join(root, 'app', 'recent-models.json')
    const recent = new RecentModels(file)
    await Promise.all([recent.remember(facts('/m/a'), new Date(1)), recent.remember(facts('/m/b'), new Date(2))])
    await recent.remember(facts('/m/a'), new Date(3))
    expect((await new RecentModels(file).list()).map((m) => [m.dir, m.openedAt])).toEqual([
      ['/m/a', new Date(3).toISOString()],
      ['/m/b', new Date(2).toISOString()]
    ])
    expect((await recent.forget('/m/a')).map((m) => m.dir)).toEqual(['/m/b'])
    // Atomic writes leave no temp files behind.
    expect(await readdir(join(root, 'app'))).toEqual(['recent-models.json'])
  })

  it('sets an unreadable file aside instead of overwriting it', async () => {
    const file = join(root, 'recent-models.json')
    await writeFile(file, '{ not json')
    const recent = new RecentModels(file)
    expect(await recent.list()).toEqual([])
    await recent.remember(facts('/m/a'))
    const names = await readdir(root)
    const kept = names.find((n) => n.startsWith('recent-models.json.unreadable-'))
    expect(kept).toBeDefined()
    expect(await readFile(join(root, kept!), 'utf8')).toBe('{ not json')
  })
})
