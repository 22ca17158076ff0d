// The bundled demo (model folder and datasets), asked of main once and kept.
import { defineStore } from 'pinia'
import { ref } from 'vue'
import type { DemoResources } from '../../../preload/types/app'
import { api } from '../api'
import { errorMessage } from '../lib/guarded'
import type { TrainingStage } from '../../../preload/types/trainingSchema'

/** The method each bundled dataset is made for (resources/demo/datasets.json describes them);
 *  candidates.jsonl is for labeling, not training. */
const demoStages: Record<string, TrainingStage> = {
  'sft.jsonl': 'sft',
  'preference.jsonl': 'dpo',
  'kto.jsonl': 'kto',
  'grpo.jsonl': 'grpo'
}

export function demoStageOf(name: string): TrainingStage | null {
  return demoStages[name] ?? null
}

export const useDemoStore = defineStore('demo', () => {
  const resources = ref<DemoResources | null>(null)
  const error = ref<string | null>(null)
  let pending: Promise<DemoResources | null> | null = null

  /** The demo resources, or null (with `error` set) when the app cannot find them. */
  function load(): Promise<DemoResources | null> {
    if (resources.value) return Promise.resolve(resources.value)
    pending ??= api.app
      .demo()
      .then((r) => {
        resources.value = r
        error.value = null
        return r
      })
      .catch((err: unknown) => {
        error.value = errorMessage(err)
        return null
      })
      .finally(() => {
        pending = null
      })
    return pending
  }

  return { resources, error, load }
})
