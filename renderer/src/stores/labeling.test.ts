import { beforeEach, describe, expect, it, vi } from 'vitest'
import { createPinia, setActivePinia } from 'pinia'
import type { DataRecord, LabelAction, RecordCounts, RecordFilter } from '../../../preload/types/data'

// The stores reach the services only through `api`; here it is an in-memory stand-in that
// records the calls, so the tests check what the stores ask the data service to store.
const calls: { id: number; action: LabelAction }[] = []
let failNext = false
const history: DataRecord[] = []

function record(id: number): DataRecord {
  return {
    id, prompt: `question ${id}`, system: null,
    candidates: [
      { id: id * 10, index: 0, content: 'left', source: 'import', kto: null },
      { id: id * 10 + 1, index: 1, content: 'right', source: 'import', kto: null }
    ],
    pair: null, tie: false, skipped: false, gold: null, note: null, split: 'train', excluded: false,
    excludedReason: null, source: 'f.jsonl', sourceIndex: id, status: 'unlabeled', createdAt: '', updatedAt: ''
  }
}
const counts = (labeled: number): RecordCounts => ({
  total: 3, unlabeled: 3 - labeled, labeled, skipped: 0, excluded: 0, train: 3, val: 0, pairs: labeled, kto: 0, gold: 0
})
let store: DataRecord[] = []

vi.mock('../api', () => ({
  api: {
    data: {
      open: async (dir: string) => ({ dir, dbPath: `${dir}/tunebench.db`, schemaVersion: 1, counts: counts(0) }),
      list: async (f: RecordFilter) => {
        const matching = store.filter((r) => !f.status || f.status === 'all' || r.status === f.status)
        const offset = f.offset ?? 0
        return { records: matching.slice(offset, offset + (f.limit ?? 100)).map((r) => ({ ...r })), total: matching.length, counts: counts(0) }
      },
      label: async (id: number, action: LabelAction) => {
        if (failNext) {
          failNext = false
          throw new Error("Error invoking remote method 'data.label': DataError: disk full")
        }
        calls.push({ id, action })
        const before = store.find((r) => r.id === id)!
        history.push({ ...before })
        const after: DataRecord = { ...before, status: 'labeled' }
        if (action.kind === 'pair') after.pair = { chosen: action.chosen, rejected: action.rejected }
        if (action.kind === 'skip') Object.assign(after, { skipped: true, status: 'skipped' })
        if (action.kind === 'kto')
          after.candidates = before.candidates.map((c) => (c.id === action.candidate ? { ...c, kto: action.desirable } : c))
        store = store.map((r) => (r.id === id ? after : r))
        return { record: after, counts: counts(store.filter((r) => r.status === 'labeled').length) }
      },
      undo: async () => {
        const before = history.pop()
        if (!before) return null
        store = store.map((r) => (r.id === before.id ? before : r))
        return { record: before, counts: counts(store.filter((r) => r.status === 'labeled').length) }
      }
    },
    on: () => () => undefined
  }
}))

const { pageSize, useProjectStore } = await import('./project')
const { useLabelingStore } = await import('./labeling')

describe('labeling store', () => {
  beforeEach(async () => {
    setActivePinia(createPinia())
    calls.length = 0
    history.length = 0
    store = [record(1), record(2), record(3)]
    await useProjectStore().open('/p')
  })

  it('stores left/right picks as chosen/rejected candidate ids and moves on', async () => {
    const labeling = useLabelingStore()
    expect(await labeling.pick(0)).toBe(true)
    expect(await labeling.pick(1)).toBe(true)
    // Left and right are the display order, fixed per record id by Knuth's multiplicative hash
    // (bit 16 of id * 2654435761 mod 2^32), worked out by hand here: record 1 (0x9E3779B1, bit
    // 16 set) shows its second candidate (11) on the left; record 2 (0x3C6EF362, bit clear)
    // shows them in stored order (20 left, 21 right).
    expect(calls).toEqual([
      { id: 1, action: { kind: 'pair', chosen: 11, rejected: 10 } },
      { id: 2, action: { kind: 'pair', chosen: 21, rejected: 20 } }
    ])
    expect(labeling.current?.id).toBe(3)
    const project = useProjectStore()
    expect(project.counts?.labeled).toBe(2)
    expect(project.records[0].pair).toEqual({ chosen: 11, rejected: 10 })
  })

  it('undo restores the record in the list and focuses it', async () => {
    const labeling = useLabelingStore()
    await labeling.pick(0)
    await labeling.pick(0)
    expect(labeling.current?.id).toBe(3)
    expect(await labeling.undo()).toBe(true)
    expect(labeling.current?.id).toBe(2)
    expect(labeling.current?.pair).toBeNull()
    expect(useProjectStore().counts?.labeled).toBe(1)
    expect(labeling.status).toBe('Undone')
  })

  it('does not move on when the service refuses a label, and shows its message', async () => {
    const labeling = useLabelingStore()
    failNext = true
    expect(await labeling.pick(0)).toBe(false)
    expect(labeling.current?.id).toBe(1)
    expect(labeling.error).toBe('disk full')
    expect(useProjectStore().records[0].status).toBe('unlabeled')
  })

  it('sends ties with both candidates, skips, and stays on the last record at the end', async () => {
    const labeling = useLabelingStore()
    await labeling.tie()
    await labeling.skip()
    await labeling.pick(1)
    expect(calls.map((c) => c.action.kind)).toEqual(['tie', 'skip', 'pair'])
    expect(calls[0].action).toEqual({ kind: 'tie', a: 10, b: 11 })
    expect(labeling.current?.id).toBe(3)
    labeling.previous()
    labeling.previous()
    labeling.previous()
    expect(labeling.current?.id).toBe(1)
  })

  it('walks past the first page: with the unlabeled filter, labeled records do not shift the next page', async () => {
    store = Array.from({ length: pageSize + 3 }, (_, i) => record(i + 1))
    const project = useProjectStore()
    await project.setFilter({ status: 'unlabeled' })
    expect(project.records).toHaveLength(pageSize)
    const labeling = useLabelingStore()
    for (let i = 0; i < pageSize; i++) await labeling.skip()
    // The last skip reached the end of the page and fetched the rest.
    expect(project.records.map((r) => r.id)).toEqual(store.map((r) => r.id))
    expect(labeling.current?.id).toBe(pageSize + 1)
  })

  it('KTO mode judges each answer of a record in turn, and undo returns to the one undone', async () => {
    const labeling = useLabelingStore()
    labeling.mode = 'kto'
    await labeling.kto(true)
    expect(labeling.current?.id).toBe(1)
    expect(labeling.answer?.id).toBe(11)
    await labeling.kto(false)
    expect(labeling.current?.id).toBe(2)
    expect(labeling.answer?.id).toBe(20)
    expect(calls.map((c) => c.action)).toEqual([
      { kind: 'kto', candidate: 10, desirable: true },
      { kind: 'kto', candidate: 11, desirable: false }
    ])
    await labeling.undo()
    expect(labeling.current?.id).toBe(1)
    expect(labeling.answer?.id).toBe(11)
    expect(labeling.answer?.kto).toBeNull()
  })
})
