// Pure types of the data (annotation store) IPC channels. No Node imports: the renderer
// type-checks this file.

export interface ChatMessage {
  role: string
  content: string
}

export type Split = 'train' | 'val'

export type DataFormatId =
  | 'trl-preference'
  | 'trl-unpaired'
  | 'trl-prompt-completion'
  | 'trl-messages'
  | 'alpaca'
  | 'sharegpt'
  | 'openai-preference'
  | 'candidates'

/** For each field the format uses (prompt, chosen, rejected, ...), the column it is read from. */
export type FieldMapping = Record<string, string>

/** candidates: prompts with their candidate answers and sources, labels left out (for labeling elsewhere). */
export type ExportFormat = 'trl-dpo' | 'trl-kto' | 'trl-sft' | 'llamafactory' | 'candidates'

/** A record as an importer produces it (candidate indices, not ids). */
export interface RecordInput {
  prompt: string | ChatMessage[]
  system: string | null
  candidates: { content: string; source?: string; kto?: boolean | null }[]
  /** Indices into candidates. */
  pair?: { chosen: number; rejected: number }
  gold?: string | null
  note?: string | null
  split?: Split
  source?: string
  sourceIndex?: number
}

export interface Candidate {
  id: number
  /** Position within the record (0, 1, ...). */
  index: number
  content: string
  /** Where the answer came from: 'import', or the model that generated it. */
  source: string
  /** KTO label: true desirable, false undesirable, null unlabeled. */
  kto: boolean | null
}

export type LabelStatus = 'unlabeled' | 'labeled' | 'skipped'

export interface DataRecord {
  id: number
  prompt: string | ChatMessage[]
  system: string | null
  candidates: Candidate[]
  /** Candidate ids of the pair choice; with tie = true the two are judged equal. */
  pair: { chosen: number; rejected: number } | null
  tie: boolean
  skipped: boolean
  /** The edited gold answer (SFT target). */
  gold: string | null
  note: string | null
  split: Split
  excluded: boolean
  excludedReason: string | null
  /** Import source: file name and 1-based line/row. */
  source: string | null
  sourceIndex: number | null
  status: LabelStatus
  createdAt: string
  updatedAt: string
}

export type LabelAction =
  | { kind: 'pair'; chosen: number; rejected: number }
  | { kind: 'tie'; a: number; b: number }
  | { kind: 'skip' }
  | { kind: 'kto'; candidate: number; desirable: boolean | null }
  | { kind: 'gold'; text: string | null }
  | { kind: 'note'; text: string | null }
  | { kind: 'clear' }

export interface RecordFilter {
  status?: LabelStatus | 'all'
  split?: Split
  /** Case-insensitive substring of the prompt, answers or gold. */
  search?: string
  /** Default false: excluded records are hidden unless asked for. */
  excluded?: boolean | 'all'
  offset?: number
  limit?: number
}

export interface RecordCounts {
  total: number
  unlabeled: number
  labeled: number
  skipped: number
  excluded: number
  train: number
  val: number
  /** Exportable examples per method. */
  pairs: number
  kto: number
  gold: number
}

export interface RecordPage {
  records: DataRecord[]
  /** Records matching the filter (all pages). */
  total: number
  counts: RecordCounts
}

export interface ProjectInfo {
  dir: string
  dbPath: string
  schemaVersion: number
  counts: RecordCounts
}

export interface ImportPreview {
  file: string
  fileKind: 'jsonl' | 'json' | 'parquet'
  /** null when the columns match no known format; the user picks one. */
  format: DataFormatId | null
  formats: { id: DataFormatId; label: string; fields: { name: string; required: boolean }[] }[]
  columns: string[]
  mapping: FieldMapping
  /** The first rows, raw. */
  sampleRows: Record<string, unknown>[]
  /** The first rows as they would be stored (empty when the format is unknown). */
  sampleRecords: RecordInput[]
  /** Problem converting the sample with this mapping, if any. */
  problem: string | null
  /** Records in the file (counted by a full pass for JSONL). */
  count: number
  /** Candidates format: records with two or more candidates (comparable as a pair); null otherwise. */
  pairable: number | null
  /** Prompt-only records (no answer yet, to generate answers for), for the formats that may
   *  hold them; null for the others and when the full pass stopped at a problem. */
  promptOnly: number | null
}

export interface ImportOptions {
  format?: DataFormatId
  mapping?: FieldMapping
  split?: Split
}

export interface ImportResult {
  files: { file: string; records: number }[]
  records: number
  counts: RecordCounts
}

export interface ImportProgress {
  file: string
  records: number
  bytesRead: number
  totalBytes: number
}

export interface ExportOptions {
  format: ExportFormat
  /** A .jsonl file for TRL formats; a directory for llamafactory. */
  out: string
  split?: Split
  /** Dataset name for llamafactory's dataset_info.json (default 'tunebench'). */
  name?: string
}

export interface ExportResult {
  files: { path: string; records: number; method: 'dpo' | 'kto' | 'sft' | 'candidates' }[]
  datasetInfo: string | null
}

export interface DecontamOptions {
  /** Evaluation file (any importable format); omitted: duplicates only. */
  evalFile?: string
  /** n of the word n-grams (Tülu 3 uses 8). */
  ngram?: number
  /** Fraction of a training prompt's n-grams found in the eval set to flag it. */
  threshold?: number
  /** Jaccard similarity of word 3-gram shingles (MinHash estimate) for near duplicates. */
  nearThreshold?: number
}

export interface DecontamHit {
  recordId: number
  /** contamination: overlap fraction; duplicates: 1 or the Jaccard similarity. */
  score: number
  /** Eval record index (1-based) or the record this duplicates. */
  match: number
  preview: string
}

export interface DecontamReport {
  evalFile: string | null
  evalRecords: number
  ngram: number
  threshold: number
  nearThreshold: number
  scanned: number
  contaminated: DecontamHit[]
  exactDuplicates: DecontamHit[]
  nearDuplicates: DecontamHit[]
}

export interface TokenizePreviewOptions {
  /** Model folder with tokenizer.json and tokenizer_config.json. */
  modelDir: string
  cutoffLen: number
  /** Records rendered in full (default 3). */
  sample?: number
  split?: Split
}

export interface TokenizePreview {
  rendered: { recordId: number; text: string; promptTokens: number; completionTokens: number }[]
  records: number
  tokens: { min: number; max: number; mean: number; p50: number; p95: number }
  /** Records whose prompt + longest answer exceed cutoff_len. */
  truncated: { recordId: number; tokens: number }[]
}

/** A label write's answer: the record as stored now and the new counts. */
export interface LabelResult {
  record: DataRecord
  counts: RecordCounts
}

export type DecontamKind = 'contaminated' | 'exactDuplicates' | 'nearDuplicates'
