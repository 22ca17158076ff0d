// The data.* IPC handlers: one open project per service instance, opened by data.open (or
// by data.openLast: the last one again, else the default project).
import { join, resolve } from 'node:path'
import type { Emit, Handlers } from '../../../preload/contract'
import type { ProjectInfo } from '../../../preload/types/data'
import { decontaminate, excludeHits } from './decontam'
import { DataError } from './errors'
import { exportProject } from './export'
import { generateAnswers } from './generateAnswers'
import { GenerationPool } from '../generation/pool'
import { DEFAULT_PROJECT, fillDefaultProject, isProject, LastProject } from './lastProject'
import { previewImport } from './preview'
import { closeProject, openProject, type Project, type StoreOptions } from './store'
import { tokenizePreview } from './tokenizePreview'

export type DataHandlers = Pick<Handlers, Extract<keyof Handlers, `data.${string}`>>

export interface DataServiceOptions extends StoreOptions {
  emit: Emit
  /** App data dir: last-project.json and the default project live here. Without it (tests of
   *  the store alone) nothing is remembered and data.openLast opens nothing by itself. */
  dataDir?: string
  /** The bundled demo candidates file the default project starts with; null when not found. */
  demoCandidates?: string | null
  /** The process's loaded models (shared with the Playground), for data.generateAnswers;
   *  without it the handlers keep their own. */
  pool?: GenerationPool
}

export function createDataHandlers(opts: DataServiceOptions, onClose?: (close: () => void | Promise<void>) => void): DataHandlers {
  let project: Project | null = null
  const last = opts.dataDir ? new LastProject(join(opts.dataDir, 'last-project.json')) : null
  const current = (): Project => {
    if (!project) throw new DataError('no project is open; open a project folder first')
    return project
  }
  let ownPool: GenerationPool | null = null
  const pool = (): GenerationPool => opts.pool ?? (ownPool ??= new GenerationPool())
  /** The generation of answers running now (one at a time: they would share the models). */
  let generating: { abort: AbortController; done: Promise<unknown> } | null = null
  onClose?.(async () => {
    generating?.abort.abort()
    await generating?.done.catch(() => undefined)
    await ownPool?.dispose()
    if (project) closeProject(project.dir)
    project = null
  })
  const open = async (dir: string): Promise<Project> => {
    if (generating && project && resolve(dir) !== project.dir)
      throw new DataError(`answers are being generated for ${project.dir}; cancel that before opening another project`)
    const next = openProject(dir, { sqliteBinding: opts.sqliteBinding })
    if (project && project !== next) closeProject(project.dir)
    project = next
    await last?.remember(next.dir)
    return next
  }
  const openLast = async (): Promise<ProjectInfo | null> => {
    if (project) return project.info()
    if (!opts.dataDir || !last) return null
    // A last project whose folder has gone is not created again empty: the default opens instead.
    const lastDir = await last.read()
    if (lastDir && isProject(lastDir)) return (await open(lastDir)).info()
    const p = await open(join(opts.dataDir, DEFAULT_PROJECT))
    await fillDefaultProject(p, opts.demoCandidates ?? null)
    return p.info()
  }
  let openingLast: Promise<ProjectInfo | null> | null = null
  return {
    'data.open': async (dir) => {
      if (typeof dir !== 'string' || !dir) throw new DataError('a project folder is needed')
      return (await open(dir)).info()
    },
    'data.info': async () => (project ? project.info() : null),
    // Two pages (or tabs) asking at once share one answer, so the demo is imported once.
    'data.openLast': () => (openingLast ??= openLast().finally(() => (openingLast = null))),
    'data.list': async (filter) => current().listRecords(filter ?? {}),
    'data.get': async (id) => current().getRecord(id),
    'data.label': async (id, action) => {
      const p = current()
      const record = p.setLabel(id, action)
      return { record, counts: p.counts() }
    },
    'data.undo': async () => {
      const p = current()
      const record = p.undo()
      return record ? { record, counts: p.counts() } : null
    },
    'data.setSplit': async (ids, split) => current().setSplit(ids, split),
    'data.setExcluded': async (ids, reason) => current().setExcluded(ids, reason),
    'data.addRecords': async (records) => current().addRecords(records),
    'data.addCandidates': async (id, candidates) => current().addCandidates(id, candidates),
    'data.previewImport': async (file, options) => previewImport(file, options ?? {}),
    'data.import': async (files, options) => current().importFiles(files, options ?? {}, (p) => opts.emit('data.importProgress', p)),
    'data.export': async (options) => exportProject(current(), options),
    'data.decontam': async (options) => decontaminate(current(), options ?? {}),
    'data.excludeFlagged': async (report, kinds) => excludeHits(current(), report, kinds),
    'data.tokenizePreview': async (options) => tokenizePreview(current(), options),
    'data.generateAnswers': async (request) => {
      const p = current()
      if (request?.dryRun) return generateAnswers(p, pool(), request)
      if (generating) throw new DataError('answers are being generated already; cancel that first')
      const abort = new AbortController()
      const done = generateAnswers(p, pool(), request, { signal: abort.signal, onProgress: (e) => opts.emit('data.generateProgress', e) })
      generating = { abort, done }
      try {
        return await done
      } finally {
        generating = null
      }
    },
    'data.cancelGenerate': async () => {
      generating?.abort.abort()
      return generating !== null
    }
  }
}
