// serve mode's server: the built renderer over HTTP plus the IPC contract over a WebSocket, on
// one port. Access needs the random token of this run (query `?token=` or the cookie set on the
// first good request); a browser page from any other origin is refused, so a web page the user
// visits cannot drive the workbench through their browser.
import { randomBytes, timingSafeEqual } from 'node:crypto'
import { createReadStream } from 'node:fs'
import { realpath, stat } from 'node:fs/promises'
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http'
import type { AddressInfo } from 'node:net'
import { extname, join, normalize, resolve, sep } from 'node:path'
import type { Duplex } from 'node:stream'
import { WebSocketServer, type WebSocket } from 'ws'
import type { Emit, Handlers } from '../../preload/contract'
import { bridgeProtocolError, type BridgeEvent, type BridgeRequest, type BridgeResponse } from '../../preload/types/bridge'
import { invokeHandler } from './invoke'

export interface ServeOptions {
  host: string
  /** 0 picks a free port. */
  port: number
  /** The built renderer (out/renderer). */
  rendererDir: string
  /** Given the emit function of this server, returns the handlers it serves. */
  createHandlers: (emit: Emit) => Handlers
  /** Fixed token (tests); random otherwise. */
  token?: string
  /** Clock of the wrong-token back-off (tests); Date.now otherwise. */
  now?: () => number
}

export interface ServeServer {
  url: string
  origin: string
  token: string
  port: number
  emit: Emit
  close(): Promise<void>
}

const contentTypes: Record<string, string> = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.mjs': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.json': 'application/json; charset=utf-8',
  '.svg': 'image/svg+xml',
  '.png': 'image/png',
  '.ico': 'image/x-icon',
  '.woff2': 'font/woff2',
  '.map': 'application/json; charset=utf-8'
}

const loopbackHosts = new Set(['127.0.0.1', 'localhost', '::1', '[::1]'])

/** The largest WebSocket message a client may send; a larger one closes its socket (1009). */
export const maxMessageBytes = 64 * 1024 * 1024

// Wrong tokens one address may send before it has to wait; each further one doubles the wait.
const freeFailures = 5
const firstWaitMs = 1000
const maxWaitMs = 60_000

/**
 * Guessing the token from one address is slowed down: after `freeFailures` wrong ones, the
 * address waits (429, Retry-After) before its next try is checked; each further one doubles the
 * wait, up to `maxWaitMs`; a right one resets it. Addresses are kept most recent last and the
 * oldest is forgotten past `maxAddresses`, so guesses from ever new addresses cannot grow the
 * table without bound.
 */
export class TokenBackoff {
  private readonly failures = new Map<string, { count: number; until: number }>()
  constructor(
    private readonly now: () => number = Date.now,
    readonly maxAddresses = 4096
  ) {}

  get size(): number {
    return this.failures.size
  }

  waitMs(address: string): number {
    return Math.max(0, (this.failures.get(address)?.until ?? 0) - this.now())
  }

  fail(address: string): void {
    const count = (this.failures.get(address)?.count ?? 0) + 1
    const until = count >= freeFailures ? this.now() + Math.min(firstWaitMs * 2 ** (count - freeFailures), maxWaitMs) : 0
    this.failures.delete(address)
    this.failures.set(address, { count, until })
    if (this.failures.size > this.maxAddresses) this.failures.delete(this.failures.keys().next().value!)
  }

  reset(address: string): void {
    this.failures.delete(address)
  }
}

export async function startServeServer(options: ServeOptions): Promise<ServeServer> {
  const token = options.token ?? randomBytes(24).toString('base64url')
  const now = options.now ?? Date.now
  // Its real path: files are served only when their real path (links followed) lies inside.
  const rendererDir = await realpath(resolve(options.rendererDir)).catch(() => resolve(options.rendererDir))
  const sockets = new Set<WebSocket>()
  const emit: Emit = (channel, payload) => {
    const frame = JSON.stringify({ event: channel, payload } satisfies BridgeEvent)
    for (const socket of sockets) if (socket.readyState === socket.OPEN) socket.send(frame)
  }
  const handlers = options.createHandlers(emit)

  const server: Server = createServer()
  await new Promise<void>((resolveListen, reject) => {
    server.once('error', reject)
    server.listen(options.port, options.host, () => {
      server.off('error', reject)
      resolveListen()
    })
  })
  const port = (server.address() as AddressInfo).port
  const urlHost = options.host.includes(':') ? `[${options.host}]` : options.host
  const origin = `http://${urlHost}:${port}`
  const cookieName = `tunebench_token_${port}`

  /** The request target as a URL of this server, or null when it is not a path that parses
   *  ('*', absolute-form, '//' would make the server's own URL parser throw). */
  const requestUrl = (req: IncomingMessage): URL | null => {
    if (!req.url?.startsWith('/')) return null
    try {
      return new URL(origin + req.url)
    } catch {
      return null
    }
  }

  const tokenGiven = (req: IncomingMessage, url: URL): string | null =>
    url.searchParams.get('token') ?? readCookie(req.headers.cookie, cookieName)

  const backoff = new TokenBackoff(now)
  const waitMs = (req: IncomingMessage): number => backoff.waitMs(clientAddress(req))
  const noteFailure = (req: IncomingMessage): void => backoff.fail(clientAddress(req))

  type Access = { ok: true } | { ok: false; status: 400 | 403 | 429; message: string; retryAfter?: number }
  /** Host, Origin and token of a request or upgrade, in that order; wrong tokens count. */
  const access = (req: IncomingMessage, url: URL | null): Access => {
    if (!hostAllowed(req) || !originAllowed(req)) return { ok: false, status: 403, message: 'Forbidden: wrong Host or Origin' }
    if (!url) return { ok: false, status: 400, message: 'Bad request target' }
    const wait = waitMs(req)
    if (wait > 0) {
      const seconds = Math.ceil(wait / 1000)
      return { ok: false, status: 429, message: `Too many wrong tokens from this address (a tab of an earlier run?): try again in ${seconds} s`, retryAfter: seconds }
    }
    const given = tokenGiven(req, url)
    if (given === null || !sameSecret(given, token)) {
      if (given !== null) noteFailure(req)
      return { ok: false, status: 403, message: 'Forbidden: open the URL with the access token that `tunebench serve` printed' }
    }
    backoff.reset(clientAddress(req))
    return { ok: true }
  }

  // A loopback server answers only to loopback host names, which defeats DNS rebinding; a
  // server bound to another interface is reached by names we cannot know, the token guards it.
  const hostAllowed = (req: IncomingMessage): boolean => {
    const host = req.headers.host
    if (!host) return false
    if (!loopbackHosts.has(options.host)) return true
    const name = host.startsWith('[') ? host.slice(0, host.indexOf(']') + 1) : host.split(':')[0]!
    return loopbackHosts.has(name)
  }

  // Browsers send Origin on WebSocket upgrades and on cross-origin fetches; it must be this
  // server's own origin (as the browser reached it).
  const originAllowed = (req: IncomingMessage): boolean => {
    const given = req.headers.origin
    if (given === undefined) return true
    return given === `http://${req.headers.host}`
  }

  server.on('request', (req: IncomingMessage, res: ServerResponse) => {
    const url = requestUrl(req)
    const verdict = access(req, url)
    if (!verdict.ok) return refuse(res, verdict.message, verdict.status, verdict.retryAfter)
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      res.writeHead(405, { Allow: 'GET, HEAD' }).end()
      return
    }
    void serveFile(req, res, url!)
  })

  const serveFile = async (req: IncomingMessage, res: ServerResponse, url: URL) => {
    let pathname: string
    try {
      pathname = decodeURIComponent(url.pathname)
    } catch {
      res.writeHead(400).end()
      return
    }
    const relative = pathname === '/' ? 'index.html' : normalize(pathname).replace(/^[/\\]+/, '')
    const file = join(rendererDir, relative)
    if (!file.startsWith(rendererDir + sep)) return refuse(res, 'Forbidden')
    // A symlink inside the folder must not lead out of it.
    const real = await realpath(file).catch(() => null)
    if (real !== null && !real.startsWith(rendererDir + sep)) return refuse(res, 'Forbidden')
    const info = real === null ? null : await stat(real).catch(() => null)
    if (!info?.isFile()) {
      res.writeHead(404, { 'Content-Type': 'text/plain; charset=utf-8' }).end(
        relative === 'index.html' ? `The renderer is not built (${file} is missing): run npm run build` : 'Not found'
      )
      return
    }
    res.writeHead(200, {
      'Content-Type': contentTypes[extname(file)] ?? 'application/octet-stream',
      'Content-Length': info.size,
      'Cache-Control': 'no-store',
      'X-Content-Type-Options': 'nosniff',
      'Referrer-Policy': 'no-referrer',
      // The page's own CSP (a meta tag) applies too; frame-ancestors only works as a header.
      'Content-Security-Policy': "frame-ancestors 'none'",
      // Lets assets (which carry no ?token=) and reloads through after the first visit.
      'Set-Cookie': `${cookieName}=${token}; Path=/; HttpOnly; SameSite=Strict`
    })
    if (req.method === 'HEAD') return void res.end()
    // A file removed or unreadable between stat and read ends this response, not the server.
    createReadStream(real!).on('error', () => res.destroy()).pipe(res)
  }

  const wss = new WebSocketServer({ noServer: true, maxPayload: maxMessageBytes })
  server.on('upgrade', (req: IncomingMessage, socket: Duplex, head: Buffer) => {
    // Node leaves an upgrade's socket without an error listener: a client's reset must not crash us.
    socket.on('error', () => socket.destroy())
    const url = requestUrl(req)
    const verdict: Access =
      url?.pathname !== '/ws' || req.headers.origin === undefined ? { ok: false, status: 403, message: 'Forbidden' } : access(req, url)
    if (!verdict.ok) {
      const status = { 400: '400 Bad Request', 403: '403 Forbidden', 429: '429 Too Many Requests' }[verdict.status]
      const retryAfter = verdict.retryAfter === undefined ? '' : `Retry-After: ${verdict.retryAfter}\r\n`
      socket.end(`HTTP/1.1 ${status}\r\n${retryAfter}Connection: close\r\nContent-Length: 0\r\n\r\n`)
      return
    }
    wss.handleUpgrade(req, socket, head, (ws) => {
      sockets.add(ws)
      ws.on('close', () => sockets.delete(ws))
      // Broken frames (bad masking or opcode, invalid UTF-8, over maxMessageBytes): ws has already
      // closed the socket with the code that says why (1002, 1007, 1009); without a listener the
      // error would crash the server for every client.
      ws.on('error', () => undefined)
      ws.on('message', (data, isBinary) => {
        let request: BridgeRequest
        try {
          if (isBinary) throw new Error('binary frame')
          request = JSON.parse(data.toString()) as BridgeRequest
          if (!Number.isSafeInteger(request.id)) throw new Error('missing id')
        } catch {
          ws.close(bridgeProtocolError, 'Expected JSON {id, channel, args}')
          return
        }
        void invokeHandler(handlers, request.channel, request.args).then((outcome) => {
          if (ws.readyState !== ws.OPEN) return
          ws.send(JSON.stringify({ id: request.id, ...outcome } as BridgeResponse))
        })
      })
    })
  })

  return {
    url: `${origin}/?token=${token}`,
    origin,
    token,
    port,
    emit,
    close: async () => {
      for (const socket of sockets) socket.close(1001, 'server shutting down')
      wss.close()
      server.closeAllConnections()
      await new Promise<void>((done) => server.close(() => done()))
    }
  }
}

function refuse(res: ServerResponse, message: string, status = 403, retryAfter?: number): void {
  const headers: Record<string, string> = { 'Content-Type': 'text/plain; charset=utf-8' }
  if (retryAfter !== undefined) headers['Retry-After'] = String(retryAfter)
  res.writeHead(status, headers).end(message + '\n')
}

function clientAddress(req: IncomingMessage): string {
  return req.socket.remoteAddress ?? ''
}

function readCookie(header: string | undefined, name: string): string | null {
  if (!header) return null
  for (const part of header.split(';')) {
    const [key, ...value] = part.trim().split('=')
    if (key === name) return value.join('=')
  }
  return null
}

function sameSecret(given: string, token: string): boolean {
  const a = Buffer.from(given)
  const b = Buffer.from(token)
  return a.length === b.length && timingSafeEqual(a, b)
}
