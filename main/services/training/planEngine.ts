// The engine build's facts that change a memory plan (memoryPlan.ts): whether it keeps a packed
// copy of frozen weights (oneDNN), its threads, and the machine's physical memory.
import { totalmem } from 'node:os'
import { engineFacts } from '../../../native/index'
import type { EngineFactsForPlan } from './memoryPlan'

/** A build that cannot be loaded is planned as packing (the larger plan); loading it says why. */
export function engineForPlan(): EngineFactsForPlan {
  try {
    const facts = engineFacts()
    return { packs: facts.blas === 'onednn', physicalBytes: totalmem(), threads: facts.threads }
  } catch {
    return { packs: true, physicalBytes: totalmem(), threads: 1 }
  }
}
