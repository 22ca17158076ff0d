// An export's output folder: every file is written under a temporary name beside its final one,
// fsynced, and renamed only when all of them are complete, so a failed or cancelled export (a
// full disk, a killed process) leaves no half-written file under a final name. Existing files
// are never replaced.
import { existsSync } from 'node:fs'
import { mkdir, open, rename, rm, statfs, type FileHandle } from 'node:fs/promises'
import { join } from 'node:path'
import { fsyncDir } from '../fsAtomic'
import { asDiskError } from '../diskErrors'

export interface ExportProgress {
  /** The file being written. */
  file: string
  /** Bytes written so far over all files, and the expected total. */
  bytes: number
  totalBytes: number
}

export interface StagedOptions {
  /** Expected bytes of all files (for progress and the free-space check). */
  totalBytes: number
  onProgress?: (p: ExportProgress) => void
  signal?: AbortSignal
}

export class ExportCancelled extends Error {
  constructor() {
    super('export cancelled')
    this.name = 'ExportCancelled'
  }
}

function gib(bytes: number): string {
  return bytes >= 1 << 30 ? `${(bytes / (1 << 30)).toFixed(2)} GiB` : `${(bytes / (1 << 20)).toFixed(1)} MiB`
}

export class StagedFolder {
  private staged: { tmp: string; final: string }[] = []
  private written = 0

  private constructor(readonly dir: string, private opts: StagedOptions) {}

  /** Creates `dir` if needed; refuses names that already exist there and a disk without room. */
  static async create(dir: string, names: string[], opts: StagedOptions): Promise<StagedFolder> {
    await mkdir(dir, { recursive: true }).catch((err) => {
      throw asDiskError(err, dir, 'nothing was written')
    })
    const taken = names.filter((n) => existsSync(join(dir, n)))
    if (taken.length) throw new Error(`${join(dir, taken[0]!)} already exists; choose an empty folder (an export never replaces files)`)
    const fs = await statfs(dir)
    const free = Number(fs.bavail) * Number(fs.bsize)
    if (opts.totalBytes > free)
      throw new Error(`Not enough disk space in ${dir}: the export needs ${gib(opts.totalBytes)} and ${gib(free)} is free`)
    return new StagedFolder(dir, opts)
  }

  private tmpOf(name: string): string {
    return join(this.dir, `.${name}.tmp-${process.pid}`)
  }

  /** Streams one file; `write` appends a chunk. */
  async stream(name: string, body: (write: (chunk: Uint8Array) => Promise<void>) => Promise<void>): Promise<void> {
    const tmp = this.tmpOf(name)
    const final = join(this.dir, name)
    this.staged.push({ tmp, final })
    let h: FileHandle | null = null
    try {
      h = await open(tmp, 'w')
      const handle = h
      await body(async (chunk) => {
        if (this.opts.signal?.aborted) throw new ExportCancelled()
        let off = 0
        while (off < chunk.byteLength) off += (await handle.write(chunk, off, chunk.byteLength - off)).bytesWritten
        this.written += chunk.byteLength
        this.opts.onProgress?.({ file: name, bytes: this.written, totalBytes: Math.max(this.opts.totalBytes, this.written) })
      })
      await h.sync()
    } catch (err) {
      throw asDiskError(err, final, 'nothing was written under that name')
    } finally {
      await h?.close()
    }
  }

  async writeFile(name: string, data: string | Uint8Array): Promise<void> {
    await this.stream(name, (write) => write(typeof data === 'string' ? Buffer.from(data, 'utf8') : data))
  }

  /** Renames every staged file to its final name. */
  async commit(): Promise<void> {
    for (const { tmp, final } of this.staged) {
      if (existsSync(final)) throw new Error(`${final} appeared while exporting; nothing was replaced`)
      await rename(tmp, final)
    }
    await fsyncDir(this.dir)
  }

  /** Removes every temporary file (the final names were never written). */
  async abort(): Promise<void> {
    await Promise.all(this.staged.map(({ tmp }) => rm(tmp, { force: true })))
  }
}

/** Runs `body` on a staged folder, committing on success and cleaning up on any failure. */
export async function withStagedFolder<T>(
  dir: string, names: string[], opts: StagedOptions, body: (folder: StagedFolder) => Promise<T>
): Promise<T> {
  const folder = await StagedFolder.create(dir, names, opts)
  try {
    const out = await body(folder)
    await folder.commit()
    return out
  } catch (err) {
    await folder.abort()
    throw err
  }
}
