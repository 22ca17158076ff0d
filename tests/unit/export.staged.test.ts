// The export's output folder: nothing appears under a final name before every file is written;
// a full disk, a failure or a cancel leaves no file under a final name and no temp file; a disk
// without room for the whole export is refused before anything is written.
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, describe, expect, test } from 'vitest'
import { withStagedFolder } from '../../main/services/export/staged'

const tmp = mkdtempSync(join(tmpdir(), 'tunebench-staged-'))
afterAll(() => rmSync(tmp, { recursive: true, force: true }))

describe('staged export folder', () => {
  test('files appear under their names only when all are written', async () => {
    const out = join(tmp, 'ok')
    const seen: string[][] = []
    const progress: number[] = []
    await withStagedFolder(out, ['a.bin', 'b.txt'], { totalBytes: 7, onProgress: (p) => progress.push(p.bytes) }, async (folder) => {
      await folder.stream('a.bin', async (write) => {
        await write(Uint8Array.of(1, 2))
        await write(Uint8Array.of(3))
      })
      seen.push(readdirSync(out).filter((n) => !n.startsWith('.')))
      await folder.writeFile('b.txt', 'four')
    })
    expect(seen).toEqual([[]])
    expect(progress).toEqual([2, 3, 7])
    expect(readdirSync(out).sort()).toEqual(['a.bin', 'b.txt'])
    expect([...readFileSync(join(out, 'a.bin'))]).toEqual([1, 2, 3])
  })

  test('a full disk names the file and leaves nothing behind', async () => {
    const out = join(tmp, 'full')
    await expect(withStagedFolder(out, ['a.bin', 'b.bin'], { totalBytes: 2 }, async (folder) => {
      await folder.writeFile('a.bin', 'x')
      await folder.stream('b.bin', async () => {
        throw Object.assign(new Error('ENOSPC: no space left on device, write'), { code: 'ENOSPC' })
      })
    })).rejects.toThrow(`Disk full while writing ${join(out, 'b.bin')}; nothing was written under that name`)
    expect(readdirSync(out)).toEqual([])
  })

  test('no room for the whole export: refused before writing; existing names are never replaced', async () => {
    const out = join(tmp, 'small')
    let ran = false
    await expect(withStagedFolder(out, ['huge.bin'], { totalBytes: 1e18 }, async () => {
      ran = true
    })).rejects.toThrow(/^Not enough disk space in .*: the export needs .* GiB and .* is free$/)
    expect(ran).toBe(false)
    mkdirSync(join(tmp, 'taken'))
    await withStagedFolder(join(tmp, 'taken'), ['x'], { totalBytes: 1 }, (f) => f.writeFile('x', '1'))
    await expect(withStagedFolder(join(tmp, 'taken'), ['y', 'x'], { totalBytes: 1 }, (f) => f.writeFile('y', '2'))).rejects.toThrow(/x already exists/)
    expect(existsSync(join(tmp, 'taken', 'y'))).toBe(false)
  })

  test('a cancel between chunks stops the write', async () => {
    const out = join(tmp, 'cancel')
    const c = new AbortController()
    await expect(withStagedFolder(out, ['a.bin'], { totalBytes: 3, signal: c.signal }, (folder) => folder.stream('a.bin', async (write) => {
      await write(Uint8Array.of(1))
      c.abort()
      await write(Uint8Array.of(2))
    }))).rejects.toThrow('export cancelled')
    expect(readdirSync(out)).toEqual([])
  })
})
