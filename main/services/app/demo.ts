// The bundled demo: the tiny Llama in resources/demo-model and the datasets in resources/demo,
// so a newcomer can open, label and train something without typing a path.
import { existsSync } from 'node:fs'
import { readdir, readFile } from 'node:fs/promises'
import { dirname, join, resolve } from 'node:path'
import { fileURLToPath } from 'node:url'
import type { DemoDataset, DemoResources } from '../../../preload/types/app'

/** Optional descriptions of the demo datasets: { "<file name>": "<one line>" }. */
export const MANIFEST = 'datasets.json'
/** The file kinds data.previewImport reads. */
const DATASET_EXT = /\.(jsonl|json|parquet)$/i
/** A folder is the resources folder when it holds the demo model's config. */
const MARKER = join('demo-model', 'config.json')

function searchUp(start: string): string | null {
  let dir = resolve(start)
  for (;;) {
    const candidate = join(dir, 'resources')
    if (existsSync(join(candidate, MARKER))) return candidate
    const parent = dirname(dir)
    if (parent === dir) return null
    dir = parent
  }
}

/** The resources folder: TUNEBENCH_RESOURCES, else the first `resources/` holding the demo model
 *  above this file (main/services/app under tsx and vitest, out/main or out/main/chunks in the
 *  electron-vite bundle), else above the working directory, else Electron's resourcesPath of a
 *  packaged app. Null when none is found. */
export function findResourcesDir(env: NodeJS.ProcessEnv = process.env): string | null {
  if (env.TUNEBENCH_RESOURCES) return resolve(env.TUNEBENCH_RESOURCES)
  let here: string | null = null
  try {
    here = dirname(fileURLToPath(import.meta.url))
  } catch {
    here = null
  }
  const packaged = (process as { resourcesPath?: string }).resourcesPath
  return (
    (here ? searchUp(here) : null) ??
    searchUp(process.cwd()) ??
    (packaged && existsSync(join(packaged, 'resources', MARKER)) ? join(packaged, 'resources') : null)
  )
}

async function readManifest(file: string): Promise<Record<string, string>> {
  let text: string
  try {
    text = await readFile(file, 'utf8')
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return {}
    throw err
  }
  let parsed: unknown
  try {
    parsed = JSON.parse(text)
  } catch (err) {
    throw new Error(`${file}: not valid JSON (${(err as Error).message})`)
  }
  if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) {
    throw new Error(`${file}: expected an object of file name -> description`)
  }
  for (const [key, value] of Object.entries(parsed)) {
    if (typeof value !== 'string') throw new Error(`${file}: key "${key}" must be a string description`)
  }
  return parsed as Record<string, string>
}

/** The demo model folder and the dataset files that exist in resources/demo now. */
export async function demoResources(resourcesDir: string | null = findResourcesDir()): Promise<DemoResources> {
  if (!resourcesDir) {
    throw new Error(`the bundled demo was not found: no resources/${MARKER} above the app or ${process.cwd()}; set TUNEBENCH_RESOURCES`)
  }
  const modelDir = join(resourcesDir, 'demo-model')
  if (!existsSync(join(modelDir, 'config.json'))) throw new Error(`${join(modelDir, 'config.json')} is missing`)
  const demoDir = join(resourcesDir, 'demo')
  let names: string[] = []
  try {
    const entries = await readdir(demoDir, { withFileTypes: true })
    names = entries.filter((e) => e.isFile() && DATASET_EXT.test(e.name) && e.name !== MANIFEST).map((e) => e.name)
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err
  }
  const descriptions = await readManifest(join(demoDir, MANIFEST))
  // The manifest's order first (it puts the pairs the Data page labels at the top), then by name.
  const rank = (name: string) => {
    const i = Object.keys(descriptions).indexOf(name)
    return i < 0 ? Number.MAX_SAFE_INTEGER : i
  }
  const datasets: DemoDataset[] = names
    .sort((a, b) => rank(a) - rank(b) || a.localeCompare(b))
    .map((name) => ({ name, file: join(demoDir, name), description: descriptions[name] ?? '' }))
  return { modelDir, datasets }
}
