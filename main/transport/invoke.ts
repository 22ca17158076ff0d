// Runs one contract call on the handlers, whatever carried it (IPC or WebSocket): the channel
// must be one the contract lists and its arguments must match the channel's schema
// (argSchemas.ts) before the handler is called, and errors become plain {name, message} data,
// because Error objects do not survive structured clone or JSON with their message intact.
import { invokeChannels, type Handlers, type InvokeChannel } from '../../preload/contract'
import type { BridgeError } from '../../preload/types/bridge'
import { checkArgs } from './argSchemas'

export type InvokeOutcome = { ok: true; result: unknown } | { ok: false; error: BridgeError }

const known = new Set<string>(invokeChannels)

export function isInvokeChannel(channel: unknown): channel is InvokeChannel {
  return typeof channel === 'string' && known.has(channel)
}

export async function invokeHandler(handlers: Handlers, channel: unknown, args: unknown): Promise<InvokeOutcome> {
  if (!isInvokeChannel(channel)) return { ok: false, error: { name: 'ProtocolError', message: `Unknown channel ${JSON.stringify(channel)}` } }
  if (!Array.isArray(args)) return { ok: false, error: { name: 'ProtocolError', message: `${channel}: arguments must be a list` } }
  const checked = checkArgs(channel, args)
  if (!checked.ok) return { ok: false, error: { name: 'ProtocolError', message: checked.message } }
  try {
    const handler = handlers[channel] as (...a: unknown[]) => Promise<unknown>
    return { ok: true, result: await handler(...checked.args) }
  } catch (err) {
    return { ok: false, error: toBridgeError(err) }
  }
}

export function toBridgeError(err: unknown): BridgeError {
  if (err instanceof Error) return { name: err.name, message: err.message }
  return { name: 'Error', message: String(err) }
}
