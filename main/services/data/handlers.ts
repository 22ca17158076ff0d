// The data.* IPC handlers: one open project per service instance, opened by data.open.
import type { Emit, Handlers } from '../../../preload/contract'
import { decontaminate, excludeHits } from './decontam'
import { DataError } from './errors'
import { exportProject } from './export'
import { previewImport } from './preview'
import { closeProject, openProject, type Project, type StoreOptions } from './store'
import { tokenizePreview } from './tokenizePreview'

export type DataHandlers = Pick<Handlers, Extract<keyof Handlers, `data.${string}`>>

export function createDataHandlers(opts: { emit: Emit } & StoreOptions, onClose?: (close: () => void) => void): DataHandlers {
  let project: Project | null = null
  const current = (): Project => {
    if (!project) throw new DataError('no project is open; open a project folder first')
    return project
  }
  onClose?.(() => {
    if (project) closeProject(project.dir)
    project = null
  })
  return {
    'data.open': async (dir) => {
      if (typeof dir !== 'string' || !dir) throw new DataError('a project folder is needed')
      const next = openProject(dir, { sqliteBinding: opts.sqliteBinding })
      if (project && project !== next) closeProject(project.dir)
      project = next
      return project.info()
    },
    'data.info': async () => (project ? project.info() : null),
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
