// Prompt-only records (a prompt with no answer yet, for answers to be generated later) import
// from each shape as unlabeled records with zero answers, field by field as the source rows
// say; the preview counts them; the candidates export keeps them, so they import back as they were.
import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import { afterEach, describe, expect, it } from 'vitest'
import { exportProject } from '../../main/services/data/export'
import { inspectFile } from '../../main/services/data/importers'
import { previewImport } from '../../main/services/data/preview'
import { Project } from '../../main/services/data/store'
import type { DataFormatId, DataRecord } from '../../preload/types/data'
import { cand, contentOf, rec, tempDir, writeJsonl } from './data-helpers'

const cleanups: (() => void)[] = []
afterEach(() => cleanups.splice(0).forEach((c) => c()))
const msg = (role: string, content: string) => ({ role, content })

async function importRows(name: string, rows: unknown[]): Promise<{ project: Project; records: DataRecord[]; file: string; dir: string; format: DataFormatId | null }> {
  const { dir, cleanup } = tempDir()
  const file = writeJsonl(join(dir, name), rows)
  const project = new Project(join(dir, 'p'))
  cleanups.push(() => project.close(), cleanup)
  await project.importFiles([file])
  return { project, records: [...project.iterateRecords()], file, dir, format: (await inspectFile(file)).format }
}

/** What every prompt-only record is: no answer, no label, no gold; where it came from. */
function expectPromptOnly(r: DataRecord, file: string, line: number): void {
  expect(r).toMatchObject({ candidates: [], pair: null, gold: null, tie: false, skipped: false, status: 'unlabeled', source: file, sourceIndex: line })
}

describe('prompt-only import', () => {
  it('{"prompt": text} and {"prompt": messages}, with a system column or a system message', async () => {
    const rows = [
      { prompt: 'Write a haiku about rain.' },
      { prompt: 'Summarise this.', system: 'Be brief.' },
      { prompt: [msg('system', 'You are terse.'), msg('user', 'Hi'), msg('assistant', 'Hello.'), msg('user', 'Name a planet.')] },
      { prompt: [msg('user', 'ünïcode ✓')], id: 7 }
    ]
    const { records, format } = await importRows('prompts.jsonl', rows)
    expect(format).toBe('candidates')
    expect(records).toHaveLength(4)
    records.forEach((r, i) => expectPromptOnly(r, 'prompts.jsonl', i + 1))
    expect(records.map((r) => [r.prompt, r.system])).toEqual([
      [rows[0]!.prompt, null],
      [rows[1]!.prompt, rows[1]!.system],
      [(rows[2]!.prompt as unknown[]).slice(1), 'You are terse.'],
      [rows[3]!.prompt, null]
    ])
  })

  it('{"messages": [...]} ending in a user turn; one ending in an assistant turn stays an SFT record', async () => {
    const rows = [
      { messages: [msg('user', 'What is 2 + 2?')] },
      { messages: [msg('system', 'Answer in French.'), msg('user', 'Hello'), msg('assistant', 'Bonjour'), msg('user', 'Thanks')] },
      { messages: [msg('user', 'Q'), msg('assistant', 'A')] }
    ]
    const { records, format } = await importRows('chats.jsonl', rows)
    expect(format).toBe('trl-messages')
    expectPromptOnly(records[0]!, 'chats.jsonl', 1)
    expectPromptOnly(records[1]!, 'chats.jsonl', 2)
    expect(records[0]).toMatchObject({ prompt: rows[0]!.messages, system: null })
    expect(records[1]).toMatchObject({ prompt: rows[1]!.messages.slice(1), system: 'Answer in French.' })
    expect(records[2]).toMatchObject({ prompt: [msg('user', 'Q')], gold: 'A', candidates: [], status: 'labeled' })
  })

  it('alpaca without output: instruction and input joined, system and history kept', async () => {
    const rows = [
      { instruction: 'Translate to German.', input: 'Good morning' },
      { instruction: 'Continue.', input: '', system: 'You are a poet.', history: [['Start a poem', 'Roses are red']] }
    ]
    const { records, format } = await importRows('alpaca.jsonl', rows)
    expect(format).toBe('alpaca')
    records.forEach((r, i) => expectPromptOnly(r, 'alpaca.jsonl', i + 1))
    expect(records[0]).toMatchObject({ prompt: 'Translate to German.\nGood morning', system: null })
    expect(records[1]).toMatchObject({
      prompt: [msg('user', 'Start a poem'), msg('assistant', 'Roses are red'), msg('user', 'Continue.')],
      system: 'You are a poet.'
    })
  })

  it('sharegpt conversations ending in a human turn; a kto_tag there names the missing answer', async () => {
    const { records } = await importRows('sg.jsonl', [{ conversations: [{ from: 'human', value: 'Tell me a joke.' }], system: 'Be funny.' }])
    expectPromptOnly(records[0]!, 'sg.jsonl', 1)
    expect(records[0]).toMatchObject({ prompt: [msg('user', 'Tell me a joke.')], system: 'Be funny.' })
    const { dir, cleanup } = tempDir()
    cleanups.push(cleanup)
    const bad = writeJsonl(join(dir, 'kto.jsonl'), [{ conversations: [{ from: 'human', value: 'Q' }], kto_tag: true }])
    const p = new Project(join(dir, 'p'))
    cleanups.unshift(() => p.close())
    await expect(p.importFiles([bad])).rejects.toThrow(/line 1: field 'conversations': a kto_tag judges an answer/)
  })

  it('candidates rows with no answer (no column, null or an empty list) sit beside ones with answers', async () => {
    const rows = [
      { prompt: 'A', completions: ['x', { text: 'y', model: 'm' }] },
      { prompt: 'B', completions: [] },
      { prompt: 'C', completions: null },
      { prompt: 'D' },
      { prompt: 'E', completions: ['only'] }
    ]
    const { records, file } = await importRows('mixed.jsonl', rows)
    expect(records.map((r) => r.candidates.map((c) => [c.content, c.source]))).toEqual([[['x', 'import'], ['y', 'm']], [], [], [], [['only', 'import']]])
    for (const i of [1, 2, 3]) expectPromptOnly(records[i]!, 'mixed.jsonl', i + 1)
    const preview = await previewImport(file)
    expect(preview).toMatchObject({ format: 'candidates', count: 5, pairable: 1, promptOnly: 3, problem: null })
  })

  it('the preview says how many prompt-only records a file holds, for each shape', async () => {
    const { dir, cleanup } = tempDir()
    cleanups.push(cleanup)
    const preview = (name: string, rows: unknown[]) => previewImport(writeJsonl(join(dir, name), rows))
    expect(await preview('a.jsonl', [{ prompt: 'p' }, { prompt: 'q' }])).toMatchObject({ format: 'candidates', count: 2, promptOnly: 2, pairable: 0 })
    expect(await preview('b.jsonl', [{ messages: [msg('user', 'u')] }, { messages: [msg('user', 'u'), msg('assistant', 'a')] }])).toMatchObject({
      format: 'trl-messages', count: 2, promptOnly: 1, pairable: null
    })
    expect(await preview('c.jsonl', [{ instruction: 'i', input: '' }])).toMatchObject({ format: 'alpaca', count: 1, promptOnly: 1 })
    expect(await preview('d.jsonl', [{ instruction: 'i', input: '', output: 'o' }])).toMatchObject({ format: 'alpaca', count: 1, promptOnly: 0 })
    // Formats that always carry answers do not count them.
    expect(await preview('e.jsonl', [{ prompt: 'p', chosen: 'a', rejected: 'b' }])).toMatchObject({ format: 'trl-preference', promptOnly: null })
    // A prompt beside an answer column is not taken for prompt-only.
    expect((await preview('f.jsonl', [{ prompt: 'p', answer: 'a' }])).format).toBeNull()
  })

  it('the candidates export keeps prompt-only records, and they import back as they were', async () => {
    const rows = [
      { prompt: 'Only a prompt.' },
      { prompt: [msg('system', 'S'), msg('user', 'Q')] },
      { prompt: 'Answered', completions: [{ text: 'a', model: 'm1' }, 'b'] }
    ]
    const { project, dir } = await importRows('src.jsonl', rows)
    // An SFT record (gold, no candidates) has nothing to judge and stays out.
    project.addRecords([{ prompt: 'sft', system: null, candidates: [], gold: 'g' }])
    const out = join(dir, 'out.jsonl')
    expect(exportProject(project, { format: 'candidates', out }).files[0]!.records).toBe(3)
    expect(readFileSync(out, 'utf8').trim().split('\n').map((l) => JSON.parse(l))).toEqual([
      { prompt: 'Only a prompt.', completions: [] },
      { prompt: [msg('user', 'Q')], system: 'S', completions: [] },
      { prompt: 'Answered', completions: [{ text: 'a', model: 'm1' }, 'b'] }
    ])
    // The source rows as store records, written out: they import so from the source and again
    // from the export.
    const expected = [
      rec({ prompt: 'Only a prompt.', status: 'unlabeled' }),
      rec({ prompt: [msg('user', 'Q')], system: 'S', status: 'unlabeled' }),
      rec({ prompt: 'Answered', candidates: [cand('a', { source: 'm1' }), 'b'], status: 'unlabeled' })
    ]
    expect(contentOf(project).slice(0, 3)).toEqual(expected)
    const again = new Project(join(dir, 'again'))
    cleanups.unshift(() => again.close())
    await again.importFiles([out])
    expect(contentOf(again)).toEqual(expected)
    const out2 = join(dir, 'out2.jsonl')
    exportProject(again, { format: 'candidates', out: out2 })
    expect(readFileSync(out2, 'utf8')).toBe(
      '{"prompt":"Only a prompt.","completions":[]}\n' +
        '{"prompt":[{"role":"user","content":"Q"}],"system":"S","completions":[]}\n' +
        '{"prompt":"Answered","completions":[{"text":"a","model":"m1"},"b"]}\n'
    )
  })

  it('the Data page list shows them among the unlabeled records, with zero answers', async () => {
    const { project } = await importRows('p.jsonl', [{ prompt: 'one' }, { prompt: 'two', completions: ['a', 'b'] }])
    const page = project.listRecords({ status: 'unlabeled' })
    expect(page.total).toBe(2)
    expect(page.records.map((r) => r.candidates.length)).toEqual([0, 2])
    expect(page.counts).toMatchObject({ total: 2, unlabeled: 2, pairs: 0, kto: 0, gold: 0 })
  })
})
