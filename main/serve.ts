// `npm run serve [-- --port N --host H]`: the workbench in a browser, for headless GPU boxes
// and for end-to-end tests. Same services as the desktop app; the contract rides a WebSocket.
import { existsSync } from 'node:fs'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { createServices, type Services } from './services'
import { defaultDataDir } from './services/dataDir'
import { startServeServer } from './transport/serveServer'

export interface ServeArgs {
  host: string
  port: number
}

export function parseServeArgs(argv: string[]): ServeArgs {
  const args: ServeArgs = { host: '127.0.0.1', port: 8765 }
  for (let i = 0; i < argv.length; i++) {
    const flag = argv[i]!
    const [name, inline] = flag.includes('=') ? [flag.slice(0, flag.indexOf('=')), flag.slice(flag.indexOf('=') + 1)] : [flag, undefined]
    const value = () => {
      const v = inline ?? argv[++i]
      if (v === undefined || v === '') throw new Error(`${name} needs a value`)
      return v
    }
    if (name === '--port') {
      const port = Number(value())
      if (!Number.isInteger(port) || port < 0 || port > 65535) throw new Error(`--port must be 0..65535 (0 picks a free port)`)
      args.port = port
    } else if (name === '--host') {
      args.host = value()
    } else {
      throw new Error(`unknown option ${flag} (options: --port N, --host H)`)
    }
  }
  return args
}

/** out/renderer next to the bundle (out/main/serve.js), or from the repo root under tsx. */
function findRendererDir(): string {
  const here = dirname(fileURLToPath(import.meta.url))
  for (const candidate of [join(here, '../renderer'), join(here, '../../renderer'), join(process.cwd(), 'out/renderer')]) {
    if (existsSync(join(candidate, 'index.html'))) return candidate
  }
  throw new Error('The renderer is not built (no out/renderer/index.html): run npm run build first')
}

export async function serve(argv: string[]): Promise<number> {
  const args = parseServeArgs(argv)
  // A closed stdout (`... | head`) must not crash the server or its clean shutdown.
  process.stdout.on('error', () => undefined)
  const rendererDir = findRendererDir()
  const dataDir = defaultDataDir()
  let services: Services | undefined
  const server = await startServeServer({
    host: args.host,
    port: args.port,
    rendererDir,
    createHandlers: (emit) => {
      services = createServices({ dataDir, emit })
      return services.handlers
    }
  }).catch((err: NodeJS.ErrnoException) => {
    if (err.code === 'EADDRINUSE') throw new Error(`port ${args.port} on ${args.host} is in use: pass --port N, or --port 0 for a free one`)
    throw err
  })
  process.stdout.write(
    `Tunebench is serving on ${server.origin} (data in ${dataDir}).\n` +
      `Open this URL in a browser (the token in it is your access key; keep it private):\n\n  ${server.url}\n\n` +
      `TUNEBENCH_URL=${server.url}\n`
  )
  return new Promise<number>((done) => {
    let stopping = false
    const stop = (signal: string) => {
      if (stopping) return
      stopping = true
      process.stdout.write(`\n${signal}: shutting down\n`)
      void Promise.allSettled([services?.close(), server.close()]).then(() => done(0))
    }
    process.once('SIGINT', () => stop('SIGINT'))
    process.once('SIGTERM', () => stop('SIGTERM'))
  })
}

const invokedDirectly = process.argv[1] && /serve\.(ts|js)$/.test(process.argv[1])
if (invokedDirectly) {
  serve(process.argv.slice(2)).then(
    (code) => process.exit(code),
    (err: unknown) => {
      process.stderr.write(`tunebench serve: ${err instanceof Error ? err.message : String(err)}\n`)
      process.exit(1)
    }
  )
}
