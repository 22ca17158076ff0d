// Decontamination against an eval set (n-gram overlap) and duplicate detection; exclusion
// flags records (they stay in the store) and keeps them out of exports.
import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import { afterEach, beforeEach, describe, expect, it } from 'vitest'
import { decontaminate, excludeHits, minhash, ngrams, similarity, words } from '../../main/services/data/decontam'
import { exportProject } from '../../main/services/data/export'
import { Project } from '../../main/services/data/store'
import { tempDir, writeJsonl } from './data-helpers'

let dir: string
let cleanup: () => void
let p: Project
const rec = (prompt: string) => ({ prompt, system: null, candidates: [{ content: 'a' }, { content: 'b' }], pair: { chosen: 0, rejected: 1 } })

const evalQuestion = 'Natalia sold clips to 48 of her friends in April, and then she sold half as many clips in May. How many clips did she sell altogether?'

beforeEach(() => {
  ;({ dir, cleanup } = tempDir())
  p = new Project(join(dir, 'proj'))
  p.addRecords([
    rec('Write a poem about the sea and the wind over the harbour at night.'), // 1 clean
    rec('Question: ' + evalQuestion + ' Show your work.'), // 2 contaminated (most 8-grams in eval)
    rec('Write a poem about the sea and the wind over the harbour at night.'), // 3 exact duplicate of 1
    rec('write a POEM about the sea, and the wind over the harbour at night!'), // 4 same after normalisation
    rec('Explain how photosynthesis turns light, water and carbon dioxide into sugar and oxygen in the leaves of green plants.'), // 5
    rec('Explain how photosynthesis turns light, water and carbon dioxide into sugar and oxygen in the leaves of green plants, please.'), // 6 near dup of 5
    rec('List three facts about Jupiter.') // 7 short, clean
  ])
})
afterEach(() => {
  p.close()
  cleanup()
})

describe('decontamination', () => {
  it('text helpers', () => {
    expect(words("Hello, World! It's 2024.")).toEqual(['hello', 'world', 'it', 's', '2024'])
    expect(ngrams(['a', 'b', 'c'], 2)).toEqual(['a b', 'b c'])
    expect(ngrams(['a', 'b'], 8)).toEqual(['a b'])
    const a = minhash(ngrams(words('the quick brown fox jumps over the lazy dog again and again'), 3))
    expect(similarity(a, a)).toBe(1)
    const b = minhash(ngrams(words('completely different words are written here for this test case now'), 3))
    expect(similarity(a, b)).toBeLessThan(0.2)
  })

  it('reports eval overlap, exact and near duplicates; exclude keeps them out of exports', async () => {
    const evalFile = writeJsonl(join(dir, 'gsm8k.jsonl'), [{ question: 'What is 1 + 1?', answer: '2' }, { question: evalQuestion, answer: '72' }])
    const report = await decontaminate(p, { evalFile, ngram: 8, threshold: 0.5 })
    expect(report.evalRecords).toBe(2)
    expect(report.scanned).toBe(7)
    expect(report.contaminated.map((h) => [h.recordId, h.match])).toEqual([[2, 2]])
    expect(report.contaminated[0].score).toBeGreaterThan(0.8)
    expect(report.exactDuplicates.map((h) => [h.recordId, h.match])).toEqual([
      [3, 1],
      [4, 1]
    ])
    expect(report.nearDuplicates.map((h) => [h.recordId, h.match])).toEqual([[6, 5]])
    expect(report.nearDuplicates[0].score).toBeGreaterThanOrEqual(0.8)

    expect(excludeHits(p, report)).toBe(4)
    expect(p.getRecord(2)).toMatchObject({ excluded: true, excludedReason: expect.stringContaining('eval record 2') })
    expect(p.getRecord(6).excludedReason).toBe('near duplicate of record 5')
    const out = join(dir, 'dpo.jsonl')
    exportProject(p, { format: 'trl-dpo', out })
    expect(readFileSync(out, 'utf8').trim().split('\n')).toHaveLength(3)
    expect(p.counts()).toMatchObject({ total: 7, excluded: 4 })
    // A second pass over the kept records finds nothing more.
    const again = await decontaminate(p, { evalFile })
    expect(again.contaminated.length + again.exactDuplicates.length + again.nearDuplicates.length).toBe(0)
  })

  it('an eval file in a training format and an eval file with no prompt column', async () => {
    const evalFile = writeJsonl(join(dir, 'eval.jsonl'), [{ messages: [{ role: 'user', content: evalQuestion }, { role: 'assistant', content: '72' }] }])
    expect((await decontaminate(p, { evalFile })).contaminated.map((h) => h.recordId)).toEqual([2])
    const bad = writeJsonl(join(dir, 'bad.jsonl'), [{ foo: 'x' }])
    await expect(decontaminate(p, { evalFile: bad })).rejects.toThrow(/no prompt column found/)
    await expect(decontaminate(p, { ngram: 0 })).rejects.toThrow(/ngram must be a positive integer/)
  })
})
