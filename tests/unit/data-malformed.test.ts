// Bad input never changes the store, and the error names the file, the line or row, and the field.
import { existsSync, readdirSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { DataError } from '../../main/services/data/errors'
import { previewImport } from '../../main/services/data/preview'
import { Project } from '../../main/services/data/store'
import { dump, tempDir, writeJsonl } from './data-helpers'

let dir: string
let cleanup: () => void
let project: Project
let base: string

beforeAll(async () => {
  ;({ dir, cleanup } = tempDir())
  project = new Project(join(dir, 'proj'))
  await project.importFiles([writeJsonl(join(dir, 'good.jsonl'), [{ prompt: 'p', chosen: 'c', rejected: 'r' }])])
  project.setLabel(1, { kind: 'skip' })
  base = dump(project)
})
afterAll(() => {
  project.close()
  cleanup()
})

async function expectRejected(file: string, ...parts: (string | RegExp)[]): Promise<string> {
  let err: unknown
  try {
    await project.importFiles([file])
  } catch (e) {
    err = e
  }
  expect(err).toBeInstanceOf(DataError)
  const msg = (err as Error).message
  for (const p of parts) expect(msg).toMatch(p)
  expect(dump(project)).toBe(base)
  // No scratch database is left behind.
  expect(readdirSync(join(dir, 'proj')).filter((f) => f.startsWith('.import-'))).toEqual([])
  return msg
}

describe('malformed inputs', () => {
  it('a bad JSON line names its line', async () => {
    const f = join(dir, 'badline.jsonl')
    writeFileSync(f, '{"prompt":"a","chosen":"b","rejected":"c"}\n{"prompt":"a","chosen":"b",\n')
    await expectRejected(f, f, 'line 2', /invalid JSON/)
  })

  it('a missing field names line and field', async () => {
    const f = writeJsonl(join(dir, 'missing.jsonl'), [
      { prompt: 'a', chosen: 'b', rejected: 'c' },
      { prompt: 'a', chosen: 'b', rejected: 'c' },
      { prompt: 'a', chosen: 'b' }
    ])
    await expectRejected(f, 'line 3', "field 'rejected'", /missing/)
  })

  it('a mistyped field names line and field', async () => {
    const f = writeJsonl(join(dir, 'mistyped.jsonl'), [{ prompt: 'a', completion: 'b', label: 'yes' }])
    await expectRejected(f, 'line 1', "field 'label'", /true or false/)
  })

  it('a mistyped nested message names its path', async () => {
    const f = writeJsonl(join(dir, 'msg.jsonl'), [{ messages: [{ role: 'user', content: 'x' }, { role: 'assistant', content: 5 }] }])
    await expectRejected(f, 'line 1', "field 'messages[1].content'")
  })

  it('a bad record late in a file leaves none of the earlier ones (one transaction, many batches)', async () => {
    const rows: unknown[] = Array.from({ length: 5000 }, (_, i) => ({ prompt: `p${i}`, chosen: 'c', rejected: 'r' }))
    rows.push({ prompt: 'p', chosen: 1, rejected: 'r' })
    await expectRejected(writeJsonl(join(dir, 'late.jsonl'), rows), 'line 5001', "field 'chosen'")
  })

  it('several files are one import: a bad second file keeps the first out too', async () => {
    const good = writeJsonl(join(dir, 'g2.jsonl'), [{ prompt: 'x', chosen: 'y', rejected: 'z' }])
    const bad = join(dir, 'b2.jsonl')
    writeFileSync(bad, 'not json\n')
    let err: unknown
    try {
      await project.importFiles([good, bad])
    } catch (e) {
      err = e
    }
    expect(String(err)).toMatch(/b2\.jsonl: line 1: invalid JSON/)
    expect(dump(project)).toBe(base)
  })

  it('blank lines, CRLF line ends, a UTF-8 BOM and no final newline are fine', async () => {
    const f = join(dir, 'crlf.jsonl')
    writeFileSync(f, '\uFEFF{"prompt":"a","chosen":"b","rejected":"c"}\r\n\r\n  \n{"prompt":"d","chosen":"e","rejected":"f"}')
    expect((await previewImport(f)).count).toBe(2)
    const q = new Project(join(dir, 'crlf'))
    await q.importFiles([f])
    expect(q.listRecords({}).records.map((r) => [r.prompt, r.sourceIndex])).toEqual([
      ['a', 1],
      ['d', 4]
    ])
    q.close()
  })

  it('an empty file', async () => {
    const f = join(dir, 'empty.jsonl')
    writeFileSync(f, '')
    await expectRejected(f, f, /no records/)
    writeFileSync(f, '\n\n  \n')
    await expectRejected(f, /no records/)
  })

  it('a missing file', async () => {
    await expectRejected(join(dir, 'nope.jsonl'), /file not found/)
  })

  it('UTF-16 with a BOM', async () => {
    const f = join(dir, 'utf16.jsonl')
    writeFileSync(f, Buffer.concat([Buffer.from([0xff, 0xfe]), Buffer.from('{"prompt":"a","chosen":"b","rejected":"c"}\n', 'utf16le')]))
    await expectRejected(f, /UTF-16/)
  })

  it('UTF-16 without a BOM', async () => {
    const f = join(dir, 'utf16nobom.jsonl')
    writeFileSync(f, Buffer.from('{"prompt":"a","chosen":"b","rejected":"c"}\n', 'utf16le'))
    await expectRejected(f, /NUL bytes/)
  })

  it('invalid UTF-8 names its line', async () => {
    const f = join(dir, 'latin1.jsonl')
    writeFileSync(
      f,
      Buffer.concat([Buffer.from('{"prompt":"ok","chosen":"b","rejected":"c"}\n{"prompt":"caf'), Buffer.from([0xe9]), Buffer.from('","chosen":"b","rejected":"c"}\n')])
    )
    await expectRejected(f, 'line 2', /invalid UTF-8/)
  })

  it('invalid UTF-8 in a JSON array names its line', async () => {
    const f = join(dir, 'latin1.json')
    writeFileSync(f, Buffer.concat([Buffer.from('[\n{"prompt":"ok","chosen":"b","rejected":"c"},\n{"prompt":"caf'), Buffer.from([0xe9]), Buffer.from('","chosen":"b","rejected":"c"}]\n')]))
    await expectRejected(f, 'line 3', /invalid UTF-8/)
  })

  it('a JSON array syntax error names its line; a bad record its row', async () => {
    const f = join(dir, 'bad.json')
    writeFileSync(f, '[\n{"prompt":"a","chosen":"b","rejected":"c"},\n{"prompt":"a" "chosen":"b"}\n]')
    await expectRejected(f, 'line 3', /invalid JSON/)
    writeFileSync(f, JSON.stringify([{ prompt: 'a', chosen: 'b', rejected: 'c' }, { prompt: 'a', chosen: 'b', rejected: null }]))
    await expectRejected(f, 'row 2', "field 'rejected'")
  })

  it('a pretty-printed JSON object instead of a list of records', async () => {
    const f = join(dir, 'object.json')
    writeFileSync(f, JSON.stringify({ data: [{ prompt: 'a', chosen: 'b', rejected: 'c' }] }, null, 2))
    await expectRejected(f, /expected a JSON array of records/, /keys: data/)
  })

  it('a 50 MB single field is refused with its size', async () => {
    const f = join(dir, 'huge.jsonl')
    const big = 'x'.repeat(50 * 1024 * 1024)
    writeFileSync(f, `{"prompt":"a","chosen":"b","rejected":"c"}\n{"prompt":"a","chosen":"${big}","rejected":"c"}\n`)
    await expectRejected(f, 'line 2', "field 'chosen'", /50\.0 MB/)
  })

  it('unlabeled candidates: a bad answer list or answer names its line and field', async () => {
    const ok = { prompt: 'p', completions: ['a', 'b'] }
    // (An empty list is a prompt with no answer yet: data-prompt-only.test.ts.)
    await expectRejected(writeJsonl(join(dir, 'cand-str.jsonl'), [ok, ok, { prompt: 'p', completions: 'a' }]), 'line 3', "field 'completions'", /list of candidate/)
    await expectRejected(writeJsonl(join(dir, 'cand-num.jsonl'), [{ prompt: 'p', completions: ['a', 5] }]), 'line 1', "field 'completions[1]'")
    await expectRejected(
      writeJsonl(join(dir, 'cand-obj.jsonl'), [{ prompt: 'p', responses: ['a', 'b'] }, { prompt: 'p', responses: [{ text: 'a' }, { answer: 'b', model: 'm' }] }]),
      'line 2',
      "field 'responses[1].text'",
      /keys: answer, model/
    )
    await expectRejected(writeJsonl(join(dir, 'cand-model.jsonl'), [{ prompt: 'p', responses: [{ text: 'a', model: 3 }] }]), "field 'responses[0].model'")
    await expectRejected(writeJsonl(join(dir, 'cand-prompt.jsonl'), [ok, { completions: ['a'] }]), 'line 2', "field 'prompt'", /missing/)
    // The preview finds the same problem in its full pass and offers no pair count.
    const preview = await previewImport(join(dir, 'cand-str.jsonl'))
    expect(preview).toMatchObject({ format: 'candidates', pairable: null, promptOnly: null, count: 3 })
    expect(preview.problem).toMatch(/line 3: field 'completions'/)
  })

  it('a file whose columns match no format asks for a mapping; a mapping imports it', async () => {
    const f = writeJsonl(join(dir, 'custom.jsonl'), [{ question: 'q', good: 'g', bad: 'b' }])
    await expectRejected(f, /cannot tell the format/, /question, good, bad/)
    const p2 = new Project(join(dir, 'mapped'))
    await p2.importFiles([f], { format: 'trl-preference', mapping: { prompt: 'question', chosen: 'good', rejected: 'bad' } })
    const rec = p2.getRecord(1)
    expect(rec.prompt).toBe('q')
    expect(rec.candidates.map((c) => c.content)).toEqual(['g', 'b'])
    p2.close()
  })

  it('a mapping naming an unknown field or missing a required one', async () => {
    const f = writeJsonl(join(dir, 'custom2.jsonl'), [{ question: 'q', good: 'g', bad: 'b' }])
    await expect(project.importFiles([f], { format: 'trl-preference', mapping: { chosen: 'good', rejected: 'bad', answer: 'x' } })).rejects.toThrow(
      /unknown field 'answer'/
    )
    await expect(project.importFiles([f], { format: 'trl-preference', mapping: { chosen: 'good' } })).rejects.toThrow(/needs a column for 'rejected'/)
    expect(dump(project)).toBe(base)
    expect(existsSync(join(dir, 'proj', 'tunebench.db'))).toBe(true)
  })
})
