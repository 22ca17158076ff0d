// The export channels: one export per destination folder at a time, progress pushed on
// export.progress, cancel by destination.
import { resolve } from 'node:path'
import type { Emit, Handlers } from '../../../preload/contract'
import { exportModel } from './index'

export type ExportHandlers = Pick<Handlers, 'export.start' | 'export.cancel'>

export function createExportHandlers(opts: { emit: Emit }, onClose: (close: () => void) => void = () => {}): ExportHandlers {
  const running = new Map<string, AbortController>()
  onClose(() => running.forEach((c) => c.abort()))
  return {
    'export.start': async (request) => {
      const out = resolve(request.out?.trim() || '.')
      if (running.has(out)) throw new Error(`An export to ${out} is already running`)
      const controller = new AbortController()
      running.set(out, controller)
      let last = 0
      try {
        return await exportModel(request, {
          signal: controller.signal,
          onProgress: (p) => {
            // A few updates a second are enough for a progress bar.
            const now = Date.now()
            if (now - last < 100 && p.bytes < p.totalBytes) return
            last = now
            opts.emit('export.progress', p)
          }
        })
      } finally {
        running.delete(out)
      }
    },
    'export.cancel': async (out) => {
      const c = running.get(resolve(out))
      if (!c) return false
      c.abort()
      return true
    }
  }
}
