// Durable writes for the whole main process: the bytes go to a temp file in the same folder,
// are fsynced, renamed over the target, and the folder is fsynced so the rename itself
// survives a crash. Readers see the old file or the new one, never half of one.
import { closeSync, fsyncSync, openSync, renameSync, rmSync, writeSync } from 'node:fs'
import { open, rename, rm } from 'node:fs/promises'
import { randomBytes } from 'node:crypto'
import { basename, dirname, join } from 'node:path'

/** A temp name beside the target, unique per call so concurrent writes never share one. */
function tempPath(file: string): string {
  return join(dirname(file), `.${basename(file)}.tmp-${process.pid}-${randomBytes(4).toString('hex')}`)
}

export async function fsyncDir(dir: string): Promise<void> {
  const h = await open(dir, 'r')
  try {
    await h.sync()
  } finally {
    await h.close()
  }
}

export async function writeFileAtomic(file: string, data: string | Uint8Array): Promise<void> {
  const tmp = tempPath(file)
  try {
    const h = await open(tmp, 'w')
    try {
      await h.writeFile(data)
      await h.sync()
    } finally {
      await h.close()
    }
    await rename(tmp, file)
  } catch (err) {
    await rm(tmp, { force: true })
    throw err
  }
  await fsyncDir(dirname(file))
}

/** writeFileAtomic for callers that stream many chunks synchronously (exports); returns how
 *  many chunks were written. */
export function writeFileAtomicSync(file: string, chunks: Iterable<string>): number {
  const tmp = tempPath(file)
  let n = 0
  try {
    const fd = openSync(tmp, 'w')
    try {
      let buf: string[] = []
      let size = 0
      for (const chunk of chunks) {
        buf.push(chunk)
        size += chunk.length
        n++
        if (size > 1 << 20) {
          writeSync(fd, buf.join(''))
          buf = []
          size = 0
        }
      }
      if (buf.length) writeSync(fd, buf.join(''))
      fsyncSync(fd)
    } finally {
      closeSync(fd)
    }
    renameSync(tmp, file)
  } catch (err) {
    rmSync(tmp, { force: true })
    throw err
  }
  const dir = openSync(dirname(file), 'r')
  try {
    fsyncSync(dir)
  } finally {
    closeSync(dir)
  }
  return n
}

/** Appends one line and makes it durable before returning. */
export async function appendLineDurable(file: string, line: string): Promise<void> {
  const h = await open(file, 'a')
  try {
    await h.write(line.endsWith('\n') ? line : line + '\n')
    await h.sync()
  } finally {
    await h.close()
  }
}
