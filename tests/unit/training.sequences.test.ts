// Sequences and masks (docs/algorithms.md) on the demo model's tokenizer, truncation, and errors
// on bad data that name the file, line and field.
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { loadExamples } from '../../main/services/training/datasets'
import {
  buildExample, ChatTokenizer, joinSequence, promptBudget, tokenizeConversation, tokenizePromptCompletion
} from '../../main/services/training/sequences'
import { collate, klSequences, pairSequences, sequenceSums, tokenGradients } from '../../main/services/training/batches'

const demo = join(import.meta.dirname, '..', '..', 'resources', 'demo-model')
let tok: ChatTokenizer
let dir: string
beforeAll(async () => {
  tok = await ChatTokenizer.load(demo)
  dir = mkdtempSync(join(tmpdir(), 'tb-seq-'))
})
afterAll(() => rmSync(dir, { recursive: true, force: true }))

describe('sequences', () => {
  it('plain: tok(prompt) ++ tok(completion) ++ [eos], loss on completion and eos', () => {
    const pc = tokenizePromptCompletion(tok, 'What is the capital of Italy?', ' Rome.')
    expect(pc.prompt).toEqual(tok.encode('What is the capital of Italy?', true))
    expect(pc.completion).toEqual([...tok.encode(' Rome.', false), tok.eosId])
    const s = joinSequence(pc.prompt, pc.completion, 2048)
    expect(s.ids).toEqual([...pc.prompt, ...pc.completion])
    expect(s.mask).toEqual([...pc.prompt.map(() => 0), ...pc.completion.map(() => 1)])
  })

  it('conversational: the completion is the full rendering with the prompt prefix removed', () => {
    const prompt = [{ role: 'user', content: 'Say hello.' }]
    const completion = [{ role: 'assistant', content: 'Hello!' }]
    const pc = tokenizePromptCompletion(tok, prompt, completion)
    expect(tok.decode(pc.prompt)).toBe('<|im_start|>user\nSay hello.<|im_end|>\n<|im_start|>assistant\n')
    expect(tok.decode(pc.completion)).toBe('Hello!<|im_end|>\n')
  })

  it('messages: loss on assistant turns only', () => {
    const s = tokenizeConversation(tok, [
      { role: 'system', content: 'Be brief.' },
      { role: 'user', content: 'Two plus two?' },
      { role: 'assistant', content: 'Four.' },
      { role: 'user', content: 'And three?' },
      { role: 'assistant', content: 'Three.' }
    ])
    const learned = s.ids.filter((_, t) => s.mask[t] === 1)
    expect(tok.decode(learned)).toBe('Four.<|im_end|>\nThree.<|im_end|>\n')
    expect(tok.decode(s.ids)).toBe(
      '<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nTwo plus two?<|im_end|>\n<|im_start|>assistant\nFour.<|im_end|>\n' +
        '<|im_start|>user\nAnd three?<|im_end|>\n<|im_start|>assistant\nThree.<|im_end|>\n'
    )
  })

  it('truncation keeps the end of the prompt, then cuts the completion to cutoff_len', () => {
    const prompt = [1, 2, 3, 4, 5, 6]
    const completion = [10, 11, 12, 13]
    expect(joinSequence(prompt, completion, 100).ids).toEqual([1, 2, 3, 4, 5, 6, 10, 11, 12, 13])
    // room for the whole completion: the prompt loses its start
    expect(joinSequence(prompt, completion, 8).ids).toEqual([3, 4, 5, 6, 10, 11, 12, 13])
    // a completion longer than half: the prompt keeps half of cutoff_len, the completion is cut
    const long = [10, 11, 12, 13, 14, 15, 16, 17]
    const s = joinSequence(prompt, long, 6)
    expect(s.ids).toEqual([4, 5, 6, 10, 11, 12])
    expect(s.mask).toEqual([0, 0, 0, 1, 1, 1])
    expect(promptBudget(2, 100, 6)).toBe(2)
  })

  it('both answers of a pair share one prompt cut; batches are [chosen..., rejected...]', () => {
    const seqs = pairSequences([{ kind: 'pair', prompt: [1, 2, 3, 4], chosen: [5, 6], rejected: [7, 8, 9, 10] }], 6)
    // prompt budget: max(6 − 4, 6 / 2) = 3 tokens for both; the rejected answer is cut to 3
    expect(seqs.map((s) => s.ids)).toEqual([[2, 3, 4, 5, 6], [2, 3, 4, 7, 8, 9]])
    const batch = collate(seqs, 0)
    expect(batch.seqLen).toBe(6)
    expect(Array.from(batch.ids)).toEqual([2, 3, 4, 5, 6, 0, 2, 3, 4, 7, 8, 9])
    expect(Array.from(batch.mask)).toEqual([0, 0, 0, 1, 1, 0, 0, 0, 0, 1, 1, 1])
    const lp = Float32Array.from([0, 0, 0, -2, -3, 0, 0, 0, 0, -1, -1, -1])
    const sums = sequenceSums(lp, batch)
    expect(Array.from(sums.logps)).toEqual([-5, -3])
    expect(Array.from(sums.tokens)).toEqual([2, 3])
    expect(Array.from(tokenGradients(batch, [0.5, -2]))).toEqual([0, 0, 0, 0.5, 0.5, 0, 0, 0, 0, -2, -2, -2])
  })

  it('KTO KL pairs rotate completions by one within the batch', () => {
    const recs = [0, 1, 2].map((i) => ({ kind: 'unpaired' as const, prompt: [100 + i], completion: [200 + i], desirable: i !== 1 }))
    expect(klSequences(recs, 10).map((s) => s.ids)).toEqual([[100, 202], [101, 200], [102, 201]])
  })

  it('a KTO run accepts preference records as one desirable and one undesirable example', () => {
    const ex = buildExample(tok, { type: 'preference', prompt: 'Q', chosen: ' good', rejected: ' bad' }, 'kto', 64)
    expect(ex.map((e) => e.kind === 'unpaired' && e.desirable)).toEqual([true, false])
  })
})

describe('bad data names file, line and field', () => {
  const cfg = (file: string, stage: 'sft' | 'dpo' | 'kto' = 'dpo') => ({
    dataset: [file], dataset_dir: dir, stage, cutoff_len: 64, max_samples: null, val_size: 0, seed: 1
  })
  const good = JSON.stringify({ prompt: 'a', chosen: ' b', rejected: ' c' })

  it('broken JSON on line 3', async () => {
    const f = join(dir, 'broken.jsonl')
    writeFileSync(f, `${good}\n${good}\n{"prompt": "a", "chosen":\n`)
    await expect(loadExamples(cfg(f), tok)).rejects.toThrow(`${f}: line 3`)
  })

  it('a mistyped field', async () => {
    const f = join(dir, 'typed.jsonl')
    writeFileSync(f, `${good}\n{"prompt": "a", "chosen": 5, "rejected": "c"}\n`)
    await expect(loadExamples(cfg(f), tok)).rejects.toThrow(new RegExp(`${f}: line 2: field 'chosen'`))
  })

  it('records of the wrong kind for the stage', async () => {
    const f = join(dir, 'sftdata.jsonl')
    writeFileSync(f, `{"prompt": "a", "completion": "b"}\n`)
    await expect(loadExamples(cfg(f, 'dpo'), tok)).rejects.toThrow(`${f}: line 1: stage dpo trains on preference records`)
  })

  it('an unknown dataset name', async () => {
    await expect(loadExamples(cfg('nope'), tok)).rejects.toThrow(/"nope" is neither a name in .*dataset_info\.json nor a file/)
  })

  it('LLaMA-Factory alpaca and sharegpt names in dataset_info.json train through the chat template', async () => {
    writeFileSync(join(dir, 'alpaca_pairs.json'), JSON.stringify([
      { instruction: 'Name a fruit.', input: '', chosen: 'An apple.', rejected: 'A rock.' },
      { instruction: 'Say hello.', input: 'Politely.', chosen: 'Hello!', rejected: 'No.', system: 'Be kind.' }
    ]))
    writeFileSync(join(dir, 'sharegpt_kto.jsonl'), [
      { messages: [{ from: 'human', value: 'Two plus two?' }, { from: 'gpt', value: 'Four.' }], kto_tag: true },
      { messages: [{ from: 'human', value: 'Two plus two?' }, { from: 'gpt', value: 'Five.' }], kto_tag: false }
    ].map((r) => JSON.stringify(r)).join('\n'))
    writeFileSync(join(dir, 'dataset_info.json'), JSON.stringify({
      fruit_pairs: { file_name: 'alpaca_pairs.json', ranking: true, columns: { prompt: 'instruction', query: 'input', chosen: 'chosen', rejected: 'rejected', system: 'system' } },
      math_kto: { file_name: 'sharegpt_kto.jsonl', formatting: 'sharegpt', columns: { messages: 'messages', kto_tag: 'kto_tag' } }
    }))
    const pairs = await loadExamples(cfg('fruit_pairs'), tok)
    const second = pairs.train[1]!
    expect(second.kind).toBe('pair')
    if (second.kind !== 'pair') return
    expect(tok.decode(second.prompt)).toBe('<|im_start|>system\nBe kind.<|im_end|>\n<|im_start|>user\nSay hello.\nPolitely.<|im_end|>\n<|im_start|>assistant\n')
    expect(tok.decode(second.chosen)).toBe('Hello!<|im_end|>\n')
    writeFileSync(join(dir, 'sharegpt_sft.json'), JSON.stringify([{ conversations: [
      { from: 'human', value: 'Two plus two?' }, { from: 'gpt', value: 'Four.' }, { from: 'human', value: 'And three?' }, { from: 'gpt', value: 'Three.' }
    ] }]))
    writeFileSync(join(dir, 'dataset_info.json'), JSON.stringify({
      ...JSON.parse(readFileSync(join(dir, 'dataset_info.json'), 'utf8')),
      chat_sft: { file_name: 'sharegpt_sft.json', formatting: 'sharegpt', columns: { messages: 'conversations' } }
    }))
    const sft = (await loadExamples(cfg('chat_sft', 'sft'), tok)).train[0]!
    if (sft.kind !== 'sft') throw new Error('expected an sft example')
    // every assistant turn learns, as LLaMA-Factory trains multi-turn sharegpt data
    expect(tok.decode(sft.sequence.ids.filter((_, t) => sft.sequence.mask[t] === 1))).toBe('Four.<|im_end|>\nThree.<|im_end|>\n')
    const kto = await loadExamples(cfg('math_kto', 'kto'), tok)
    expect(kto.train.map((e) => e.kind === 'unpaired' && e.desirable)).toEqual([true, false])
  })

  it('dataset_info.json columns the trainer has no use for (tools, images, videos) are left out, as the importer does', async () => {
    writeFileSync(join(dir, 'alpaca_tools.json'), JSON.stringify([
      { q: 'Name a fruit.', a: 'An apple.', tools: '[]', images: [] }
    ]))
    writeFileSync(join(dir, 'dataset_info.json'), JSON.stringify({
      with_tools: { file_name: 'alpaca_tools.json', columns: { prompt: 'q', response: 'a', tools: 'tools', images: 'images', videos: 'videos' } },
      bad_formatting: { file_name: 'alpaca_tools.json', formatting: 'openai' },
      bad_column: { file_name: 'alpaca_tools.json', columns: { prompt: 7 } }
    }))
    const sft = (await loadExamples(cfg('with_tools', 'sft'), tok)).train[0]!
    if (sft.kind !== 'sft') throw new Error('expected an sft example')
    expect(tok.decode(sft.sequence.ids.filter((_, t) => sft.sequence.mask[t] === 1))).toBe('An apple.<|im_end|>\n')
    const info = join(dir, 'dataset_info.json')
    await expect(loadExamples(cfg('bad_formatting', 'sft'), tok)).rejects.toThrow(`${info}: field 'bad_formatting.formatting'`)
    await expect(loadExamples(cfg('bad_column', 'sft'), tok)).rejects.toThrow(`${info}: field 'bad_column.columns.prompt'`)
  })

  it('gives the event loop a turn while it tokenises, so the main process stays responsive', async () => {
    const f = join(dir, 'many.jsonl')
    writeFileSync(f, Array.from({ length: 64 }, (_, i) => JSON.stringify({ prompt: `q${i}`, chosen: ' yes', rejected: ' no' })).join('\n'))
    // A ticker that runs once per event-loop turn; each tokenizer call notes how many turns have passed.
    let turns = 0
    let ticking = true
    const tick = () => {
      turns++
      if (ticking) setImmediate(tick)
    }
    const seen: number[] = []
    const spy = new Proxy(tok, {
      get(target, key) {
        const v = Reflect.get(target, key, target) as unknown
        if (typeof v !== 'function') return v
        return (...args: unknown[]) => {
          seen.push(turns)
          return (v as (...a: unknown[]) => unknown).apply(target, args)
        }
      }
    })
    setImmediate(tick)
    try {
      expect((await loadExamples(cfg(f), spy)).train).toHaveLength(64)
    } finally {
      ticking = false
    }
    // 64 records in chunks: the loop turned between chunks, not only around the file read.
    expect(new Set(seen).size).toBeGreaterThanOrEqual(64 / 16)
  })

  it('val_size splits off evaluation records deterministically', async () => {
    const f = join(dir, 'ten.jsonl')
    writeFileSync(f, Array.from({ length: 10 }, (_, i) => JSON.stringify({ prompt: `q${i}`, chosen: ' b', rejected: ' c' })).join('\n'))
    const a = await loadExamples({ ...cfg(f), val_size: 0.2 }, tok)
    const b = await loadExamples({ ...cfg(f), val_size: 0.2 }, tok)
    expect([a.train.length, a.eval.length]).toEqual([8, 2])
    expect(a.eval).toEqual(b.eval)
  })
})
