// The data.* IPC handlers: one open project per service instance, opened by data.open (or
// by data.openLast: the last one again, else the default project).
import { join } from 'node:path'
import type { Emit, Handlers } from '../../../preload/contract'
import type { ProjectInfo } from '../../../preload/types/data'
import { decontaminate, excludeHits } from './decontam'
import { DataError } from './errors'
import { exportProject } from './export'
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
}

export function createDataHandlers(opts: DataServiceOptions, onClose?: (close: () => void) => void): DataHandlers {
  let project: Project | null = null
  const last = opts.dataDir ? new LastProject(join(opts.dataDir, 'last-project.json')) : null
  const current = (): Project => {
    if (!project) throw new DataError('no project is open; open a project folder first')
    return project
  }
  onClose?.(() => {
    if (project) closeProject(project.dir)
    project = null
  })
  const open = async (dir: string): Promise<Project> => {
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
    'data.tokenizePreview': async (options) => tokenizePreview(current(), options)
  }
}
