import type { Ref } from 'vue'

/** The message of an error from a call, for showing to the user. */
export function errorMessage(err: unknown): string {
  const message = err instanceof Error ? err.message : String(err)
  // Errors carried over IPC arrive wrapped ("Error invoking remote method 'x': Error: ...").
  return message.replace(/^Error invoking remote method '[^']+': (\w*Error: )?/, '')
}

/**
 * Runs a call for a view or store: clears `error` first, puts the call's message there if it
 * fails (returning undefined), and holds `busy` true while it runs.
 */
export function guarded(error: Ref<string | null>, busy?: Ref<boolean>) {
  return async <T>(work: () => Promise<T>): Promise<T | undefined> => {
    if (busy) busy.value = true
    error.value = null
    try {
      return await work()
    } catch (err) {
      error.value = errorMessage(err)
      return undefined
    } finally {
      if (busy) busy.value = false
    }
  }
}
