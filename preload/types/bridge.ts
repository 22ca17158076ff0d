// Messages of the WebSocket bridge that carries the IPC contract in serve mode (JSON text frames).

/** Renderer -> main: call an invoke channel. */
export interface BridgeRequest {
  id: number
  channel: string
  args: unknown[]
}

/** Main -> renderer: the answer to one request, matched by id. */
export type BridgeResponse =
  | { id: number; ok: true; result: unknown }
  | { id: number; ok: false; error: BridgeError }

/** Main -> renderer: an event of the contract's EventMap. */
export interface BridgeEvent {
  event: string
  payload: unknown
}

export interface BridgeError {
  name: string
  message: string
}

/** Close code the server uses when a socket breaks the protocol. */
export const bridgeProtocolError = 4400
