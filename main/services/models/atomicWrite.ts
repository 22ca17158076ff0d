import { open, rename, unlink } from 'node:fs/promises'
import { randomBytes } from 'node:crypto'

/** Writes a file so that readers see the old content or the new, never a torn one: the bytes
 *  go to a temp file in the same folder, are fsynced, then renamed over the target. */
export async function writeFileAtomic(path: string, content: string | Uint8Array): Promise<void> {
  const temp = `${path}.${randomBytes(6).toString('hex')}.tmp`
  const handle = await open(temp, 'w')
  try {
    await handle.writeFile(content)
    await handle.sync()
  } catch (err) {
    await handle.close()
    await unlink(temp).catch(() => undefined)
    throw err
  }
  await handle.close()
  try {
    await rename(temp, path)
  } catch (err) {
    await unlink(temp).catch(() => undefined)
    throw err
  }
}
