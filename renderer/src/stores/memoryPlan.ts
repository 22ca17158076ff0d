// The Train form's memory estimate: the run the form describes, planned in main from the model's
// config.json (runs.memoryPlan, nothing loaded) against the free memory, asked again a moment
// after the form stops changing.
import { defineStore } from 'pinia'
import { ref } from 'vue'
import type { MemoryCheck } from '../../../preload/types/training'
import { api } from '../api'
import { errorMessage } from '../lib/guarded'

/** Quiet time after the last change before the plan is asked for. */
const DEBOUNCE_MS = 250

export const useMemoryPlanStore = defineStore('memoryPlan', () => {
  const check = ref<MemoryCheck | null>(null)
  const error = ref<string | null>(null)
  let timer: ReturnType<typeof setTimeout> | null = null
  /** Only the answer to the latest request is shown. */
  let asked = 0

  function follow(config: Record<string, unknown>): void {
    if (timer) clearTimeout(timer)
    timer = setTimeout(() => void ask(config), DEBOUNCE_MS)
  }

  async function ask(config: Record<string, unknown>): Promise<void> {
    const id = ++asked
    try {
      const result = await api.runs.memoryPlan(JSON.parse(JSON.stringify(config)) as Record<string, unknown>)
      if (id !== asked) return
      check.value = result
      error.value = null
    } catch (err) {
      if (id !== asked) return
      error.value = errorMessage(err)
    }
  }

  return { check, error, follow, ask }
})
