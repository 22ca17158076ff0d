// What a person reads when a write fails because of the disk: full, over quota, read-only or
// not writable. One wording for every writer (labels, imports, checkpoints, exports), from
// Node's errno codes and SQLite's result codes alike; anything else is not a disk error.
import { accessSync, constants, existsSync } from 'node:fs'
import { dirname } from 'node:path'

export type DiskProblem = 'full' | 'quota' | 'read-only' | 'permission' | 'io'

/** The disk problem behind `err`, or null when it is some other failure. `path` is the file or
 *  folder being written (SQLite's "cannot open" is told apart by whether its folder is writable). */
export function diskProblem(err: unknown, path: string): DiskProblem | null {
  const code = String((err as { code?: unknown } | null)?.code ?? '')
  if (code === 'ENOSPC' || code === 'SQLITE_FULL') return 'full'
  if (code === 'EDQUOT') return 'quota'
  if (code === 'EROFS' || code.startsWith('SQLITE_READONLY')) return 'read-only'
  if (code === 'EACCES' || code === 'EPERM') return 'permission'
  if (code.startsWith('SQLITE_IOERR')) return 'io'
  // The engine's writes throw without a code; their message carries the C library's text.
  const message = err instanceof Error ? err.message : ''
  if (!code && /No space left on device/i.test(message)) return 'full'
  if (!code && /Disk quota exceeded/i.test(message)) return 'quota'
  if (!code && /Read-only file system/i.test(message)) return 'read-only'
  // SQLite's "cannot open" and Node's recursive mkdir (which reports ENOENT where the disk is
  // read-only) are told apart by whether the nearest existing folder can be written.
  if (code === 'SQLITE_CANTOPEN' || (code === 'ENOENT' && (err as NodeJS.ErrnoException).syscall === 'mkdir')) {
    let dir = dirname(path)
    while (!existsSync(dir) && dirname(dir) !== dir) dir = dirname(dir)
    try {
      accessSync(dir, constants.W_OK)
    } catch (e) {
      return (e as NodeJS.ErrnoException).code === 'EROFS' ? 'read-only' : 'permission'
    }
  }
  return null
}

const WHAT: Record<DiskProblem, (path: string) => string> = {
  full: (p) => `Disk full while writing ${p}`,
  quota: (p) => `Disk quota exceeded while writing ${p}`,
  'read-only': (p) => `${p} is on a read-only disk`,
  permission: (p) => `No permission to write ${p}`,
  io: (p) => `The disk failed while writing ${p}`
}

const ADVICE: Record<DiskProblem, string> = {
  full: 'free some space and try again',
  quota: 'free some space and try again',
  'read-only': 'choose a folder on a writable disk',
  permission: 'choose a folder you can write to',
  io: 'check the disk and try again'
}

export class DiskError extends Error {
  readonly problem: DiskProblem
  readonly path: string
  constructor(problem: DiskProblem, path: string, kept: string, cause?: unknown) {
    super(`${WHAT[problem](path)}; ${kept} (${ADVICE[problem]})`, { cause })
    this.name = 'DiskError'
    this.problem = problem
    this.path = path
  }
}

/** `err` as a DiskError saying what was kept (e.g. "earlier labels are intact") when the disk
 *  caused it; otherwise `err` itself. */
export function asDiskError(err: unknown, path: string, kept: string): unknown {
  if (err instanceof DiskError) return err
  const problem = diskProblem(err, path)
  return problem ? new DiskError(problem, path, kept, err) : err
}
