// The Modelfile of an Ollama export (tunebench export --format ollama), so that
// `ollama create NAME -f Modelfile` in the export folder makes a model that chats as the trained
// model was trained: FROM the GGUF model, ADAPTER the GGUF LoRA (if any), a TEMPLATE in Ollama's
// Go text/template syntax that writes the same prompt text as the model's Jinja chat template,
// SYSTEM, and PARAMETER stop for the end-of-turn tokens.
//
// The TEMPLATE is not parsed out of the Jinja source. The chat template's marker strings pick a
// family (ChatML: <|im_start|> and <|im_end|>; Llama 3: <|start_header_id|> and <|eot_id|>);
// rendering a few probe conversations with the Jinja template (@huggingface/jinja, as
// ChatTokenizer.renderChat renders for training) then reads the family's variant: the default
// system turn Qwen2/Qwen2.5 write when there is none, Qwen3's dropping of <think> reasoning from
// earlier assistant turns, Llama 3.1's system header ("Cutting Knowledge Date: ..."), Llama's
// | trim of contents, the bos text. The variant is accepted only when the Jinja template renders
// every probe exactly as the TEMPLATE will; anything else gets no TEMPLATE line and a warning
// (Ollama then uses the chat template of the GGUF file). tests/unit/export.ollama.test.ts
// renders the TEMPLATEs with Go's text/template as Ollama does and compares them with the Jinja
// renderings byte for byte.
//
// What Ollama gives a template that uses .Messages (its template.Execute): .Messages with the
// conversation, consecutive messages of one role merged ("\n\n"), .System (all system messages
// joined), .Response "" and no .Prompt; the Modelfile's SYSTEM goes first when the conversation
// does not start with a system message. The template itself writes the generation prompt after
// the last message. A last message from the assistant is left open (Ollama continues it), as
// Ollama's own templates do; the Jinja template with add_generation_prompt would close it and
// start a new turn.
//
// The Jinja side is the chat template as @huggingface/jinja renders it, which rendered the
// training data: its trim and lstrip('\n') strip all (JavaScript) whitespace, where Python's
// Jinja (transformers, llama.cpp) strips only '\n' for lstrip('\n'); the two differ only for
// other whitespace right after Qwen3's </think>.
//
// Not rendered as the Jinja template does: tool calls and tool results (the TEMPLATE has no
// .Tools, so Ollama offers no tools for the model), roles other than system/user/assistant
// (written as turns of that role), and Qwen3's <think> wrapping of an assistant turn after the
// last user turn (only the continuation above has one). Go templates have no loops over text,
// so the helpers that trim contents (Llama) and cut reasoning (Qwen3) walk with template calls:
// trim one per whitespace character it removes, the Qwen3 helper one per piece of an earlier
// assistant turn (up to 256 bytes; one character next to '>' and in whitespace). Go's
// text/template stops at 100000 nested calls, so a turn that needs more (some 100000
// characters of '>' or mixed whitespace) makes Ollama fail the request. Whitespace after the
// last </think> is dropped as the chat template does up to 24 bytes of it (Qwen3 writes two
// line breaks); more of it stays.
import { Template } from '@huggingface/jinja'

export type OllamaTemplateFamily = 'chatml' | 'qwen3' | 'llama3' | 'llama3.1'

export interface OllamaModelfileOptions {
  /** The GGUF model, a path relative to the export folder (where the Modelfile is): 'model.gguf'. */
  modelFile: string
  /** A GGUF LoRA adapter applied on top of modelFile, relative like modelFile: 'adapter.gguf'. */
  adapterFile?: string
  /** The Jinja chat template (tokenizer_config.json chat_template or chat_template.jinja); null when the model has none. */
  chatTemplate: string | null
  /** End-of-sequence token strings (tokenizer_config.json eos_token first, then generation_config.json's
   *  eos_token_id as text); each becomes a PARAMETER stop with the family's end-of-turn tokens. */
  eosTokens: string[]
  /** tokenizer_config.json bos_token (Llama 3: <|begin_of_text|>); the chat template is rendered with it. */
  bosToken?: string | null
  /** Whether the GGUF's tokenizer puts the bos token in front of a prompt itself
   *  (tokenizer.ggml.add_bos_token, as llama.cpp's converter writes for Llama 3). Then the TEMPLATE
   *  leaves out the bos text the chat template writes first, else it writes it. Default true. */
  ggufAddsBos?: boolean
  /** A default system prompt (Modelfile SYSTEM): Ollama puts it first when a conversation has no system message. */
  system?: string
}

export interface OllamaModelfile {
  /** The Modelfile's text. */
  modelfile: string
  /** Things the user should know (no TEMPLATE, tools, a frozen date, ...). */
  warnings: string[]
  /** The recognised chat template family; null when there is no TEMPLATE line. */
  family: OllamaTemplateFamily | null
  /** The TEMPLATE (Go text/template), null when there is none. */
  template: string | null
  /** The PARAMETER stop values, in order. */
  stop: string[]
}

/** What the probes read from a chat template. */
interface Variant {
  family: OllamaTemplateFamily
  /** The text the Jinja template writes before everything else (its bos_token), '' if none. */
  bos: string
  /** ChatML: the system text of the turn written when the conversation has no system message first. */
  defaultSystem: string | null
  /** Llama 3.1 and later: the system header's text before the system message's. */
  preamble: string | null
  /** Llama: contents are written | trim (JavaScript's String.prototype.trim in @huggingface/jinja). */
  trim: boolean
}

interface Msg {
  role: string
  content: string
}

const FAMILY_STOPS: Record<OllamaTemplateFamily, string[]> = {
  chatml: ['<|im_end|>', '<|endoftext|>'],
  qwen3: ['<|im_end|>', '<|endoftext|>'],
  llama3: ['<|eot_id|>', '<|end_of_text|>'],
  'llama3.1': ['<|eot_id|>', '<|end_of_text|>', '<|eom_id|>']
}

const FAMILY_NAMES: Record<OllamaTemplateFamily, string> = {
  chatml: 'ChatML',
  qwen3: 'Qwen3 (ChatML; earlier assistant turns without their <think> reasoning)',
  llama3: 'Llama 3',
  'llama3.1': 'Llama 3.1 (system header always written)'
}

/**
 * The Modelfile for `ollama create NAME -f Modelfile` in the export folder. Pure: it reads no
 * files (only a Llama 3.2-style template that calls strftime_now sees the clock, as it does
 * when Tunebench renders it). Throws when a path or the system prompt cannot be written in a
 * Modelfile; a chat template it cannot translate is a warning, not an error.
 */
export function ollamaModelfile(opts: OllamaModelfileOptions): OllamaModelfile {
  const warnings: string[] = []
  const lines = ['# Ollama Modelfile written by Tunebench. In this folder: ollama create NAME -f Modelfile']
  const from = `FROM ${relativePath(opts.modelFile, 'modelFile')}`
  const adapter = opts.adapterFile !== undefined ? `ADAPTER ${relativePath(opts.adapterFile, 'adapterFile')}` : null

  const t = ollamaTemplate(opts.chatTemplate, { bosToken: opts.bosToken ?? null, eosToken: opts.eosTokens[0] ?? null, ggufAddsBos: opts.ggufAddsBos ?? true })
  warnings.push(...t.warnings)
  if (t.family) lines.push(`# Chat template: ${FAMILY_NAMES[t.family]}, as TEMPLATE below.`)
  lines.push(from)
  if (adapter) lines.push(adapter)
  if (t.template !== null) lines.push(`TEMPLATE """${t.template}"""`)

  if (opts.system !== undefined && opts.system !== '') {
    const bad = unwritable(opts.system)
    if (bad) throw new Error(`system prompt: it contains ${bad}`)
    lines.push(`SYSTEM """${opts.system}"""`)
  }

  const stop: string[] = []
  for (const s of [...(t.family ? FAMILY_STOPS[t.family] : []), ...opts.eosTokens]) {
    if (s === '' || stop.includes(s)) continue
    const line = parameterValue(s)
    if (line === null) {
      warnings.push(`Ollama: stop token ${JSON.stringify(s)} cannot be written as a Modelfile PARAMETER; left out`)
      continue
    }
    stop.push(s)
    lines.push(`PARAMETER stop ${line}`)
  }
  return { modelfile: lines.join('\n') + '\n', warnings, family: t.family, template: t.template, stop }
}

/**
 * The Ollama TEMPLATE for a Jinja chat template, or null with a warning saying why (no chat
 * template, or not one of the families above, or one that renders the probes differently).
 * bosToken/eosToken are what the Jinja template is rendered with (bos_token, eos_token).
 */
export function ollamaTemplate(
  chatTemplate: string | null,
  opts: { bosToken: string | null; eosToken: string | null; ggufAddsBos: boolean }
): { template: string | null; family: OllamaTemplateFamily | null; warnings: string[] } {
  const fallback = 'the Modelfile has no TEMPLATE, so Ollama will use the chat template in the GGUF file (tokenizer.chat_template), if it has one; check what it uses with `ollama show NAME --template`'
  if (chatTemplate === null || chatTemplate.trim() === '')
    return { template: null, family: null, warnings: [`Ollama: the model has no chat template; ${fallback}`] }
  const r = recognise(chatTemplate, opts.bosToken, opts.eosToken)
  if ('why' in r) return { template: null, family: null, warnings: [`Ollama: ${r.why}; ${fallback}`] }
  const v = r.variant
  const warnings: string[] = []
  const template = v.family === 'chatml' || v.family === 'qwen3' ? chatmlTemplate(v, opts.ggufAddsBos) : llamaTemplate(v, opts.ggufAddsBos)
  if (template.includes('"""')) throw new Error('internal: the TEMPLATE would contain """')
  if (/\btools\b|tool_call/.test(chatTemplate))
    warnings.push(
      'Ollama: the chat template can also render tools; the TEMPLATE renders system, user and assistant turns only, so Ollama offers no tool calling with this model. ' +
        'Ollama releases that render with llama-server may prefer the GGUF file\'s own chat template (if it has one) over a TEMPLATE with fewer capabilities; OLLAMA_GO_TEMPLATE=1 on the Ollama server keeps the TEMPLATE'
    )
  if (chatTemplate.includes('strftime_now') && v.preamble !== null)
    warnings.push(`Ollama: the chat template writes the current date (strftime_now) in the system header; the TEMPLATE has the date of this export: ${JSON.stringify(v.preamble.trim())}`)
  return { template, family: v.family, warnings }
}

// ---- recognising the chat template ------------------------------------------------------------

const PROBES: Msg[][] = [
  [{ role: 'user', content: 'Hi!' }],
  [{ role: 'system', content: 'You answer briefly.' }, { role: 'user', content: 'Hi!' }],
  [{ role: 'user', content: 'What is 2+2?' }, { role: 'assistant', content: '4.' }, { role: 'user', content: 'And 3+3?' }],
  [{ role: 'system', content: 'Be kind.' }, { role: 'user', content: 'a' }, { role: 'assistant', content: 'b' }, { role: 'user', content: 'c' }],
  [{ role: 'user', content: 'q1' }, { role: 'assistant', content: '<think>\nreasoning\n</think>\n\nanswer' }, { role: 'user', content: 'q2' }],
  [{ role: 'system', content: ' sys \n' }, { role: 'user', content: '\n u1 ' }, { role: 'assistant', content: ' a1\n' }, { role: 'user', content: 'u2  ' }],
  [{ role: 'user', content: 'a' }, { role: 'system', content: 'b' }, { role: 'user', content: 'c' }]
]

function recognise(source: string, bosToken: string | null, eosToken: string | null): { variant: Variant } | { why: string } {
  const chatml = source.includes('<|im_start|>') && source.includes('<|im_end|>')
  const llama = source.includes('<|start_header_id|>') && source.includes('<|eot_id|>')
  if (!chatml && !llama) return { why: 'the chat template is not one Tunebench translates (ChatML, Qwen2/2.5/3, Llama 3/3.1/3.2)' }
  const kind = chatml ? 'ChatML' : 'Llama 3'
  let t: Template
  try {
    t = new Template(source)
  } catch (err) {
    return { why: `the chat template does not parse (${(err as Error).message})` }
  }
  const vars: Record<string, unknown> = {}
  if (bosToken) vars.bos_token = bosToken
  if (eosToken) vars.eos_token = eosToken
  const render = (messages: Msg[]): string | Error => {
    try {
      return t.render({ messages, add_generation_prompt: true, ...vars })
    } catch (err) {
      return err as Error
    }
  }
  const first = render(PROBES[0])
  if (first instanceof Error) return { why: `the ${kind} chat template fails on a plain conversation (${first.message})` }
  const bos = bosToken && first.startsWith(bosToken) ? bosToken : ''
  const body = first.slice(bos.length)
  const unlike = (what: string) => ({ why: `the chat template looks like ${kind} but ${what}` })

  let variant: Variant
  if (chatml) {
    const tail = '<|im_start|>user\nHi!<|im_end|>\n<|im_start|>assistant\n'
    if (!body.endsWith(tail)) return unlike(`renders a user turn as ${JSON.stringify(body.slice(-80))}`)
    const head = body.slice(0, body.length - tail.length)
    let defaultSystem: string | null = null
    if (head !== '') {
      const m = /^<\|im_start\|>system\n([\s\S]*)<\|im_end\|>\n$/.exec(head)
      if (!m) return unlike(`writes ${JSON.stringify(head.slice(0, 80))} before the first turn`)
      defaultSystem = m[1]
    }
    const thinking = render(PROBES[4])
    const think = typeof thinking === 'string' && thinking.includes('<|im_start|>assistant\nanswer<|im_end|>\n')
    variant = { family: think ? 'qwen3' : 'chatml', bos, defaultSystem, preamble: null, trim: false }
  } else {
    const header = '<|start_header_id|>system<|end_header_id|>\n\n'
    let preamble: string | null = null
    if (body.startsWith(header)) {
      const end = body.indexOf('<|eot_id|>')
      if (end < 0) return unlike('does not end its system header with <|eot_id|>')
      preamble = body.slice(header.length, end)
    }
    const padded = render([{ role: 'user', content: ' Hi! \n' }])
    const trim = typeof padded === 'string' && padded.includes('<|end_header_id|>\n\nHi!<|eot_id|>')
    variant = { family: preamble === null ? 'llama3' : 'llama3.1', bos, defaultSystem: null, preamble, trim }
  }

  for (const probe of PROBES) {
    const got = render(probe)
    if (got instanceof Error) return unlike(`fails on the conversation ${JSON.stringify(probe)} (${got.message})`)
    const want = bos + expectedText(variant, probe)
    if (got !== want) {
      let i = 0
      while (i < got.length && got[i] === want[i]) i++
      return unlike(`renders ${JSON.stringify(probe)} differently from the ${variant.family} TEMPLATE: ${JSON.stringify(got.slice(i, i + 60))} where the TEMPLATE writes ${JSON.stringify(want.slice(i, i + 60))}`)
    }
  }
  return { variant }
}

/** What the TEMPLATE of `v` writes (after the bos) for a conversation that does not end with the
 *  assistant; the probes must render exactly this. */
function expectedText(v: Variant, messages: Msg[]): string {
  let out = ''
  if (v.family === 'chatml' || v.family === 'qwen3') {
    if (v.defaultSystem !== null && messages[0]?.role !== 'system') out += `<|im_start|>system\n${v.defaultSystem}<|im_end|>\n`
    for (const m of messages) {
      let content = m.content
      if (v.family === 'qwen3' && m.role === 'assistant' && content.includes('</think>')) content = content.split('</think>').pop()!.trimStart()
      out += `<|im_start|>${m.role}\n${content}<|im_end|>\n`
    }
    return out + '<|im_start|>assistant\n'
  }
  const trim = (s: string) => (v.trim ? s.trim() : s)
  let rest = messages
  if (v.preamble !== null) {
    const system = messages[0]?.role === 'system' ? trim(messages[0].content) : ''
    out += `<|start_header_id|>system<|end_header_id|>\n\n${v.preamble}${system}<|eot_id|>`
    if (messages[0]?.role === 'system') rest = messages.slice(1)
  }
  for (const m of rest) out += `<|start_header_id|>${m.role}<|end_header_id|>\n\n${trim(m.content)}<|eot_id|>`
  return out + '<|start_header_id|>assistant<|end_header_id|>\n\n'
}

// ---- writing the TEMPLATE ---------------------------------------------------------------------

/** JavaScript's whitespace (String.prototype.trim/trimStart, which @huggingface/jinja's trim and
 *  lstrip are), by UTF-8 length. */
const WS1 = [' ', '\t', '\n', '\v', '\f', '\r']
const WS2 = ['\u00a0']
const WS3 = ['\u1680', '\u2000', '\u2001', '\u2002', '\u2003', '\u2004', '\u2005', '\u2006', '\u2007', '\u2008', '\u2009', '\u200a', '\u2028', '\u2029', '\u202f', '\u205f', '\u3000', '\ufeff']

/** A Go string literal (printable ASCII as is, everything else escaped). */
function goString(s: string): string {
  let out = '"'
  for (const ch of s) {
    const c = ch.codePointAt(0)!
    if (ch === '"' || ch === '\\') out += '\\' + ch
    else if (ch === '\n') out += '\\n'
    else if (ch === '\t') out += '\\t'
    else if (c >= 0x20 && c < 0x7f) out += ch
    else if (c >= 0xd800 && c <= 0xdfff) out += '\\ufffd' // a lone surrogate: no UTF-8 for it
    else out += c <= 0xffff ? '\\u' + c.toString(16).padStart(4, '0') : '\\U' + c.toString(16).padStart(8, '0')
  }
  return out + '"'
}

const goList = (xs: string[]) => xs.map(goString).join(' ')

/** Text the TEMPLATE writes as is: raw when plain (printable ASCII, newlines, no quotes or
 *  braces), else as a Go string constant, so nothing in it can be taken for an action, a quote
 *  of the Modelfile or a character Ollama's Modelfile parser drops. beforeTrim: a {{- follows,
 *  which would eat raw trailing whitespace. */
function text(s: string, beforeTrim = false): string {
  if (s === '') return ''
  const plain = /^[\x20-\x7e\n]*$/.test(s) && !/["{}]/.test(s) && !(beforeTrim && /\s$/.test(s))
  return plain ? s : `{{ ${goString(s)} }}`
}

/** The bos text the TEMPLATE writes first: none when the GGUF tokenizer adds the bos itself. */
const bosText = (v: Variant, ggufAddsBos: boolean, beforeTrim: boolean) => (v.bos && !ggufAddsBos ? text(v.bos, beforeTrim) : '')

function chatmlTemplate(v: Variant, ggufAddsBos: boolean): string {
  const parts: string[] = []
  const bos = bosText(v, ggufAddsBos, true)
  if (bos) parts.push(bos)
  if (v.defaultSystem !== null)
    parts.push(`{{- if or (not .Messages) (ne (index .Messages 0).Role "system") }}<|im_start|>system\n${text(v.defaultSystem)}<|im_end|>\n{{ end }}`)
  const content =
    v.family === 'qwen3' ? '{{ if and (eq .Role "assistant") (not $last) }}{{ template "tunebench.after-think" .Content }}{{ else }}{{ .Content }}{{ end }}' : '{{ .Content }}'
  parts.push(
    [
      '{{- range $i, $_ := .Messages }}',
      '{{- $last := eq (len (slice $.Messages $i)) 1 }}<|im_start|>{{ .Role }}',
      content,
      '{{- if or (not $last) (ne .Role "assistant") }}<|im_end|>',
      '{{ end }}',
      '{{- if and $last (ne .Role "assistant") }}<|im_start|>assistant',
      '{{ end }}',
      '{{- end }}'
    ].join('\n')
  )
  if (v.family === 'qwen3') parts.push(AFTER_THINK)
  return parts.join('\n')
}

function llamaTemplate(v: Variant, ggufAddsBos: boolean): string {
  const parts: string[] = []
  const trimmed = (x: string) => (v.trim ? `{{ template "tunebench.trim" ${x} }}` : `{{ ${x} }}`)
  if (v.preamble !== null)
    parts.push(
      `${bosText(v, ggufAddsBos, false)}<|start_header_id|>system<|end_header_id|>\n\n${text(v.preamble)}` +
        `{{ if and .Messages (eq (index .Messages 0).Role "system") }}${trimmed('(index .Messages 0).Content')}{{ end }}<|eot_id|>`
    )
  else if (v.bos && !ggufAddsBos) parts.push(bosText(v, ggufAddsBos, true))
  const turn = `<|start_header_id|>{{ .Role }}<|end_header_id|>\n\n{{ if and $last (eq .Role "assistant") }}{{ .Content }}{{ else }}${trimmed('.Content')}<|eot_id|>{{ end }}`
  parts.push(
    [
      '{{- range $i, $_ := .Messages }}',
      '{{- $last := eq (len (slice $.Messages $i)) 1 -}}',
      // Llama 3.1: the first message, a system one, is in the system header already.
      v.preamble !== null ? `{{- if or (ne $i 0) (ne .Role "system") }}${turn}\n{{- end }}` : turn,
      '{{- if and $last (ne .Role "assistant") }}<|start_header_id|>assistant<|end_header_id|>',
      '',
      '{{ end }}',
      '{{- end }}'
    ].join('\n')
  )
  if (v.trim) parts.push(TRIM)
  return parts.join('\n')
}

/** The whitespace characters by their UTF-8 length. */
const BY_LENGTH: [number, string[]][] = [
  [1, WS1],
  [2, WS2],
  [3, WS3]
]

const endsWith = (s: string, n: number, xs: string[] | string) =>
  `and (ge (len ${s}) ${n}) (eq (slice ${s} (len (slice ${s} ${n}))) ${typeof xs === 'string' ? xs : goList(xs)})`
const dropLast = (s: string, n: number) => `(slice ${s} 0 (len (slice ${s} ${n})))`

/** tunebench.trim: `.` without leading and trailing whitespace (JavaScript's trim, which the
 *  chat template's | trim is in @huggingface/jinja). */
const TRIM = [
  '{{- define "tunebench.trim" }}',
  '{{- /* . without leading and trailing whitespace, as the chat template\'s | trim */ -}}',
  '{{- $c := printf "%.1s" . }}',
  `{{- if eq $c ${goList([...WS1, ...WS2, ...WS3])} }}{{ template "tunebench.trim" (slice . (len $c)) }}`,
  '{{- else }}{{ template "tunebench.trim-end" . }}',
  '{{- end }}',
  '{{- end }}',
  '{{- define "tunebench.trim-end" }}',
  ...BY_LENGTH.map(([n, xs], i) => `{{- ${i ? 'else if' : 'if'} ${endsWith('.', n, xs)} }}{{ template "tunebench.trim-end" ${dropLast('.', n)} }}`),
  '{{- else }}{{ . }}',
  '{{- end }}',
  '{{- end }}'
].join('\n')

/** How far back (bytes) the Qwen3 helper looks for a </think> before whitespace. */
const THINK_LOOKBACK = 32

/** tunebench.after-think: Qwen3's content of an earlier assistant turn, `.` with everything up to
 *  the last </think> left out and then its leading whitespace (content.split('</think>')[-1]
 *  .lstrip('\n'), whose lstrip strips all whitespace in @huggingface/jinja); `.` as it is when
 *  it has no </think>. Go templates have no loops over text, so it walks back from the end:
 *  each call writes a piece from the end of `.` after what comes before it (a call on the rest),
 *  and the walk stops at </think>. The piece is
 *   - up to 256, 16 or 4 bytes that hold no '>' (html leaves them as they are, or no byte is
 *     '>'), moved to start on a character, when whitespace after a </think> cannot reach into it
 *     (it starts with no whitespace, or after a plain ASCII character other than '>'); else
 *   - 64 line breaks or 64 spaces, or one character. Whitespace goes to
 *     tunebench.ws-after-think (ws64-after-think), which writes it unless only whitespace lies
 *     between it and a </think> in the THINK_LOOKBACK bytes before it: whitespace after the last
 *     </think> is left out exactly as the chat template does up to 24 bytes of it (Qwen3 writes
 *     two line breaks); beyond that it stays. The bound keeps every call's work small. */
const noGt = (n: number) => Array.from({ length: n }, (_, i) => `(ne (index . (len (slice . ${i + 1}))) 62)`).join(' ')
const CONTINUATION = '(ge (index $piece 0) 128) (lt (index $piece 0) 192)'
const RUNS = [goString('\n'.repeat(64)), goString(' '.repeat(64))].join(' ')
const WS_ALL = goList([...WS1, ...WS2, ...WS3])
const AFTER_THINK = [
  '{{- define "tunebench.after-think" }}',
  '{{- /* Qwen3: an earlier assistant turn without its <think> reasoning */ -}}',
  '{{- $k := 0 }}',
  '{{- if and (ge (len .) 256) (eq (len (html (slice . (len (slice . 256))))) 256) }}{{ $k = 256 }}',
  '{{- else if and (ge (len .) 16) (eq (len (html (slice . (len (slice . 16))))) 16) }}{{ $k = 16 }}',
  `{{- else if and (ge (len .) 16) ${noGt(16)} }}{{ $k = 16 }}`,
  `{{- else if and (ge (len .) 4) ${noGt(4)} }}{{ $k = 4 }}`,
  '{{- end }}',
  '{{- $piece := "" }}',
  '{{- if $k }}',
  '{{- $piece = slice . (len (slice . $k)) }}',
  ...[1, 2, 3].map(() => `{{- if and ${CONTINUATION} }}{{ $piece = slice $piece 1 }}{{ end }}`),
  '{{- $head := slice . 0 (len (slice . (len $piece))) }}',
  `{{- if and $head (eq (printf "%.1s" $piece) ${WS_ALL}) }}`,
  '{{- $p := index $head (len (slice $head 1)) }}',
  '{{- if not (and (gt $p 32) (lt $p 127) (ne $p 62)) }}{{ $piece = "" }}{{ end }}',
  '{{- end }}',
  '{{- end }}',
  '{{- if $piece }}',
  '{{- template "tunebench.after-think" (slice . 0 (len (slice . (len $piece)))) }}{{ $piece }}',
  `{{- else if and . (not (${endsWith('.', 8, ['</think>'])})) }}`,
  '{{- $n := 1 }}',
  `{{- if ${endsWith('.', 64, RUNS)} }}{{ $n = 64 }}`,
  '{{- else if ge (index . (len (slice . 1))) 128 }}{{ $n = 2 }}',
  '{{- if lt (index . (len (slice . 2))) 192 }}{{ $n = 3 }}',
  '{{- if lt (index . (len (slice . 3))) 192 }}{{ $n = 4 }}{{ end }}',
  '{{- end }}',
  '{{- end }}',
  '{{- $head := slice . 0 (len (slice . $n)) }}',
  '{{- $c := slice . (len $head) }}',
  '{{- template "tunebench.after-think" $head }}',
  `{{- $t := $head }}{{ if gt (len $t) ${THINK_LOOKBACK} }}{{ $t = slice $t (len (slice $t ${THINK_LOOKBACK})) }}{{ end }}`,
  `{{- if eq $c ${WS_ALL} }}{{ template "tunebench.ws-after-think" (print $c $t) }}`,
  `{{- else if eq $c ${RUNS} }}{{ template "tunebench.ws64-after-think" (print $c $t) }}`,
  '{{- else }}{{ $c }}',
  '{{- end }}',
  '{{- end }}',
  '{{- end }}',
  wsAfterThink('tunebench.ws-after-think', '{{- $c := printf "%.1s" . }}'),
  wsAfterThink('tunebench.ws64-after-think', '{{- $c := slice . 0 64 }}')
].join('\n')

/** tunebench.ws-after-think / ws64-after-think: `.` is a piece of whitespace (one character / 64
 *  line breaks or spaces) and the bytes before it; writes the piece unless those bytes end with
 *  </think> and whitespace. */
function wsAfterThink(name: string, piece: string): string {
  return [
    `{{- define "${name}" }}`,
    piece,
    '{{- $q := slice . (len $c) }}',
    `{{- if ${endsWith('$q', 8, ['</think>'])} }}`,
    ...BY_LENGTH.map(([n, xs]) => `{{- else if ${endsWith('$q', n, xs)} }}{{ template "${name}" (print $c ${dropLast('$q', n)}) }}`),
    '{{- else }}{{ $c }}',
    '{{- end }}',
    '{{- end }}'
  ].join('\n')
}

// ---- Modelfile values ---------------------------------------------------------------------------

/** What in `s` keeps it from being the text of a """-quoted Modelfile value, or null. Ollama's parser ends the
 *  value at a newline after """, and silently drops characters strconv.IsPrint refuses (other
 *  than space, tab, CR and LF). */
function unwritable(s: string): string | null {
  if (s.includes('"""')) return '""" (which would end the quoted value)'
  const bad = [...s].find((ch) => !/[\p{L}\p{M}\p{N}\p{P}\p{S} \t\r\n]/u.test(ch))
  if (bad !== undefined) return `U+${bad.codePointAt(0)!.toString(16).toUpperCase().padStart(4, '0')} (which Ollama's Modelfile parser drops)`
  return null
}

/** A PARAMETER value for `s`: as is when plain, "quoted" when it has surrounding whitespace or
 *  starts with a quote; null when no Modelfile value can hold it (a line break, """, ...). */
function parameterValue(s: string): string | null {
  if (unwritable(s) || /[\n\r]/.test(s)) return null
  if (!/^\s|\s$|^"/.test(s)) return s
  if (s.startsWith('""')) return null
  return `"${s}"`
}

/** `./path` for a path inside the export folder (POSIX separators). */
function relativePath(p: string, what: string): string {
  const norm = p.replace(/^(\.\/)+/, '')
  if (norm === '' || /^\s|\s$/.test(norm) || /^([/\\]|[A-Za-z]:)/.test(norm) || norm.split(/[/\\]/).includes('..') || /[\n\r"]/.test(norm) || unwritable(norm))
    throw new Error(`${what}: ${JSON.stringify(p)} is not a path inside the export folder that a Modelfile can hold`)
  return `./${norm.replace(/\\/g, '/')}`
}
