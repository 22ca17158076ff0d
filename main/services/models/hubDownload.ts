// Downloads a model repo from a Hugging Face Hub endpoint (the public Hub, a mirror, or a local
// test server) using the Hub's URL layout:
//   GET {endpoint}/api/models/{repo}/revision/{revision}?blobs=true   -> { sha, siblings }
//   GET {endpoint}/{repo}/resolve/{sha}/{file}                        -> the file (Range-capable)
// Each file is written to `<file>.part` and renamed when complete, so an interrupted download
// resumes with a Range request from the bytes already on disk, and a finished name is always a
// complete file.
import { createHash } from 'node:crypto'
import { createReadStream } from 'node:fs'
import { mkdir, open, readFile, rename, stat, truncate, unlink } from 'node:fs/promises'
import { join } from 'node:path'
import { pipeline } from 'node:stream/promises'
import type { DownloadProgress } from '../../../preload/types/models'
import { writeFileAtomic } from '../fsAtomic'

export interface HubDownloadOptions {
  endpoint: string
  repo: string
  revision: string
  /** Folder the repo's files are written into. */
  dir: string
  /** Sent as a Bearer token (gated or private repos). */
  token?: string
  signal?: AbortSignal
  onProgress?: (progress: DownloadProgress) => void
}

export interface HubFile {
  name: string
  size: number | null
  sha256: string | null
}

export class HubDownloadError extends Error {
  constructor(message: string) {
    super(message)
    this.name = 'HubDownloadError'
  }
}

// Files a training workbench needs; other formats (.bin, .gguf, .onnx, ...) are skipped.
const wantedFile = /^[^/]+\.(json|safetensors|jinja|txt|model|tiktoken)$/

const repoIdPattern = /^[A-Za-z0-9][A-Za-z0-9_.-]*(\/[A-Za-z0-9][A-Za-z0-9_.-]*)?$/

export function checkRepoId(repo: string): void {
  if (typeof repo !== 'string' || !repoIdPattern.test(repo) || repo.includes('..')) {
    throw new HubDownloadError(`"${repo}" is not a Hub model id (expected owner/name, e.g. Qwen/Qwen3-0.6B)`)
  }
}

/** Lists the repo at a revision and picks the files to fetch. */
export async function listHubFiles(
  options: Pick<HubDownloadOptions, 'endpoint' | 'repo' | 'revision' | 'token' | 'signal'>
): Promise<{ sha: string; files: HubFile[] }> {
  checkRepoId(options.repo)
  const url = `${trimSlash(options.endpoint)}/api/models/${options.repo}/revision/${encodeURIComponent(options.revision)}?blobs=true`
  const response = await hubFetch(url, options)
  if (!response.ok) {
    throw new HubDownloadError(
      response.status === 404 || response.status === 401
        ? `Model ${options.repo} (revision ${options.revision}) not found on ${options.endpoint} (HTTP ${response.status}; private or gated repos need HF_TOKEN)`
        : `Listing ${options.repo} failed: HTTP ${response.status} from ${url}`
    )
  }
  const body = (await response.json()) as { sha?: unknown; siblings?: unknown }
  if (!Array.isArray(body.siblings)) throw new HubDownloadError(`Listing ${options.repo}: the response has no "siblings" list`)
  const all: HubFile[] = body.siblings.flatMap((s: { rfilename?: unknown; size?: unknown; lfs?: { size?: unknown; sha256?: unknown } }) =>
    typeof s.rfilename === 'string'
      ? [{
          name: s.rfilename,
          size: typeof s.lfs?.size === 'number' ? s.lfs.size : typeof s.size === 'number' ? s.size : null,
          sha256: typeof s.lfs?.sha256 === 'string' ? s.lfs.sha256 : null
        }]
      : []
  )
  const sha = typeof body.sha === 'string' && body.sha ? body.sha : options.revision
  return { sha, files: pickModelFiles(options.repo, all) }
}

function pickModelFiles(repo: string, all: HubFile[]): HubFile[] {
  const wanted = all.filter((f) => wantedFile.test(f.name))
  const safetensors = wanted.filter((f) => f.name.endsWith('.safetensors'))
  const hasIndex = wanted.some((f) => f.name === 'model.safetensors.index.json')
  const hasSingle = safetensors.some((f) => f.name === 'model.safetensors')
  if (!hasIndex && !hasSingle) {
    throw new HubDownloadError(
      `${repo} has no model.safetensors or model.safetensors.index.json` +
        (all.some((f) => f.name.endsWith('.bin')) ? ' (only PyTorch .bin weights; Tunebench reads safetensors)' : '')
    )
  }
  // Shards are the model-*-of-*.safetensors files; other .safetensors (e.g. consolidated.safetensors
  // duplicates) would double the download for nothing.
  return wanted.filter((f) =>
    !f.name.endsWith('.safetensors') || (hasSingle ? f.name === 'model.safetensors' : /^model-\d+-of-\d+\.safetensors$/.test(f.name))
  )
}

/** Downloads every model file of the repo into `dir`, resuming `.part` files. */
export async function downloadHubModel(options: HubDownloadOptions): Promise<void> {
  const progress: DownloadProgress = {
    repo: options.repo, state: 'listing', file: null, fileIndex: 0, fileCount: 0,
    bytes: 0, totalBytes: null, resumedBytes: 0, dir: options.dir, error: null
  }
  const report = (change: Partial<DownloadProgress>) => {
    Object.assign(progress, change)
    options.onProgress?.({ ...progress })
  }
  try {
    report({})
    const { sha, files } = await listHubFiles(options)
    await mkdir(options.dir, { recursive: true })
    // Files and partial files on disk are only reused when they come from the same commit.
    const marker = join(options.dir, downloadMarker)
    const previous = await readMarker(marker)
    const sameCommit = previous === null || previous.sha === sha
    if (!sameCommit) await Promise.all(files.map((f) => unlink(join(options.dir, `${f.name}.part`)).catch(() => undefined)))
    await writeFileAtomic(marker, JSON.stringify({ repo: options.repo, revision: options.revision, sha }) + '\n')
    const knownSizes = files.every((f) => f.size !== null)
    report({ state: 'downloading', fileCount: files.length, totalBytes: knownSizes ? files.reduce((a, f) => a + f.size!, 0) : null })
    for (const [index, file] of files.entries()) {
      report({ file: file.name, fileIndex: index })
      await downloadFile(options, sha, file, sameCommit, progress, report)
    }
    report({ state: 'done', file: null })
  } catch (err) {
    const message = options.signal?.aborted ? `Download of ${options.repo} cancelled` : (err as Error).message
    report({ state: 'error', error: message })
    throw options.signal?.aborted ? new HubDownloadError(message) : err
  }
}

async function downloadFile(
  options: HubDownloadOptions,
  sha: string,
  file: HubFile,
  reuseFinished: boolean,
  progress: DownloadProgress,
  report: (change: Partial<DownloadProgress>) => void
): Promise<void> {
  const target = join(options.dir, file.name)
  const part = `${target}.part`
  const finished = await stat(target).catch(() => null)
  // A finished name only ever appears by rename after a complete download.
  if (finished && reuseFinished && (file.size === null || finished.size === file.size)) {
    report({ bytes: progress.bytes + finished.size, resumedBytes: progress.resumedBytes + finished.size })
    return
  }
  let offset = (await stat(part).catch(() => null))?.size ?? 0
  if (file.size !== null && offset > file.size) {
    await unlink(part)
    offset = 0
  }
  const baseBytes = progress.bytes
  const headers: Record<string, string> = offset > 0 ? { Range: `bytes=${offset}-` } : {}
  // A Hub file name is a URL path ('/'-separated whatever the OS): each segment is escaped.
  const urlPath = encodeURIComponent(file.name).replaceAll('%2F', '/')
  const url = `${trimSlash(options.endpoint)}/${options.repo}/resolve/${encodeURIComponent(sha)}/${urlPath}`
  const response = await hubFetch(url, options, headers)
  if (response.status === 416 && file.size !== null && offset === file.size) {
    // The previous run got every byte but stopped before the rename.
    await response.body?.cancel()
  } else {
    if (response.status === 206) {
      const start = Number(/^bytes (\d+)-/.exec(response.headers.get('content-range') ?? '')?.[1])
      if (start !== offset) {
        await response.body?.cancel()
        throw new HubDownloadError(`${file.name}: server resumed at byte ${start}, expected ${offset}`)
      }
    } else if (response.ok) {
      // The server ignored the Range header: start over rather than append a second copy.
      if (offset > 0) await truncate(part, 0)
      offset = 0
    } else {
      await response.body?.cancel()
      throw new HubDownloadError(`${file.name}: HTTP ${response.status} from ${url}`)
    }
    if (!response.body) throw new HubDownloadError(`${file.name}: empty response from ${url}`)
    report({ bytes: baseBytes + offset, resumedBytes: progress.resumedBytes + offset })
    let written = offset
    let reported = offset
    // Report every ~0.5% of the file (at least 256 KiB) so big files do not flood the renderer.
    const step = Math.max(256 * 1024, Math.floor((file.size ?? 0) / 200))
    // Each chunk is on disk before the next is read, so when the connection drops, the .part
    // file holds every byte received and the next attempt resumes exactly there.
    const out = await open(part, offset > 0 ? 'a' : 'w')
    try {
      for await (const chunk of response.body as unknown as AsyncIterable<Uint8Array>) {
        await out.write(chunk)
        written += chunk.length
        if (written - reported >= step) {
          reported = written
          report({ bytes: baseBytes + written })
        }
      }
    } catch (err) {
      if (options.signal?.aborted) throw err
      throw new HubDownloadError(
        `${file.name}: connection lost after ${written} bytes (${(err as Error).message}); download again to resume from there`
      )
    } finally {
      await out.close()
    }
  }
  const size = (await stat(part)).size
  if (file.size !== null && size !== file.size) {
    throw new HubDownloadError(`${file.name}: got ${size} bytes, the Hub lists ${file.size} (connection dropped? run the download again to resume)`)
  }
  if (file.sha256) {
    report({ state: 'verifying' })
    const digest = await sha256Of(part)
    if (digest !== file.sha256) {
      await unlink(part)
      throw new HubDownloadError(`${file.name}: sha256 ${digest} does not match the Hub's ${file.sha256}; the partial file was removed, download again`)
    }
    report({ state: 'downloading' })
  }
  await rename(part, target)
  report({ bytes: baseBytes + size })
}

/** Written into the model folder: which repo commit its files come from. */
export const downloadMarker = '.tunebench-download.json'

async function readMarker(path: string): Promise<{ sha: string } | null> {
  try {
    const value = JSON.parse(await readFile(path, 'utf8')) as { sha?: unknown }
    return typeof value.sha === 'string' ? { sha: value.sha } : null
  } catch {
    return null
  }
}

async function sha256Of(path: string): Promise<string> {
  const hash = createHash('sha256')
  await pipeline(createReadStream(path), hash)
  return hash.digest('hex')
}

async function hubFetch(
  url: string,
  options: Pick<HubDownloadOptions, 'endpoint' | 'token' | 'signal'>,
  headers: Record<string, string> = {}
): Promise<Response> {
  try {
    return await fetch(url, {
      headers: { ...headers, ...(options.token ? { Authorization: `Bearer ${options.token}` } : {}) },
      signal: options.signal,
      redirect: 'follow'
    })
  } catch (err) {
    if (options.signal?.aborted) throw err
    const cause = (err as { cause?: { message?: string } }).cause?.message
    throw new HubDownloadError(`Cannot reach ${options.endpoint}: ${cause ?? (err as Error).message}`)
  }
}

function trimSlash(endpoint: string): string {
  return endpoint.replace(/\/+$/, '')
}
