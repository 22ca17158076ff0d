// README (Models, Download from the Hub): "HF_TOKEN authenticates for gated or private repos".
// The token travels the app's own way: createServices reads HF_TOKEN from the environment and
// the downloader sends it as `Authorization: Bearer <token>`; the fake Hub refuses a gated
// repo without it (401) or with another token (403), as the Hub does. The token is a secret:
// no error message or progress event may carry it.
import { mkdtemp, readdir, readFile, rm } from 'node:fs/promises'
import { createServer } from 'node:http'
import type { AddressInfo } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterEach, beforeEach, describe, expect, it } from 'vitest'
import type { Emit, EventMap } from '../../../preload/contract'
import type { DownloadProgress } from '../../../preload/types/models'
import { createServices, type Services } from '../../../main/services'
import { downloadDir } from '../../../main/services/models'
import { startFakeHub, type FakeHub } from '../../fixtures/hubServer'
import { writeTinyModel } from '../../fixtures/tinyModel'

const gated = 'gated-org/tiny-gated'
const open = 'tiny-org/tiny-open'
const token = 'hf_TestSecret0123456789abcdef'
const files = ['config.json', 'model.safetensors', 'tokenizer.json', 'tokenizer_config.json']

let root: string
let source: string
let hub: FakeHub
let events: DownloadProgress[]
let services: Services[]
const savedToken = process.env.HF_TOKEN

/** The app's services as the desktop app, serve mode and the CLI build them, with HF_TOKEN set
 *  to `value` (unset when undefined) while they are created. */
function servicesWithToken(value: string | undefined, endpoint = hub.endpoint): Services {
  if (value === undefined) delete process.env.HF_TOKEN
  else process.env.HF_TOKEN = value
  const emit: Emit = (channel, payload) => {
    if (channel === 'models.downloadProgress') events.push(payload as EventMap['models.downloadProgress'])
  }
  const s = createServices({ dataDir: join(root, 'data'), emit, hubEndpoint: endpoint })
  services.push(s)
  return s
}

beforeEach(async () => {
  root = await mkdtemp(join(tmpdir(), 'tunebench-download-auth-'))
  source = await writeTinyModel(join(root, 'source'))
  hub = await startFakeHub({ [gated]: source, [open]: source }, { gated: { [gated]: token } })
  events = []
  services = []
})

afterEach(async () => {
  await Promise.all(services.map((s) => s.close()))
  if (savedToken === undefined) delete process.env.HF_TOKEN
  else process.env.HF_TOKEN = savedToken
  await hub.close()
  await rm(root, { recursive: true, force: true })
})

/** Every message a user could see of a failed download: the error and the progress events. */
async function failure(run: Promise<unknown>): Promise<string[]> {
  const err = await run.then(() => null, (e: unknown) => e as Error)
  expect(err, 'the download should have failed').not.toBeNull()
  return [err!.message, String(err!.stack), ...events.map((e) => e.error ?? '')]
}

describe('HF_TOKEN for gated repos', () => {
  it('without HF_TOKEN a gated repo is refused (401) with a message pointing to HF_TOKEN, and nothing is written', async () => {
    const { handlers } = servicesWithToken(undefined)
    const messages = await failure(handlers['models.download']({ repo: gated }))
    expect(messages[0]).toMatch(new RegExp(`Model ${gated} \\(revision main\\) not found on .*HTTP 401.*HF_TOKEN`))
    expect(hub.requests.length).toBeGreaterThan(0)
    expect(hub.requests.every((r) => r.authorization === null && r.status === 401)).toBe(true)
    const dir = downloadDir(join(root, 'data'), gated)
    expect(await readdir(dir).catch(() => [])).toEqual([])
  })

  it('with HF_TOKEN the same repo downloads: every listing and resolve request carries the Bearer token', async () => {
    const { handlers } = servicesWithToken(token)
    const facts = await handlers['models.download']({ repo: gated })
    const dir = downloadDir(join(root, 'data'), gated)
    expect(facts).toMatchObject({ dir, name: gated, architecture: 'LlamaForCausalLM' })
    for (const name of files) expect(await readFile(join(dir, name))).toEqual(await readFile(join(source, name)))
    const hubRequests = hub.requests.filter((r) => !r.path.startsWith('/cdn/'))
    expect(hubRequests.map((r) => r.path)).toEqual([
      `/api/models/${gated}/revision/main`,
      ...files.map((f) => `/${gated}/resolve/${'a'.repeat(40)}/${f}`)
    ])
    expect(hubRequests.every((r) => r.authorization === `Bearer ${token}`)).toBe(true)
    expect(hubRequests.every((r) => r.status === 200 || r.status === 302)).toBe(true)
    expect(events.at(-1)).toMatchObject({ state: 'done', error: null })
  })

  it('an empty HF_TOKEN sends no Authorization header (a public repo still downloads)', async () => {
    const { handlers } = servicesWithToken('')
    await handlers['models.download']({ repo: open })
    expect(hub.requests.length).toBeGreaterThan(0)
    expect(hub.requests.every((r) => r.authorization === null)).toBe(true)
  })

  it('a refused token (403) fails the download, and the token is in no error message or event', async () => {
    const wrong = 'hf_WrongSecret9876543210fedcba'
    const { handlers } = servicesWithToken(wrong)
    const messages = await failure(handlers['models.download']({ repo: gated }))
    expect(messages[0]).toMatch(/HTTP 403/)
    expect(hub.requests.every((r) => r.authorization === `Bearer ${wrong}`)).toBe(true)
    for (const m of messages) expect(m).not.toContain(wrong)
  })

  it('the token is in no error message when a file is refused mid-download or the endpoint is unreachable', async () => {
    const { handlers } = servicesWithToken(token)
    hub.refuse('model.safetensors', 403)
    const refused = await failure(handlers['models.download']({ repo: gated }))
    expect(refused[0]).toMatch(/model\.safetensors: HTTP 403 from http:\/\/127\.0\.0\.1:\d+\//)
    for (const m of refused) expect(m).not.toContain(token)

    // A port nothing listens on: the fetch error itself must not carry the header either.
    const idle = createServer()
    await new Promise<void>((done) => idle.listen(0, '127.0.0.1', done))
    const { port } = idle.address() as AddressInfo
    await new Promise<void>((done) => idle.close(() => done()))
    events = []
    const unreachable = servicesWithToken(token, `http://127.0.0.1:${port}`)
    const lost = await failure(unreachable.handlers['models.download']({ repo: gated }))
    expect(lost[0]).toMatch(/Cannot reach http:\/\/127\.0\.0\.1:\d+/)
    for (const m of lost) expect(m).not.toContain(token)
  })
})
