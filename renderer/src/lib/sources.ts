// The sources that can answer prompts, as the Playground and "Generate answers…" list them:
// the recent models as base models (the last opened first) and every run that saved an adapter.
import type { ChatSource } from '../../../preload/types/generation'
import { api } from '../api'

export interface SourceChoice extends ChatSource {
  /** Unique key (for selects and checkboxes). */
  key: string
  label: string
}

export const sourceKey = (s: ChatSource): string => `${s.model}\u0000${s.adapter ?? ''}`

/** An adapter folder typed by path, on top of a model. */
export function adapterChoice(model: string, dir: string): SourceChoice {
  const s: ChatSource = { model, adapter: dir }
  return { ...s, key: sourceKey(s), label: `${dir.split(/[\\/]/).filter(Boolean).pop()} (adapter)` }
}

export async function listSources(): Promise<SourceChoice[]> {
  const [recent, runs] = await Promise.all([api.models.recent(), api.runs.list()])
  const list: SourceChoice[] = []
  const add = (s: ChatSource, label: string): void => {
    const key = sourceKey(s)
    if (!list.some((x) => x.key === key)) list.push({ ...s, key, label })
  }
  for (const m of recent) add({ model: m.dir, adapter: null }, `${m.name} (base)`)
  for (const r of runs) if (r.hasAdapter && r.model) add({ model: r.model, adapter: r.dir }, `${r.id} (${r.importedFrom ? 'imported' : r.stage} adapter)`)
  return list
}
