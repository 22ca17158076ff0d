// Binds the contract's invoke channels to Electron's ipcMain. Only the app's own window, showing
// the app's own page, may call; anything else (a stray frame, a navigated-away page) is refused.
import type { IpcMain, IpcMainInvokeEvent } from 'electron'
import { invokeChannels, type Handlers } from '../../preload/contract'
import { invokeHandler, type InvokeOutcome } from './invoke'

export function bindIpc(ipcMain: IpcMain, handlers: Handlers, isTrustedSender: (event: IpcMainInvokeEvent) => boolean): () => void {
  for (const channel of invokeChannels) {
    ipcMain.handle(channel, async (event, ...args: unknown[]): Promise<InvokeOutcome> => {
      if (!isTrustedSender(event)) {
        return { ok: false, error: { name: 'SecurityError', message: `${channel}: refused, the call did not come from the Tunebench window` } }
      }
      return invokeHandler(handlers, channel, args)
    })
  }
  return () => invokeChannels.forEach((channel) => ipcMain.removeHandler(channel))
}

/** True when the call comes from the given window's top frame while it shows the app's page:
 *  an iframe, another window, or a page navigated elsewhere gets no access to the services. */
export function isFromAppFrame(event: IpcMainInvokeEvent, webContentsId: number | null, isAppUrl: (url: string) => boolean): boolean {
  if (webContentsId === null || event.sender.id !== webContentsId) return false
  const frame = event.senderFrame
  if (!frame || frame !== event.sender.mainFrame) return false
  return isAppUrl(frame.url)
}
