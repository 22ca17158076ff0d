// Reads the datasets of a training config into tokenised examples. Records are parsed by the
// data service's TRL reader (main/services/data/formats.ts); every error names the file and
// the line (JSONL) or record (JSON array, Parquet).
import { existsSync } from 'node:fs'
import { readFile } from 'node:fs/promises'
import { isAbsolute, join, resolve } from 'node:path'
import { DataError } from '../data/errors'
import { parseTrlRecord, type Message, type TrainingRecord } from '../data/formats'
import { defaultMapping, inspectFile, readRecords } from '../data/importers'
import { readRows } from '../data/sources'
import type { DataFormatId, FieldMapping, RecordInput } from '../../../preload/types/data'
import type { TrainingConfig } from '../../../preload/types/trainingSchema'
import { buildExample, type ChatTokenizer, type Example } from './sequences'
import { permutation, mixSeed, SEED_PURPOSE } from './rng'

export interface DatasetSource {
  name: string
  file: string
  /** LLaMA-Factory formatting of a dataset_info.json entry; absent for TRL files. */
  llamaFactory?: { format: 'alpaca' | 'sharegpt'; columns: FieldMapping }
}

/** A name in dataset_dir/dataset_info.json, or a file path (absolute, under dataset_dir, or
 *  relative to the working directory). */
export async function resolveDatasets(cfg: Pick<TrainingConfig, 'dataset' | 'dataset_dir'>): Promise<DatasetSource[]> {
  const infoFile = join(cfg.dataset_dir, 'dataset_info.json')
  let info: Record<string, { file_name?: unknown; formatting?: unknown }> | null = null
  if (existsSync(infoFile)) {
    try {
      info = JSON.parse(await readFile(infoFile, 'utf8'))
    } catch (err) {
      throw new DataError(`not valid JSON: ${(err as Error).message}`, { file: infoFile })
    }
  }
  return cfg.dataset.map((name) => {
    const entry = info?.[name]
    if (entry) {
      if (typeof entry.file_name !== 'string')
        throw new DataError(`entry "${name}" has no file_name (only local files are supported)`, { file: infoFile, field: name })
      // LLaMA-Factory's default formatting is alpaca.
      const format = entry.formatting ?? 'alpaca'
      if (format !== 'alpaca' && format !== 'sharegpt')
        throw new DataError(`entry "${name}": formatting "${String(format)}" (expected alpaca or sharegpt)`, { file: infoFile, field: `${name}.formatting` })
      const columns = (entry as { columns?: unknown }).columns ?? {}
      if (typeof columns !== 'object' || columns === null || Array.isArray(columns))
        throw new DataError(`entry "${name}": columns must be an object`, { file: infoFile, field: `${name}.columns` })
      return { name, file: join(cfg.dataset_dir, entry.file_name), llamaFactory: { format, columns: columns as FieldMapping } }
    }
    const candidates = isAbsolute(name) ? [name] : [join(cfg.dataset_dir, name), resolve(name)]
    const file = candidates.find((f) => existsSync(f))
    if (!file)
      throw new DataError(`"${name}" is neither a name in ${infoFile} nor a file (looked for ${candidates.join(', ')})`, { field: 'dataset' })
    return { name, file }
  })
}

export interface LoadedExamples {
  train: Example[]
  eval: Example[]
  records: number
}

export async function loadExamples(
  cfg: Pick<TrainingConfig, 'dataset' | 'dataset_dir' | 'stage' | 'cutoff_len' | 'max_samples' | 'val_size' | 'seed'>,
  tok: ChatTokenizer
): Promise<LoadedExamples> {
  const all: Example[][] = []
  for (const source of await resolveDatasets(cfg)) {
    let count = 0
    if (source.llamaFactory) {
      const { format, columns } = source.llamaFactory
      const info = await inspectFile(source.file)
      const mapping = { ...defaultMapping(format as DataFormatId, info.columns), ...columns }
      for await (const row of readRecords(source.file, { format: format as DataFormatId, mapping })) {
        if (cfg.max_samples !== null && count >= cfg.max_samples) break
        const where = row.kind === 'jsonl' ? { file: source.file, line: row.index } : { file: source.file, row: row.index }
        try {
          all.push(buildExample(tok, storeRecordToTrl(row.record), cfg.stage, cfg.cutoff_len))
        } catch (e) {
          if (e instanceof DataError) throw e.at(where)
          throw new DataError((e as Error).message, where)
        }
        count++
      }
      if (count === 0) throw new DataError('no records', { file: source.file })
      continue
    }
    for await (const row of readRows(source.file)) {
      if (cfg.max_samples !== null && count >= cfg.max_samples) break
      const where = row.kind === 'jsonl' ? { file: source.file, line: row.index } : { file: source.file, row: row.index }
      try {
        all.push(buildExample(tok, parseTrlRecord(row.value), cfg.stage, cfg.cutoff_len))
      } catch (e) {
        if (e instanceof DataError) throw e.at(where)
        throw new DataError((e as Error).message, where)
      }
      count++
    }
    if (count === 0) throw new DataError('no records', { file: source.file })
  }
  // A preference pair given to KTO becomes two examples; both stay on the same side of the split.
  let evalGroups: Example[][] = []
  let trainGroups = all
  if (cfg.val_size > 0) {
    const nVal = cfg.val_size < 1 ? Math.ceil(cfg.val_size * all.length) : cfg.val_size
    if (nVal >= all.length)
      throw new DataError(`val_size ${cfg.val_size} leaves no training records (dataset has ${all.length})`, { field: 'val_size' })
    const order = permutation(all.length, mixSeed(cfg.seed, SEED_PURPOSE.split))
    const isVal = new Set(order.slice(0, nVal))
    evalGroups = all.filter((_, i) => isVal.has(i))
    trainGroups = all.filter((_, i) => !isVal.has(i))
  }
  return { train: trainGroups.flat(), eval: evalGroups.flat(), records: all.length }
}

/** A LLaMA-Factory record (as the data service's importer reads it) in TRL's conversational
 *  form: LLaMA-Factory always formats through a chat template, so do we. */
export function storeRecordToTrl(r: RecordInput): TrainingRecord {
  const prompt: Message[] = [
    ...(r.system ? [{ role: 'system', content: r.system }] : []),
    ...(typeof r.prompt === 'string' ? [{ role: 'user', content: r.prompt }] : r.prompt)
  ]
  const answer = (content: string): Message[] => [{ role: 'assistant', content }]
  if (r.pair) {
    const chosen = r.candidates[r.pair.chosen]
    const rejected = r.candidates[r.pair.rejected]
    if (!chosen || !rejected) throw new DataError('the pair points at a missing answer')
    return { type: 'preference', prompt, chosen: answer(chosen.content), rejected: answer(rejected.content) }
  }
  const labelled = r.candidates.find((c) => c.kto === true || c.kto === false)
  if (labelled) return { type: 'unpaired', prompt, completion: answer(labelled.content), label: labelled.kto as boolean }
  // SFT: every assistant turn of the conversation learns (LLaMA-Factory's default, mask_history off).
  if (typeof r.gold === 'string') return { type: 'messages', messages: [...prompt, ...answer(r.gold)] }
  throw new DataError('the record has no answer to train on (no response, chosen/rejected or kto_tag)')
}
