// The tokenizer files of a model folder checked as they are read, so that a corrupt one is
// named (with the line and column where the parser stops) when the model is opened on the
// Models page or first used to tokenise (generation, training), instead of surfacing later as
// a library's stack trace: tokenizer.json (JSON, the shape @huggingface/tokenizers reads) and
// the chat template (tokenizer_config.json chat_template, else chat_template.jinja or
// chat_template.json, as the exporters read it) compiled with @huggingface/jinja.
import { readFile } from 'node:fs/promises'
import { join } from 'node:path'
import { Template } from '@huggingface/jinja'

/** The tokenizer models tokenizer.json's model.type may name (Hugging Face tokenizers). */
export const TOKENIZER_MODEL_TYPES = ['BPE', 'WordPiece', 'WordLevel', 'Unigram'] as const

/** "line 3, column 7" of a character offset (both from 1). */
export function lineColumn(text: string, offset: number): string {
  const before = text.slice(0, Math.max(0, Math.min(offset, text.length)))
  const line = before.split('\n').length
  const column = before.length - before.lastIndexOf('\n')
  return `line ${line}, column ${column}`
}

/** JSON.parse's error as a sentence with the line and column where V8 gives an offset (and at
 *  the end of the file when the text stops early). */
export function describeJsonError(text: string, err: unknown): string {
  const message = (err as Error).message ?? String(err)
  if (/Unexpected end of JSON input/.test(message)) {
    if (!text.trim()) return 'the file is empty'
    return `it ends at ${lineColumn(text, text.length)} before the JSON is complete (truncated?)`
  }
  const at = /^(.*?)\s*(?:in JSON )?at position (\d+)/s.exec(message)
  if (at) {
    const offset = Number(at[2])
    // Stopped at the end of the text (a file cut after a comma or inside a string): truncated.
    if (offset >= text.trimEnd().length) return `it ends at ${lineColumn(text, text.length)} before the JSON is complete (truncated?)`
    return `${at[1]} at ${lineColumn(text, offset)}`
  }
  // "Unexpected token 'x', "<the text>" is not valid JSON": the token without the echoed text.
  const token = /^Unexpected token '(.*?)', /s.exec(message)
  if (token) return `unexpected character ${JSON.stringify(token[1])}`
  return message
}

/** JSON.parse that names the file and where it breaks. */
export function parseJsonFile(file: string, text: string): unknown {
  try {
    return JSON.parse(text)
  } catch (err) {
    throw new Error(`${file}: not valid JSON: ${describeJsonError(text, err)}`)
  }
}

/** What tokenizer.json must hold before @huggingface/tokenizers reads it: an object with a
 *  model of a known type (an old file without model.type is read by its vocab). */
export function tokenizerJsonProblem(value: unknown): string | null {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) return 'expected a JSON object at the top level'
  const model = (value as Record<string, unknown>).model
  if (model === undefined) return 'field "model" is missing'
  if (typeof model !== 'object' || model === null || Array.isArray(model)) return 'field "model" is not an object'
  const m = model as Record<string, unknown>
  if (m.type !== undefined && !(TOKENIZER_MODEL_TYPES as readonly string[]).includes(m.type as string))
    return `model.type ${JSON.stringify(m.type)} is not a tokenizer model Tunebench reads (${TOKENIZER_MODEL_TYPES.join(', ')})`
  if (m.vocab === undefined) return 'field "model.vocab" is missing'
  if (typeof m.vocab !== 'object' || m.vocab === null) return 'field "model.vocab" is not an object or a list'
  return null
}

/** A chat template's source and the file (and key) it came from, for messages. */
export interface ChatTemplateSource {
  source: string
  /** "…/tokenizer_config.json: chat_template", "…/chat_template.jinja". */
  where: string
}

/** The chat template of a folder: tokenizer_config.json's chat_template (a string, or the
 *  "default" of a list of {name, template}), else chat_template.jinja, else chat_template.json;
 *  null when there is none. A malformed chat_template entry is an error naming it. */
export async function readChatTemplateSource(dir: string, config: Record<string, unknown>): Promise<ChatTemplateSource | null> {
  const configWhere = `${join(dir, 'tokenizer_config.json')}: chat_template`
  const ct = config.chat_template
  if (typeof ct === 'string') return ct.length ? { source: ct, where: configWhere } : null
  if (Array.isArray(ct)) {
    const named = ct.find((t: { name?: unknown }) => t?.name === 'default') ?? ct[0]
    if (named && typeof named.template === 'string') return { source: named.template, where: `${configWhere} (${JSON.stringify(named.name ?? 'default')})` }
    if (ct.length) throw new Error(`${configWhere}: expected a string or a list of {name, template}`)
  } else if (ct !== undefined && ct !== null) {
    throw new Error(`${configWhere}: expected a string or a list of {name, template}, got ${typeof ct}`)
  }
  const jinja = join(dir, 'chat_template.jinja')
  const text = await readFile(jinja, 'utf8').catch((err: NodeJS.ErrnoException) => {
    if (err.code === 'ENOENT') return null
    throw new Error(`${jinja}: cannot read: ${err.message}`)
  })
  if (text !== null) return { source: text, where: jinja }
  const json = join(dir, 'chat_template.json')
  const jsonText = await readFile(json, 'utf8').catch(() => null)
  if (jsonText !== null) {
    const value = parseJsonFile(json, jsonText) as { chat_template?: unknown } | null
    if (typeof value?.chat_template === 'string') return { source: value.chat_template, where: `${json}: chat_template` }
    throw new Error(`${json}: field "chat_template" is missing or not a string`)
  }
  return null
}

/** Compiles a chat template, or says where it came from and why it does not parse. */
export function compileChatTemplate(t: ChatTemplateSource): Template {
  try {
    return new Template(t.source)
  } catch (err) {
    // The parser walks off the end of its tokens (a TypeError) when a block is left open.
    const why = err instanceof TypeError
      ? 'the template ends inside an unclosed block or expression (a {% if %}, {% for %} or {{ without its end?)'
      : (err as Error).message
    throw new Error(`${t.where} does not parse as a Jinja template: ${why}`)
  }
}
