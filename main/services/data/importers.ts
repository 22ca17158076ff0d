// Reads dataset files as store records: detects (or takes) the format and the column mapping
// from the first records or from the LLaMA-Factory dataset_info.json beside the file, then
// converts every row with its format's entry in importFormats.ts.
import { readFile } from 'node:fs/promises'
import { basename, dirname, join } from 'node:path'
import { DataError } from './errors'
import { checkMapping, convertRow, defaultMapping, detectFormat, formatSpec, type SharegptTags } from './importFormats'
import { readRows, sniffKind, type SourceKind } from './sources'
import type { DataFormatId, FieldMapping, RecordInput } from '../../../preload/types/data'

export interface ImportedRow {
  record: RecordInput
  format: DataFormatId
  index: number
  kind: SourceKind
  bytesRead: number
}

export interface ReadOptions {
  format?: DataFormatId
  mapping?: FieldMapping
  /** sharegpt: a dataset_info.json entry's message keys and role names. */
  tags?: SharegptTags
}

/** Detects (or takes) the format and mapping of a file from its first records. */
export async function inspectFile(
  file: string,
  sampleSize = 20
): Promise<{ kind: SourceKind; columns: string[]; sample: Record<string, unknown>[]; format: DataFormatId | null }> {
  const kind = await sniffKind(file)
  const sample: Record<string, unknown>[] = []
  const columns: string[] = []
  for await (const row of readRows(file, kind)) {
    if (!row.value || typeof row.value !== 'object' || Array.isArray(row.value))
      throw new DataError('expected a JSON object', where(file, row.kind, row.index))
    const obj = row.value as Record<string, unknown>
    sample.push(obj)
    for (const k of Object.keys(obj)) if (!columns.includes(k)) columns.push(k)
    if (sample.length >= sampleSize) break
  }
  if (!sample.length) throw new DataError('the file holds no records', { file })
  return { kind, columns, sample, format: detectFormat(columns, sample) }
}

export function where(file: string, kind: SourceKind, index: number): { file: string; line?: number; row?: number } {
  return kind === 'jsonl' ? { file, line: index } : { file, row: index }
}

/** One entry of LLaMA-Factory's dataset_info.json (the keys Tunebench reads). */
export interface LfInfoEntry {
  file_name?: unknown
  formatting?: unknown
  columns?: unknown
  tags?: unknown
}

/** LLaMA-Factory's sharegpt tags and their defaults (its DatasetAttr). */
const LF_TAG_DEFAULTS = {
  role_tag: 'from', content_tag: 'value', user_tag: 'human', assistant_tag: 'gpt',
  observation_tag: 'observation', function_tag: 'function_call', system_tag: 'system'
} as const

/** The entry's tags as keys and role names; null when the entry has none (the file's own
 *  from/value or role/content keys are then recognised). */
function lfTags(entry: LfInfoEntry, name: string, infoPath: string): SharegptTags | null {
  if (entry.tags === undefined || entry.tags === null) return null
  if (typeof entry.tags !== 'object' || Array.isArray(entry.tags)) throw new DataError('must be an object', { file: infoPath, field: `${name}.tags` })
  const t: Record<string, string> = { ...LF_TAG_DEFAULTS }
  for (const [key, value] of Object.entries(entry.tags as Record<string, unknown>)) {
    if (!(key in LF_TAG_DEFAULTS)) continue // LLaMA-Factory's other tags (tools, images, ...) do not apply
    if (typeof value !== 'string' || !value) throw new DataError('must be a non-empty string', { file: infoPath, field: `${name}.tags.${key}` })
    t[key] = value
  }
  return {
    roleKey: t.role_tag!, contentKey: t.content_tag!,
    roles: { [t.user_tag!]: 'user', [t.assistant_tag!]: 'assistant', [t.system_tag!]: 'system', [t.observation_tag!]: 'tool', [t.function_tag!]: 'function_call' }
  }
}

/** dataset_info.json as an object of entries; null when there is no such file. */
export async function readDatasetInfo(infoPath: string): Promise<Record<string, LfInfoEntry> | null> {
  let text: string
  try {
    text = await readFile(infoPath, 'utf8')
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return null
    throw new DataError(`cannot read: ${(e as Error).message}`, { file: infoPath })
  }
  let info: unknown
  try {
    info = JSON.parse(text)
  } catch (e) {
    throw new DataError(`invalid JSON: ${(e as Error).message}`, { file: infoPath })
  }
  if (!info || typeof info !== 'object' || Array.isArray(info))
    throw new DataError('expected an object of dataset entries', { file: infoPath })
  return info as Record<string, LfInfoEntry>
}

/**
 * The format and column mapping of one dataset_info.json entry, for a file with these columns:
 * the entry's columns over the format's defaults. Columns Tunebench has no use for (tools,
 * images, videos, ...) are left out, not refused, so any LLaMA-Factory entry reads.
 */
export function lfEntryMapping(
  entry: LfInfoEntry,
  name: string,
  columns: string[],
  infoPath: string
): { format: DataFormatId; mapping: FieldMapping; tags?: SharegptTags } {
  // LLaMA-Factory's default formatting is alpaca.
  const formatting = entry.formatting ?? 'alpaca'
  if (formatting !== 'alpaca' && formatting !== 'sharegpt')
    throw new DataError(`formatting "${String(formatting)}" (expected alpaca or sharegpt)`, { file: infoPath, field: `${name}.formatting` })
  const format: DataFormatId = formatting
  const mapping = defaultMapping(format, columns)
  if (entry.columns !== undefined) {
    if (!entry.columns || typeof entry.columns !== 'object' || Array.isArray(entry.columns))
      throw new DataError('must be an object', { file: infoPath, field: `${name}.columns` })
    const known = formatSpec(format).fields.map((f) => f.name)
    for (const [field, column] of Object.entries(entry.columns as Record<string, unknown>)) {
      if (typeof column !== 'string') throw new DataError('must be a string', { file: infoPath, field: `${name}.columns.${field}` })
      if (known.includes(field)) mapping[field] = column
    }
  }
  const tags = format === 'sharegpt' ? lfTags(entry, name, infoPath) : null
  return tags ? { format, mapping, tags } : { format, mapping }
}

/**
 * A LLaMA-Factory dataset beside its dataset_info.json: the entry naming this file says the
 * formatting (alpaca or sharegpt) and the columns, whatever the file's own column names are.
 */
export async function lfDatasetEntry(file: string, columns: string[]): Promise<{ format: DataFormatId; mapping: FieldMapping; tags?: SharegptTags } | null> {
  const infoPath = join(dirname(file), 'dataset_info.json')
  const info = await readDatasetInfo(infoPath)
  const named = Object.entries(info ?? {}).find(([, e]) => e && typeof e === 'object' && e.file_name === basename(file))
  return named ? lfEntryMapping(named[1], named[0], columns, infoPath) : null
}

/** Streams a file as store records, with the format and mapping resolved first. */
export async function* readRecords(file: string, opts: ReadOptions = {}): AsyncGenerator<ImportedRow> {
  const info = await inspectFile(file, 20)
  // With a format chosen, a broken dataset_info.json beside the file does not stop the read.
  const entry = await lfDatasetEntry(file, info.columns).catch((e: unknown) => {
    if (opts.format) return null
    throw e
  })
  const lf = opts.format ? null : entry
  const format = opts.format ?? lf?.format ?? info.format
  if (!format)
    throw new DataError(`cannot tell the format from the columns (${info.columns.join(', ')}); choose a format and a column mapping`, { file })
  const mapping = opts.mapping ?? lf?.mapping ?? defaultMapping(format, info.columns)
  // The entry's message tags hold whenever the file is read in its entry's formatting (also
  // when the import dialog passes that format back with the mapping the user confirmed).
  const tags = opts.tags ?? (entry?.format === format ? entry.tags : undefined)
  checkMapping(format, mapping, file)
  const source = basename(file)
  for await (const row of readRows(file, info.kind)) {
    let record: RecordInput
    try {
      record = convertRow(row.value, format, mapping, tags)
    } catch (e) {
      if (e instanceof DataError) throw e.at(where(file, row.kind, row.index))
      throw e
    }
    record.source = source
    record.sourceIndex = row.index
    yield { record, format, index: row.index, kind: row.kind, bytesRead: row.bytesRead }
  }
}
