// Import preview and `data check`: what the file looks like, how it will be read, and the
// first problem a full pass finds.
import { DataError } from './errors'
import { FORMATS, checkMapping, convertRow, defaultMapping, formatSpec } from './importFormats'
import { inspectFile, lfDatasetEntry, readRecords, where } from './importers'
import { countJsonlRecords, readRows } from './sources'
import type { DataFormatId, FieldMapping, ImportPreview, RecordInput } from '../../../preload/types/data'

export async function previewImport(file: string, opts: { format?: DataFormatId; mapping?: FieldMapping } = {}): Promise<ImportPreview> {
  const info = await inspectFile(file, 5)
  // With a format chosen, a broken dataset_info.json beside the file does not stop the read.
  const entry = await lfDatasetEntry(file, info.columns).catch((e: unknown) => {
    if (opts.format) return null
    throw e
  })
  const lf = opts.format ? null : entry
  const format = opts.format ?? lf?.format ?? info.format
  const mapping = opts.mapping ?? (opts.format ? null : lf?.mapping) ?? (format ? defaultMapping(format, info.columns) : {})
  const tags = format && entry?.format === format ? entry.tags : undefined
  const sampleRecords: RecordInput[] = []
  let problem: string | null = null
  if (format) {
    try {
      checkMapping(format, mapping, file)
      info.sample.forEach((row, i) => {
        try {
          sampleRecords.push(convertRow(row, format, mapping, tags))
        } catch (e) {
          throw e instanceof DataError ? e.at(where(file, info.kind, i + 1)) : e
        }
      })
    } catch (e) {
      problem = (e as Error).message
    }
  } else problem = `cannot tell the format from the columns (${info.columns.join(', ')}); choose a format and a column mapping`
  let count = 0
  let pairable: number | null = null
  let promptOnly: number | null = null
  if (format && formatSpec(format).promptOnly && !problem) {
    // How many records can be compared as a pair (two or more answers) and how many have no
    // answer yet needs every record read; the same pass counts them and finds the first bad one.
    let pairs = 0
    let prompts = 0
    try {
      for await (const row of readRows(file, info.kind)) {
        count++
        let rec: RecordInput
        try {
          rec = convertRow(row.value, format, mapping, tags)
        } catch (e) {
          throw e instanceof DataError ? e.at(where(file, row.kind, row.index)) : e
        }
        if (rec.candidates.length >= 2) pairs++
        if (rec.candidates.length === 0 && rec.gold == null) prompts++
      }
      if (format === 'candidates') pairable = pairs
      promptOnly = prompts
    } catch (e) {
      if (!(e instanceof DataError)) throw e
      problem = e.message
      count = 0
    }
  }
  if (promptOnly === null) {
    if (info.kind === 'jsonl') count = await countJsonlRecords(file)
    else for await (const _ of readRows(file, info.kind)) count++
  }
  return {
    file,
    fileKind: info.kind,
    format,
    formats: FORMATS.map((f) => ({ id: f.id, label: f.label, fields: f.fields.map(({ name, required }) => ({ name, required })) })),
    columns: info.columns,
    mapping,
    sampleRows: info.sample,
    sampleRecords,
    problem,
    count,
    pairable,
    promptOnly
  }
}

export interface CheckResult {
  file: string
  fileKind: string | null
  format: DataFormatId | null
  records: number
  problem: string | null
}

/** Reads the whole file as an import would, without a project; stops at the first problem. */
export async function checkFile(file: string, opts: { format?: DataFormatId; mapping?: FieldMapping } = {}): Promise<CheckResult> {
  let fileKind: string | null = null
  let format: DataFormatId | null = opts.format ?? null
  let records = 0
  try {
    const info = await inspectFile(file, 20)
    fileKind = info.kind
    format ??= (await lfDatasetEntry(file, info.columns))?.format ?? info.format
    for await (const _ of readRecords(file, { format: format ?? undefined, mapping: opts.mapping })) records++
    return { file, fileKind, format, records, problem: null }
  } catch (e) {
    if (!(e instanceof DataError)) throw e
    return { file, fileKind, format, records, problem: e.message }
  }
}
