// The reference log-probs a run has taken, carried by its checkpoints. A sequence's summed
// log-prob can differ in its last bit with the micro-batch around it (other sequences change
// the GEMMs' row counts, which some kernels split differently), and shuffling puts an example
// beside other examples in every epoch. So each value is taken once, in the first micro-batch
// that needs it, and never replaced; a resumed run reads the very values the stopped run held
// instead of taking them again in other micro-batches.
import { existsSync } from 'node:fs'
import { readFile } from 'node:fs/promises'
import { join } from 'node:path'
import { writeFileAtomic } from '../../fsAtomic'
import type { StageCheckpoint } from './stage'

export const REFERENCE_FILE = 'reference_logps.json'

export class ReferenceCache {
  private logps = new Map<string, number>()

  /** Whether every key has its value. */
  holds(keys: readonly string[]): boolean {
    return keys.every((k) => this.logps.has(k))
  }

  get(key: string): number {
    const v = this.logps.get(key)
    if (v === undefined) throw new Error(`no reference log-prob was taken for ${key}`)
    return v
  }

  /** Sets the keys that have no value yet to value(j), j the key's index in keys. */
  fill(keys: readonly string[], value: (j: number) => number): void {
    keys.forEach((k, j) => {
      if (!this.logps.has(k)) this.logps.set(k, value(j))
    })
  }

  readonly checkpoint: StageCheckpoint = {
    save: async (dir) => {
      await writeFileAtomic(join(dir, REFERENCE_FILE), JSON.stringify({ version: 1, logps: Object.fromEntries(this.logps) }) + '\n')
    },
    load: async (dir) => {
      const file = join(dir, REFERENCE_FILE)
      // A checkpoint written before the file existed: the values are taken again.
      this.logps = existsSync(file) ? parseReferenceFile(file, await readFile(file, 'utf8')) : new Map()
    }
  }
}

function parseReferenceFile(file: string, text: string): Map<string, number> {
  let doc: unknown
  try {
    doc = JSON.parse(text)
  } catch (err) {
    throw new Error(`${file}: not JSON (${(err as Error).message})`)
  }
  const d = doc as { version?: unknown; logps?: unknown }
  if (!d || typeof d !== 'object' || d.version !== 1) throw new Error(`${file}: expected {"version": 1, "logps": {...}}`)
  if (!d.logps || typeof d.logps !== 'object' || Array.isArray(d.logps)) throw new Error(`${file}: "logps" must be an object of numbers`)
  const out = new Map<string, number>()
  for (const [k, v] of Object.entries(d.logps)) {
    if (typeof v !== 'number' || !Number.isFinite(v)) throw new Error(`${file}: logps["${k}"] is ${JSON.stringify(v)}, not a finite number`)
    out.set(k, v)
  }
  return out
}
