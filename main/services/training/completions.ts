// Where a GRPO run keeps each step's sampled completions: completions/step-NNNNN.jsonl in the
// run folder, one GrpoCompletion per line (preload/types/training.ts).
import { join } from 'node:path'

export const COMPLETIONS_DIR = 'completions'

export const completionsFile = (runDir: string, step: number): string =>
  join(runDir, COMPLETIONS_DIR, `step-${String(step).padStart(5, '0')}.jsonl`)

/** The step of a completions file name, or null for any other name. */
export function completionsStep(name: string): number | null {
  const m = /^step-(\d+)\.jsonl$/.exec(name)
  return m ? Number(m[1]) : null
}
