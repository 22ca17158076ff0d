import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises'
import { request } from 'node:http'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import WebSocket from 'ws'
import type { BridgeEvent, BridgeResponse } from '../../../preload/types/bridge'
import { engineFacts } from '../../../native/index'
import { parseServeArgs } from '../../../main/serve'
import { createServices } from '../../../main/services'
import { startServeServer, type ServeServer } from '../../../main/transport/serveServer'
import { writeTinyModel } from '../../fixtures/tinyModel'
import { wsCall } from './wsCall'

let root: string
let server: ServeServer
let modelDir: string

beforeAll(async () => {
  root = await mkdtemp(join(tmpdir(), 'tunebench-serve-'))
  const rendererDir = join(root, 'renderer')
  await mkdir(join(rendererDir, 'assets'), { recursive: true })
  await writeFile(join(rendererDir, 'index.html'), '<!doctype html><title>Tunebench</title>')
  await writeFile(join(rendererDir, 'assets', 'app.js'), 'console.log(1)')
  await writeFile(join(root, 'secret.txt'), 'outside the renderer')
  modelDir = await writeTinyModel(join(root, 'tiny'))
  server = await startServeServer({
    host: '127.0.0.1',
    port: 0,
    rendererDir,
    createHandlers: (emit) => createServices({ dataDir: join(root, 'data'), emit }).handlers
  })
})

afterAll(async () => {
  await server.close()
  await rm(root, { recursive: true, force: true })
})

interface Reply {
  status: number
  headers: Record<string, string | string[] | undefined>
  body: string
}

function get(path: string, headers: Record<string, string> = {}): Promise<Reply> {
  return new Promise((resolve, reject) => {
    const req = request(`${server.origin}${path}`, { headers }, (res) => {
      let body = ''
      res.setEncoding('utf8')
      res.on('data', (c: string) => (body += c))
      res.on('end', () => resolve({ status: res.statusCode!, headers: res.headers, body }))
    })
    req.on('error', reject)
    req.end()
  })
}

function connect(query: string, origin: string | undefined): Promise<WebSocket> {
  return new Promise((resolve, reject) => {
    const socket = new WebSocket(`ws://127.0.0.1:${server.port}/ws${query}`, origin ? { origin } : {})
    socket.once('open', () => resolve(socket))
    socket.once('unexpected-response', (_req, res) => reject(new Error(`HTTP ${res.statusCode}`)))
    socket.once('error', reject)
  })
}

const call = (socket: WebSocket, id: number, channel: string, args: unknown[]): Promise<BridgeResponse> => wsCall(socket, id, channel, args)

describe('serve mode HTTP', () => {
  it('prints a URL that carries the token', () => {
    expect(server.url).toBe(`${server.origin}/?token=${server.token}`)
    expect(server.token.length).toBeGreaterThanOrEqual(32)
  })

  it('refuses requests without the token or with a wrong one', async () => {
    expect((await get('/')).status).toBe(403)
    expect((await get('/?token=wrong')).status).toBe(403)
    expect((await get('/assets/app.js')).status).toBe(403)
  })

  it('serves the page with the token and sets a cookie that lets assets through', async () => {
    const page = await get(`/?token=${server.token}`)
    expect(page.status).toBe(200)
    expect(page.body).toContain('<title>Tunebench</title>')
    const cookie = String(page.headers['set-cookie']).split(';')[0]!
    expect(cookie).toBe(`tunebench_token_${server.port}=${server.token}`)
    const asset = await get('/assets/app.js', { Cookie: cookie })
    expect(asset.status).toBe(200)
    expect(asset.headers['content-type']).toMatch(/^text\/javascript/)
  })

  it('sets the token cookie HttpOnly, SameSite=Strict, for the whole site, and only on good requests', async () => {
    const page = await get(`/?token=${server.token}`)
    const header = page.headers['set-cookie']
    expect(header).toHaveLength(1)
    const [pair, ...attributes] = header![0]!.split(';').map((part) => part.trim())
    expect(pair).toBe(`tunebench_token_${server.port}=${server.token}`)
    // Attribute names are case-insensitive (RFC 6265 5.2); each must be there exactly once.
    const named = new Map(attributes.map((a) => [a.split('=')[0]!.toLowerCase(), a.includes('=') ? a.slice(a.indexOf('=') + 1) : true]))
    expect(named.size).toBe(attributes.length)
    expect(named.get('httponly')).toBe(true) // page scripts (an XSS) cannot read the token
    expect(named.get('samesite')).toBe('Strict') // no other site's request carries it
    expect(named.get('path')).toBe('/')
    expect(named.has('domain')).toBe(false) // this host only
    expect(named.has('max-age') || named.has('expires')).toBe(false) // gone with the browser session
    // A refused request never hands out the token.
    for (const refused of [await get('/'), await get('/?token=wrong'), await get(`/?token=${server.token}`, { Origin: 'http://evil.example' })]) {
      expect(refused.status).toBe(403)
      expect(refused.headers['set-cookie']).toBeUndefined()
    }
  })

  it('refuses another Origin and a foreign Host name even with the token', async () => {
    expect((await get(`/?token=${server.token}`, { Origin: 'http://evil.example' })).status).toBe(403)
    expect((await get(`/?token=${server.token}`, { Host: `evil.example:${server.port}` })).status).toBe(403)
  })

  it('never serves files outside the renderer folder', async () => {
    const reply = await get(`/..%2fsecret.txt?token=${server.token}`)
    expect(reply.status).toBeGreaterThanOrEqual(400)
    expect(reply.body).not.toContain('outside the renderer')
  })
})

describe('serve mode WebSocket', () => {
  it('refuses upgrades without the token, from another Origin, or without an Origin', async () => {
    await expect(connect('', server.origin)).rejects.toThrow('HTTP 403')
    await expect(connect('?token=wrong', server.origin)).rejects.toThrow('HTTP 403')
    await expect(connect(`?token=${server.token}`, 'http://evil.example')).rejects.toThrow('HTTP 403')
    await expect(connect(`?token=${server.token}`, undefined)).rejects.toThrow('HTTP 403')
  })

  it('carries contract calls, their errors, and pushed events', async () => {
    const socket = await connect(`?token=${server.token}`, server.origin)
    try {
      const ok = await call(socket, 1, 'models.inspect', [modelDir])
      expect(ok).toMatchObject({ id: 1, ok: true, result: { architecture: 'LlamaForCausalLM', layers: 2, dir: modelDir } })

      const failed = await call(socket, 2, 'models.inspect', [join(root, 'nope')])
      expect(failed).toMatchObject({ id: 2, ok: false, error: { name: 'ModelFolderError', message: expect.stringMatching(/Folder not found/) } })

      const engine = await call(socket, 4, 'engine.facts', [])
      expect(engine).toEqual({ id: 4, ok: true, result: engineFacts() })

      const unknown = await call(socket, 3, 'fs.readFile', ['/etc/passwd'])
      expect(unknown).toMatchObject({ id: 3, ok: false, error: { message: 'Unknown channel "fs.readFile"' } })

      const event = new Promise<BridgeEvent>((resolve) => socket.once('message', (d) => resolve(JSON.parse(d.toString()) as BridgeEvent)))
      const progress = { repo: 'a/b', state: 'listing', file: null, fileIndex: 0, fileCount: 0, bytes: 0, totalBytes: null, resumedBytes: 0, dir: '/x', error: null } as const
      server.emit('models.downloadProgress', progress)
      expect(await event).toEqual({ event: 'models.downloadProgress', payload: progress })
    } finally {
      socket.close()
    }
  })
})

describe('parseServeArgs', () => {
  it('defaults to loopback and reads --port and --host in both spellings', () => {
    expect(parseServeArgs([]).host).toBe('127.0.0.1')
    expect(parseServeArgs(['--port', '0', '--host', '0.0.0.0'])).toEqual({ port: 0, host: '0.0.0.0' })
    expect(parseServeArgs(['--port=9000'])).toEqual({ port: 9000, host: '127.0.0.1' })
  })
  it('rejects bad values and unknown options by name', () => {
    expect(() => parseServeArgs(['--port', 'x'])).toThrow(/--port must be 0\.\.65535/)
    expect(() => parseServeArgs(['--port'])).toThrow(/--port needs a value/)
    expect(() => parseServeArgs(['--verbose'])).toThrow(/unknown option --verbose/)
  })
})
