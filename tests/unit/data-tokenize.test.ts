// Tokenisation preview on the tiny test model (one token per character, a "role: content"
// chat template): counts are checked against hand-counted lengths.
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { Project } from '../../main/services/data/store'
import { tokenizePreview } from '../../main/services/data/tokenizePreview'
import { writeTinyModel } from '../fixtures/tinyModel'
import { tempDir } from './data-helpers'

let dir: string
let cleanup: () => void
let p: Project
let model: string

beforeAll(async () => {
  ;({ dir, cleanup } = tempDir())
  model = await writeTinyModel(join(dir, 'model'))
  p = new Project(join(dir, 'proj'))
  p.addRecords([
    { prompt: 'hi', system: null, candidates: [{ content: 'yes.' }, { content: 'no' }], pair: { chosen: 0, rejected: 1 } },
    { prompt: [{ role: 'user', content: 'ab' }], system: null, candidates: [], gold: 'cd' },
    { prompt: 'a'.repeat(40), system: null, candidates: [{ content: 'b'.repeat(30) }] },
    { prompt: 'no answers yet', system: null, candidates: [] }
  ])
})
afterAll(() => {
  p.close()
  cleanup()
})

describe('tokenisation preview', () => {
  it('counts prompt and longest answer tokens and lists what cutoff_len truncates', async () => {
    const r = await tokenizePreview(p, { modelDir: model, cutoffLen: 64, sample: 2 })
    // 1: 'hi' = 2, 'yes.' + eos = 5. 2: 'user: ab\nassistant: ' = 20, 'cd\n' = 3. 3: 40 + 31.
    expect(r.records).toBe(3)
    expect(r.rendered).toEqual([
      { recordId: 1, text: 'hiyes.', promptTokens: 2, completionTokens: 5 },
      { recordId: 2, text: 'user: ab\nassistant: cd\n', promptTokens: 20, completionTokens: 3 }
    ])
    expect(r.tokens).toMatchObject({ min: 7, max: 71, p50: 23 })
    expect(r.tokens.mean).toBeCloseTo((7 + 23 + 71) / 3, 10)
    expect(r.truncated).toEqual([{ recordId: 3, tokens: 71 }])
    expect((await tokenizePreview(p, { modelDir: model, cutoffLen: 100 })).truncated).toEqual([])
  })

  it('errors name the problem', async () => {
    await expect(tokenizePreview(p, { modelDir: model, cutoffLen: 0 })).rejects.toThrow(/cutoff_len must be a positive integer/)
    await expect(tokenizePreview(p, { modelDir: join(dir, 'missing'), cutoffLen: 8 })).rejects.toThrow(/tokenizer\.json/)
  })
})
