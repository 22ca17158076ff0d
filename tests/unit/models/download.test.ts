import { mkdir, mkdtemp, readdir, readFile, rm, stat, unlink, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterEach, beforeEach, describe, expect, it } from 'vitest'
import type { Emit, EventMap } from '../../../preload/contract'
import type { DownloadProgress } from '../../../preload/types/models'
import { createModelHandlers, downloadDir } from '../../../main/services/models'
import { startFakeHub, type FakeHub } from '../../fixtures/hubServer'
import { writeTinyModel } from '../../fixtures/tinyModel'

let root: string
let source: string
let hub: FakeHub
let events: DownloadProgress[]

const repo = 'tiny-org/tiny-llama'

function handlers(dataDir = join(root, 'data')) {
  const emit: Emit = (channel, payload) => {
    if (channel === 'models.downloadProgress') events.push(payload as EventMap['models.downloadProgress'])
  }
  return createModelHandlers({ dataDir, hubEndpoint: hub.endpoint, emit })
}

beforeEach(async () => {
  root = await mkdtemp(join(tmpdir(), 'tunebench-download-'))
  source = await writeTinyModel(join(root, 'source'))
  // A real repo carries files a workbench does not need; they must not be fetched.
  await writeFile(join(source, 'pytorch_model.bin'), 'not needed')
  await writeFile(join(source, 'README.md'), '# tiny')
  // Nor are files in subfolders, even of the kinds fetched at the top level (README: "the
  // config, tokenizer files and safetensors weights" of the repo, i.e. its top level).
  await mkdir(join(source, 'original'), { recursive: true })
  await writeFile(join(source, 'original', 'params.json'), '{"dim": 8}')
  await writeFile(join(source, 'original', 'tokenizer.model'), 'sentencepiece')
  await mkdir(join(source, 'onnx', 'fp16'), { recursive: true })
  await writeFile(join(source, 'onnx', 'fp16', 'config.json'), '{"onnx": true}')
  const binOnly = join(root, 'bin-only')
  await writeTinyModel(binOnly)
  await unlink(join(binOnly, 'model.safetensors'))
  await writeFile(join(binOnly, 'pytorch_model.bin'), 'weights')
  hub = await startFakeHub({ [repo]: source, 'tiny-org/bin-only': binOnly })
  events = []
})

afterEach(async () => {
  await hub.close()
  await rm(root, { recursive: true, force: true })
})

async function expectSameFile(name: string, dir: string) {
  expect(await readFile(join(dir, name))).toEqual(await readFile(join(source, name)))
}

describe('models.download from a Hub endpoint', () => {
  it('fetches the model files, reports progress up to the total, and opens the result', async () => {
    const facts = await handlers()['models.download']({ repo })
    const dir = downloadDir(join(root, 'data'), repo)
    expect(facts).toMatchObject({ dir, name: repo, architecture: 'LlamaForCausalLM', layers: 2 })
    for (const name of ['config.json', 'model.safetensors', 'tokenizer.json', 'tokenizer_config.json']) await expectSameFile(name, dir)
    expect((await readdir(dir)).sort()).toEqual(['.tunebench-download.json', 'config.json', 'model.safetensors', 'tokenizer.json', 'tokenizer_config.json'])

    const total = (await Promise.all(['config.json', 'model.safetensors', 'tokenizer.json', 'tokenizer_config.json'].map((f) => stat(join(source, f))))).reduce((a, s) => a + s.size, 0)
    const last = events.at(-1)!
    expect(last).toMatchObject({ state: 'done', bytes: total, totalBytes: total, fileCount: 4, resumedBytes: 0 })
    const bytes = events.map((e) => e.bytes)
    expect(bytes).toEqual([...bytes].sort((a, b) => a - b))
    expect(events.some((e) => e.state === 'downloading' && e.file === 'model.safetensors')).toBe(true)
    expect(hub.requests.some((r) => r.path.endsWith('pytorch_model.bin') || r.path.endsWith('README.md'))).toBe(false)

    expect((await handlers()['models.recent']()).map((m) => m.name)).toEqual([repo])
  })

  it('after a dropped connection, fails naming the file and resumes from the bytes on disk', async () => {
    const weights = await readFile(join(source, 'model.safetensors'))
    const cut = Math.floor(weights.length / 2)
    const dir = downloadDir(join(root, 'data'), repo)
    const part = join(dir, 'model.safetensors.part')
    // The Hub sends the first `cut` bytes and holds the connection; it is dropped only once
    // those bytes are on disk, so the resume below starts from a non-empty partial file.
    hub.stallAfter('model.safetensors', cut)
    const failed = handlers()['models.download']({ repo })
    const failure = expect(failed).rejects.toThrow(new RegExp(`model\\.safetensors: connection lost after ${cut} bytes`))
    for (let waited = 0; ((await stat(part).catch(() => null))?.size ?? 0) < cut; waited += 5) {
      if (waited > 20_000) throw new Error('the first bytes never reached the .part file')
      await new Promise((r) => setTimeout(r, 5))
    }
    hub.dropStalled()
    await failure
    expect(events.at(-1)!.state).toBe('error')
    expect((await stat(part)).size).toBe(cut)
    expect(cut).toBeGreaterThan(0)

    hub.requests.length = 0
    events = []
    await handlers()['models.download']({ repo })
    await expectSameFile('model.safetensors', dir)
    const weightGets = hub.requests.filter((r) => r.path.includes('model.safetensors') || r.path.startsWith('/cdn/'))
    // resolve (302 to the CDN, the Range kept), then the CDN answers 206 from byte `cut`.
    expect(weightGets.map((r) => [r.range, r.status])).toEqual([[`bytes=${cut}-`, 302], [`bytes=${cut}-`, 206]])
    expect(events.at(-1)).toMatchObject({ state: 'done', resumedBytes: expect.any(Number) })
    expect(events.find((e) => e.file === 'model.safetensors' && e.resumedBytes >= cut)).toBeDefined()
    expect(await readdir(dir)).not.toContain('model.safetensors.part')
  })

  it('resumes a partial file left by a killed app with a Range request, and skips finished files', async () => {
    const weights = await readFile(join(source, 'model.safetensors'))
    const half = Math.floor(weights.length / 2)
    const dir = downloadDir(join(root, 'data'), repo)
    await handlers()['models.download']({ repo })
    await unlink(join(dir, 'model.safetensors'))
    await writeFile(join(dir, 'model.safetensors.part'), weights.subarray(0, half))

    events = []
    hub.requests.length = 0
    const facts = await handlers()['models.download']({ repo })
    expect(facts.parameters).toBeGreaterThan(0)
    await expectSameFile('model.safetensors', dir)
    const weightGets = hub.requests.filter((r) => r.path.includes('model.safetensors') || r.path.startsWith('/cdn/'))
    expect(half).toBeGreaterThan(0)
    // resolve (302, the Range kept across the redirect), then the CDN's 206 Partial Content.
    expect(weightGets.map((r) => [r.range, r.status])).toEqual([[`bytes=${half}-`, 302], [`bytes=${half}-`, 206]])
    expect(hub.requests.some((r) => r.path.endsWith('/config.json'))).toBe(false)
    const total = events.at(-1)!.totalBytes!
    expect(events.at(-1)).toMatchObject({ state: 'done', bytes: total, resumedBytes: total - (weights.length - half) })
    expect(await readdir(dir)).not.toContain('model.safetensors.part')
  })

  it('fetches the top-level files only: files in subfolders are listed by the Hub but not downloaded', async () => {
    const listing = await fetch(`${hub.endpoint}/api/models/${repo}/revision/main?blobs=true`).then((r) => r.json() as Promise<{ siblings: { rfilename: string }[] }>)
    const listed = listing.siblings.map((s) => s.rfilename)
    expect(listed).toEqual(expect.arrayContaining(['original/params.json', 'original/tokenizer.model', 'onnx/fp16/config.json', 'config.json']))
    hub.requests.length = 0
    await handlers()['models.download']({ repo })
    const dir = downloadDir(join(root, 'data'), repo)
    const entries = await readdir(dir, { recursive: true })
    expect(entries.sort()).toEqual(['.tunebench-download.json', 'config.json', 'model.safetensors', 'tokenizer.json', 'tokenizer_config.json'])
    for (const name of ['config.json', 'model.safetensors', 'tokenizer.json', 'tokenizer_config.json']) await expectSameFile(name, dir)
    const fetched = hub.requests.filter((r) => r.path.includes('/resolve/')).map((r) => r.path.replace(/^.*\/resolve\/[^/]+\//, ''))
    expect(fetched.sort()).toEqual(['config.json', 'model.safetensors', 'tokenizer.json', 'tokenizer_config.json'])
    expect(events.at(-1)).toMatchObject({ state: 'done', fileCount: 4 })
  })

  it('fetches again the files of a folder downloaded from another commit', async () => {
    const dir = downloadDir(join(root, 'data'), repo)
    await handlers()['models.download']({ repo })
    const config = await readFile(join(source, 'config.json'))
    await writeFile(join(dir, 'config.json'), Buffer.alloc(config.length, 32)) // stale, same size
    await writeFile(join(dir, 'tokenizer.json.part'), 'stale partial')
    hub.setCommit('b'.repeat(40))
    hub.requests.length = 0
    await handlers()['models.download']({ repo })
    await expectSameFile('config.json', dir)
    await expectSameFile('tokenizer.json', dir)
    expect(hub.requests.filter((r) => r.path.includes(`/resolve/${'b'.repeat(40)}/`)).length).toBe(4)
    expect(hub.requests.every((r) => r.range === null)).toBe(true)
  })

  it('refuses a file whose sha256 differs from the listing and removes the bad bytes', async () => {
    hub.corrupt('model.safetensors')
    await expect(handlers()['models.download']({ repo })).rejects.toThrow(/model\.safetensors: sha256 [0-9a-f]+ does not match/)
    const dir = downloadDir(join(root, 'data'), repo)
    expect(await readdir(dir)).not.toContain('model.safetensors')
    expect(await readdir(dir)).not.toContain('model.safetensors.part')
  })

  it('cancels a running download and keeps the partial file for a resume', async () => {
    hub.stallAfter('model.safetensors', 100)
    const h = handlers()
    const running = h['models.download']({ repo })
    // Cancel once the weights are being fetched.
    await new Promise<void>((resolve) => {
      const check = setInterval(() => {
        if (events.some((e) => e.file === 'model.safetensors')) {
          clearInterval(check)
          resolve()
        }
      }, 5)
    })
    expect(await h['models.cancelDownload'](repo)).toBe(true)
    await expect(running).rejects.toThrow(/cancelled/)
    expect(events.at(-1)).toMatchObject({ state: 'error', error: `Download of ${repo} cancelled` })
    expect(await h['models.cancelDownload'](repo)).toBe(false)
  })

  it('names the repo when the Hub does not know it, and rejects bad ids before any request', async () => {
    await expect(handlers()['models.download']({ repo: 'tiny-org/missing' })).rejects.toThrow(/Model tiny-org\/missing \(revision main\) not found on http:\/\/127\.0\.0\.1:\d+ \(HTTP 404/)
    await expect(handlers()['models.download']({ repo: '../etc' })).rejects.toThrow(/"\.\.\/etc" is not a Hub model id/)
    expect(hub.requests.filter((r) => r.path.includes('etc'))).toEqual([])
  })

  it('says so when a repo has PyTorch .bin weights only', async () => {
    await expect(handlers()['models.download']({ repo: 'tiny-org/bin-only' })).rejects.toThrow(/tiny-org\/bin-only has no model\.safetensors .*only PyTorch \.bin weights/)
  })
})
