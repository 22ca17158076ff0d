import { mkdtemp, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest'
import type { ModelFacts } from '../../../preload/types/models'
import { RecentModels } from '../../../main/services/models/recentModels'

// A disk that fills up midway: while `diskFull` is set, every file write through node:fs/promises
// (writeFile, or a handle's writeFile/write) puts down half its bytes and then fails with ENOSPC.
const fault = vi.hoisted(() => ({ diskFull: false }))
vi.mock('node:fs/promises', async (importOriginal) => {
  const fs = await importOriginal<typeof import('node:fs/promises')>()
  const half = (data: unknown): string | Uint8Array =>
    typeof data === 'string' ? data.slice(0, data.length >> 1) : (data as Uint8Array).subarray(0, (data as Uint8Array).length >> 1)
  const enospc = () => Object.assign(new Error('ENOSPC: no space left on device, write'), { code: 'ENOSPC' })
  const writeFile = (async (file: Parameters<typeof fs.writeFile>[0], data: Parameters<typeof fs.writeFile>[1], opts?: Parameters<typeof fs.writeFile>[2]) => {
    if (!fault.diskFull) return fs.writeFile(file, data, opts)
    await fs.writeFile(file, half(data), opts)
    throw enospc()
  }) as typeof fs.writeFile
  const open = (async (...args: Parameters<typeof fs.open>) => {
    const h = await fs.open(...args)
    const { writeFile: hWriteFile, write: hWrite } = h
    h.writeFile = (async (data: string | Uint8Array, opts?: unknown) => {
      if (!fault.diskFull) return hWriteFile.call(h, data, opts as never)
      await hWriteFile.call(h, half(data))
      throw enospc()
    }) as typeof h.writeFile
    h.write = (async (data: string | Uint8Array, ...rest: unknown[]) => {
      if (!fault.diskFull) return (hWrite as (...a: unknown[]) => unknown).call(h, data, ...rest)
      await (hWrite as (...a: unknown[]) => Promise<unknown>).call(h, half(data))
      throw enospc()
    }) as typeof h.write
    return h
  }) as typeof fs.open
  return { ...fs, default: { ...fs, writeFile, open }, writeFile, open }
})

let root: string
beforeEach(async () => {
  root = await mkdtemp(join(tmpdir(), 'tunebench-recent-'))
})
afterEach(async () => {
  fault.diskFull = false
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

  it('replaces the list by a rename, so a write that fails midway keeps the old list', async () => {
    const file = join(root, 'recent-models.json')
    const recent = new RecentModels(file)
    await recent.remember(facts('/m/a'), new Date(1))
    const before = await readFile(file, 'utf8')
    const ino = (await stat(file)).ino

    // The next write replaces the file by renaming a new one over it, not by writing into it.
    await recent.remember(facts('/m/b'), new Date(2))
    expect((await stat(file)).ino).not.toBe(ino)
    expect((await recent.list()).map((m) => m.dir)).toEqual(['/m/b', '/m/a'])
    expect(await readdir(root)).toEqual(['recent-models.json'])
    const current = await readFile(file, 'utf8')
    expect(current).not.toBe(before)

    // The disk fills up halfway through the next write: the call fails, and the list on disk is
    // still the previous one, byte for byte, with no half-written temp file beside it.
    fault.diskFull = true
    await expect(recent.remember(facts('/m/c'), new Date(3))).rejects.toThrow(/ENOSPC/)
    fault.diskFull = false
    expect(await readFile(file, 'utf8')).toBe(current)
    expect(await readdir(root)).toEqual(['recent-models.json'])
    expect((await new RecentModels(file).list()).map((m) => m.dir)).toEqual(['/m/b', '/m/a'])
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
