// import -> export -> import gives the same records, and the second export the same bytes,
// for every format Tunebench reads.
import { readFileSync, readdirSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { afterEach, describe, expect, it } from 'vitest'
import { exportProject } from '../../main/services/data/export'
import { readTrainingRecords } from '../../main/services/data/formats'
import { inspectFile } from '../../main/services/data/importers'
import { previewImport } from '../../main/services/data/preview'
import { Project } from '../../main/services/data/store'
import type { ExportFormat } from '../../preload/types/data'
import { contentOf, tempDir, writeJsonl } from './data-helpers'

const conv = (role: string, content: string) => ({ role, content })

// For llamafactory, `method` picks the file to read back: a pair is also written as KTO records.
const cases: { name: string; format: string; export: ExportFormat; method?: 'dpo' | 'kto' | 'sft'; rows: unknown[] }[] = [
  {
    name: 'TRL preference, plain',
    format: 'trl-preference',
    export: 'trl-dpo',
    rows: [
      { prompt: 'The sky is', chosen: ' blue.', rejected: ' green.' },
      { prompt: 'Name a fruit:', chosen: ' apple', rejected: ' chair' }
    ]
  },
  {
    name: 'TRL preference, conversational with system',
    format: 'trl-preference',
    export: 'trl-dpo',
    rows: [
      {
        prompt: [conv('system', 'Be brief.'), conv('user', 'Hi?')],
        chosen: [conv('assistant', 'Hello!')],
        rejected: [conv('assistant', 'Go away.')]
      },
      { prompt: [conv('user', 'A'), conv('assistant', 'B'), conv('user', 'C?')], chosen: [conv('assistant', 'D')], rejected: [conv('assistant', 'E')] }
    ]
  },
  {
    name: 'TRL unpaired (KTO)',
    format: 'trl-unpaired',
    export: 'trl-kto',
    rows: [
      { prompt: 'Q1', completion: 'good', label: true },
      { prompt: 'Q1', completion: 'bad', label: false },
      { prompt: 'Q2 ünïcode ✓', completion: 'fine', label: true }
    ]
  },
  {
    name: 'TRL unpaired, conversational',
    format: 'trl-unpaired',
    export: 'trl-kto',
    rows: [{ prompt: [conv('user', 'Q')], completion: [conv('assistant', 'A')], label: false }]
  },
  {
    name: 'TRL prompt-completion (SFT), plain',
    format: 'trl-prompt-completion',
    export: 'trl-sft',
    rows: [
      { prompt: 'Once upon a time', completion: ' there was a fox.' },
      { prompt: '2+2=', completion: '4' }
    ]
  },
  {
    name: 'TRL prompt-completion (SFT), conversational',
    format: 'trl-prompt-completion',
    export: 'trl-sft',
    rows: [{ prompt: [conv('user', 'Hi')], completion: [conv('assistant', 'Hello')] }]
  },
  {
    name: 'TRL messages (SFT), multi-turn',
    format: 'trl-messages',
    export: 'trl-sft',
    rows: [
      { messages: [conv('system', 'S'), conv('user', 'u1'), conv('assistant', 'a1'), conv('user', 'u2'), conv('assistant', 'a2')] },
      { messages: [conv('user', 'x'), conv('assistant', 'y')] }
    ]
  },
  {
    name: 'LLaMA-Factory alpaca ranking',
    method: 'dpo',
    format: 'alpaca',
    export: 'llamafactory',
    rows: [
      { instruction: 'Translate', input: 'cat', chosen: 'chat', rejected: 'chien' },
      { instruction: 'Add 1+1', input: '', chosen: '2', rejected: '3' }
    ]
  },
  {
    name: 'LLaMA-Factory alpaca SFT with history and system',
    method: 'sft',
    format: 'alpaca',
    export: 'llamafactory',
    rows: [{ instruction: 'And now?', input: '', output: 'Now this.', system: 'Sys', history: [['First?', 'First.']] }]
  },
  {
    name: 'LLaMA-Factory alpaca kto_tag',
    method: 'kto',
    format: 'alpaca',
    export: 'llamafactory',
    rows: [
      { instruction: 'Q', input: '', output: 'good', kto_tag: true },
      { instruction: 'Q', input: '', output: 'bad', kto_tag: false }
    ]
  },
  {
    name: 'LLaMA-Factory sharegpt ranking (from/value)',
    method: 'dpo',
    format: 'sharegpt',
    export: 'llamafactory',
    rows: [
      {
        conversations: [{ from: 'human', value: 'Hi' }],
        chosen: { from: 'gpt', value: 'Hello' },
        rejected: { from: 'gpt', value: 'Bye' },
        system: 'Polite.'
      }
    ]
  },
  {
    name: 'LLaMA-Factory sharegpt kto_tag',
    method: 'kto',
    format: 'sharegpt',
    export: 'llamafactory',
    rows: [{ conversations: [{ from: 'human', value: 'Hi' }, { from: 'gpt', value: 'Hello' }], kto_tag: true }]
  },
  {
    name: 'OpenAI preference fine-tuning',
    format: 'openai-preference',
    export: 'trl-dpo',
    rows: [
      {
        input: { messages: [conv('user', 'Capital of France?')] },
        preferred_output: [conv('assistant', 'Paris')],
        non_preferred_output: [conv('assistant', 'Lyon')]
      }
    ]
  },
  {
    name: 'Unlabeled candidates, plain strings, one or more answers, with a system prompt',
    format: 'candidates',
    export: 'candidates',
    rows: [
      { prompt: 'Name a colour.', completions: ['Blue.', 'Seven.'] },
      { prompt: 'Say hi.', system: 'Be brief.', completions: ['Hi!', 'Greetings, esteemed person.', 'Hello.'] },
      { prompt: 'Only one answer', completions: ['Alone'] }
    ]
  },
  {
    name: 'Unlabeled candidates, responses with model names, conversational prompt',
    format: 'candidates',
    export: 'candidates',
    rows: [
      {
        prompt: [conv('system', 'S'), conv('user', 'Q1'), conv('assistant', 'A1'), conv('user', 'Q2')],
        responses: [{ content: 'from a', model: 'model-a' }, { text: 'from b', source: 'model-b' }, 'unnamed']
      },
      { prompt: [conv('user', 'ünïcode ✓')], responses: [[conv('assistant', 'as a message')], { text: 'named', model: 'model-a' }] }
    ]
  }
]

let cleanups: (() => void)[] = []
afterEach(() => {
  for (const c of cleanups) c()
  cleanups = []
})

function exportFiles(project: Project, format: ExportFormat, out: string, method?: string): string[] {
  const r = exportProject(project, { format, out })
  return r.files.filter((f) => !method || f.method === method).map((f) => f.path)
}

describe('round trip import -> export -> import', () => {
  for (const c of cases) {
    it(c.name, async () => {
      const { dir, cleanup } = tempDir()
      cleanups.push(cleanup)
      const src = writeJsonl(join(dir, 'src.jsonl'), c.rows)
      expect((await inspectFile(src)).format).toBe(c.format)

      const a = new Project(join(dir, 'a'))
      await a.importFiles([src])
      expect(a.db.prepare('SELECT file, format, records FROM imports').all()).toEqual([{ file: src, format: c.format, records: c.rows.length }])
      const before = contentOf(a)
      expect(before).toHaveLength(c.rows.length)
      const files1 = exportFiles(a, c.export, c.export === 'llamafactory' ? join(dir, 'out1') : join(dir, 'out1.jsonl'), c.method)
      expect(files1).toHaveLength(1)

      const b = new Project(join(dir, 'b'))
      await b.importFiles(files1)
      expect(contentOf(b)).toEqual(before)
      const files2 = exportFiles(b, c.export, c.export === 'llamafactory' ? join(dir, 'out2') : join(dir, 'out2.jsonl'), c.method)
      expect(files2.map((f) => readFileSync(f, 'utf8'))).toEqual(files1.map((f) => readFileSync(f, 'utf8')))
      if (c.export === 'llamafactory') {
        const info1 = readFileSync(join(dir, 'out1', 'dataset_info.json'), 'utf8')
        expect(readFileSync(join(dir, 'out2', 'dataset_info.json'), 'utf8')).toBe(info1)
      }
      a.close()
      b.close()
    })
  }

  it('Parquet (row groups, int64 columns, nested message lists)', async () => {
    const { dir, cleanup } = tempDir()
    cleanups.push(cleanup)
    const fixtures = join(__dirname, '..', 'fixtures', 'data')
    const a = new Project(join(dir, 'a'))
    await a.importFiles([join(fixtures, 'preference.parquet')])
    expect(a.counts().pairs).toBe(5)
    const out = join(dir, 'dpo.jsonl')
    exportProject(a, { format: 'trl-dpo', out })
    expect(readFileSync(out, 'utf8').split('\n')[0]).toBe('{"prompt":"What is 2 + 2?","chosen":"4.","rejected":"5."}')
    const b = new Project(join(dir, 'b'))
    await b.importFiles([out])
    expect(contentOf(b)).toEqual(contentOf(a))

    const m = new Project(join(dir, 'm'))
    await m.importFiles([join(fixtures, 'messages.parquet')])
    expect(m.getRecord(1)).toMatchObject({ prompt: [{ role: 'user', content: 'What is 2 + 2?' }], gold: '4.' })
    for (const p of [a, b, m]) p.close()
  })

  it('a LLaMA-Factory dataset with custom columns is read through its dataset_info.json entry', async () => {
    const { dir, cleanup } = tempDir()
    cleanups.push(cleanup)
    writeJsonl(join(dir, 'mine.jsonl'), [{ q: 'Translate: cat', good: 'chat', bad: 'chien', sys: 'You translate to French.' }])
    writeFileSync(
      join(dir, 'dataset_info.json'),
      JSON.stringify({ mine: { file_name: 'mine.jsonl', ranking: true, columns: { prompt: 'q', chosen: 'good', rejected: 'bad', system: 'sys', images: 'img' } } })
    )
    const preview = await previewImport(join(dir, 'mine.jsonl'))
    expect(preview).toMatchObject({ format: 'alpaca', mapping: { prompt: 'q', chosen: 'good', rejected: 'bad', system: 'sys' }, problem: null })
    const p = new Project(join(dir, 'p'))
    await p.importFiles([join(dir, 'mine.jsonl')])
    expect(p.getRecord(1)).toMatchObject({ prompt: 'Translate: cat', system: 'You translate to French.', pair: { chosen: 1, rejected: 2 } })
    p.close()
  })

  it('unlabeled candidates import with no label, keep their sources, and labels made here reach the pair export', async () => {
    const { dir, cleanup } = tempDir()
    cleanups.push(cleanup)
    const src = writeJsonl(join(dir, 'c.jsonl'), [
      { prompt: 'P1', responses: [{ text: 'weak', model: 'demo-model' }, { text: 'strong', model: 'reference' }] },
      { prompt: 'P2', responses: ['only'] },
      { prompt: 'P3', responses: ['x', 'y'] }
    ])
    const preview = await previewImport(src)
    expect(preview).toMatchObject({ format: 'candidates', mapping: { prompt: 'prompt', candidates: 'responses' }, problem: null, count: 3, pairable: 2 })
    expect(preview.sampleRecords[0]).toEqual({ prompt: 'P1', system: null, candidates: [{ content: 'weak', source: 'demo-model' }, { content: 'strong', source: 'reference' }] })
    // A JSON array reads the same; a bad answer there is named by its row.
    const rows = readFileSync(src, 'utf8').trim().split('\n').map((l) => JSON.parse(l) as unknown)
    writeFileSync(join(dir, 'c.json'), JSON.stringify(rows, null, 2))
    expect(await previewImport(join(dir, 'c.json'))).toMatchObject({ fileKind: 'json', format: 'candidates', count: 3, pairable: 2, problem: null })
    writeFileSync(join(dir, 'bad.json'), JSON.stringify([rows[0], { prompt: 'P', responses: [null] }]))
    expect((await previewImport(join(dir, 'bad.json'))).problem).toMatch(/bad\.json: row 2: field 'responses\[0\]': expected a string or an object/)
    // Other formats say nothing about pairs.
    expect((await previewImport(writeJsonl(join(dir, 'p.jsonl'), [{ prompt: 'P', chosen: 'a', rejected: 'b' }]))).pairable).toBeNull()

    const p = new Project(join(dir, 'p'))
    await p.importFiles([src])
    expect(p.counts()).toMatchObject({ total: 3, unlabeled: 3, labeled: 0, pairs: 0, kto: 0, gold: 0 })
    const r1 = p.getRecord(1)
    expect(r1.candidates.map((c) => [c.content, c.source, c.kto])).toEqual([
      ['weak', 'demo-model', null],
      ['strong', 'reference', null]
    ])
    expect(r1).toMatchObject({ pair: null, status: 'unlabeled' })
    // Nothing labeled: nothing to train on yet.
    expect(exportProject(p, { format: 'trl-dpo', out: join(dir, 'none.jsonl') }).files[0].records).toBe(0)

    p.setLabel(1, { kind: 'pair', chosen: r1.candidates[1].id, rejected: r1.candidates[0].id })
    p.setLabel(2, { kind: 'kto', candidate: p.getRecord(2).candidates[0].id, desirable: false })
    expect(p.counts()).toMatchObject({ unlabeled: 1, labeled: 2, pairs: 1 })
    exportProject(p, { format: 'trl-dpo', out: join(dir, 'dpo.jsonl') })
    expect(readFileSync(join(dir, 'dpo.jsonl'), 'utf8')).toBe('{"prompt":"P1","chosen":"strong","rejected":"weak"}\n')
    exportProject(p, { format: 'trl-kto', out: join(dir, 'kto.jsonl') })
    expect(readFileSync(join(dir, 'kto.jsonl'), 'utf8').trim().split('\n')).toEqual([
      '{"prompt":"P1","completion":"weak","label":false}',
      '{"prompt":"P1","completion":"strong","label":true}',
      '{"prompt":"P2","completion":"only","label":false}'
    ])
    // The candidates export leaves the labels out: it is the set as it was before judging.
    exportProject(p, { format: 'candidates', out: join(dir, 'again.jsonl') })
    expect(readFileSync(join(dir, 'again.jsonl'), 'utf8').trim().split('\n')).toEqual([
      '{"prompt":"P1","completions":[{"text":"weak","model":"demo-model"},{"text":"strong","model":"reference"}]}',
      '{"prompt":"P2","completions":["only"]}',
      '{"prompt":"P3","completions":["x","y"]}'
    ])
    p.close()
  })

  it('a pair exports to KTO as one desirable and one undesirable record, and all three TRL methods read back', async () => {
    const { dir, cleanup } = tempDir()
    cleanups.push(cleanup)
    const src = writeJsonl(join(dir, 'p.jsonl'), [{ prompt: 'P', chosen: 'good', rejected: 'bad' }])
    const p = new Project(join(dir, 'p'))
    await p.importFiles([src])
    exportProject(p, { format: 'trl-kto', out: join(dir, 'kto.jsonl') })
    expect(readFileSync(join(dir, 'kto.jsonl'), 'utf8')).toBe(
      '{"prompt":"P","completion":"good","label":true}\n{"prompt":"P","completion":"bad","label":false}\n'
    )
    p.close()
  })

  it('the trainers read every TRL export back with readTrainingRecords', async () => {
    const { dir, cleanup } = tempDir()
    cleanups.push(cleanup)
    const demo = join(__dirname, '..', '..', 'resources', 'demo')
    const p = new Project(join(dir, 'p'))
    await p.importFiles(['preference.jsonl', 'kto.jsonl', 'sft.jsonl'].map((f) => join(demo, f)))
    const read = async (format: ExportFormat) => {
      const out = join(dir, `${format}.jsonl`)
      exportProject(p, { format, out })
      return readTrainingRecords(out)
    }
    const lines = (name: string) => readFileSync(join(demo, name), 'utf8').trim().split('\n').map((l) => JSON.parse(l))
    const dpo = await read('trl-dpo')
    expect(dpo).toHaveLength(30)
    const pair = lines('preference.jsonl')[0]
    expect(dpo[0]).toEqual({ type: 'preference', prompt: pair.prompt, chosen: pair.chosen, rejected: pair.rejected })
    expect(dpo[0]).toMatchObject({ chosen: expect.stringMatching(/^<think>\n[\s\S]*\n<\/think>\n<answer>\n\d+\n<\/answer>$/) })
    const kto = await read('trl-kto')
    // 16 unpaired records plus two per pair.
    expect(kto).toHaveLength(16 + 2 * 30)
    expect(kto.every((r) => r.type === 'unpaired')).toBe(true)
    expect(kto.filter((r) => r.type === 'unpaired' && r.label).length).toBe(8 + 30)
    const sft = await read('trl-sft')
    expect(sft).toHaveLength(13)
    const user = lines('sft.jsonl')[12].messages.find((m: { role: string }) => m.role === 'user')
    expect(sft[12]).toEqual({ type: 'messages', messages: expect.arrayContaining([user]) })
    await expect(readTrainingRecords(join(demo, 'missing.jsonl'))).rejects.toThrow(/file not found/)
    p.close()
  })

  it('demo datasets import and export to the same bytes', async () => {
    const { dir, cleanup } = tempDir()
    cleanups.push(cleanup)
    const demo = join(__dirname, '..', '..', 'resources', 'demo')
    const files: Record<string, ExportFormat> = {
      'preference.jsonl': 'trl-dpo',
      'kto.jsonl': 'trl-kto',
      'sft.jsonl': 'trl-sft',
      'candidates.jsonl': 'candidates'
    }
    // grpo.jsonl (prompts with a solution column) is read by the GRPO trainer, not round-tripped
    // through a project: the store keeps prompts and answers, not a solution column.
    expect(readdirSync(demo).filter((f) => f.endsWith('.jsonl')).sort()).toEqual([...Object.keys(files), 'grpo.jsonl'].sort())
    for (const [name, format] of Object.entries(files)) {
      const p = new Project(join(dir, name))
      await p.importFiles([join(demo, name)])
      const out = join(dir, name + '.out')
      exportProject(p, { format, out })
      expect(readFileSync(out, 'utf8')).toBe(readFileSync(join(demo, name), 'utf8'))
      p.close()
    }
  })
})
