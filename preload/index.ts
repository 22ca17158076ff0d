// The preload of the sandboxed renderer: exposes the contract's verbs as `window.api` and
// nothing else (ipcRenderer itself never crosses the bridge).
import { contextBridge, ipcRenderer, type IpcRendererEvent } from 'electron'
import { buildApi, eventChannels, type EventChannel, type InvokeChannel } from './contract'
import type { BridgeError } from './types/bridge'

type Outcome = { ok: true; result: unknown } | { ok: false; error: BridgeError }

const events = new Set<string>(eventChannels)

async function invoke(channel: InvokeChannel, args: unknown[]): Promise<unknown> {
  const outcome = (await ipcRenderer.invoke(channel, ...args)) as Outcome
  if (outcome.ok) return outcome.result
  const error = new Error(outcome.error.message)
  error.name = outcome.error.name
  throw error
}

function on(channel: EventChannel, listener: (payload: unknown) => void): () => void {
  if (!events.has(channel)) throw new Error(`Unknown event channel ${String(channel)}`)
  // The wrapper drops the IpcRendererEvent, which would hand the page a handle to ipcRenderer.
  const wrapper = (_event: IpcRendererEvent, payload: unknown) => listener(payload)
  ipcRenderer.on(channel, wrapper)
  return () => {
    ipcRenderer.removeListener(channel, wrapper)
  }
}

contextBridge.exposeInMainWorld('api', buildApi(invoke, on))
