// Every import format Tunebench reads, checked against the SOURCE rows written out here: each
// case gives the rows of a file, the store records they must import as, and the lines each
// export must write, all as literals (never values read back from the app). The export is then
// imported again and must give the same literal records, and exported again the same literal
// lines. Formats: TRL preference (explicit and implicit prompt, plain and conversational),
// unpaired, prompt-completion and messages; OpenAI chat messages and preference fine-tuning;
// LLaMA-Factory alpaca (ranking, older output-list ranking, kto_tag, SFT, history and system)
// and sharegpt (from/value and role/content tags, ranking, kto_tag, system, tool turns);
// unlabeled candidates.
import { readFileSync, readdirSync, writeFileSync } from 'node:fs'
import { basename, join } from 'node:path'
import { afterEach, describe, expect, it } from 'vitest'
import { exportProject } from '../../main/services/data/export'
import { readTrainingRecords } from '../../main/services/data/formats'
import { inspectFile } from '../../main/services/data/importers'
import { previewImport } from '../../main/services/data/preview'
import { Project } from '../../main/services/data/store'
import type { DataFormatId, ExportFormat } from '../../preload/types/data'
import { cand, contentOf, rec, tempDir, writeJsonl } from './data-helpers'

type Msg = { role: string; content: string }
const sys = (content: string): Msg => ({ role: 'system', content })
const u = (content: string): Msg => ({ role: 'user', content })
const a = (content: string): Msg => ({ role: 'assistant', content })

type Method = 'dpo' | 'kto' | 'sft'
type Line = Record<string, unknown>

/** The dataset_info.json `tags` of a LLaMA-Factory sharegpt entry with OpenAI role/content tags. */
const OPENAI_TAGS = {
  role_tag: 'role',
  content_tag: 'content',
  user_tag: 'user',
  assistant_tag: 'assistant',
  system_tag: 'system',
  observation_tag: 'tool',
  function_tag: 'function_call'
}

interface Case {
  name: string
  /** The source rows, as a user's file holds them. */
  rows: Line[]
  /** The format detected from the source file's columns. */
  format: DataFormatId
  /** The store records the rows import as (contentOf's shape), in file order. */
  records: unknown[]
  export: ExportFormat
  /** TRL and candidates exports: the lines of the file. */
  lines?: Line[]
  /** llamafactory export: the lines of each file written (by method) and its dataset_info.json entry. */
  lf?: Partial<Record<Method, { lines: Line[]; info: Record<string, unknown> }>>
  /** llamafactory: the file imported back (default: the only one written). */
  method?: Method
  /** The format of the exported file on import (from its columns, or its dataset_info.json entry). */
  reformat: DataFormatId
  /** The records the export imports back as, where they differ from `records`. */
  reimported?: unknown[]
}

const cases: Case[] = [
  {
    name: 'TRL preference, plain, explicit prompt',
    rows: [
      { prompt: 'The sky is', chosen: ' blue.', rejected: ' green.' },
      { prompt: 'Name a fruit:', chosen: ' apple', rejected: ' chair' }
    ],
    format: 'trl-preference',
    records: [
      rec({ prompt: 'The sky is', candidates: [' blue.', ' green.'], pair: [0, 1], status: 'labeled' }),
      rec({ prompt: 'Name a fruit:', candidates: [' apple', ' chair'], pair: [0, 1], status: 'labeled' })
    ],
    export: 'trl-dpo',
    lines: [
      { prompt: 'The sky is', chosen: ' blue.', rejected: ' green.' },
      { prompt: 'Name a fruit:', chosen: ' apple', rejected: ' chair' }
    ],
    reformat: 'trl-preference'
  },
  {
    name: 'TRL preference, plain, implicit prompt (the common prefix, the space kept with the answers)',
    rows: [{ chosen: 'The sky is blue.', rejected: 'The sky is green.' }],
    format: 'trl-preference',
    records: [rec({ prompt: 'The sky is', candidates: [' blue.', ' green.'], pair: [0, 1], status: 'labeled' })],
    export: 'trl-dpo',
    lines: [{ prompt: 'The sky is', chosen: ' blue.', rejected: ' green.' }],
    reformat: 'trl-preference'
  },
  {
    name: 'TRL preference, conversational, implicit prompt with a system message',
    rows: [{ chosen: [sys('Be kind.'), u('Q'), a('Yes.')], rejected: [sys('Be kind.'), u('Q'), a('No.')] }],
    format: 'trl-preference',
    records: [rec({ prompt: [u('Q')], system: 'Be kind.', candidates: ['Yes.', 'No.'], pair: [0, 1], status: 'labeled' })],
    export: 'trl-dpo',
    lines: [{ prompt: [sys('Be kind.'), u('Q')], chosen: [a('Yes.')], rejected: [a('No.')] }],
    reformat: 'trl-preference'
  },
  {
    name: 'TRL preference, conversational with system, multi-turn prompt',
    rows: [
      { prompt: [sys('Be brief.'), u('Hi?')], chosen: [a('Hello!')], rejected: [a('Go away.')] },
      { prompt: [u('A'), a('B'), u('C?')], chosen: [a('D')], rejected: [a('E')] }
    ],
    format: 'trl-preference',
    records: [
      rec({ prompt: [u('Hi?')], system: 'Be brief.', candidates: ['Hello!', 'Go away.'], pair: [0, 1], status: 'labeled' }),
      rec({ prompt: [u('A'), a('B'), u('C?')], candidates: ['D', 'E'], pair: [0, 1], status: 'labeled' })
    ],
    export: 'trl-dpo',
    lines: [
      { prompt: [sys('Be brief.'), u('Hi?')], chosen: [a('Hello!')], rejected: [a('Go away.')] },
      { prompt: [u('A'), a('B'), u('C?')], chosen: [a('D')], rejected: [a('E')] }
    ],
    reformat: 'trl-preference'
  },
  {
    name: 'TRL unpaired (KTO), plain',
    rows: [
      { prompt: 'Q1', completion: 'good', label: true },
      { prompt: 'Q1', completion: 'bad', label: false },
      { prompt: 'Q2 ünïcode ✓', completion: 'fine', label: true }
    ],
    format: 'trl-unpaired',
    records: [
      rec({ prompt: 'Q1', candidates: [cand('good', { kto: true })], status: 'labeled' }),
      rec({ prompt: 'Q1', candidates: [cand('bad', { kto: false })], status: 'labeled' }),
      rec({ prompt: 'Q2 ünïcode ✓', candidates: [cand('fine', { kto: true })], status: 'labeled' })
    ],
    export: 'trl-kto',
    lines: [
      { prompt: 'Q1', completion: 'good', label: true },
      { prompt: 'Q1', completion: 'bad', label: false },
      { prompt: 'Q2 ünïcode ✓', completion: 'fine', label: true }
    ],
    reformat: 'trl-unpaired'
  },
  {
    name: 'TRL unpaired, conversational with a system message',
    rows: [
      { prompt: [sys('S'), u('Q')], completion: [a('A')], label: false },
      { prompt: [u('R')], completion: [a('B')], label: true }
    ],
    format: 'trl-unpaired',
    records: [
      rec({ prompt: [u('Q')], system: 'S', candidates: [cand('A', { kto: false })], status: 'labeled' }),
      rec({ prompt: [u('R')], candidates: [cand('B', { kto: true })], status: 'labeled' })
    ],
    export: 'trl-kto',
    lines: [
      { prompt: [sys('S'), u('Q')], completion: [a('A')], label: false },
      { prompt: [u('R')], completion: [a('B')], label: true }
    ],
    reformat: 'trl-unpaired'
  },
  {
    name: 'TRL prompt-completion (SFT), plain',
    rows: [
      { prompt: 'Once upon a time', completion: ' there was a fox.' },
      { prompt: '2+2=', completion: '4' }
    ],
    format: 'trl-prompt-completion',
    records: [
      rec({ prompt: 'Once upon a time', gold: ' there was a fox.', status: 'labeled' }),
      rec({ prompt: '2+2=', gold: '4', status: 'labeled' })
    ],
    export: 'trl-sft',
    lines: [
      { prompt: 'Once upon a time', completion: ' there was a fox.' },
      { prompt: '2+2=', completion: '4' }
    ],
    reformat: 'trl-prompt-completion'
  },
  {
    name: 'TRL prompt-completion, conversational: exported as TRL messages',
    rows: [
      { prompt: [u('Hi')], completion: [a('Hello')] },
      { prompt: [sys('Terse.'), u('Why?')], completion: [a('Because.')] }
    ],
    format: 'trl-prompt-completion',
    records: [
      rec({ prompt: [u('Hi')], gold: 'Hello', status: 'labeled' }),
      rec({ prompt: [u('Why?')], system: 'Terse.', gold: 'Because.', status: 'labeled' })
    ],
    export: 'trl-sft',
    lines: [{ messages: [u('Hi'), a('Hello')] }, { messages: [sys('Terse.'), u('Why?'), a('Because.')] }],
    reformat: 'trl-messages'
  },
  {
    name: 'TRL messages (SFT), multi-turn with system',
    rows: [
      { messages: [sys('S'), u('u1'), a('a1'), u('u2'), a('a2')] },
      { messages: [u('x'), a('y')] }
    ],
    format: 'trl-messages',
    records: [
      rec({ prompt: [u('u1'), a('a1'), u('u2')], system: 'S', gold: 'a2', status: 'labeled' }),
      rec({ prompt: [u('x')], gold: 'y', status: 'labeled' })
    ],
    export: 'trl-sft',
    lines: [{ messages: [sys('S'), u('u1'), a('a1'), u('u2'), a('a2')] }, { messages: [u('x'), a('y')] }],
    reformat: 'trl-messages'
  },
  {
    name: 'OpenAI chat messages, content as text parts',
    rows: [
      {
        messages: [
          { role: 'system', content: [{ type: 'text', text: 'Be ' }, { type: 'text', text: 'nice.' }] },
          { role: 'user', content: [{ type: 'text', text: 'Hel' }, { type: 'text', text: 'lo' }] },
          { role: 'assistant', content: 'Hi there' }
        ]
      }
    ],
    format: 'trl-messages',
    records: [rec({ prompt: [u('Hello')], system: 'Be nice.', gold: 'Hi there', status: 'labeled' })],
    export: 'trl-sft',
    lines: [{ messages: [sys('Be nice.'), u('Hello'), a('Hi there')] }],
    reformat: 'trl-messages'
  },
  {
    name: 'OpenAI preference fine-tuning, with and without a system message',
    rows: [
      {
        input: { messages: [sys('Be terse.'), u('Capital of France?')] },
        preferred_output: [a('Paris')],
        non_preferred_output: [a('Lyon')]
      },
      { input: { messages: [u('2+2?')] }, preferred_output: [a('4')], non_preferred_output: [a('5')] }
    ],
    format: 'openai-preference',
    records: [
      rec({ prompt: [u('Capital of France?')], system: 'Be terse.', candidates: ['Paris', 'Lyon'], pair: [0, 1], status: 'labeled' }),
      rec({ prompt: [u('2+2?')], candidates: ['4', '5'], pair: [0, 1], status: 'labeled' })
    ],
    export: 'trl-dpo',
    lines: [
      { prompt: [sys('Be terse.'), u('Capital of France?')], chosen: [a('Paris')], rejected: [a('Lyon')] },
      { prompt: [u('2+2?')], chosen: [a('4')], rejected: [a('5')] }
    ],
    reformat: 'trl-preference'
  },
  {
    name: 'LLaMA-Factory alpaca ranking (chosen/rejected columns); a pair is also written as two KTO records',
    rows: [
      { instruction: 'Translate', input: 'cat', chosen: 'chat', rejected: 'chien' },
      { instruction: 'Add 1+1', input: '', chosen: '2', rejected: '3' }
    ],
    format: 'alpaca',
    records: [
      rec({ prompt: 'Translate\ncat', candidates: ['chat', 'chien'], pair: [0, 1], status: 'labeled' }),
      rec({ prompt: 'Add 1+1', candidates: ['2', '3'], pair: [0, 1], status: 'labeled' })
    ],
    export: 'llamafactory',
    method: 'dpo',
    lf: {
      dpo: {
        lines: [
          { instruction: 'Translate\ncat', input: '', chosen: 'chat', rejected: 'chien' },
          { instruction: 'Add 1+1', input: '', chosen: '2', rejected: '3' }
        ],
        info: { file_name: 'tunebench_dpo.jsonl', ranking: true, columns: { prompt: 'instruction', query: 'input', chosen: 'chosen', rejected: 'rejected' } }
      },
      kto: {
        lines: [
          { instruction: 'Translate\ncat', input: '', output: 'chat', kto_tag: true },
          { instruction: 'Translate\ncat', input: '', output: 'chien', kto_tag: false },
          { instruction: 'Add 1+1', input: '', output: '2', kto_tag: true },
          { instruction: 'Add 1+1', input: '', output: '3', kto_tag: false }
        ],
        info: { file_name: 'tunebench_kto.jsonl', columns: { prompt: 'instruction', query: 'input', response: 'output', kto_tag: 'kto_tag' } }
      }
    },
    reformat: 'alpaca'
  },
  {
    name: 'LLaMA-Factory alpaca ranking, older form: output = [chosen, rejected]',
    rows: [{ instruction: 'Pick one', input: 'a or b', output: ['a', 'b'] }],
    format: 'alpaca',
    records: [rec({ prompt: 'Pick one\na or b', candidates: ['a', 'b'], pair: [0, 1], status: 'labeled' })],
    export: 'llamafactory',
    method: 'dpo',
    lf: {
      dpo: {
        lines: [{ instruction: 'Pick one\na or b', input: '', chosen: 'a', rejected: 'b' }],
        info: { file_name: 'tunebench_dpo.jsonl', ranking: true, columns: { prompt: 'instruction', query: 'input', chosen: 'chosen', rejected: 'rejected' } }
      },
      kto: {
        lines: [
          { instruction: 'Pick one\na or b', input: '', output: 'a', kto_tag: true },
          { instruction: 'Pick one\na or b', input: '', output: 'b', kto_tag: false }
        ],
        info: { file_name: 'tunebench_kto.jsonl', columns: { prompt: 'instruction', query: 'input', response: 'output', kto_tag: 'kto_tag' } }
      }
    },
    reformat: 'alpaca'
  },
  {
    name: 'LLaMA-Factory alpaca SFT, plain',
    rows: [
      { instruction: 'Say hi', input: 'to Bob', output: 'Hi Bob' },
      { instruction: 'Count to 3', input: '', output: '1 2 3' }
    ],
    format: 'alpaca',
    records: [rec({ prompt: 'Say hi\nto Bob', gold: 'Hi Bob', status: 'labeled' }), rec({ prompt: 'Count to 3', gold: '1 2 3', status: 'labeled' })],
    export: 'llamafactory',
    lf: {
      sft: {
        lines: [
          { instruction: 'Say hi\nto Bob', input: '', output: 'Hi Bob' },
          { instruction: 'Count to 3', input: '', output: '1 2 3' }
        ],
        info: { file_name: 'tunebench_sft.jsonl', columns: { prompt: 'instruction', query: 'input', response: 'output' } }
      }
    },
    reformat: 'alpaca'
  },
  {
    name: 'LLaMA-Factory alpaca SFT with history and system: history turns come before the instruction',
    rows: [
      { instruction: 'And now?', input: '', output: 'Now this.', system: 'Sys', history: [['First?', 'First.']] },
      { instruction: 'Translate', input: 'dog', output: 'chien', history: [['Hi', 'Hello'], ['Ready?', 'Yes']] }
    ],
    format: 'alpaca',
    records: [
      rec({ prompt: [u('First?'), a('First.'), u('And now?')], system: 'Sys', gold: 'Now this.', status: 'labeled' }),
      rec({ prompt: [u('Hi'), a('Hello'), u('Ready?'), a('Yes'), u('Translate\ndog')], gold: 'chien', status: 'labeled' })
    ],
    export: 'llamafactory',
    lf: {
      sft: {
        lines: [
          { messages: [sys('Sys'), u('First?'), a('First.'), u('And now?'), a('Now this.')] },
          { messages: [u('Hi'), a('Hello'), u('Ready?'), a('Yes'), u('Translate\ndog'), a('chien')] }
        ],
        info: { file_name: 'tunebench_sft.jsonl', formatting: 'sharegpt', columns: { messages: 'messages' }, tags: OPENAI_TAGS }
      }
    },
    reformat: 'sharegpt'
  },
  {
    // A system prompt needs the conversational form, so the plain prompt comes back as one user
    // message: the same conversation, in the other shape.
    name: 'LLaMA-Factory alpaca SFT with a system column and no history',
    rows: [{ instruction: 'Greet', input: 'Ann', output: 'Good day, Ann.', system: 'Be formal.' }],
    format: 'alpaca',
    records: [rec({ prompt: 'Greet\nAnn', system: 'Be formal.', gold: 'Good day, Ann.', status: 'labeled' })],
    export: 'llamafactory',
    lf: {
      sft: {
        lines: [{ messages: [sys('Be formal.'), u('Greet\nAnn'), a('Good day, Ann.')] }],
        info: { file_name: 'tunebench_sft.jsonl', formatting: 'sharegpt', columns: { messages: 'messages' }, tags: OPENAI_TAGS }
      }
    },
    reformat: 'sharegpt',
    reimported: [rec({ prompt: [u('Greet\nAnn')], system: 'Be formal.', gold: 'Good day, Ann.', status: 'labeled' })]
  },
  {
    name: 'LLaMA-Factory alpaca kto_tag',
    rows: [
      { instruction: 'Q', input: '', output: 'good', kto_tag: true },
      { instruction: 'Q', input: 'more', output: 'bad', kto_tag: false }
    ],
    format: 'alpaca',
    records: [
      rec({ prompt: 'Q', candidates: [cand('good', { kto: true })], status: 'labeled' }),
      rec({ prompt: 'Q\nmore', candidates: [cand('bad', { kto: false })], status: 'labeled' })
    ],
    export: 'llamafactory',
    lf: {
      kto: {
        lines: [
          { instruction: 'Q', input: '', output: 'good', kto_tag: true },
          { instruction: 'Q\nmore', input: '', output: 'bad', kto_tag: false }
        ],
        info: { file_name: 'tunebench_kto.jsonl', columns: { prompt: 'instruction', query: 'input', response: 'output', kto_tag: 'kto_tag' } }
      }
    },
    reformat: 'alpaca'
  },
  {
    name: 'LLaMA-Factory sharegpt ranking (from/value) with a system column',
    rows: [
      {
        conversations: [{ from: 'human', value: 'Hi' }],
        chosen: { from: 'gpt', value: 'Hello' },
        rejected: { from: 'gpt', value: 'Bye' },
        system: 'Polite.'
      }
    ],
    format: 'sharegpt',
    records: [rec({ prompt: [u('Hi')], system: 'Polite.', candidates: ['Hello', 'Bye'], pair: [0, 1], status: 'labeled' })],
    export: 'llamafactory',
    method: 'dpo',
    lf: {
      dpo: {
        lines: [{ messages: [sys('Polite.'), u('Hi')], chosen: a('Hello'), rejected: a('Bye') }],
        info: {
          file_name: 'tunebench_dpo.jsonl',
          formatting: 'sharegpt',
          ranking: true,
          columns: { messages: 'messages', chosen: 'chosen', rejected: 'rejected' },
          tags: OPENAI_TAGS
        }
      },
      kto: {
        lines: [
          { messages: [sys('Polite.'), u('Hi'), a('Hello')], kto_tag: true },
          { messages: [sys('Polite.'), u('Hi'), a('Bye')], kto_tag: false }
        ],
        info: { file_name: 'tunebench_kto.jsonl', formatting: 'sharegpt', columns: { messages: 'messages', kto_tag: 'kto_tag' }, tags: OPENAI_TAGS }
      }
    },
    reformat: 'sharegpt'
  },
  {
    name: 'LLaMA-Factory sharegpt ranking with OpenAI tags (messages, role/content, a system message)',
    rows: [{ messages: [sys('Sys'), u('Q')], chosen: a('good'), rejected: a('bad') }],
    format: 'sharegpt',
    records: [rec({ prompt: [u('Q')], system: 'Sys', candidates: ['good', 'bad'], pair: [0, 1], status: 'labeled' })],
    export: 'llamafactory',
    method: 'dpo',
    lf: {
      dpo: {
        lines: [{ messages: [sys('Sys'), u('Q')], chosen: a('good'), rejected: a('bad') }],
        info: {
          file_name: 'tunebench_dpo.jsonl',
          formatting: 'sharegpt',
          ranking: true,
          columns: { messages: 'messages', chosen: 'chosen', rejected: 'rejected' },
          tags: OPENAI_TAGS
        }
      },
      kto: {
        lines: [
          { messages: [sys('Sys'), u('Q'), a('good')], kto_tag: true },
          { messages: [sys('Sys'), u('Q'), a('bad')], kto_tag: false }
        ],
        info: { file_name: 'tunebench_kto.jsonl', formatting: 'sharegpt', columns: { messages: 'messages', kto_tag: 'kto_tag' }, tags: OPENAI_TAGS }
      }
    },
    reformat: 'sharegpt'
  },
  {
    name: 'LLaMA-Factory sharegpt kto_tag',
    rows: [
      { conversations: [{ from: 'human', value: 'Hi' }, { from: 'gpt', value: 'Hello' }], kto_tag: true },
      { conversations: [{ from: 'human', value: 'Hi' }, { from: 'gpt', value: 'Go.' }], system: 'Kind.', kto_tag: false }
    ],
    format: 'sharegpt',
    records: [
      rec({ prompt: [u('Hi')], candidates: [cand('Hello', { kto: true })], status: 'labeled' }),
      rec({ prompt: [u('Hi')], system: 'Kind.', candidates: [cand('Go.', { kto: false })], status: 'labeled' })
    ],
    export: 'llamafactory',
    lf: {
      kto: {
        lines: [
          { messages: [u('Hi'), a('Hello')], kto_tag: true },
          { messages: [sys('Kind.'), u('Hi'), a('Go.')], kto_tag: false }
        ],
        info: { file_name: 'tunebench_kto.jsonl', formatting: 'sharegpt', columns: { messages: 'messages', kto_tag: 'kto_tag' }, tags: OPENAI_TAGS }
      }
    },
    reformat: 'sharegpt'
  },
  {
    name: 'LLaMA-Factory sharegpt SFT: multi-turn, system column, function call and observation turns',
    rows: [
      {
        conversations: [
          { from: 'human', value: 'u1' },
          { from: 'gpt', value: 'a1' },
          { from: 'human', value: 'Weather?' },
          { from: 'function_call', value: '{"name":"weather"}' },
          { from: 'observation', value: 'sunny' },
          { from: 'gpt', value: 'It is sunny.' }
        ],
        system: 'S'
      }
    ],
    format: 'sharegpt',
    records: [
      rec({
        prompt: [u('u1'), a('a1'), u('Weather?'), { role: 'function_call', content: '{"name":"weather"}' }, { role: 'tool', content: 'sunny' }],
        system: 'S',
        gold: 'It is sunny.',
        status: 'labeled'
      })
    ],
    export: 'llamafactory',
    lf: {
      sft: {
        lines: [
          {
            messages: [
              sys('S'),
              u('u1'),
              a('a1'),
              u('Weather?'),
              { role: 'function_call', content: '{"name":"weather"}' },
              { role: 'tool', content: 'sunny' },
              a('It is sunny.')
            ]
          }
        ],
        info: { file_name: 'tunebench_sft.jsonl', formatting: 'sharegpt', columns: { messages: 'messages' }, tags: OPENAI_TAGS }
      }
    },
    reformat: 'sharegpt'
  },
  {
    name: 'Unlabeled candidates, plain strings, one or more answers, with a system prompt',
    rows: [
      { prompt: 'Name a colour.', completions: ['Blue.', 'Seven.'] },
      { prompt: 'Say hi.', system: 'Be brief.', completions: ['Hi!', 'Greetings, esteemed person.', 'Hello.'] },
      { prompt: 'Only one answer', completions: ['Alone'] }
    ],
    format: 'candidates',
    records: [
      rec({ prompt: 'Name a colour.', candidates: ['Blue.', 'Seven.'], status: 'unlabeled' }),
      rec({ prompt: 'Say hi.', system: 'Be brief.', candidates: ['Hi!', 'Greetings, esteemed person.', 'Hello.'], status: 'unlabeled' }),
      rec({ prompt: 'Only one answer', candidates: ['Alone'], status: 'unlabeled' })
    ],
    export: 'candidates',
    lines: [
      { prompt: 'Name a colour.', completions: ['Blue.', 'Seven.'] },
      { prompt: 'Say hi.', system: 'Be brief.', completions: ['Hi!', 'Greetings, esteemed person.', 'Hello.'] },
      { prompt: 'Only one answer', completions: ['Alone'] }
    ],
    reformat: 'candidates'
  },
  {
    name: 'Unlabeled candidates, responses with model names, conversational prompt',
    rows: [
      {
        prompt: [sys('S'), u('Q1'), a('A1'), u('Q2')],
        responses: [{ content: 'from a', model: 'model-a' }, { text: 'from b', source: 'model-b' }, 'unnamed']
      },
      { prompt: [u('ünïcode ✓')], responses: [[a('as a message')], { text: 'named', model: 'model-a' }] }
    ],
    format: 'candidates',
    records: [
      rec({
        prompt: [u('Q1'), a('A1'), u('Q2')],
        system: 'S',
        candidates: [cand('from a', { source: 'model-a' }), cand('from b', { source: 'model-b' }), 'unnamed'],
        status: 'unlabeled'
      }),
      rec({ prompt: [u('ünïcode ✓')], candidates: ['as a message', cand('named', { source: 'model-a' })], status: 'unlabeled' })
    ],
    export: 'candidates',
    lines: [
      {
        prompt: [u('Q1'), a('A1'), u('Q2')],
        system: 'S',
        completions: [{ text: 'from a', model: 'model-a' }, { text: 'from b', model: 'model-b' }, 'unnamed']
      },
      { prompt: [u('ünïcode ✓')], completions: ['as a message', { text: 'named', model: 'model-a' }] }
    ],
    reformat: 'candidates'
  }
]

let cleanups: (() => void)[] = []
afterEach(() => {
  for (const c of cleanups) c()
  cleanups = []
})

const parseLines = (file: string): unknown[] =>
  readFileSync(file, 'utf8')
    .split('\n')
    .filter((l) => l !== '')
    .map((l) => JSON.parse(l) as unknown)

/**
 * Exports `project` and checks every file written against the case's literal lines (and, for
 * llamafactory, the literal dataset_info.json entries); returns the file to import back.
 */
function exportAndCheck(project: Project, c: Case, out: string): string {
  const r = exportProject(project, { format: c.export, out })
  if (c.export !== 'llamafactory') {
    expect(r.files.map((f) => [f.path, f.records])).toEqual([[out, c.lines!.length]])
    expect(r.datasetInfo).toBeNull()
    expect(readFileSync(out, 'utf8').endsWith('\n')).toBe(true)
    expect(parseLines(out)).toEqual(c.lines)
    return out
  }
  const lf = Object.entries(c.lf!) as [Method, { lines: Line[]; info: Record<string, unknown> }][]
  expect(r.files.map((f) => [basename(f.path), f.method, f.records])).toEqual(lf.map(([m, e]) => [`tunebench_${m}.jsonl`, m, e.lines.length]))
  for (const [m, e] of lf) expect(parseLines(join(out, `tunebench_${m}.jsonl`)), m).toEqual(e.lines)
  expect(r.datasetInfo).toBe(join(out, 'dataset_info.json'))
  expect(JSON.parse(readFileSync(join(out, 'dataset_info.json'), 'utf8'))).toEqual(Object.fromEntries(lf.map(([m, e]) => [`tunebench_${m}`, e.info])))
  const method = c.method ?? lf[0][0]
  return join(out, `tunebench_${method}.jsonl`)
}

describe('round trips, checked against the source rows and literal exports', () => {
  for (const c of cases) {
    it(c.name, async () => {
      const { dir, cleanup } = tempDir()
      cleanups.push(cleanup)
      const src = writeJsonl(join(dir, 'src.jsonl'), c.rows)
      expect((await inspectFile(src)).format).toBe(c.format)

      const first = new Project(join(dir, 'a'))
      cleanups.unshift(() => first.close())
      await first.importFiles([src])
      expect(first.db.prepare('SELECT file, format, records FROM imports').all()).toEqual([{ file: src, format: c.format, records: c.rows.length }])
      expect(contentOf(first)).toEqual(c.records)
      const out1 = exportAndCheck(first, c, c.export === 'llamafactory' ? join(dir, 'out1') : join(dir, 'out1.jsonl'))

      const again = new Project(join(dir, 'b'))
      cleanups.unshift(() => again.close())
      await again.importFiles([out1])
      const reimported = c.reimported ?? c.records
      expect(again.db.prepare('SELECT file, format, records FROM imports').all()).toEqual([{ file: out1, format: c.reformat, records: reimported.length }])
      expect(contentOf(again)).toEqual(reimported)
      exportAndCheck(again, c, c.export === 'llamafactory' ? join(dir, 'out2') : join(dir, 'out2.jsonl'))
    })
  }

  it('Parquet (row groups, int64 columns, nested message lists)', async () => {
    const { dir, cleanup } = tempDir()
    cleanups.push(cleanup)
    const fixtures = join(__dirname, '..', 'fixtures', 'data')
    // The rows of tests/fixtures/data/preference.parquet (an int64 `score` column beside them,
    // which the store has no use for) and messages.parquet, written out.
    const pairs: [string, string, string][] = [
      ['What is 2 + 2?', '4.', '5.'],
      ['Name a primary colour.', 'Red.', 'Purple.'],
      ['Say hello in French.', 'Bonjour.', 'Hola.'],
      ['What is the opposite of hot?', 'Cold.', 'Warm.'],
      ['Spell "cat" backwards.', 'tac', 'cta']
    ]
    const pairRecords = pairs.map(([prompt, chosen, rejected]) => rec({ prompt, candidates: [chosen, rejected], pair: [0, 1], status: 'labeled' }))
    const a = new Project(join(dir, 'a'))
    await a.importFiles([join(fixtures, 'preference.parquet')])
    expect(contentOf(a)).toEqual(pairRecords)
    const out = join(dir, 'dpo.jsonl')
    exportProject(a, { format: 'trl-dpo', out })
    expect(parseLines(out)).toEqual(pairs.map(([prompt, chosen, rejected]) => ({ prompt, chosen, rejected })))
    expect(readFileSync(out, 'utf8').split('\n')[0]).toBe('{"prompt":"What is 2 + 2?","chosen":"4.","rejected":"5."}')
    const b = new Project(join(dir, 'b'))
    await b.importFiles([out])
    expect(contentOf(b)).toEqual(pairRecords)

    const m = new Project(join(dir, 'm'))
    await m.importFiles([join(fixtures, 'messages.parquet')])
    expect(contentOf(m)).toEqual(pairs.map(([prompt, chosen]) => rec({ prompt: [u(prompt)], gold: chosen, status: 'labeled' })))
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

  it('a LLaMA-Factory sharegpt entry with its own tags (role/content keys and role names) reads through them', async () => {
    const { dir, cleanup } = tempDir()
    cleanups.push(cleanup)
    writeJsonl(join(dir, 'chat.jsonl'), [
      { talk: [{ speaker: 'me', text: 'Hi' }, { speaker: 'bot', text: 'Hello' }] },
      { talk: [{ speaker: 'rules', text: 'Be brief.' }, { speaker: 'me', text: 'Name a colour.' }, { speaker: 'bot', text: 'Red.' }] }
    ])
    const tags = { role_tag: 'speaker', content_tag: 'text', user_tag: 'me', assistant_tag: 'bot', system_tag: 'rules' }
    writeFileSync(join(dir, 'dataset_info.json'), JSON.stringify({ chat: { file_name: 'chat.jsonl', formatting: 'sharegpt', columns: { messages: 'talk' }, tags } }))
    const preview = await previewImport(join(dir, 'chat.jsonl'))
    expect(preview).toMatchObject({ format: 'sharegpt', mapping: { messages: 'talk' }, problem: null })
    expect(preview.sampleRecords[0]).toMatchObject({ prompt: [{ role: 'user', content: 'Hi' }], gold: 'Hello' })
    // The import dialog passes the previewed format and mapping back: the tags still hold.
    const p = new Project(join(dir, 'p'))
    await p.importFiles([join(dir, 'chat.jsonl')], { format: 'sharegpt', mapping: { messages: 'talk' } })
    expect(p.getRecord(1)).toMatchObject({ prompt: [{ role: 'user', content: 'Hi' }], gold: 'Hello' })
    expect(p.getRecord(2)).toMatchObject({ prompt: [{ role: 'user', content: 'Name a colour.' }], system: 'Be brief.', gold: 'Red.' })
    p.close()
    // A role the tags do not name is an error naming the row and field.
    writeJsonl(join(dir, 'chat.jsonl'), [{ talk: [{ speaker: 'human', text: 'Hi' }, { speaker: 'bot', text: 'Hello' }] }])
    expect((await previewImport(join(dir, 'chat.jsonl'))).problem).toMatch(/chat\.jsonl: line 1: field 'talk\[0\]\.speaker': unknown role 'human' \(expected one of me, bot, rules, observation, function_call\)/)
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
