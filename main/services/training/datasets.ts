// Reads the datasets of a training config into tokenised examples. Records are parsed by the
// data service's TRL reader (main/services/data/formats.ts), or by its LLaMA-Factory importer
// with the dataset_info.json entry (main/services/data/importers.ts); every error names the file and
// the line (JSONL) or record (JSON array, Parquet).
import { existsSync } from 'node:fs'
import { isAbsolute, join, resolve } from 'node:path'
import { setImmediate as nextTurn } from 'node:timers/promises'
import { DataError } from '../data/errors'
import { checkText, parseTrlRecord, type Message, type Text, type TrainingRecord } from '../data/formats'
import { inspectFile, lfEntryMapping, readDatasetInfo, readRecords, where, type LfInfoEntry } from '../data/importers'
import { readRows, type SourceKind } from '../data/sources'
import type { RecordInput } from '../../../preload/types/data'
import type { TrainingConfig } from '../../../preload/types/trainingSchema'
import { buildExample, promptExample, type ChatTokenizer, type Example, type PromptRecord } from './sequences'
import { permutation, mixSeed, SEED_PURPOSE } from './rng'

export interface DatasetSource {
  name: string
  file: string
  /** The dataset_info.json entry naming this dataset; absent for TRL files. */
  llamaFactory?: { entry: LfInfoEntry; infoFile: string }
}

/** A name in dataset_dir/dataset_info.json, or a file path (absolute, under dataset_dir, or
 *  relative to the working directory). */
export async function resolveDatasets(cfg: Pick<TrainingConfig, 'dataset' | 'dataset_dir'>): Promise<DatasetSource[]> {
  const infoFile = join(cfg.dataset_dir, 'dataset_info.json')
  const info = await readDatasetInfo(infoFile)
  return cfg.dataset.map((name) => {
    const entry = info?.[name]
    if (entry) {
      if (typeof entry.file_name !== 'string')
        throw new DataError(`entry "${name}" has no file_name (only local files are supported)`, { file: infoFile, field: name })
      return { name, file: join(cfg.dataset_dir, entry.file_name), llamaFactory: { entry, infoFile } }
    }
    const candidates = isAbsolute(name) ? [name] : [join(cfg.dataset_dir, name), resolve(name)]
    const file = candidates.find((f) => existsSync(f))
    if (!file)
      throw new DataError(`"${name}" is neither a name in ${infoFile} nor a file (looked for ${candidates.join(', ')})`, { field: 'dataset' })
    return { name, file }
  })
}

/** A source's rows, each with a parser into a TRL record: TRL files are read as they are,
 *  LLaMA-Factory ones through the data service's importer with the entry's column mapping. */
async function* sourceRows(
  source: DatasetSource
): AsyncGenerator<{ kind: SourceKind; index: number; parse: () => TrainingRecord; prompt: () => PromptRecord }> {
  if (!source.llamaFactory) {
    for await (const row of readRows(source.file))
      yield { kind: row.kind, index: row.index, parse: () => parseTrlRecord(row.value), prompt: () => trlPromptRecord(row.value) }
    return
  }
  const { entry, infoFile } = source.llamaFactory
  const { format, mapping, tags } = lfEntryMapping(entry, source.name, (await inspectFile(source.file)).columns, infoFile)
  for await (const row of readRecords(source.file, { format, mapping, tags }))
    yield { kind: row.kind, index: row.index, parse: () => storeRecordToTrl(row.record), prompt: () => storePromptRecord(row.record) }
}

/** A GRPO row of a TRL file: `prompt` (text or messages; or a conversation, asked up to its
 *  last assistant turn) and the other columns as they are. */
function trlPromptRecord(value: unknown): PromptRecord {
  if (!value || typeof value !== 'object' || Array.isArray(value)) throw new DataError('expected a JSON object')
  const { prompt, ...columns } = value as Record<string, unknown>
  if (prompt !== undefined) return { prompt: checkText(prompt, 'prompt'), columns }
  return { prompt: recordPrompt(parseTrlRecord(value)), columns }
}

/** A GRPO row of a LLaMA-Factory dataset: its prompt (and system prompt); a gold answer
 *  (alpaca's output, ...) is the `solution` the accuracy reward checks. */
function storePromptRecord(r: RecordInput): PromptRecord {
  const prompt: Text = typeof r.prompt === 'string' && !r.system ? r.prompt : storeConversation(r)
  return { prompt, columns: typeof r.gold === 'string' ? { solution: r.gold } : {} }
}

/** A LLaMA-Factory record's prompt as messages: its system prompt first, a string as one user turn. */
function storeConversation(r: RecordInput): Message[] {
  return [
    ...(r.system ? [{ role: 'system', content: r.system }] : []),
    ...(typeof r.prompt === 'string' ? [{ role: 'user', content: r.prompt }] : r.prompt)
  ]
}

/** Tokenising runs on the main process (the app, serve mode), so it goes in chunks with a
 *  turn of the event loop between them: a renderer request or a progress event waits for one
 *  chunk, never for the whole dataset. A chunk ends after this many records, or earlier once
 *  it has taken SLICE_MS (the first records are slow: JIT, template and tokenizer caches). */
export const TOKENIZE_CHUNK = 8
const SLICE_MS = 4

export interface LoadedExamples {
  train: Example[]
  eval: Example[]
  records: number
  /** The prompt of each record of each split, in dataset order (one per record, where KTO
   *  makes two examples of a pair): what the run's sample generations answer. */
  prompts: { train: Text[]; eval: Text[] }
}

/** What a record asks the model: its prompt, or a conversation up to its last assistant turn. */
export function recordPrompt(rec: TrainingRecord): Text {
  if (rec.type !== 'messages') return rec.prompt
  const last = rec.messages.map((m) => m.role).lastIndexOf('assistant')
  return rec.messages.slice(0, last < 0 ? rec.messages.length : last)
}

export async function loadExamples(
  cfg: Pick<TrainingConfig, 'dataset' | 'dataset_dir' | 'stage' | 'cutoff_len' | 'max_samples' | 'val_size' | 'seed'> &
    Partial<Pick<TrainingConfig, 'max_completion_length'>>,
  tok: ChatTokenizer
): Promise<LoadedExamples> {
  const all: Example[][] = []
  const prompts: Text[] = []
  for (const source of await resolveDatasets(cfg)) {
    let count = 0
    let inChunk = 0
    let chunkStart = performance.now()
    for await (const row of sourceRows(source)) {
      if (cfg.max_samples !== null && count >= cfg.max_samples) break
      // Rows of one read buffer arrive as microtasks, which never let timers or I/O in.
      if (inChunk === TOKENIZE_CHUNK || (inChunk > 0 && performance.now() - chunkStart >= SLICE_MS)) {
        await nextTurn()
        inChunk = 0
        chunkStart = performance.now()
      }
      inChunk++
      try {
        if (cfg.stage === 'grpo') {
          const record = row.prompt()
          if (cfg.max_completion_length === undefined) throw new Error('stage grpo needs max_completion_length')
          all.push([promptExample(tok, record, cfg.cutoff_len, cfg.max_completion_length)])
          prompts.push(record.prompt)
        } else {
          const record = row.parse()
          all.push(buildExample(tok, record, cfg.stage, cfg.cutoff_len))
          prompts.push(recordPrompt(record))
        }
      } catch (e) {
        const at = where(source.file, row.kind, row.index)
        if (e instanceof DataError) throw e.at(at)
        throw new DataError((e as Error).message, at)
      }
      count++
    }
    if (count === 0) throw new DataError('no records', { file: source.file })
  }
  // A preference pair given to KTO becomes two examples; both stay on the same side of the split.
  let evalGroups: Example[][] = []
  let trainGroups = all
  let split = { train: prompts, eval: [] as Text[] }
  if (cfg.val_size > 0) {
    const nVal = cfg.val_size < 1 ? Math.ceil(cfg.val_size * all.length) : cfg.val_size
    if (nVal >= all.length)
      throw new DataError(`val_size ${cfg.val_size} leaves no training records (dataset has ${all.length})`, { field: 'val_size' })
    const order = permutation(all.length, mixSeed(cfg.seed, SEED_PURPOSE.split))
    const isVal = new Set(order.slice(0, nVal))
    evalGroups = all.filter((_, i) => isVal.has(i))
    trainGroups = all.filter((_, i) => !isVal.has(i))
    split = { train: prompts.filter((_, i) => !isVal.has(i)), eval: prompts.filter((_, i) => isVal.has(i)) }
  }
  return { train: trainGroups.flat(), eval: evalGroups.flat(), records: all.length, prompts: split }
}

/** A LLaMA-Factory record (as the data service's importer reads it) in TRL's conversational
 *  form: LLaMA-Factory always formats through a chat template, so do we. */
export function storeRecordToTrl(r: RecordInput): TrainingRecord {
  const prompt = storeConversation(r)
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
