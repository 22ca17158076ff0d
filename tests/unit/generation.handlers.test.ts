// The Playground's channels on a real engine: a chat turn streams its text on generation.delta
// and resolves with the whole answer; cancelChat stops one being written (it rejects with
// "cancelled") and the next turn runs as before; malformed requests are refused by name.
import { mkdtempSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, describe, expect, it } from 'vitest'
import type { EventMap } from '../../preload/contract'
import type { ChatRequest } from '../../preload/types/generation'
import { createGenerationHandlers } from '../../main/services/generation/handlers'
import { writeByteLevelModel } from './generation-fixture'

describe('generation channels', () => {
  const model = writeByteLevelModel(join(mkdtempSync(join(tmpdir(), 'tb-gen-handlers-')), 'model'), { seed: 9 })
  const deltas = new Map<string, string>()
  let onDelta: (d: EventMap['generation.delta']) => void = () => {}
  const closers: (() => Promise<void>)[] = []
  const h = createGenerationHandlers({
    emit: (channel, payload) => {
      if (channel !== 'generation.delta') return
      const d = payload as EventMap['generation.delta']
      deltas.set(d.id, (deltas.get(d.id) ?? '') + d.delta)
      onDelta(d)
    }
  }, (c) => closers.push(c))
  afterAll(async () => {
    for (const c of closers) await c()
  })
  const request = (id: string, maxNewTokens: number): ChatRequest => ({
    id, source: { model, adapter: null }, system: 'Be brief.', turns: [{ role: 'user', content: 'hi' }],
    settings: { maxNewTokens, seed: 4 }
  })

  it('streams a turn and resolves with the whole answer', async () => {
    const reply = await h['generation.chat'](request('a', 24))
    expect(reply.id).toBe('a')
    expect(reply.tokens).toBeGreaterThan(0)
    expect(reply.tokens).toBeLessThanOrEqual(24)
    expect(['eos', 'length']).toContain(reply.finishReason)
    expect(deltas.get('a') ?? '').toBe(reply.text)
  })

  it('cancelChat stops an answer being written; the next turn is unaffected', async () => {
    const first = await h['generation.chat'](request('b', 16))
    onDelta = (d) => {
      if (d.id === 'c') void h['generation.cancelChat']('c')
    }
    await expect(h['generation.chat'](request('c', 5000))).rejects.toThrow(/^cancelled$/)
    onDelta = () => {}
    expect(await h['generation.cancelChat']('c')).toBe(false)
    const again = await h['generation.chat'](request('d', 16))
    expect(again.text).toBe(first.text)
  })

  it('refuses malformed requests by name', async () => {
    await expect(h['generation.chat']({ ...request('e', 4), turns: [] })).rejects.toThrow(/must end with a user message/)
    await expect(h['generation.chat']({ ...request('f', 4), source: { model: '', adapter: null } })).rejects.toThrow(/choose a model/)
    await expect(h['generation.chat']({ ...request('g', 4), settings: { topP: 2 } })).rejects.toThrow(/topP/)
  })
})
