// Shared fixture of the end-to-end tests: starts the built app in serve mode (`node
// out/main/serve.js --port 0`) with a fresh data dir, and Debian's Chromium through
// playwright-core with a fresh profile. Each *.e2e.ts file drives the real renderer with it.
import { spawn, type ChildProcess } from 'node:child_process'
import { existsSync } from 'node:fs'
import { mkdir, mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { dirname, join, resolve } from 'node:path'
import { createInterface } from 'node:readline'
import { fileURLToPath } from 'node:url'
import { chromium, type BrowserContext, type Page } from 'playwright-core'

export const repoRoot = resolve(dirname(fileURLToPath(import.meta.url)), '../..')
/** Screenshots and other artifacts of the e2e run. */
export const resultsDir = join(repoRoot, 'test-results')

export interface AppSession {
  /** The URL serve mode printed, with ?token=. */
  url: string
  origin: string
  token: string
  /** TUNEBENCH_HOME of this app (recent models, downloads, ...). */
  dataDir: string
  /** A scratch folder for the test's own files (models, datasets). */
  workDir: string
  page: Page
  context: BrowserContext
  /** Every console error and uncaught exception of the page, for tests to assert on. */
  pageErrors: string[]
  /** Saves a full-page screenshot as test-results/<name>.png and returns its path. */
  screenshot(name: string): Promise<string>
  close(): Promise<void>
}

export interface StartOptions {
  /** Extra environment for the server (e.g. HF_ENDPOINT for a local Hub). */
  env?: Record<string, string>
  /** Open the app URL in the page (default true). */
  open?: boolean
}

const chromiumPath = process.env.TUNEBENCH_CHROMIUM ?? '/usr/bin/chromium'

export async function startApp(options: StartOptions = {}): Promise<AppSession> {
  const serveScript = join(repoRoot, 'out/main/serve.js')
  if (!existsSync(serveScript)) throw new Error(`${serveScript} is missing: run npx electron-vite build first (npm run test:e2e does)`)
  const scratch = await mkdtemp(join(tmpdir(), 'tunebench-e2e-'))
  const dataDir = join(scratch, 'home')
  const workDir = join(scratch, 'work')
  const profileDir = join(scratch, 'chromium-profile')
  await Promise.all([mkdir(dataDir), mkdir(workDir), mkdir(profileDir)])

  const server = spawn(process.execPath, [serveScript, '--port', '0'], {
    cwd: repoRoot,
    env: { ...process.env, TUNEBENCH_HOME: dataDir, ...options.env },
    stdio: ['ignore', 'pipe', 'pipe']
  })
  let context: BrowserContext | undefined
  try {
    const url = await readServeUrl(server)
    const parsed = new URL(url)
    context = await chromium.launchPersistentContext(profileDir, {
      executablePath: chromiumPath,
      headless: true,
      args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking'],
      viewport: { width: 1280, height: 860 }
    })
    const page = context.pages()[0] ?? (await context.newPage())
    const pageErrors: string[] = []
    page.on('console', (message) => {
      if (message.type() === 'error') pageErrors.push(message.text())
    })
    page.on('pageerror', (error) => pageErrors.push(error.message))
    if (options.open !== false) await page.goto(url)
    const openContext = context
    return {
      url,
      origin: parsed.origin,
      token: parsed.searchParams.get('token') ?? '',
      dataDir,
      workDir,
      page,
      context,
      pageErrors,
      screenshot: async (name) => {
        await mkdir(resultsDir, { recursive: true })
        const path = join(resultsDir, `${name}.png`)
        await page.screenshot({ path, fullPage: true })
        return path
      },
      close: async () => {
        await openContext.close().catch(() => undefined)
        await stopServer(server)
        if (!process.env.TUNEBENCH_E2E_KEEP) await rm(scratch, { recursive: true, force: true })
      }
    }
  } catch (err) {
    await context?.close().catch(() => undefined)
    await stopServer(server)
    await rm(scratch, { recursive: true, force: true })
    throw err
  }
}

/** Waits for serve mode's machine-readable `TUNEBENCH_URL=` line. */
function readServeUrl(server: ChildProcess): Promise<string> {
  return new Promise((resolveUrl, reject) => {
    let stderr = ''
    server.stderr!.on('data', (chunk: Buffer) => (stderr += chunk.toString()))
    const lines = createInterface({ input: server.stdout! })
    lines.on('line', (line) => {
      const match = /^TUNEBENCH_URL=(\S+)$/.exec(line)
      if (match) resolveUrl(match[1]!)
    })
    server.once('exit', (code) => reject(new Error(`serve mode exited with code ${code} before printing its URL:\n${stderr}`)))
  })
}

/** Ctrl-C, like a user would, and wait for the clean exit. */
async function stopServer(server: ChildProcess): Promise<void> {
  if (server.exitCode !== null || server.signalCode !== null) return
  const exited = new Promise<void>((done) => server.once('exit', () => done()))
  server.kill('SIGINT')
  await exited
}
