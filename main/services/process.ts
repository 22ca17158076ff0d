// Whether another process (a run's trainer, an import) is still alive, from its pid.

/** Signal 0 checks existence without signalling. EPERM means the process exists but belongs
 *  to someone else: it is alive. */
export function processAlive(pid: number): boolean {
  try {
    process.kill(pid, 0)
    return true
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM'
  }
}
