// The renderer's WebSocket transport (renderer/src/wsTransport.ts) against a real serve server
// when `tunebench serve` is restarted on the same port: each run has a new token, so a tab of the
// earlier run can never get back in. It must stop after its first refused reconnect (asking the
// server with a tokenless request, which the back-off does not count) instead of retrying, which
// would count as wrong guesses and make the server slow down the tab opened with the new URL.
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import WebSocket from 'ws'
import type { Handlers } from '../../../preload/contract'
import { startServeServer, type ServeServer } from '../../../main/transport/serveServer'
import { WsTransport } from '../../../renderer/src/wsTransport'

let root: string
let rendererDir: string
const servers: ServeServer[] = []
const handlers = { 'app.demo': async () => ({ ok: 'demo' }) } as unknown as Handlers

beforeAll(async () => {
  root = await mkdtemp(join(tmpdir(), 'tunebench-wstransport-'))
  rendererDir = join(root, 'renderer')
  await mkdir(rendererDir, { recursive: true })
  await writeFile(join(rendererDir, 'index.html'), '<!doctype html><title>Tunebench</title>')
})

afterAll(async () => {
  for (const s of servers) await s.close().catch(() => undefined)
  await rm(root, { recursive: true, force: true })
})

const start = async (port: number, token: string): Promise<ServeServer> => {
  const s = await startServeServer({ host: '127.0.0.1', port, rendererDir, token, createHandlers: () => handlers })
  servers.push(s)
  return s
}

/** The browser's WebSocket as the page has it: same-origin, so it sends the server's Origin. */
function browserSocket(origin: string): typeof globalThis.WebSocket {
  return class extends WebSocket {
    constructor(url: string) {
      super(url, { origin })
      this.on('error', () => undefined) // a browser reports a refused socket as a close event only
    }
  } as unknown as typeof globalThis.WebSocket
}

async function until(what: string, check: () => Promise<boolean>, ms = 5000): Promise<void> {
  const end = Date.now() + ms
  while (!(await check())) {
    if (Date.now() > end) throw new Error(`timed out waiting until ${what}`)
    await new Promise((r) => setTimeout(r, 50))
  }
}

describe('WsTransport across a restart of the server', () => {
  it('a tab of the earlier run stops after one refused reconnect; the new URL gets in at once', async () => {
    const first = await start(0, 'a'.repeat(32))
    const saved = globalThis.WebSocket
    globalThis.WebSocket = browserSocket(first.origin)
    try {
      const old = new WsTransport(`ws://127.0.0.1:${first.port}/ws?token=${'a'.repeat(32)}`)
      old.on('runs.event' as never, () => undefined) // a subscription keeps it reconnecting
      expect(await old.invoke('app.demo', [])).toEqual({ ok: 'demo' })
      await first.close()
      const second = await start(first.port, 'b'.repeat(32))
      // the old tab reconnects once, is refused, sees the server up, and stops
      let last = ''
      await until('the old tab says it belongs to an earlier run', async () => {
        last = await old.invoke('app.demo', []).then(() => 'answered', (e: Error) => e.message)
        return /earlier run/.test(last)
      })
      expect(last).toMatch(/earlier run of `tunebench serve`: open the URL/)
      // Well past the reconnect delays (0.5 + 1 + 2 s), the tab opened with the new URL gets in
      // every time: the old tab's single wrong try never reached the back-off.
      await new Promise((r) => setTimeout(r, 3600))
      for (let i = 0; i < 6; i++) {
        const fresh = new WsTransport(`ws://127.0.0.1:${second.port}/ws?token=${'b'.repeat(32)}`)
        expect(await fresh.invoke('app.demo', [])).toEqual({ ok: 'demo' })
      }
    } finally {
      globalThis.WebSocket = saved
    }
  }, 20_000)
})
