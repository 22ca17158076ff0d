// The model library service: open and validate local folders, remember recent ones, download
// from a Hub endpoint. Knows nothing of Electron; the folder dialog is injected by the desktop app.
import { join } from 'node:path'
import type { Emit, Handlers } from '../../../preload/contract'
import type { RecentModel } from '../../../preload/types/models'
import { readModelShape } from '../training/memoryCheck'
import { modelMemory } from '../training/memoryPlan'
import { engineForPlan } from '../training/planEngine'
import { checkRepoId, downloadHubModel } from './hubDownload'
import { inspectModelFolder } from './inspect'
import { RecentModels } from './recentModels'

export type ModelHandlers = Pick<
  Handlers,
  | 'models.inspect' | 'models.open' | 'models.recent' | 'models.last' | 'models.forget'
  | 'models.pickFolder' | 'models.download' | 'models.cancelDownload'
>

export interface ModelServiceOptions {
  /** App data dir: recent-models.json lives here, downloads go under models/. */
  dataDir: string
  /** Hub endpoint, e.g. https://huggingface.co or a mirror. */
  hubEndpoint: string
  hubToken?: string
  emit: Emit
  /** Native folder dialog; absent in serve mode and the CLI. */
  pickFolder?: () => Promise<string | null>
  /** The bundled demo model, models.last's answer before any model was opened. */
  demoModelDir?: string | null
}

/** Where downloads of `owner/name` go (the Hub cache's naming, so the folder says where it came from). */
export function downloadDir(dataDir: string, repo: string): string {
  return join(dataDir, 'models', repo.replace('/', '--'))
}

/** The recent list with each folder's planned memory, read now (left out where it no longer reads). */
async function withMemory(list: RecentModel[]): Promise<RecentModel[]> {
  const engine = engineForPlan()
  return Promise.all(list.map(async (m) => {
    try {
      return { ...m, memory: modelMemory(await readModelShape(m.dir), engine) }
    } catch {
      return m
    }
  }))
}

export function createModelHandlers(options: ModelServiceOptions, onClose: (close: () => void) => void = () => {}): ModelHandlers {
  const recent = new RecentModels(join(options.dataDir, 'recent-models.json'))
  const running = new Map<string, AbortController>()
  // Partial files stay on disk, so a download cut by quitting resumes next time.
  onClose(() => running.forEach((controller) => controller.abort()))

  const open = async (dir: string) => {
    const facts = await inspectModelFolder(dir)
    await recent.remember(facts)
    return facts
  }

  return {
    'models.inspect': (dir) => inspectModelFolder(dir),
    'models.open': open,
    'models.recent': async () => withMemory(await recent.list()),
    // The recent list's head is the model opened last; a folder that no longer validates says
    // why rather than quietly opening another.
    'models.last': async () => {
      const [head] = await recent.list()
      if (head) return inspectModelFolder(head.dir)
      return options.demoModelDir ? open(options.demoModelDir) : null
    },
    'models.forget': async (dir) => withMemory(await recent.forget(dir)),
    'models.pickFolder': async () => {
      if (!options.pickFolder) throw new Error('No folder dialog in the browser: type the folder path instead')
      return options.pickFolder()
    },
    'models.download': async (request) => {
      const repo = request?.repo?.trim() ?? ''
      checkRepoId(repo)
      if (running.has(repo)) throw new Error(`${repo} is already downloading`)
      const controller = new AbortController()
      running.set(repo, controller)
      const dir = downloadDir(options.dataDir, repo)
      try {
        await downloadHubModel({
          endpoint: options.hubEndpoint,
          repo,
          revision: request.revision?.trim() || 'main',
          dir,
          token: options.hubToken,
          signal: controller.signal,
          onProgress: (progress) => options.emit('models.downloadProgress', progress)
        })
      } finally {
        running.delete(repo)
      }
      const facts = await inspectModelFolder(dir)
      const named = { ...facts, name: repo }
      await recent.remember(named)
      return named
    },
    'models.cancelDownload': async (repo) => {
      const controller = running.get(repo)
      controller?.abort()
      return controller !== undefined
    }
  }
}
