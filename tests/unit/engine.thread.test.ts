// README Engine: "Every heavy call is an async worker returning a Promise, cancellable, and runs
// on one engine thread". Many calls on two models are put in flight at once; the addon's probe
// (heavyCallStats, native/src/addon/engine_thread.h) counts each call's work where it runs: one
// at a time, all on one OS thread, never on the JS thread.
import { mkdtempSync, rmSync } from 'node:fs'
import { createRequire } from 'node:module'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { findAddon, GREEDY, Model } from '../../native/index'
import { tinyBatch, writeTinyModel } from './engine-fixture'

interface HeavyCallStats {
  calls: number
  maxInFlight: number
  threads: number
  onJsThread: number
}
const stats = (): HeavyCallStats => {
  // The same module instance as native/index.ts loads (require caches by path).
  const addon = createRequire(import.meta.url)(findAddon()!) as { heavyCallStats(): HeavyCallStats }
  return addon.heavyCallStats()
}

let root = ''
beforeAll(() => {
  root = mkdtempSync(join(tmpdir(), 'tunebench-engine-thread-'))
})
afterAll(() => {
  rmSync(root, { recursive: true, force: true })
})

describe('heavy calls', () => {
  it('run one at a time on one engine thread, off the JS thread', async () => {
    const VOCAB = 2048
    writeTinyModel(join(root, 'a'), { vocab: VOCAB, seed: 1 })
    writeTinyModel(join(root, 'b'), { architecture: 'Qwen3ForCausalLM', vocab: VOCAB, seed: 2 })
    const before = stats()
    // Two loads at once are heavy calls too (their worker has no model yet).
    const models = await Promise.all([Model.load(join(root, 'a'), { threads: 1 }), Model.load(join(root, 'b'), { threads: 1 })])
    try {
      for (const m of models) m.addLora({ rank: 2, alpha: 4, dropout: 0, targets: ['q', 'v'], rslora: false, seed: 3 })
      // Big enough batches (8 x 128 tokens, a 2048-word head) that calls would overlap if
      // they ran on libuv's pool threads side by side.
      const batch = tinyBatch([128, 100, 128, 64, 128, 90, 128, 128], 128, VOCAB)
      const order: string[] = []
      const calls: Promise<unknown>[] = []
      for (let i = 0; i < 6; i++)
        models.forEach((m, k) => calls.push(m.logps(batch, { adapters: i % 2 === 0, train: false }).then(() => order.push(`logps ${k}`))))
      models.forEach((m, k) => {
        const prompt = Int32Array.from({ length: 16 }, (_, j) => (j * 37 + k) % VOCAB)
        calls.push(m.generate([prompt], { ...GREEDY, maxNewTokens: 8, eosIds: [], seeds: [k] }).then(() => order.push(`generate ${k}`)))
      })
      await Promise.all(calls)
      expect(order).toHaveLength(14)

      const after = stats()
      const seen = { calls: after.calls - before.calls, maxInFlight: after.maxInFlight, threads: after.threads, onJsThread: after.onJsThread }
      // 2 loads, 12 logps, 2 generate
      expect(seen).toEqual({ calls: 16, maxInFlight: 1, threads: 1, onJsThread: 0 })
    } finally {
      for (const m of models) m.dispose()
    }
  })
})
