// Writes the store out in the formats the trainers read: TRL JSONL per method (dpo:
// prompt/chosen/rejected; kto: prompt/completion/label; sft: messages, or prompt/completion
// when every record is plain text), and
// LLaMA-Factory files with their dataset_info.json entries, and the unlabeled candidates format
// (prompts with their answers, no labels). Files are written to a temporary
// name, fsynced and renamed (main/services/fsAtomic.ts), so a crash never leaves half an export
// under the real name.
import { existsSync, mkdirSync, readFileSync, statSync } from 'node:fs'
import { dirname, join } from 'node:path'
import { asDiskError } from '../diskErrors'
import { writeFileAtomicSync } from '../fsAtomic'
import { DataError } from './errors'
import type { Message, Text } from './formats'
import type { Project } from './store'
import type { DataRecord, ExportFormat, ExportOptions, ExportResult, Split } from '../../../preload/types/data'

type Method = 'dpo' | 'kto' | 'sft'

/** One training example in store terms, before it is given a file format. */
type Example =
  | { method: 'dpo'; rec: DataRecord; chosen: string; rejected: string }
  | { method: 'kto'; rec: DataRecord; completion: string; label: boolean }
  | { method: 'sft'; rec: DataRecord; answer: string }

export function* examples(project: Project, method: Method, split?: Split): Generator<Example> {
  for (const rec of project.iterateRecords({ split })) {
    if (rec.skipped) continue
    const byId = new Map(rec.candidates.map((c) => [c.id, c]))
    if (method === 'dpo') {
      if (!rec.pair || rec.tie) continue
      yield { method, rec, chosen: byId.get(rec.pair.chosen)!.content, rejected: byId.get(rec.pair.rejected)!.content }
    } else if (method === 'kto') {
      // A candidate's own KTO label wins; otherwise a pair gives one desirable and one undesirable.
      for (const c of rec.candidates) {
        let label = c.kto
        if (label === null && rec.pair && !rec.tie) label = c.id === rec.pair.chosen ? true : c.id === rec.pair.rejected ? false : null
        if (label !== null) yield { method, rec, completion: c.content, label }
      }
    } else if (rec.gold !== null) yield { method, rec, answer: rec.gold }
  }
}

/** TRL needs one form per dataset: conversational as soon as any record has messages or a system prompt. */
function isConversational(project: Project, method: Method, split?: Split): boolean {
  for (const ex of examples(project, method, split)) if (typeof ex.rec.prompt !== 'string' || ex.rec.system !== null) return true
  return false
}

function promptMessages(rec: DataRecord): Message[] {
  const msgs: Message[] = rec.system !== null ? [{ role: 'system', content: rec.system }] : []
  return msgs.concat(typeof rec.prompt === 'string' ? [{ role: 'user', content: rec.prompt }] : rec.prompt)
}

function assistant(content: string): Message[] {
  return [{ role: 'assistant', content }]
}

export function trlLine(ex: Example, conversational: boolean): Record<string, unknown> {
  const prompt: Text = conversational ? promptMessages(ex.rec) : (ex.rec.prompt as string)
  const text = (s: string): Text => (conversational ? assistant(s) : s)
  switch (ex.method) {
    case 'dpo':
      return { prompt, chosen: text(ex.chosen), rejected: text(ex.rejected) }
    case 'kto':
      return { prompt, completion: text(ex.completion), label: ex.label }
    case 'sft':
      // Conversational SFT data is TRL's messages format; plain text stays prompt-completion,
      // so a base-model dataset is not forced through a chat template.
      return conversational ? { messages: [...promptMessages(ex.rec), ...assistant(ex.answer)] } : { prompt, completion: ex.answer }
  }
}

function lfLine(ex: Example, conversational: boolean): Record<string, unknown> {
  if (!conversational) {
    const base = { instruction: ex.rec.prompt as string, input: '' }
    if (ex.method === 'dpo') return { ...base, chosen: ex.chosen, rejected: ex.rejected }
    if (ex.method === 'kto') return { ...base, output: ex.completion, kto_tag: ex.label }
    return { ...base, output: ex.answer }
  }
  const messages = promptMessages(ex.rec)
  if (ex.method === 'dpo') return { messages, chosen: assistant(ex.chosen)[0], rejected: assistant(ex.rejected)[0] }
  if (ex.method === 'kto') return { messages: [...messages, ...assistant(ex.completion)], kto_tag: ex.label }
  return { messages: [...messages, ...assistant(ex.answer)] }
}

function lfEntry(method: Method, fileName: string, conversational: boolean): Record<string, unknown> {
  if (!conversational) {
    const columns: Record<string, string> = { prompt: 'instruction', query: 'input' }
    if (method === 'dpo') Object.assign(columns, { chosen: 'chosen', rejected: 'rejected' })
    else Object.assign(columns, { response: 'output' }, method === 'kto' ? { kto_tag: 'kto_tag' } : {})
    return { file_name: fileName, ...(method === 'dpo' ? { ranking: true } : {}), columns }
  }
  const columns: Record<string, string> = { messages: 'messages' }
  if (method === 'dpo') Object.assign(columns, { chosen: 'chosen', rejected: 'rejected' })
  if (method === 'kto') columns.kto_tag = 'kto_tag'
  return {
    file_name: fileName,
    formatting: 'sharegpt',
    ...(method === 'dpo' ? { ranking: true } : {}),
    columns,
    tags: {
      role_tag: 'role',
      content_tag: 'content',
      user_tag: 'user',
      assistant_tag: 'assistant',
      system_tag: 'system',
      observation_tag: 'tool',
      function_tag: 'function_call'
    }
  }
}

/** Streams lines into a temp file beside `path`, then fsyncs and renames it into place. */
export function writeAtomically(path: string, lines: Iterable<string>): number {
  try {
    mkdirSync(dirname(path), { recursive: true })
    return writeFileAtomicSync(path, lines)
  } catch (err) {
    throw asDiskError(err, path, 'nothing was written under that name and an earlier file there is unchanged')
  }
}

/**
 * The candidates import format: each record's prompt, system and answers, labels left out, so
 * a set can be labeled again elsewhere (or by someone else). An answer from the default source
 * is a plain string; one with a named source is {text, model}. A prompt-only record keeps an
 * empty list, so the column is there whichever records a reader samples first.
 */
export function candidatesLine(rec: DataRecord): Record<string, unknown> {
  return {
    prompt: rec.prompt,
    ...(rec.system !== null ? { system: rec.system } : {}),
    completions: rec.candidates.map((c) => (c.source === 'import' ? c.content : { text: c.content, model: c.source }))
  }
}

function exportCandidates(project: Project, out: string, split: Split | undefined): ExportResult {
  if (existsSync(out) && statSync(out).isDirectory()) throw new DataError('is a directory; give a .jsonl file path', { file: out })
  const n = writeAtomically(
    out,
    (function* () {
      // Records with a gold answer and no candidates (SFT data) have nothing to judge; prompts
      // with no answer yet are kept, to be answered. Excluded ones stay out as in every export.
      for (const rec of project.iterateRecords({ split }))
        if (rec.candidates.length || rec.gold === null) yield JSON.stringify(candidatesLine(rec)) + '\n'
    })()
  )
  return { files: [{ path: out, records: n, method: 'candidates' }], datasetInfo: null }
}

const TRL_METHOD: Record<Exclude<ExportFormat, 'llamafactory' | 'candidates'>, Method> = { 'trl-dpo': 'dpo', 'trl-kto': 'kto', 'trl-sft': 'sft' }

export function exportProject(project: Project, opts: ExportOptions): ExportResult {
  const { format, out, split } = opts
  if (!out) throw new DataError('an output path is needed', { field: 'out' })
  if (split !== undefined && split !== 'train' && split !== 'val') throw new DataError(`split must be train or val, got '${String(split)}'`, { field: 'split' })
  if (format === 'llamafactory') return exportLlamaFactory(project, out, split, opts.name ?? 'tunebench')
  if (format === 'candidates') return exportCandidates(project, out, split)
  const method = TRL_METHOD[format as keyof typeof TRL_METHOD]
  if (!method) throw new DataError(`unknown export format '${String(format)}' (trl-dpo, trl-kto, trl-sft, llamafactory, candidates)`, { field: 'format' })
  if (existsSync(out) && statSync(out).isDirectory()) throw new DataError('is a directory; give a .jsonl file path', { file: out })
  const conv = isConversational(project, method, split)
  const n = writeAtomically(
    out,
    (function* () {
      for (const ex of examples(project, method, split)) yield JSON.stringify(trlLine(ex, conv)) + '\n'
    })()
  )
  return { files: [{ path: out, records: n, method }], datasetInfo: null }
}

function exportLlamaFactory(project: Project, dir: string, split: Split | undefined, name: string): ExportResult {
  if (!/^[A-Za-z0-9_.-]+$/.test(name)) throw new DataError(`dataset name '${name}' may only hold letters, digits, '_', '-' and '.'`, { field: 'name' })
  if (existsSync(dir) && !statSync(dir).isDirectory()) throw new DataError('llamafactory export needs a directory', { file: dir })
  mkdirSync(dir, { recursive: true })
  const infoPath = join(dir, 'dataset_info.json')
  let info: Record<string, unknown> = {}
  if (existsSync(infoPath)) {
    try {
      info = JSON.parse(readFileSync(infoPath, 'utf8')) as Record<string, unknown>
    } catch (e) {
      throw new DataError(`cannot merge into the existing dataset_info.json: ${(e as Error).message}`, { file: infoPath })
    }
  }
  const files: ExportResult['files'] = []
  for (const method of ['dpo', 'kto', 'sft'] as const) {
    const first = examples(project, method, split).next()
    if (first.done) continue
    const conv = isConversational(project, method, split)
    const fileName = `${name}_${method}.jsonl`
    const n = writeAtomically(
      join(dir, fileName),
      (function* () {
        for (const ex of examples(project, method, split)) yield JSON.stringify(lfLine(ex, conv)) + '\n'
      })()
    )
    info[`${name}_${method}`] = lfEntry(method, fileName, conv)
    files.push({ path: join(dir, fileName), records: n, method })
  }
  if (!files.length) throw new DataError('nothing to export: no labeled records')
  writeAtomically(infoPath, [JSON.stringify(info, null, 2) + '\n'])
  return { files, datasetInfo: infoPath }
}
