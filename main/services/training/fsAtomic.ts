// Durable writes: temp file in the same folder, fsync, rename, fsync of the folder. A crash
// leaves either the old file or the new one, never half of one.
import { open, rename, rm } from 'node:fs/promises'
import { dirname, basename, join } from 'node:path'

export async function fsyncDir(dir: string): Promise<void> {
  const h = await open(dir, 'r')
  try {
    await h.sync()
  } finally {
    await h.close()
  }
}

export async function writeFileAtomic(file: string, data: string | Uint8Array): Promise<void> {
  const tmp = join(dirname(file), `.${basename(file)}.tmp-${process.pid}`)
  const h = await open(tmp, 'w')
  try {
    await h.writeFile(data)
    await h.sync()
  } finally {
    await h.close()
  }
  try {
    await rename(tmp, file)
  } catch (err) {
    await rm(tmp, { force: true })
    throw err
  }
  await fsyncDir(dirname(file))
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
