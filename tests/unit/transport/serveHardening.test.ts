// Serve mode under hostile input, against a real server on a free port: paths that try to leave
// the renderer folder, broken WebSocket frames and messages, guessed tokens (and the back-off
// that slows the guessing), and the token never showing up where it was not handed out.
import { spawn } from 'node:child_process'
import * as crypto from 'node:crypto'
import { mkdir, mkdtemp, rm, symlink, writeFile } from 'node:fs/promises'
import { request } from 'node:http'
import { connect as connectTcp, type Socket } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from 'vitest'
import WebSocket from 'ws'
import type { BridgeResponse } from '../../../preload/types/bridge'
import { createServices } from '../../../main/services'
import { maxMessageBytes, startServeServer, TokenBackoff, type ServeOptions, type ServeServer } from '../../../main/transport/serveServer'
import { wsCall } from './wsCall'

// Passes through to the real function; lets the token tests see that every guess of the token's
// length is compared with it.
vi.mock('node:crypto', async (importOriginal) => {
  const real = await importOriginal<typeof import('node:crypto')>()
  return { ...real, timingSafeEqual: vi.fn(real.timingSafeEqual) }
})

const repoRoot = join(import.meta.dirname, '..', '..', '..')
const secret = 'outside the renderer'
let root: string
let rendererDir: string

beforeAll(async () => {
  root = await mkdtemp(join(tmpdir(), 'tunebench-serve-hard-'))
  rendererDir = join(root, 'renderer')
  await mkdir(join(rendererDir, 'assets'), { recursive: true })
  await writeFile(join(rendererDir, 'index.html'), '<!doctype html><title>Tunebench</title>')
  await writeFile(join(rendererDir, 'assets', 'app.js'), 'console.log(1)')
  await writeFile(join(root, 'secret.txt'), secret)
  await mkdir(join(root, 'private'))
  await writeFile(join(root, 'private', 'key.txt'), secret)
  // Links inside the renderer folder that lead out of it, and one that stays inside.
  await symlink(join(root, 'secret.txt'), join(rendererDir, 'leak.txt'))
  await symlink('../private', join(rendererDir, 'assets', 'up'))
  await symlink('assets/app.js', join(rendererDir, 'alias.js'))
})

afterAll(async () => {
  await rm(root, { recursive: true, force: true })
})

// The servers run in this process: an error they leave unhandled would crash `tunebench serve`,
// so it fails the test that caused it (vitest alone would only report it after the run).
const uncaught: Error[] = []
const noteUncaught = (error: Error) => void uncaught.push(error)
beforeAll(() => void process.on('uncaughtExceptionMonitor', noteUncaught))
afterAll(() => void process.off('uncaughtExceptionMonitor', noteUncaught))
afterEach(() => {
  const errors = uncaught.splice(0)
  expect(errors.map((e) => `${e.name}: ${e.message}`), 'errors the server left unhandled').toEqual([])
})

async function start(extra: Partial<ServeOptions> = {}): Promise<ServeServer> {
  return startServeServer({
    host: '127.0.0.1',
    port: 0,
    rendererDir,
    createHandlers: (emit) => createServices({ dataDir: join(root, `data-${Math.random().toString(36).slice(2)}`), emit }).handlers,
    ...extra
  })
}

/** The promise, or an error naming what did not come within limitMs (a hung server fails fast). */
function within<T>(promise: Promise<T>, what: string, limitMs = 5000): Promise<T> {
  let timer: NodeJS.Timeout | undefined
  const limit = new Promise<never>((_, reject) => (timer = setTimeout(() => reject(new Error(`no ${what} within ${limitMs} ms`)), limitMs)))
  return Promise.race([promise, limit]).finally(() => clearTimeout(timer))
}

interface Reply {
  status: number
  headers: Record<string, string | string[] | undefined>
  body: string
}

function get(server: ServeServer, path: string, headers: Record<string, string> = {}, localAddress?: string): Promise<Reply> {
  return new Promise((resolve, reject) => {
    const req = request(`${server.origin}${path}`, { headers, localAddress }, (res) => {
      let body = ''
      res.setEncoding('utf8')
      res.on('data', (c: string) => (body += c))
      res.on('end', () => resolve({ status: res.statusCode!, headers: res.headers, body }))
    })
    req.on('error', reject)
    req.end()
  })
}

/** Sends the request target byte for byte (http.request would refuse or rewrite most of these). */
function raw(server: ServeServer, target: string, headers: Record<string, string> = {}): Promise<Reply> {
  let socket: Socket | undefined
  const reply = new Promise<Reply>((resolve, reject) => {
    socket = connectTcp(server.port, '127.0.0.1')
    const chunks: Buffer[] = []
    socket.on('data', (c: Buffer) => chunks.push(c))
    socket.on('error', reject)
    socket.on('close', () => {
      const text = Buffer.concat(chunks).toString('latin1')
      const [head = '', ...rest] = text.split('\r\n\r\n')
      const [statusLine = '', ...lines] = head.split('\r\n')
      const status = Number(/^HTTP\/1\.1 (\d{3})/.exec(statusLine)?.[1] ?? 0)
      const parsed: Record<string, string> = {}
      for (const line of lines) parsed[line.slice(0, line.indexOf(':')).toLowerCase()] = line.slice(line.indexOf(':') + 1).trim()
      resolve({ status, headers: parsed, body: rest.join('\r\n\r\n') })
    })
    const all = { Host: `127.0.0.1:${server.port}`, Connection: 'close', ...headers }
    socket.write(Buffer.from(`GET ${target} HTTP/1.1\r\n${Object.entries(all).map(([k, v]) => `${k}: ${v}\r\n`).join('')}\r\n`, 'latin1'))
  })
  return within(reply, `answer to GET ${JSON.stringify(target)}`).finally(() => socket?.destroy())
}

function openSocket(server: ServeServer, token = server.token, localAddress?: string): Promise<WebSocket> {
  return new Promise((resolve, reject) => {
    const socket = new WebSocket(`ws://127.0.0.1:${server.port}/ws?token=${encodeURIComponent(token)}`, { origin: server.origin, localAddress })
    socket.once('open', () => resolve(socket))
    socket.once('unexpected-response', (_req, res) => {
      const error = new Error(`HTTP ${res.statusCode}`) as Error & { retryAfter?: string }
      error.retryAfter = res.headers['retry-after']
      reject(error)
    })
    socket.once('error', reject)
  })
}

function call(socket: WebSocket, id: number, channel: string, args: unknown): Promise<BridgeResponse> {
  return within(wsCall(socket, id, channel, args), `answer to ${channel}`)
}

function closed(socket: WebSocket): Promise<{ code: number; reason: string }> {
  return within(new Promise((resolve) => {
    socket.on('error', () => undefined) // a reset while we still send is part of being thrown out
    socket.once('close', (code, reason) => resolve({ code, reason: reason.toString() }))
  }), 'close of the socket')
}

/** A WebSocket opened by hand, to write frames the ws client would never send. */
async function rawSocket(server: ServeServer): Promise<{ socket: Socket; closeFrame: Promise<{ code: number; reason: string } | null> }> {
  const socket = connectTcp(server.port, '127.0.0.1')
  const key = crypto.randomBytes(16).toString('base64')
  socket.write(
    `GET /ws?token=${server.token} HTTP/1.1\r\nHost: 127.0.0.1:${server.port}\r\nOrigin: ${server.origin}\r\n` +
      `Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: ${key}\r\nSec-WebSocket-Version: 13\r\n\r\n`
  )
  let buffer = Buffer.alloc(0)
  let handshake: (() => void) | null = null
  const upgraded = new Promise<void>((resolve) => (handshake = resolve))
  const closeFrame = new Promise<{ code: number; reason: string } | null>((resolve) => {
    socket.on('error', () => undefined)
    socket.on('close', () => resolve(null))
    socket.on('data', (chunk: Buffer) => {
      buffer = Buffer.concat([buffer, chunk])
      if (handshake) {
        const end = buffer.indexOf('\r\n\r\n')
        if (end < 0) return
        expect(buffer.subarray(0, end).toString()).toMatch(/^HTTP\/1\.1 101/)
        buffer = buffer.subarray(end + 4)
        handshake()
        handshake = null
      }
      // The server's close frame: 0x88, length (< 126), code, reason.
      if (buffer.length >= 2 && buffer[0] === 0x88 && buffer.length >= 2 + buffer[1]!) {
        const payload = buffer.subarray(2, 2 + buffer[1]!)
        resolve({ code: payload.readUInt16BE(0), reason: payload.subarray(2).toString() })
      }
    })
  })
  await within(upgraded, 'WebSocket handshake')
  return { socket, closeFrame: within(closeFrame, 'close frame') }
}

/** A masked client frame (mask key 0, so the payload goes as is). */
function frame(firstByte: number, payload: Buffer, masked = true): Buffer {
  return Buffer.concat([Buffer.from([firstByte, (masked ? 0x80 : 0) | payload.length]), masked ? Buffer.alloc(4) : Buffer.alloc(0), payload])
}

async function waitFor(condition: () => boolean, what: string, limitMs = 10_000): Promise<void> {
  const deadline = Date.now() + limitMs
  while (!condition()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`)
    await new Promise((r) => setTimeout(r, 10))
  }
}

/** No reply a test collected may carry the token, except the cookie set on a good request. */
function expectNoToken(replies: Reply[], token: string): void {
  for (const reply of replies) {
    expect(reply.body).not.toContain(token)
    for (const [name, value] of Object.entries(reply.headers)) {
      if (name === 'set-cookie' && reply.status === 200) continue
      expect(String(value)).not.toContain(token)
    }
  }
}

describe('serve mode static files', () => {
  let server: ServeServer
  const cookie = () => `tunebench_token_${server.port}=${server.token}`
  beforeAll(async () => {
    server = await start()
  })
  afterAll(async () => {
    await server.close()
  })

  async function expectAlive(): Promise<void> {
    const page = await get(server, `/?token=${server.token}`)
    expect(page.status).toBe(200)
    expect(page.body).toContain('<title>Tunebench</title>')
  }

  async function expectRefused(targets: string[]): Promise<void> {
    const replies: Reply[] = []
    for (const target of targets) {
      const reply = await raw(server, target, { Cookie: cookie() })
      replies.push(reply)
      expect(reply.status, target).toBeGreaterThanOrEqual(400)
      expect(reply.status, target).toBeLessThan(500)
      expect(reply.body, target).not.toContain(secret)
      await expectAlive()
    }
    expectNoToken(replies, server.token)
  }

  it('serves the page and its assets (the baseline the refusals are measured against)', async () => {
    expect((await raw(server, '/assets/app.js', { Cookie: cookie() })).body).toBe('console.log(1)')
    // A link that stays inside the folder is followed.
    expect((await raw(server, '/alias.js', { Cookie: cookie() })).body).toBe('console.log(1)')
  })

  it('refuses .. in the path, plain and percent-encoded', async () => {
    await expectRefused([
      '/../secret.txt',
      '/assets/../../secret.txt',
      '/..%2fsecret.txt',
      '/assets/..%2f..%2fsecret.txt',
      '/%2e%2e/secret.txt',
      '/%2E%2E/secret.txt',
      '/%2e%2e%2fsecret.txt',
      '/assets/%2e%2e/%2e%2e/secret.txt',
      '/.%2e/private/key.txt'
    ])
  })

  it('refuses double-encoded dots and slashes (decoded once, they are plain names)', async () => {
    await expectRefused(['/%252e%252e/secret.txt', '/%252e%252e%252fsecret.txt', '/assets/%252e%252e%252f%252e%252e%252fsecret.txt'])
  })

  it('refuses backslashes, raw and encoded', async () => {
    await expectRefused(['/..\\secret.txt', '/assets\\..\\..\\secret.txt', '/..%5csecret.txt', '/%5c..%5csecret.txt', '/assets%5c..%5c..%5csecret.txt'])
  })

  it('refuses absolute paths and protocol-relative targets, and answers targets that are not paths with 400', async () => {
    await expectRefused([
      `/${root}/secret.txt`, // //tmp/...: a protocol-relative URL if parsed against a base
      `/%2f${root.slice(1)}/secret.txt`,
      `/${encodeURIComponent(join(root, 'secret.txt'))}`,
      `http://127.0.0.1:${server.port}/../secret.txt`,
      `http://127.0.0.1:${server.port}${root}/secret.txt`,
      '//',
      '//[',
      '//:99999/x',
      '*'
    ])
    for (const target of ['*', `http://127.0.0.1:${server.port}/index.html`]) expect((await raw(server, target, { Cookie: cookie() })).status, target).toBe(400)
  })

  it('refuses NUL bytes, encoded and raw', async () => {
    await expectRefused(['/index.html%00', '/index.html%00.js', '/..%00/secret.txt', '/%00', '/index.html\0'])
  })

  it('does not follow a symlink that leads out of the renderer folder', async () => {
    await expectRefused(['/leak.txt', '/assets/up/key.txt', '/assets/up/../../secret.txt'])
  })

  it('does not crash on a client that resets its connection instead of reading a refusal', async () => {
    for (let i = 0; i < 20; i++) {
      const socket = connectTcp(server.port, '127.0.0.1')
      await new Promise<void>((resolve) => socket.once('connect', () => resolve()))
      socket.on('error', () => undefined)
      socket.write(
        `GET /ws HTTP/1.1\r\nHost: 127.0.0.1:${server.port}\r\nOrigin: ${server.origin}\r\n` +
          `Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: ${crypto.randomBytes(16).toString('base64')}\r\nSec-WebSocket-Version: 13\r\n\r\n`
      )
      socket.resetAndDestroy()
      await expectAlive()
    }
  })
})

describe('serve mode WebSocket messages', () => {
  let server: ServeServer
  let bystander: WebSocket
  let nextId = 1
  beforeAll(async () => {
    server = await start()
    bystander = await openSocket(server)
  })
  afterAll(async () => {
    bystander.close()
    await server.close()
  })

  /** The other client is still connected and answered, and new clients can connect. */
  async function expectOthersServed(): Promise<void> {
    expect(bystander.readyState).toBe(WebSocket.OPEN)
    expect(await call(bystander, nextId++, 'engine.facts', [])).toMatchObject({ ok: true })
    const fresh = await openSocket(server)
    try {
      expect(await call(fresh, 1, 'models.recent', [])).toMatchObject({ id: 1, ok: true })
    } finally {
      fresh.close()
    }
  }

  it('closes the socket with 4400 and a reason on invalid JSON and on requests without an id', async () => {
    for (const text of ['not json', '{"id": 1, "channel": ', 'null', '[]', '"x"', '{"channel":"engine.facts","args":[]}', '{"id":"1","channel":"engine.facts","args":[]}']) {
      const socket = await openSocket(server)
      const done = closed(socket)
      socket.send(text)
      expect({ text, ...(await done) }).toEqual({ text, code: 4400, reason: 'Expected JSON {id, channel, args}' })
      await expectOthersServed()
    }
  })

  it('closes the socket with 4400 and a reason on a binary frame', async () => {
    const socket = await openSocket(server)
    const done = closed(socket)
    socket.send(Buffer.from(JSON.stringify({ id: 1, channel: 'engine.facts', args: [] })), { binary: true })
    expect(await done).toEqual({ code: 4400, reason: 'Expected JSON {id, channel, args}' })
    await expectOthersServed()
  })

  it(`closes the socket with 1009 (message too big) on a message over ${maxMessageBytes} bytes`, async () => {
    const socket = await openSocket(server)
    const done = closed(socket)
    socket.send(Buffer.alloc(maxMessageBytes + 1, 0x20), { binary: false })
    expect((await done).code).toBe(1009)
    await expectOthersServed()
  })

  it('closes the socket with 1007 on a text frame that is not UTF-8', async () => {
    const socket = await openSocket(server)
    const done = closed(socket)
    socket.send(Buffer.from([0x7b, 0xff, 0xfe, 0x7d]), { binary: false })
    expect((await done).code).toBe(1007)
    await expectOthersServed()
  })

  it('closes the socket with 1002 (protocol error) on malformed frames', async () => {
    const frames: Record<string, Buffer> = {
      'unmasked client frame': frame(0x81, Buffer.from('{}'), false),
      'reserved opcode 0x3': frame(0x83, Buffer.from('{}')),
      'RSV1 set without an extension': frame(0xc1, Buffer.from('{}')),
      'continuation without a first fragment': frame(0x80, Buffer.from('{}')),
      'fragmented ping': frame(0x09, Buffer.from('x')),
      'close frame with a 1-byte payload': frame(0x88, Buffer.from([0x03]))
    }
    for (const [name, bytes] of Object.entries(frames)) {
      const { socket, closeFrame } = await rawSocket(server)
      socket.write(bytes)
      const close = await closeFrame
      expect({ name, code: close?.code }).toEqual({ name, code: 1002 })
      socket.destroy()
      await expectOthersServed()
    }
  })

  it('answers an unknown channel, args that are not a list, and wrong argument types with an error, and keeps the socket', async () => {
    const socket = await openSocket(server)
    try {
      const cases: [string, unknown, RegExp][] = [
        ['fs.readFile', ['/etc/passwd'], /^Unknown channel "fs\.readFile"$/],
        ['__proto__', [], /^Unknown channel "__proto__"$/],
        ['constructor', [], /^Unknown channel "constructor"$/],
        ['models.inspect', 'not a list', /^models\.inspect: arguments must be a list$/],
        ['models.inspect', { 0: 'x' }, /^models\.inspect: arguments must be a list$/],
        ['models.inspect', [123], /^models\.inspect: argument 1 \(dir\): expected a string, got 123$/],
        ['models.inspect', [{ dir: '/' }], /^models\.inspect: argument 1 \(dir\): expected a string, got an object$/],
        ['data.previewImport', [123, null], /^data\.previewImport: argument 1 \(file\): expected a string/],
        ['data.setSplit', ['x', 'train'], /^data\.setSplit: argument 1 \(ids\): expected a list/],
        ['data.addRecords', [42], /^data\.addRecords: argument 1 \(records\): expected a list/],
        ['runs.get', [123], /^runs\.get: argument 1 \(id\): expected a string/]
      ]
      for (const [channel, args, message] of cases) {
        const id = nextId++
        const reply = await call(socket, id, channel, args)
        expect(reply).toMatchObject({ id, ok: false, error: { name: expect.any(String), message: expect.stringMatching(message) } })
      }
      // A request with no channel at all is answered too.
      const id = nextId++
      expect(await call(socket, id, undefined as never, [])).toMatchObject({ id, ok: false, error: { message: 'Unknown channel undefined' } })
      expect(socket.readyState).toBe(WebSocket.OPEN)
      expect(await call(socket, nextId++, 'engine.facts', [])).toMatchObject({ ok: true })
      await expectOthersServed()
    } finally {
      socket.close()
    }
  })
})

describe('serve mode token checks', () => {
  let server: ServeServer
  let clock = 1_000_000
  beforeAll(async () => {
    server = await start({ now: () => clock })
  })
  afterAll(async () => {
    await server.close()
  })

  it('lets the right token in and refuses wrong ones of every length, compared in constant time', async () => {
    const token = server.token
    const compare = vi.mocked(crypto.timingSafeEqual)
    const wrong = new Set<string>()
    for (let length = 0; length <= token.length * 2; length++) wrong.add('x'.repeat(length))
    for (let i = 0; i < token.length; i++) {
      wrong.add(token.slice(0, i) + (token[i] === 'A' ? 'B' : 'A') + token.slice(i + 1)) // one character off
      wrong.add(token.slice(0, i)) // every prefix
    }
    wrong.add(token + 'A')
    wrong.add(token.toUpperCase() === token ? token.toLowerCase() : token.toUpperCase())
    wrong.add('é'.repeat(token.length / 2)) // as many bytes, fewer characters
    wrong.add('é'.repeat(token.length)) // as many characters, more bytes
    wrong.add(` ${token}`)
    wrong.delete(token)
    const replies: Reply[] = []
    for (const guess of wrong) {
      compare.mockClear()
      const reply = await get(server, `/?token=${encodeURIComponent(guess)}`)
      replies.push(reply)
      expect({ guess, status: reply.status }).toEqual({ guess, status: 403 })
      expect(reply.headers['set-cookie']).toBeUndefined()
      // Guesses of the token's length in bytes go through timingSafeEqual (others fail on length).
      expect(compare.mock.calls.length).toBe(Buffer.byteLength(guess) === token.length ? 1 : 0)
      // A cookie carrying the guess is refused the same way.
      const byCookie = await get(server, '/assets/app.js', { Cookie: `tunebench_token_${server.port}=${guess}` })
      replies.push(byCookie)
      expect(byCookie.status).toBe(403)
      // The right token still works (and resets the back-off, so the guesses above stay 403s).
      const right = await get(server, `/?token=${token}`)
      expect(right.status).toBe(200)
      replies.push(right)
    }
    await expect(openSocket(server, token.slice(1))).rejects.toThrow('HTTP 403')
    await expect(openSocket(server, `${token.slice(0, -1)}?`)).rejects.toThrow('HTTP 403')
    const socket = await openSocket(server)
    socket.close()
    expectNoToken(replies, token)
  })

  it('answers 429 with Retry-After after 5 wrong tokens, doubles the wait, and resets on success', async () => {
    const replies: Reply[] = []
    const attempt = async (token: string) => {
      const reply = await get(server, `/?token=${encodeURIComponent(token)}`)
      replies.push(reply)
      return reply
    }
    for (let i = 1; i <= 5; i++) expect((await attempt(`wrong${i}`)).status).toBe(403)
    const slowed = await attempt('wrong6')
    expect(slowed.status).toBe(429)
    expect(slowed.headers['retry-after']).toBe('1')
    // While it waits, nothing is checked: a right guess would be told apart from a wrong one.
    expect((await attempt(server.token)).status).toBe(429)
    expect((await get(server, '/assets/app.js', { Cookie: `tunebench_token_${server.port}=${server.token}` })).status).toBe(429)
    await expect(openSocket(server)).rejects.toMatchObject({ message: 'HTTP 429', retryAfter: '1' })
    clock += 999
    expect((await attempt('wrong7')).status).toBe(429)
    clock += 1
    // Each wrong token after the wait doubles it.
    expect((await attempt('wrong8')).status).toBe(403)
    const longer = await attempt('wrong9')
    expect(longer.status).toBe(429)
    expect(longer.headers['retry-after']).toBe('2')
    clock += 2000
    await expect(openSocket(server, 'wrong10')).rejects.toThrow('HTTP 403') // upgrades count too
    const longest = await attempt('wrong11')
    expect(longest.status).toBe(429)
    expect(longest.headers['retry-after']).toBe('4')
    clock += 4000
    // The right token resets the count: 5 more wrong ones pass as 403s before the next wait.
    expect((await attempt(server.token)).status).toBe(200)
    for (let i = 1; i <= 5; i++) expect((await attempt(`again${i}`)).status).toBe(403)
    expect((await attempt('again6')).status).toBe(429)
    // The wait is capped.
    for (let i = 0; i < 20; i++) {
      clock += 600_000
      expect((await attempt(`late${i}`)).status).toBe(403)
    }
    expect(Number((await attempt('last')).headers['retry-after'])).toBeLessThanOrEqual(60)
    clock += 60_000
    expect((await attempt(server.token)).status).toBe(200)
    for (const reply of replies.filter((r) => r.status === 429)) expect(reply.body).toMatch(/wrong token/)
    expectNoToken(replies, server.token)
  })

  it.skipIf(process.platform !== 'linux')('slows down only the address that sent the wrong tokens', async () => {
    for (let i = 1; i <= 6; i++) await get(server, `/?token=wrong${i}`, {}, '127.0.0.1')
    expect((await get(server, `/?token=${server.token}`, {}, '127.0.0.1')).status).toBe(429)
    expect((await get(server, `/?token=${server.token}`, {}, '127.0.0.2')).status).toBe(200)
    const other = await openSocket(server, server.token, '127.0.0.2')
    other.close()
    clock += 60_000
    expect((await get(server, `/?token=${server.token}`, {}, '127.0.0.1')).status).toBe(200)
  })

  it('keeps the back-off table bounded: guesses from ever new addresses forget the oldest, not the busiest', () => {
    let t = 0
    const backoff = new TokenBackoff(() => t, 100)
    for (let i = 0; i < 6; i++) backoff.fail('10.0.0.1')
    expect(backoff.waitMs('10.0.0.1')).toBe(2000)
    for (let i = 0; i < 10_000; i++) {
      backoff.fail(`10.1.${i >> 8}.${i & 255}`)
      if (i % 50 === 0) backoff.fail('10.0.0.1') // still guessing: stays among the recent
    }
    expect(backoff.size).toBe(100)
    expect(backoff.waitMs('10.0.0.1')).toBe(60_000) // 206 wrong tokens: the longest wait
    expect(backoff.waitMs('10.1.0.0')).toBe(0) // forgotten
    t += 60_000
    expect(backoff.waitMs('10.0.0.1')).toBe(0)
  })
})

describe('serve mode output', () => {
  it('prints the token only in the URL it hands out, whatever clients send', async () => {
    const home = await mkdtemp(join(tmpdir(), 'tunebench-serve-log-'))
    const child = spawn(process.execPath, ['--import', 'tsx', 'main/serve.ts', '--port', '0'], {
      cwd: repoRoot,
      env: { ...process.env, TUNEBENCH_HOME: home },
      stdio: ['ignore', 'pipe', 'pipe']
    })
    let output = ''
    child.stdout.on('data', (d: Buffer) => (output += d.toString()))
    child.stderr.on('data', (d: Buffer) => (output += d.toString()))
    const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)))
    try {
      await waitFor(() => /TUNEBENCH_URL=\S+\n/.test(output) || child.exitCode !== null, 'the URL serve prints', 30_000)
      const url = new URL(/TUNEBENCH_URL=(\S+)\n/.exec(output)![1]!)
      const token = url.searchParams.get('token')!
      const server = { origin: url.origin, port: Number(url.port), token } as ServeServer
      const replies: Reply[] = []
      replies.push(await get(server, `/?token=${token}`))
      for (const target of ['/../secret.txt', '/%2e%2e/x', '//', '/%00', '/nope.js', '/..%5cx']) replies.push(await raw(server, target, { Cookie: `tunebench_token_${server.port}=${token}` }))
      for (let i = 0; i < 7; i++) replies.push(await get(server, `/?token=${token.slice(0, -1)}~`))
      expect(replies.at(-1)!.status).toBe(429)
      // Survives a broken frame; 127.0.0.1 waits out its back-off now, so this comes from another address.
      if (process.platform === 'linux') {
        const socket = await openSocket(server, token, '127.0.0.2')
        const done = closed(socket)
        socket.send(Buffer.from([0xff]), { binary: false })
        expect((await done).code).toBe(1007)
        const again = await openSocket(server, token, '127.0.0.2')
        expect(await call(again, 1, 'engine.facts', [])).toMatchObject({ ok: true })
        again.close()
      }
      child.kill('SIGTERM')
      expect(await exited).toBe(0)
      expectNoToken(replies, token)
      const withToken = output.split('\n').filter((line) => line.includes(token))
      expect(withToken).toEqual([`  ${url.href}`, `TUNEBENCH_URL=${url.href}`])
    } finally {
      if (child.exitCode === null) child.kill('SIGKILL')
      await rm(home, { recursive: true, force: true })
    }
  }, 40_000)
})
