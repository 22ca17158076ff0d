// The training-data formats Tunebench exports and the trainers read, exactly as TRL defines
// them (https://huggingface.co/docs/trl/dataset_formats):
//   preference      {prompt, chosen, rejected}          (DPO, ORPO, SimPO)
//   unpaired        {prompt, completion, label: bool}   (KTO)
//   prompt-completion {prompt, completion}             (SFT)
//   messages        {messages: [{role, content}]}       (SFT, conversational)
// Each text is either a plain string ("standard") or a list of messages ("conversational").
// This module is pure (types, validation, a reader) so the training code reuses it as is.
import { DataError } from './errors'
import { readRows, type SourceKind } from './sources'

export interface Message {
  role: string
  content: string
}
/** A plain string, or a list of chat messages. */
export type Text = string | Message[]

export type TrainingRecord =
  | { type: 'preference'; prompt: Text; chosen: Text; rejected: Text }
  | { type: 'unpaired'; prompt: Text; completion: Text; label: boolean }
  | { type: 'prompt_completion'; prompt: Text; completion: Text }
  | { type: 'messages'; messages: Message[] }

export type TrainingRecordType = TrainingRecord['type']

/** A single text field larger than this is refused: it is almost always a broken export. */
export const MAX_FIELD_CHARS = 16 * 1024 * 1024

export const ROLES = ['system', 'user', 'assistant', 'tool'] as const

export function isConversational(t: Text): t is Message[] {
  return Array.isArray(t)
}

function typeName(v: unknown): string {
  if (v === null) return 'null'
  if (Array.isArray(v)) return 'a list'
  return typeof v === 'object' ? 'an object' : `a ${typeof v}`
}

export function checkString(v: unknown, field: string): string {
  if (typeof v !== 'string') throw new DataError(`expected a string, got ${typeName(v)}`, { field })
  if (v.length > MAX_FIELD_CHARS)
    throw new DataError(`text is ${(v.length / 1048576).toFixed(1)} MB; the limit for one field is ${MAX_FIELD_CHARS / 1048576} MB`, { field })
  return v
}

/** Message content may be a string or OpenAI-style parts [{type:'text', text}]; both become a string. */
function messageContent(v: unknown, field: string): string {
  if (typeof v === 'string') return checkString(v, field)
  if (Array.isArray(v) && v.every((p) => p && typeof p === 'object' && (p as { type?: unknown }).type === 'text')) {
    return checkString(v.map((p) => String((p as { text?: unknown }).text ?? '')).join(''), field)
  }
  if (v === null || v === undefined) return ''
  throw new DataError(`expected a string, got ${typeName(v)}`, { field })
}

export function checkMessages(v: unknown, field: string): Message[] {
  if (!Array.isArray(v)) throw new DataError(`expected a list of messages, got ${typeName(v)}`, { field })
  return v.map((m, i) => {
    const f = `${field}[${i}]`
    if (!m || typeof m !== 'object' || Array.isArray(m)) throw new DataError(`expected a message {role, content}, got ${typeName(m)}`, { field: f })
    const { role, content } = m as { role?: unknown; content?: unknown }
    if (typeof role !== 'string' || role === '') throw new DataError(`expected a role string, got ${typeName(role)}`, { field: `${f}.role` })
    return { role, content: messageContent(content, `${f}.content`) }
  })
}

export function checkText(v: unknown, field: string): Text {
  if (typeof v === 'string') return checkString(v, field)
  if (Array.isArray(v)) return checkMessages(v, field)
  throw new DataError(`expected a string or a list of messages, got ${v === undefined ? 'nothing (missing)' : typeName(v)}`, { field })
}

function checkBool(v: unknown, field: string): boolean {
  if (typeof v === 'boolean') return v
  throw new DataError(`expected true or false, got ${v === undefined ? 'nothing (missing)' : typeName(v)}`, { field })
}

/**
 * TRL's implicit-prompt preference records carry the whole conversation in chosen and rejected;
 * the prompt is their common prefix (as trl.extract_prompt does).
 */
export function extractPrompt(chosen: Text, rejected: Text): { prompt: Text; chosen: Text; rejected: Text } {
  if (Array.isArray(chosen) && Array.isArray(rejected)) {
    let i = 0
    while (i < chosen.length && i < rejected.length && chosen[i].role === rejected[i].role && chosen[i].content === rejected[i].content) i++
    return { prompt: chosen.slice(0, i), chosen: chosen.slice(i), rejected: rejected.slice(i) }
  }
  if (typeof chosen === 'string' && typeof rejected === 'string') {
    let i = 0
    while (i < chosen.length && i < rejected.length && chosen[i] === rejected[i]) i++
    if (i > 0 && i < chosen.length && chosen[i - 1] === ' ') i--
    return { prompt: chosen.slice(0, i), chosen: chosen.slice(i), rejected: rejected.slice(i) }
  }
  throw new DataError('chosen and rejected must both be strings or both be message lists', { field: 'chosen' })
}

function sameKind(a: Text, b: Text, field: string): void {
  if (Array.isArray(a) !== Array.isArray(b))
    throw new DataError('mixes a plain string with a list of messages; use one form for prompt and completions', { field })
}

/** Validates one TRL record (the keys decide its type) and returns it typed. Throws DataError naming the field. */
export function parseTrlRecord(obj: unknown): TrainingRecord {
  if (!obj || typeof obj !== 'object' || Array.isArray(obj)) throw new DataError(`expected a JSON object, got ${typeName(obj)}`)
  const r = obj as Record<string, unknown>
  if ('chosen' in r || 'rejected' in r) {
    const chosen = checkText(r.chosen, 'chosen')
    const rejected = checkText(r.rejected, 'rejected')
    sameKind(chosen, rejected, 'rejected')
    if (r.prompt === undefined) return { type: 'preference', ...extractPrompt(chosen, rejected) }
    const prompt = checkText(r.prompt, 'prompt')
    sameKind(prompt, chosen, 'chosen')
    return { type: 'preference', prompt, chosen, rejected }
  }
  if ('label' in r) {
    const prompt = checkText(r.prompt, 'prompt')
    const completion = checkText(r.completion, 'completion')
    sameKind(prompt, completion, 'completion')
    return { type: 'unpaired', prompt, completion, label: checkBool(r.label, 'label') }
  }
  if ('completion' in r) {
    const prompt = checkText(r.prompt, 'prompt')
    const completion = checkText(r.completion, 'completion')
    sameKind(prompt, completion, 'completion')
    return { type: 'prompt_completion', prompt, completion }
  }
  if ('messages' in r) return { type: 'messages', messages: checkMessages(r.messages, 'messages') }
  const keys = Object.keys(r).join(', ') || 'none'
  throw new DataError(`not a TRL record: expected prompt/chosen/rejected, prompt/completion/label, prompt/completion or messages (keys: ${keys})`)
}

/** The JSON object TRL expects for a record (the inverse of parseTrlRecord). */
export function trlJson(rec: TrainingRecord): Record<string, unknown> {
  switch (rec.type) {
    case 'preference':
      return { prompt: rec.prompt, chosen: rec.chosen, rejected: rec.rejected }
    case 'unpaired':
      return { prompt: rec.prompt, completion: rec.completion, label: rec.label }
    case 'prompt_completion':
      return { prompt: rec.prompt, completion: rec.completion }
    case 'messages':
      return { messages: rec.messages }
  }
}

/** Streams the records of a TRL dataset file (JSONL, JSON array or Parquet), validating each. */
export async function* iterTrainingRecords(file: string, kind?: SourceKind): AsyncGenerator<TrainingRecord> {
  for await (const row of readRows(file, kind)) {
    try {
      yield parseTrlRecord(row.value)
    } catch (e) {
      if (e instanceof DataError) throw e.at(row.kind === 'jsonl' ? { file, line: row.index } : { file, row: row.index })
      throw e
    }
  }
}

/** Reads a whole TRL dataset file; every record must have the same type. */
export async function readTrainingRecords(file: string): Promise<TrainingRecord[]> {
  const out: TrainingRecord[] = []
  for await (const rec of iterTrainingRecords(file)) {
    if (out.length && rec.type !== out[0].type)
      throw new DataError(`record ${out.length + 1} is ${rec.type} but the file started with ${out[0].type} records`, { file })
    out.push(rec)
  }
  if (!out.length) throw new DataError('no records', { file })
  return out
}
