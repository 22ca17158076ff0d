// Creates every service and the Handlers object that implements the IPC contract. The desktop
// app (main/index.ts), serve mode (main/serve.ts) and tests all start here; each transport
// only carries calls to these handlers. Nothing here imports Electron.
import type { Emit, Handlers } from '../../preload/contract'
import { createModelHandlers } from './models'
import { demoResources, findResourcesDir } from './app/demo'
import { createDataHandlers } from './data/handlers'
import { DEMO_CANDIDATES } from './data/lastProject'
import { createRunHandlers } from './training/runs'
import { createGenerationHandlers } from './generation/handlers'
import { createExportHandlers } from './export/handlers'
import { GenerationPool } from './generation/pool'
import { join } from 'node:path'

export interface ServiceOptions {
  /** App data dir (recent models, downloads, ...). */
  dataDir: string
  /** Pushes an event to every connected renderer. */
  emit: Emit
  /** Hub endpoint for downloads; default HF_ENDPOINT or https://huggingface.co. */
  hubEndpoint?: string
  /** Native folder dialog, given by the desktop app only. */
  pickFolder?: () => Promise<string | null>
  /** Path of a better_sqlite3.node built for this runtime: the desktop app's Electron build
   *  (scripts/electron-sqlite.mjs). Without it the data service uses the one in node_modules. */
  sqliteBinding?: string
}

export interface Services {
  handlers: Handlers
  /** Stops background work (downloads, runs) before the process exits. */
  close(): Promise<void>
}

function createEngineHandlers(): Pick<Handlers, 'engine.facts'> {
  return {
    // Loaded on first use so the app still starts (and says why) when the addon is not built.
    'engine.facts': async () => {
      const native = await import('../../native/index')
      return native.engineFacts()
    }
  }
}

export function createServices(options: ServiceOptions): Services {
  const env = process.env
  const closers: (() => void | Promise<void>)[] = []
  const onClose = (close: () => void | Promise<void>) => closers.push(close)
  // What a first start opens: the demo model and a default project of the demo candidates.
  const resources = findResourcesDir()
  // One pool of loaded models for the process: the Playground and "Generate answers…" load a
  // model once between them.
  const pool = new GenerationPool()
  const handlers: Handlers = {
    ...createEngineHandlers(),
    'app.demo': () => demoResources(),
    ...createModelHandlers({
      dataDir: options.dataDir,
      hubEndpoint: options.hubEndpoint ?? env.HF_ENDPOINT ?? 'https://huggingface.co',
      hubToken: env.HF_TOKEN || undefined,
      emit: options.emit,
      pickFolder: options.pickFolder,
      demoModelDir: resources ? join(resources, 'demo-model') : null
    }, onClose),
    ...createDataHandlers({
      emit: options.emit,
      sqliteBinding: options.sqliteBinding,
      dataDir: options.dataDir,
      demoCandidates: resources ? join(resources, DEMO_CANDIDATES) : null,
      pool
    }, onClose),
    ...createGenerationHandlers({ emit: options.emit, pool }, onClose),
    ...createExportHandlers({ emit: options.emit }, onClose),
    ...createRunHandlers({ runsRoot: join(options.dataDir, 'runs'), indexFile: join(options.dataDir, 'runs-index.json'), emit: options.emit }, onClose)
  }
  return {
    handlers,
    close: async () => {
      await Promise.allSettled(closers.map((close) => close()))
      await pool.dispose()
    }
  }
}
