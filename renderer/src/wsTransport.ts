// The contract over a WebSocket (serve mode): requests carry ids and are answered out of order;
// events arrive as {event, payload}. The access token comes from the URL once and is kept in
// sessionStorage, so reloads of the tab keep working after the token is dropped from the URL.
import type { EventChannel, InvokeChannel } from '../../preload/contract'
import type { BridgeEvent, BridgeRequest, BridgeResponse } from '../../preload/types/bridge'

const tokenKey = 'tunebench.token'

/** Reads ?token= from the page URL into sessionStorage and removes it from the address bar. */
export function takeAccessToken(location: Location, storage: Storage, history: History): string | null {
  const url = new URL(location.href)
  const fromUrl = url.searchParams.get('token')
  if (fromUrl) {
    storage.setItem(tokenKey, fromUrl)
    url.searchParams.delete('token')
    history.replaceState(history.state, '', url.pathname + url.search + url.hash)
  }
  return storage.getItem(tokenKey)
}

interface Pending {
  resolve: (value: unknown) => void
  reject: (reason: Error) => void
}

export class WsTransport {
  private socket: WebSocket | null = null
  private opening: Promise<WebSocket> | null = null
  private nextId = 1
  private readonly pending = new Map<number, Pending>()
  private readonly listeners = new Map<string, Set<(payload: unknown) => void>>()
  private retryDelay = 500

  constructor(private readonly url: string | null) {}

  invoke = async (channel: InvokeChannel, args: unknown[]): Promise<unknown> => {
    const socket = await this.connect()
    const id = this.nextId++
    return new Promise((resolve, reject) => {
      this.pending.set(id, { resolve, reject })
      socket.send(JSON.stringify({ id, channel, args } satisfies BridgeRequest))
    })
  }

  on = (channel: EventChannel, listener: (payload: unknown) => void): (() => void) => {
    let set = this.listeners.get(channel)
    if (!set) this.listeners.set(channel, (set = new Set()))
    set.add(listener)
    // Events only flow over an open socket, so subscribing opens one.
    void this.connect().catch(() => undefined)
    return () => {
      set.delete(listener)
    }
  }

  private connect(): Promise<WebSocket> {
    if (this.socket?.readyState === WebSocket.OPEN) return Promise.resolve(this.socket)
    if (this.opening) return this.opening
    if (!this.url) {
      return Promise.reject(new Error('No access token: open the URL (with ?token=...) that `npm run serve` printed'))
    }
    const url = this.url
    this.opening = new Promise<WebSocket>((resolve, reject) => {
      const socket = new WebSocket(url)
      socket.onopen = () => {
        this.socket = socket
        this.opening = null
        this.retryDelay = 500
        resolve(socket)
      }
      socket.onmessage = (message) => this.receive(String(message.data))
      socket.onclose = (event) => {
        const wasOpen = this.socket === socket
        this.socket = null
        this.opening = null
        const error = new Error(
          wasOpen ? 'Connection to the Tunebench server was lost' : 'Cannot connect to the Tunebench server (is `npm run serve` running, and is the token right?)'
        )
        for (const pending of this.pending.values()) pending.reject(error)
        this.pending.clear()
        if (!wasOpen) reject(error)
        // Keep event subscriptions alive across server restarts and network blips.
        if (this.listeners.size > 0 && event.code !== 4400) this.scheduleReconnect()
      }
    })
    return this.opening
  }

  private scheduleReconnect(): void {
    const delay = this.retryDelay
    this.retryDelay = Math.min(this.retryDelay * 2, 10_000)
    setTimeout(() => void this.connect().catch(() => undefined), delay)
  }

  private receive(text: string): void {
    const message = JSON.parse(text) as BridgeResponse | BridgeEvent
    if ('event' in message) {
      for (const listener of this.listeners.get(message.event) ?? []) listener(message.payload)
      return
    }
    const pending = this.pending.get(message.id)
    if (!pending) return
    this.pending.delete(message.id)
    if (message.ok) pending.resolve(message.result)
    else {
      const error = new Error(message.error.message)
      error.name = message.error.name
      pending.reject(error)
    }
  }
}
