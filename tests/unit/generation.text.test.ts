// The incremental text of a completion (no engine): what is emitted is always a prefix of the
// final text, so half a UTF-8 character or the start of a stop string is never shown, and the
// final text is decode(ids) with special tokens skipped, cut before a stop string.
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { CompletionText } from '../../main/services/generation/completionText'
import { rowSeed } from '../../main/services/generation/generate'
import { resolveSettings } from '../../preload/types/generationSettings'
import { ChatTokenizer } from '../../main/services/training/sequences'
import { IM_END, writeByteLevelTokenizer } from './generation-fixture'

let dir = ''
let tok: ChatTokenizer
beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'tb-gentext-'))
  writeByteLevelTokenizer(dir)
  tok = await ChatTokenizer.load(dir)
})
afterAll(() => rmSync(dir, { recursive: true, force: true }))

const bytes = (s: string): number[] => [...Buffer.from(s, 'utf8')]

function stream(ids: number[], stops: string[] = []) {
  const t = new CompletionText(tok, stops)
  const deltas = ids.map((id) => t.push(id))
  const { text, delta } = t.finish()
  return { t, deltas, text, final: delta }
}

describe('CompletionText', () => {
  it('holds back a character whose bytes are split across tokens until it is whole', () => {
    const ids = bytes('é😀x') // C3 A9 | F0 9F 98 80 | 78: one byte per token
    const { deltas, text } = stream(ids)
    expect(deltas).toEqual(['', 'é', '', '', '', '😀', 'x'])
    expect(text).toBe(tok.decode(ids, true))
  })

  it('splits inside merged tokens too (😀 as two tokens of two bytes each)', () => {
    const half1 = tok.encode('😀', false)
    expect(half1).toHaveLength(2)
    const { deltas, text } = stream([...tok.encode('hello ', false), ...half1, IM_END])
    expect(deltas.join('')).toBe('hello 😀')
    expect(deltas.some((d) => d.includes('\uFFFD'))).toBe(false)
    expect(text).toBe('hello 😀') // the eos is a special token: not in the text
  })

  it('an invalid byte stays U+FFFD in the text once a character follows it', () => {
    const ids = [0xc3, ...bytes('ab')]
    const { deltas, text } = stream(ids)
    expect(deltas.join('')).toBe(text)
    expect(text).toBe(tok.decode(ids, true))
    expect(text.startsWith('\uFFFD')).toBe(true)
  })

  it('a stop string across token boundaries cuts the text before it, keeping the tokens up to the one that completed it', () => {
    const ids = tok.encode('hello the abcd', false) // hello | ' the' | ' ' | abcd
    expect(ids.length).toBe(4)
    const { t, deltas, text, final } = stream(ids, ['lo th'])
    expect(t.stoppedAt).toBe(2)
    expect(text).toBe('hel')
    expect(deltas.join('') + final).toBe('hel')
    expect(deltas[0]).toBe('hel') // 'lo' could start the stop string: held back
  })

  it('emits a held-back stop-string prefix once it turns out not to be one', () => {
    const { deltas, text, final } = stream(tok.encode('hello the', false), ['lox'])
    expect(deltas).toEqual(['hel', 'lo the'])
    expect(final).toBe('')
    expect(text).toBe('hello the')
  })

  it('the earliest of several stop strings wins, within one token', () => {
    const { t, text } = stream(tok.encode('abcd ef', false), ['ef', 'bc'])
    expect(t.stoppedAt).toBe(1)
    expect(text).toBe('a')
  })
})

describe('row seeds and settings', () => {
  it('are distinct per (index, sample), repeat for the same seed, and are safe integers', () => {
    const seen = new Set<number>()
    for (let i = 0; i < 50; i++)
      for (let s = 0; s < 20; s++) {
        const v = rowSeed(7, i, s)
        expect(Number.isSafeInteger(v) && v >= 0).toBe(true)
        seen.add(v)
      }
    expect(seen.size).toBe(1000)
    expect(rowSeed(7, 3, 4)).toBe(rowSeed(7, 3, 4))
    expect(rowSeed(8, 3, 4)).not.toBe(rowSeed(7, 3, 4))
  })

  it('default as transformers, and a bad value names its setting', () => {
    expect(resolveSettings()).toEqual({ maxNewTokens: 256, temperature: 1, topP: 1, topK: 0, minP: 0, repetitionPenalty: 1, seed: 0, numReturnSequences: 1, stop: [] })
    expect(() => resolveSettings({ topP: 0 })).toThrow(/topP: expected a number in \(0, 1\]/)
    expect(() => resolveSettings({ topK: 1.5 })).toThrow(/topK/)
    expect(() => resolveSettings({ stop: [''] })).toThrow(/stop/)
  })
})
