// Learning-rate schedules and step counts as transformers' Trainer computes them.
import type { LrSchedulerType } from '../../../preload/types/trainingSchema'

/** warmup_steps when given, else ceil(warmup_ratio · total_steps). */
export function warmupSteps(warmupStepsKey: number, warmupRatio: number, totalSteps: number): number {
  return warmupStepsKey > 0 ? warmupStepsKey : Math.ceil(warmupRatio * totalSteps)
}

/** Multiplier of the peak lr at optimiser step `step` (0-based: the update with index `step`
 *  uses lrFactor(step); transformers logs lrFactor(global_step) after the update). */
export function lrFactor(type: LrSchedulerType, step: number, warmup: number, total: number): number {
  if (step < warmup && type !== 'constant') return step / Math.max(1, warmup)
  switch (type) {
    case 'constant':
    case 'constant_with_warmup':
      return 1
    case 'linear':
      return Math.max(0, (total - step) / Math.max(1, total - warmup))
    case 'cosine': {
      const progress = (step - warmup) / Math.max(1, total - warmup)
      return Math.max(0, 0.5 * (1 + Math.cos(Math.PI * 2 * 0.5 * progress)))
    }
  }
}

// Step counts live with the schema, where the Train form reads them too.
export { stepsPerEpoch, totalSteps } from '../../../preload/types/trainingSchema'

/** "H:MM:SS" as Python's str(timedelta) (LLaMA-Factory's elapsed_time/remaining_time). */
export function formatDuration(seconds: number): string {
  const s = Math.max(0, Math.round(seconds))
  const h = Math.floor(s / 3600)
  const m = Math.floor((s % 3600) / 60)
  const sec = s % 60
  return `${h}:${String(m).padStart(2, '0')}:${String(sec).padStart(2, '0')}`
}
