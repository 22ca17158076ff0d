// The generation channels: a Playground chat turn answered by one source, its text streamed
// on generation.delta, cancellable by id. Models stay loaded in the pool between turns.
import type { Emit, Handlers } from '../../../preload/contract'
import type { ChatRequest } from '../../../preload/types/generation'
import { GenerationCancelled, generate } from './generate'
import { GenerationPool } from './pool'

export function createGenerationHandlers(opts: { emit: Emit; pool?: GenerationPool }, onClose: (close: () => Promise<void>) => void = () => {}):
  Pick<Handlers, 'generation.chat' | 'generation.cancelChat'> {
  // A pool given by the caller is shared (services/index.ts) and freed by its owner.
  const pool = opts.pool ?? new GenerationPool()
  const running = new Map<string, AbortController>()
  onClose(async () => {
    for (const c of running.values()) c.abort()
    if (!opts.pool) await pool.dispose()
  })
  return {
    'generation.chat': async (req: ChatRequest) => {
      if (!req || typeof req.id !== 'string' || !req.id) throw new Error('generation.chat: the request needs an id')
      if (running.has(req.id)) throw new Error(`generation.chat: request ${req.id} is already running`)
      if (!req.source || typeof req.source.model !== 'string' || !req.source.model) throw new Error('generation.chat: choose a model to answer')
      if (!Array.isArray(req.turns) || req.turns.at(-1)?.role !== 'user') throw new Error('generation.chat: the conversation must end with a user message')
      const abort = new AbortController()
      running.set(req.id, abort)
      const t0 = performance.now()
      try {
        const [r] = await generate(pool, req.source, [{ prompt: req.turns, system: req.system }], {
          settings: { ...req.settings, numReturnSequences: 1 },
          signal: abort.signal,
          onText: (d) => opts.emit('generation.delta', { id: req.id, delta: d.delta })
        })
        if (!r) throw new Error('generation.chat: no answer')
        return { id: req.id, text: r.text, finishReason: r.finish_reason, tokens: r.completion_ids.length, seconds: (performance.now() - t0) / 1000 }
      } catch (err) {
        if (err instanceof GenerationCancelled) throw new Error('cancelled')
        throw err
      } finally {
        running.delete(req.id)
      }
    },
    'generation.cancelChat': async (id: string) => {
      const c = running.get(id)
      c?.abort()
      return c !== undefined
    }
  }
}
