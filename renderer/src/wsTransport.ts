// The contract over a WebSocket (serve mode): requests carry ids and are answered out of order;
// events arrive as {event, payload}. The access token comes from the URL once and is kept in
// sessionStorage, so reloads of the tab keep working after the token is dropped from the URL.
import type { EventChannel, InvokeChannel } from '../../preload/contract'
import type { BridgeEvent, BridgeRequest, BridgeResponse } from '../../preload/types/bridge'

const tokenKey = 'tunebench.token'

/** What takeAccessToken needs of window.location and window.history. */
interface PageLocation { readonly href: string }
interface PageHistory { readonly state: unknown; replaceState(data: unknown, unused: string, url?: string | null): void }

/** Reads ?token= from the page URL into sessionStorage and removes it from the address bar. */
export function takeAccessToken(location: PageLocation, storage: Storage, history: PageHistory): string | null {
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
  private retired: Error | null = null

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
    if (this.retired) return Promise.reject(this.retired)
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
        // Keep event subscriptions alive across network blips and server restarts.
        if (this.listeners.size > 0 && event.code !== 4400) {
          if (wasOpen) this.scheduleReconnect()
          else void this.serverUp().then((up) => (up ? this.retire() : this.scheduleReconnect()))
        }
      }
    })
    return this.opening
  }

  /** Whether the server answers HTTP: asked without the token (cookies omitted), so the
   *  question is not a wrong guess that the server's back-off would count. */
  private async serverUp(): Promise<boolean> {
    try {
      await fetch(new URL('/', this.url!).href.replace(/^ws/, 'http'), { method: 'HEAD', credentials: 'omit' })
      return true
    } catch {
      return false
    }
  }

  /** The server is up but refused this tab's socket: its token belongs to an earlier run of
   *  `tunebench serve` (each run prints a new one). Retrying would only count as wrong guesses
   *  and slow down the tab opened with the new URL, so this tab stops. */
  private retire(): void {
    this.retired = new Error('This tab belongs to an earlier run of `tunebench serve`: open the URL (with ?token=...) that it printed now')
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
