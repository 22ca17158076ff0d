// The open annotation project: which folder, the filtered list of records and the counts.
// Labels themselves go through useLabelingStore; this store only keeps the list in step.
import { defineStore } from 'pinia'
import { computed, ref, shallowRef } from 'vue'
import { api } from '../api'
import { guarded } from '../lib/guarded'
import type {
  DataRecord,
  ExportOptions,
  ExportResult,
  ImportOptions,
  ImportPreview,
  ImportResult,
  LabelStatus,
  ProjectInfo,
  RecordCounts,
  RecordFilter,
  Split
} from '../../../preload/types/data'

export interface ListFilter {
  status: LabelStatus | 'all'
  split: Split | 'all'
  search: string
}

/** How many records the list loads at once. */
export const pageSize = 200

export const useProjectStore = defineStore('project', () => {
  const info = ref<ProjectInfo | null>(null)
  const filter = ref<ListFilter>({ status: 'all', split: 'all', search: '' })
  const records = shallowRef<DataRecord[]>([])
  const total = ref(0)
  const counts = ref<RecordCounts | null>(null)
  const loading = ref(false)
  const error = ref<string | null>(null)

  const dir = computed(() => info.value?.dir ?? null)
  /** Records with a decision (labeled or skipped) out of all records. */
  const done = computed(() => (counts.value ? counts.value.labeled + counts.value.skipped : 0))

  function query(): RecordFilter {
    const f = filter.value
    return {
      status: f.status,
      split: f.split === 'all' ? undefined : f.split,
      search: f.search.trim() || undefined,
      limit: pageSize
    }
  }

  const run = guarded(error, loading)

  async function open(folder: string): Promise<boolean> {
    const opened = await run(() => api.data.open(folder))
    if (!opened) return false
    info.value = opened
    counts.value = opened.counts
    await refresh()
    return true
  }

  /** At start and after a reload: the project the services have open, else the one opened
   *  last, else the default project (the demo candidates on a first start). */
  async function restore(): Promise<void> {
    if (info.value) return
    const open = await run(() => api.data.openLast())
    if (!open || info.value) return
    info.value = open
    counts.value = open.counts
    await refresh()
  }

  async function refresh(): Promise<void> {
    if (!info.value) return
    const page = await run(() => api.data.list(query()))
    if (!page) return
    records.value = page.records
    total.value = page.total
    counts.value = page.counts
  }

  /** The next page of the same filter, appended (labeling walks past the first page). */
  async function loadMore(): Promise<boolean> {
    if (!info.value || records.value.length >= total.value) return false
    // Labels given since the list loaded may have moved records out of a status filter, so
    // the service's list now starts its unseen part at the loaded records that still match.
    const status = filter.value.status
    const offset = records.value.filter((r) => status === 'all' || r.status === status).length
    const page = await run(() => api.data.list({ ...query(), offset }))
    if (!page) return false
    const loaded = new Set(records.value.map((r) => r.id))
    const fresh = page.records.filter((r) => !loaded.has(r.id))
    if (fresh.length === 0) return false
    records.value = [...records.value, ...fresh]
    total.value = page.total
    counts.value = page.counts
    return true
  }

  async function setFilter(next: Partial<ListFilter>): Promise<void> {
    filter.value = { ...filter.value, ...next }
    await refresh()
  }

  /** Puts a record the service returned back into the list, where it is. */
  function replaceRecord(record: DataRecord, newCounts?: RecordCounts): void {
    const i = records.value.findIndex((r) => r.id === record.id)
    if (i >= 0) records.value = records.value.map((r) => (r.id === record.id ? record : r))
    if (newCounts) counts.value = newCounts
  }

  async function previewImport(file: string, options: ImportOptions = {}): Promise<ImportPreview | undefined> {
    return run(() => api.data.previewImport(file, options))
  }

  async function importFiles(files: string[], options: ImportOptions): Promise<ImportResult | undefined> {
    const result = await run(() => api.data.import(files, options))
    if (result) {
      counts.value = result.counts
      await refresh()
    }
    return result
  }

  async function exportRecords(options: ExportOptions): Promise<ExportResult | undefined> {
    return run(() => api.data.export(options))
  }

  return {
    info, dir, filter, records, total, counts, done, loading, error,
    open, restore, refresh, loadMore, setFilter, replaceRecord, previewImport, importFiles, exportRecords
  }
})
