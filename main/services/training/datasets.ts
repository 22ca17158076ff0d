// Reads the datasets of a training config into tokenised examples. Records are parsed by the
// data service's TRL reader (main/services/data/formats.ts); every error names the file and
// the line (JSONL) or record (JSON array, Parquet).
import { existsSync } from 'node:fs'
import { readFile } from 'node:fs/promises'
import { isAbsolute, join, resolve } from 'node:path'
import { DataError } from '../data/errors'
import { parseTrlRecord } from '../data/formats'
import { readRows } from '../data/sources'
import type { TrainingConfig } from '../../../preload/types/trainingSchema'
import { buildExample, type ChatTokenizer, type Example } from './sequences'
import { permutation, mixSeed, SEED_PURPOSE } from './rng'

export interface DatasetSource {
  name: string
  file: string
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
      if (entry.formatting !== undefined && entry.formatting !== 'trl')
        throw new DataError(`entry "${name}": formatting "${String(entry.formatting)}" is not read by the trainer yet; export the dataset in TRL format (tunebench data export --format trl-*)`, { file: infoFile, field: `${name}.formatting` })
      return { name, file: join(cfg.dataset_dir, entry.file_name) }
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
