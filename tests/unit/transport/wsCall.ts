// The serve-mode tests' client side of one contract call over the WebSocket: sends
// {id, channel, args} and resolves with the response that carries the same id.
import type WebSocket from 'ws'
import type { BridgeResponse } from '../../../preload/types/bridge'

export function wsCall(socket: WebSocket, id: number, channel: string, args: unknown): Promise<BridgeResponse> {
  return new Promise((resolve) => {
    const onMessage = (data: WebSocket.RawData) => {
      const message = JSON.parse(data.toString()) as BridgeResponse
      if ('id' in message && message.id === id) {
        socket.off('message', onMessage)
        resolve(message)
      }
    }
    socket.on('message', onMessage)
    socket.send(JSON.stringify({ id, channel, args }))
  })
}
