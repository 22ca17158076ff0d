// The focus view's state: which record is in focus, the labeling mode, and the label verbs.
// Every label is written through the data service at once; the view only moves on once the
// service has acknowledged it, so a label shown is a label stored.
import { defineStore } from 'pinia'
import { computed, ref } from 'vue'
import { api } from '../api'
import { guarded } from '../lib/guarded'
import type { DataRecord, LabelAction } from '../../../preload/types/data'
import type { LabelMode } from '../lib/labelKeys'
import { pairSides } from '../lib/pairOrder'
import { useProjectStore } from './project'

export const useLabelingStore = defineStore('labeling', () => {
  const project = useProjectStore()
  const mode = ref<LabelMode>('pair')
  const index = ref(0)
  const saving = ref(false)
  const error = ref<string | null>(null)
  const guard = guarded(error, saving)
  /** A short line saying what the last key did ("Saved: left chosen", "Undone"). */
  const status = ref('')

  const current = computed<DataRecord | null>(() => project.records[index.value] ?? null)
  const position = computed(() => (project.records.length ? index.value + 1 : 0))

  /** KTO mode judges a record's answers one at a time: the one in focus. */
  const answerIndex = ref(0)
  const answer = computed(() => current.value?.candidates[answerIndex.value] ?? null)

  function go(i: number): void {
    const to = Math.max(0, Math.min(i, project.records.length - 1))
    if (to !== index.value) answerIndex.value = 0
    index.value = to
  }
  /** Moves on; at the end of the loaded records the next page is fetched first. */
  async function next(): Promise<void> {
    if (index.value >= project.records.length - 1) await project.loadMore()
    go(index.value + 1)
  }
  const previous = () => go(index.value - 1)
  function focus(recordId: number): void {
    const i = project.records.findIndex((r) => r.id === recordId)
    if (i >= 0) go(i)
  }

  async function apply(action: LabelAction, said: string, advance = true): Promise<boolean> {
    const record = current.value
    if (!record || saving.value) return false
    const saved = await guard(async () => {
      const result = await api.data.label(record.id, action)
      project.replaceRecord(result.record, result.counts)
      status.value = said
      if (advance) await next()
      return true
    })
    return saved ?? false
  }

  /** Pair mode: the answer shown left (0) or right (1) is the better one. */
  function pick(side: 0 | 1): Promise<boolean> {
    const r = current.value
    const sides = r ? pairSides(r.id, r.candidates) : null
    if (!sides) return Promise.resolve(false)
    const chosen = sides[side].id
    const rejected = sides[1 - side].id
    return apply({ kind: 'pair', chosen, rejected }, `Saved: ${side === 0 ? 'left' : 'right'} chosen`)
  }

  function tie(): Promise<boolean> {
    const c = current.value?.candidates
    if (!c || c.length < 2) return Promise.resolve(false)
    return apply({ kind: 'tie', a: c[0].id, b: c[1].id }, 'Saved: tie')
  }

  const skip = () => apply({ kind: 'skip' }, 'Skipped')

  /** KTO mode: the answer in focus is desirable or not; then the record's next answer, or the next record. */
  async function kto(desirable: boolean): Promise<boolean> {
    const r = current.value
    const c = answer.value
    if (!r || !c) return false
    const last = answerIndex.value >= r.candidates.length - 1
    const saved = await apply({ kind: 'kto', candidate: c.id, desirable }, desirable ? 'Saved: desirable' : 'Saved: undesirable', last)
    if (saved && !last) answerIndex.value++
    return saved
  }

  /** Saves an edited answer as the record's gold answer (the SFT target). */
  const saveGold = (text: string) => apply({ kind: 'gold', text: text.trim() === '' ? null : text }, 'Saved: gold answer', false)

  async function undo(): Promise<boolean> {
    if (saving.value) return false
    const undone = await guard(async () => {
      const result = await api.data.undo()
      if (!result) {
        status.value = 'Nothing to undo'
        return false
      }
      project.replaceRecord(result.record, result.counts)
      focus(result.record.id)
      // In KTO mode, back to the answer that lost its label (the first unjudged one).
      const unjudged = result.record.candidates.findIndex((c) => c.kto === null)
      answerIndex.value = mode.value === 'kto' && unjudged >= 0 ? unjudged : 0
      status.value = 'Undone'
      return true
    })
    return undone ?? false
  }

  return { mode, index, current, position, answerIndex, answer, saving, error, status, go, next, previous, focus, pick, tie, skip, kto, saveGold, undo }
})
