// The import formats of the ecosystem, one table entry each: how the format is recognised from
// a file's columns, which fields it reads (and the columns they come from by default; the user
// may change the mapping), and how a row becomes a store record. Formats: TRL (preference,
// unpaired, prompt-completion, messages; plain or conversational), LLaMA-Factory alpaca and
// sharegpt (with ranking and kto_tag, from/value or role/content tags), OpenAI chat (messages)
// and preference fine-tuning (input/preferred_output/non_preferred_output), and unlabeled
// candidates (prompt with a list of completions or responses) for labeling here. A record may
// have no answer yet (prompt-only: a bare prompt, messages ending in a user turn, alpaca
// without output): it imports unlabeled with zero answers, for answers to be generated.
import { DataError } from './errors'
import { checkMessages, checkString, checkText, extractPrompt, type Message, type Text } from './formats'
import type { DataFormatId, FieldMapping, RecordInput } from '../../../preload/types/data'

/** A mapped field's value and the column it was read from (named in errors). */
type Getter = (field: string) => { value: unknown; column: string } | undefined

/** What detection sees of a file: its column names (the union over the first records) and those records. */
export interface Columns {
  has(column: string): boolean
  sample: Record<string, unknown>[]
}

export interface ImportFormat {
  id: DataFormatId
  label: string
  /** Fields in the order the preview shows them; `required` ones must be mapped. */
  fields: { name: string; required: boolean; defaults: string[] }[]
  /** Detection tries formats by ascending priority, so a more specific column set wins. */
  priority: number
  /** Rows may hold a prompt with no answer yet; the preview then reads every row to count them. */
  promptOnly?: true
  /** Whether a file with these columns is in this format. */
  detect(columns: Columns): boolean
  /** One row, read through the mapping, as a store record; errors name the column. */
  convert(get: Getter, tags?: SharegptTags): RecordInput
}

/** Column names the candidates format looks for, in this order. */
const CANDIDATE_COLUMNS = ['completions', 'responses', 'candidates']
/** Columns that hold an answer in some format: a file with a prompt and none of them is prompt-only. */
const ANSWER_COLUMNS = [...CANDIDATE_COLUMNS, 'completion', 'chosen', 'rejected', 'response', 'output', 'answer', 'label', 'kto_tag']

// --- conversion helpers shared by the formats ---------------------------------------------

function splitSystem(messages: Message[]): { system: string | null; rest: Message[] } {
  if (messages.length && messages[0].role === 'system') return { system: messages[0].content, rest: messages.slice(1) }
  return { system: null, rest: messages }
}

/** A completion is a string or exactly one assistant message; the store keeps its text. */
function completionText(t: Text, column: string): string {
  if (typeof t === 'string') return t
  if (t.length !== 1 || t[0].role !== 'assistant')
    throw new DataError(`expected a single assistant message, got ${t.length} message(s)${t.length ? ` starting with role '${t[0].role}'` : ''}`, { field: column })
  return t[0].content
}

function promptOf(t: Text, column: string): { prompt: Text; system: string | null } {
  if (typeof t === 'string') return { prompt: t, system: null }
  const { system, rest } = splitSystem(t)
  if (!rest.length) throw new DataError('the prompt has no user message', { field: column })
  return { prompt: rest, system }
}

function required(get: Getter, field: string): { value: unknown; column: string } {
  const g = get(field)
  if (!g || g.value === undefined || g.value === null) throw new DataError('missing', { field: g?.column ?? field })
  return g
}

function asBool(v: unknown, column: string): boolean {
  if (typeof v === 'boolean') return v
  throw new DataError(`expected true or false, got ${JSON.stringify(v)}`, { field: column })
}

const LF_ROLE: Record<string, string> = {
  human: 'user',
  user: 'user',
  gpt: 'assistant',
  assistant: 'assistant',
  system: 'system',
  observation: 'tool',
  tool: 'tool',
  function_call: 'function_call'
}

/** A dataset_info.json entry's `tags` (LLaMA-Factory): the message keys and the role names. */
export interface SharegptTags {
  roleKey: string
  contentKey: string
  /** Role name in the file -> role. */
  roles: Record<string, Message['role']>
}

/** sharegpt messages with from/value or role/content keys (or the entry's tags) become {role, content}. */
function sharegptMessages(v: unknown, column: string, tags?: SharegptTags): Message[] {
  if (!Array.isArray(v)) throw new DataError(`expected a list of messages, got ${v === null ? 'null' : typeof v}`, { field: column })
  return v.map((m, i) => sharegptMessage(m, `${column}[${i}]`, tags))
}

function sharegptMessage(m: unknown, field: string, tags?: SharegptTags): Message {
  if (!m || typeof m !== 'object' || Array.isArray(m)) throw new DataError('expected a message object', { field })
  const o = m as Record<string, unknown>
  const roleKey = tags?.roleKey ?? ('from' in o ? 'from' : 'role')
  const contentKey = tags?.contentKey ?? ('value' in o ? 'value' : 'content')
  const roles = tags?.roles ?? LF_ROLE
  const raw = o[roleKey]
  if (typeof raw !== 'string') throw new DataError(`expected a '${roleKey}' string`, { field: `${field}.${roleKey}` })
  const role = roles[raw]
  if (!role) throw new DataError(`unknown role '${raw}' (expected one of ${Object.keys(roles).join(', ')})`, { field: `${field}.${roleKey}` })
  return { role, content: checkString(o[contentKey] ?? '', `${field}.${contentKey}`) }
}

function candidateOf(v: unknown, field: string): { content: string; source?: string } {
  if (typeof v === 'string') return { content: checkString(v, field) }
  if (Array.isArray(v)) return { content: completionText(checkMessages(v, field), field) }
  if (!v || typeof v !== 'object') throw new DataError(`expected a string or an object {text, model}, got ${v === null ? 'null' : typeof v}`, { field })
  const o = v as Record<string, unknown>
  if ('role' in o && o.role !== 'assistant') throw new DataError(`expected an assistant answer, got role ${JSON.stringify(o.role)}`, { field: `${field}.role` })
  const key = 'text' in o ? 'text' : 'content' in o ? 'content' : null
  if (!key) throw new DataError(`missing: an answer object needs 'text' or 'content' (keys: ${Object.keys(o).join(', ') || 'none'})`, { field: `${field}.text` })
  const content = checkString(o[key], `${field}.${key}`)
  const nameKey = 'model' in o ? 'model' : 'source' in o ? 'source' : null
  if (!nameKey || o[nameKey] === null) return { content }
  const source = checkString(o[nameKey], `${field}.${nameKey}`)
  if (!source) throw new DataError('expected a non-empty name', { field: `${field}.${nameKey}` })
  return { content, source }
}


/** A whole conversation for SFT: the last assistant turn is the gold answer, the rest the
 *  prompt; one ending in a user turn is a prompt with no answer yet. */
function fromConversation(messages: Message[], column: string, system: string | null): RecordInput {
  const split = splitSystem(messages)
  const last = split.rest[split.rest.length - 1]
  if (last?.role === 'user') return { prompt: split.rest, system: split.system ?? system, candidates: [] }
  if (!last || last.role !== 'assistant') throw new DataError('the conversation must end with an assistant or a user turn', { field: column })
  const prompt = split.rest.slice(0, -1)
  if (!prompt.length) throw new DataError('the conversation has no user turn before the answer', { field: column })
  return { prompt, system: split.system ?? system, candidates: [], gold: last.content }
}

// --- the formats -----------------------------------------------------------------------------

export const FORMATS: readonly ImportFormat[] = [
  {
    id: 'trl-preference',
    label: 'TRL preference (prompt / chosen / rejected)',
    fields: [
      { name: 'prompt', required: false, defaults: ['prompt'] },
      { name: 'chosen', required: true, defaults: ['chosen'] },
      { name: 'rejected', required: true, defaults: ['rejected'] }
    ],
    priority: 6,
    detect: ({ has }) => has('chosen') && has('rejected'),
    convert(get) {
      const c = required(get, 'chosen')
      const r = required(get, 'rejected')
      let chosen = checkText(c.value, c.column)
      let rejected = checkText(r.value, r.column)
      if (typeof chosen === 'string' !== (typeof rejected === 'string'))
        throw new DataError('chosen and rejected must both be strings or both be message lists', { field: r.column })
      const p = get('prompt')
      let prompt: Text
      if (p && p.value !== undefined) {
        prompt = checkText(p.value, p.column)
        if (typeof prompt === 'string' !== (typeof chosen === 'string'))
          throw new DataError('prompt and chosen must both be strings or both be message lists', { field: c.column })
      } else ({ prompt, chosen, rejected } = extractPrompt(chosen, rejected))
      const { prompt: pr, system } = promptOf(prompt, p?.column ?? 'prompt')
      return {
        prompt: pr,
        system,
        candidates: [{ content: completionText(chosen, c.column) }, { content: completionText(rejected, r.column) }],
        pair: { chosen: 0, rejected: 1 }
      }
    }
  },
  {
    id: 'trl-unpaired',
    label: 'TRL unpaired preference, KTO (prompt / completion / label)',
    fields: [
      { name: 'prompt', required: true, defaults: ['prompt'] },
      { name: 'completion', required: true, defaults: ['completion'] },
      { name: 'label', required: true, defaults: ['label'] }
    ],
    priority: 8,
    detect: ({ has }) => has('completion') && (has('label') || has('kto_tag')),
    convert(get) {
      const p = required(get, 'prompt')
      const c = required(get, 'completion')
      const l = required(get, 'label')
      const { prompt, system } = promptOf(checkText(p.value, p.column), p.column)
      return { prompt, system, candidates: [{ content: completionText(checkText(c.value, c.column), c.column), kto: asBool(l.value, l.column) }] }
    }
  },
  {
    id: 'trl-prompt-completion',
    label: 'TRL prompt-completion (prompt / completion)',
    fields: [
      { name: 'prompt', required: true, defaults: ['prompt'] },
      { name: 'completion', required: true, defaults: ['completion'] }
    ],
    priority: 9,
    detect: ({ has }) => has('prompt') && has('completion'),
    convert(get) {
      const p = required(get, 'prompt')
      const c = required(get, 'completion')
      const { prompt, system } = promptOf(checkText(p.value, p.column), p.column)
      return { prompt, system, candidates: [], gold: completionText(checkText(c.value, c.column), c.column) }
    }
  },
  {
    id: 'trl-messages',
    label: 'TRL / OpenAI chat messages',
    fields: [{ name: 'messages', required: true, defaults: ['messages'] }],
    priority: 5,
    promptOnly: true,
    detect: ({ has }) => has('messages') && !has('chosen'),
    convert(get) {
      const m = required(get, 'messages')
      return fromConversation(checkMessages(m.value, m.column), m.column, null)
    }
  },
  {
    id: 'alpaca',
    label: 'LLaMA-Factory alpaca (instruction / input / output)',
    fields: [
      { name: 'prompt', required: true, defaults: ['instruction'] },
      { name: 'query', required: false, defaults: ['input'] },
      { name: 'response', required: false, defaults: ['output'] },
      { name: 'system', required: false, defaults: ['system'] },
      { name: 'history', required: false, defaults: ['history'] },
      { name: 'chosen', required: false, defaults: ['chosen'] },
      { name: 'rejected', required: false, defaults: ['rejected'] },
      { name: 'kto_tag', required: false, defaults: ['kto_tag', 'label'] }
    ],
    priority: 3,
    promptOnly: true,
    detect: ({ has }) => has('instruction'),
    convert(get) {
      const p = required(get, 'prompt')
      const instruction = checkString(p.value, p.column)
      const q = get('query')
      const query = q && q.value != null ? checkString(q.value, q.column) : ''
      const text = query ? `${instruction}\n${query}` : instruction
      const s = get('system')
      const system = s && s.value != null && s.value !== '' ? checkString(s.value, s.column) : null
      const h = get('history')
      let prompt: Text = text
      if (h && h.value != null && !(Array.isArray(h.value) && h.value.length === 0)) {
        if (!Array.isArray(h.value)) throw new DataError('expected a list of [query, response] pairs', { field: h.column })
        const msgs: Message[] = []
        h.value.forEach((turn, i) => {
          if (!Array.isArray(turn) || turn.length !== 2) throw new DataError('expected a [query, response] pair', { field: `${h.column}[${i}]` })
          msgs.push({ role: 'user', content: checkString(turn[0], `${h.column}[${i}][0]`) })
          msgs.push({ role: 'assistant', content: checkString(turn[1], `${h.column}[${i}][1]`) })
        })
        prompt = [...msgs, { role: 'user', content: text }]
      }
      const c = get('chosen')
      const r = get('rejected')
      const o = get('response')
      const k = get('kto_tag')
      if (c && c.value != null) {
        const rr = required(get, 'rejected')
        return {
          prompt,
          system,
          candidates: [{ content: checkString(c.value, c.column) }, { content: checkString(rr.value, rr.column) }],
          pair: { chosen: 0, rejected: 1 }
        }
      }
      if (r && r.value != null) throw new DataError('missing', { field: c?.column ?? 'chosen' })
      // No output column at all: instructions still to be answered.
      if (!o && !(k && k.value != null)) return { prompt, system, candidates: [] }
      const out = required(get, 'response')
      if (Array.isArray(out.value)) {
        // Older LLaMA-Factory ranking files: output = [chosen, rejected].
        if (out.value.length !== 2) throw new DataError('a ranking output must be [chosen, rejected]', { field: out.column })
        return {
          prompt,
          system,
          candidates: [{ content: checkString(out.value[0], `${out.column}[0]`) }, { content: checkString(out.value[1], `${out.column}[1]`) }],
          pair: { chosen: 0, rejected: 1 }
        }
      }
      const response = checkString(out.value, o?.column ?? 'output')
      if (k && k.value != null) return { prompt, system, candidates: [{ content: response, kto: asBool(k.value, k.column) }] }
      return { prompt, system, candidates: [], gold: response }
    }
  },
  {
    id: 'sharegpt',
    label: 'LLaMA-Factory sharegpt (conversations)',
    fields: [
      { name: 'messages', required: true, defaults: ['conversations', 'messages'] },
      { name: 'system', required: false, defaults: ['system'] },
      { name: 'chosen', required: false, defaults: ['chosen'] },
      { name: 'rejected', required: false, defaults: ['rejected'] },
      { name: 'kto_tag', required: false, defaults: ['kto_tag', 'label'] }
    ],
    priority: 2,
    promptOnly: true,
    detect: ({ has, sample }) =>
      has('conversations') ||
      // sharegpt with OpenAI tags keeps chosen/rejected as single message objects, or a kto_tag.
      (!has('instruction') && has('messages') && (has('kto_tag') || sample.some((r) => r.chosen && typeof r.chosen === 'object' && !Array.isArray(r.chosen)))),
    convert(get, tags) {
      const m = required(get, 'messages')
      const messages = sharegptMessages(m.value, m.column, tags)
      const s = get('system')
      let system = s && s.value != null && s.value !== '' ? checkString(s.value, s.column) : null
      const c = get('chosen')
      const k = get('kto_tag')
      if (c && c.value != null) {
        const r = required(get, 'rejected')
        const split = splitSystem(messages)
        if (split.system !== null) system = split.system
        if (!split.rest.length || split.rest[split.rest.length - 1].role !== 'user')
          throw new DataError('a ranking conversation must end with a user turn', { field: m.column })
        const chosen = sharegptMessage(c.value, c.column, tags)
        const rejected = sharegptMessage(r.value, r.column, tags)
        for (const [msg, col] of [[chosen, c.column], [rejected, r.column]] as const)
          if (msg.role !== 'assistant') throw new DataError(`expected an assistant message, got role '${msg.role}'`, { field: col })
        return { prompt: split.rest, system, candidates: [{ content: chosen.content }, { content: rejected.content }], pair: { chosen: 0, rejected: 1 } }
      }
      const rec = fromConversation(messages, m.column, system)
      if (k && k.value != null) {
        if (rec.gold == null) throw new DataError('a kto_tag judges an answer: the conversation must end with an assistant turn', { field: m.column })
        return { prompt: rec.prompt, system: rec.system, candidates: [{ content: rec.gold, kto: asBool(k.value, k.column) }] }
      }
      return rec
    }
  },
  {
    id: 'openai-preference',
    label: 'OpenAI preference fine-tuning (input / preferred_output / non_preferred_output)',
    fields: [
      { name: 'input', required: true, defaults: ['input'] },
      { name: 'preferred_output', required: true, defaults: ['preferred_output'] },
      { name: 'non_preferred_output', required: true, defaults: ['non_preferred_output'] }
    ],
    priority: 1,
    detect: ({ has }) => has('preferred_output') && has('non_preferred_output'),
    convert(get) {
      const i = required(get, 'input')
      const inp = i.value as { messages?: unknown }
      if (!inp || typeof inp !== 'object' || Array.isArray(inp)) throw new DataError('expected an object {messages: [...]}', { field: i.column })
      const { prompt, system } = promptOf(checkMessages(inp.messages, `${i.column}.messages`), `${i.column}.messages`)
      const c = required(get, 'preferred_output')
      const r = required(get, 'non_preferred_output')
      return {
        prompt,
        system,
        candidates: [
          { content: completionText(checkMessages(c.value, c.column), c.column) },
          { content: completionText(checkMessages(r.value, r.column), r.column) }
        ],
        pair: { chosen: 0, rejected: 1 }
      }
    }
  },
  {
    // Prompts with answers still to be judged (e.g. from two models), or with none yet (TRL's
    // prompt-only type): imported with no label.
    id: 'candidates',
    label: 'Unlabeled candidates or prompts (prompt / completions or responses)',
    fields: [
      { name: 'prompt', required: true, defaults: ['prompt'] },
      { name: 'candidates', required: false, defaults: CANDIDATE_COLUMNS },
      { name: 'system', required: false, defaults: ['system'] }
    ],
    priority: 7,
    promptOnly: true,
    detect: ({ has, sample }) =>
      has('prompt') && !has('label') && !has('kto_tag') &&
      // A list of answers still to be judged, or no answer column at all (prompt-only).
      (CANDIDATE_COLUMNS.some((c) => has(c) && sample.some((r) => Array.isArray(r[c]))) || !ANSWER_COLUMNS.some(has)),
    convert(get) {
      const p = required(get, 'prompt')
      const c = get('candidates')
      const { prompt, system: fromPrompt } = promptOf(checkText(p.value, p.column), p.column)
      const s = get('system')
      let system = fromPrompt
      if (s && s.value != null && s.value !== '') {
        if (fromPrompt !== null) throw new DataError('a system prompt is given both here and as the first prompt message', { field: s.column })
        system = checkString(s.value, s.column)
      }
      // No answer (no column, null or an empty list): a prompt still to be answered.
      if (!c || c.value == null) return { prompt, system, candidates: [] }
      if (!Array.isArray(c.value)) throw new DataError(`expected a list of candidate answers, got ${typeof c.value}`, { field: c.column })
      const candidates = c.value.map((v, i) => candidateOf(v, `${c.column}[${i}]`))
      return { prompt, system, candidates }
    }
  }
]

export function formatSpec(id: DataFormatId): ImportFormat {
  const spec = FORMATS.find((f) => f.id === id)
  if (!spec) throw new DataError(`unknown format '${id}' (known: ${FORMATS.map((f) => f.id).join(', ')})`)
  return spec
}

const byPriority = [...FORMATS].sort((a, b) => a.priority - b.priority)

/** Picks the format from the column names (the union over the first records). */
export function detectFormat(columns: string[], sample: Record<string, unknown>[]): DataFormatId | null {
  const seen: Columns = { has: (k) => columns.includes(k), sample }
  return byPriority.find((f) => f.detect(seen))?.id ?? null
}

export function defaultMapping(format: DataFormatId, columns: string[]): FieldMapping {
  const mapping: FieldMapping = {}
  for (const f of formatSpec(format).fields) {
    const col = f.defaults.find((d) => columns.includes(d))
    if (col) mapping[f.name] = col
  }
  return mapping
}

export function checkMapping(format: DataFormatId, mapping: FieldMapping, file?: string): void {
  const spec = formatSpec(format)
  for (const key of Object.keys(mapping)) {
    if (!spec.fields.some((f) => f.name === key))
      throw new DataError(`mapping names unknown field '${key}' for format ${format} (fields: ${spec.fields.map((f) => f.name).join(', ')})`, { file })
  }
  for (const f of spec.fields) {
    if (f.required && !mapping[f.name]) throw new DataError(`format ${format} needs a column for '${f.name}'`, { file })
  }
}

export function convertRow(value: unknown, format: DataFormatId, mapping: FieldMapping, tags?: SharegptTags): RecordInput {
  if (!value || typeof value !== 'object' || Array.isArray(value)) throw new DataError('expected a JSON object')
  const obj = value as Record<string, unknown>
  const get: Getter = (field) => {
    const column = mapping[field]
    return column ? { value: obj[column], column } : undefined
  }
  return formatSpec(format).convert(get, tags)
}
