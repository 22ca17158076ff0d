// Types of the generation channels (the Playground's chat).
import type { GenerationSettings } from './generationSettings'

export interface ChatTurn {
  role: 'user' | 'assistant'
  content: string
}

/** Who answers: a model folder, with a PEFT adapter folder or none (the base model). */
export interface ChatSource {
  model: string
  adapter: string | null
}

export interface ChatRequest {
  /** Chosen by the caller; names the streamed deltas and cancelChat. */
  id: string
  source: ChatSource
  system: string | null
  /** The conversation so far, ending with a user turn. */
  turns: ChatTurn[]
  settings: Partial<GenerationSettings>
}

export interface ChatReply {
  id: string
  text: string
  finishReason: 'eos' | 'length' | 'stop'
  /** Completion tokens. */
  tokens: number
  seconds: number
}

/** Text of a reply that became safe to show, in order. */
export interface ChatDelta {
  id: string
  delta: string
}

// "Generate answers…" on the Data page and `tunebench data generate`: K answers per prompt from
// each source, stored as candidates of their records under the source's name.

/** Which records get answers: all, the unlabeled ones, or the prompt-only ones (no gold answer
 *  and no answer but the chosen sources' own, so that generating again still finds them).
 *  Excluded records never do. */
export type AnswerScope = 'all' | 'unlabeled' | 'prompt-only'

export interface GenerateAnswersRequest {
  sources: ChatSource[]
  /** Answers per prompt from each source (K); a record already holding some from a source gets the rest. */
  n: number
  scope?: AnswerScope
  /** Only these records (with the scope and split applied too). */
  ids?: number[]
  split?: 'train' | 'val'
  /** Sampling settings; the number of answers is `n`, so numReturnSequences is not taken. */
  settings?: Partial<Omit<GenerationSettings, 'numReturnSequences'>>
  /** Rows per engine call (default 16); a record's answers from one source share a call. */
  batchSize?: number
  /** Only say what would be generated (`planned`); nothing is loaded or written. */
  dryRun?: boolean
}

export interface GenerateAnswersProgress {
  /** Records whose answers from every source are all there, of those that needed any. */
  recordsDone: number
  recordsTotal: number
  answersWritten: number
  answersTotal: number
  elapsedSeconds: number
  /** From the pace of the answers written so far; null before the first. */
  etaSeconds: number | null
  /** The source answering now (its candidate source name). */
  source: string | null
  /** The last event of a generation (done, cancelled or failed). */
  finished: boolean
}

export interface GenerateAnswersResult {
  sources: {
    /** The name its answers are stored under (answerSourceName). */
    name: string
    model: string
    adapter: string | null
    answers: number
    /** Records that needed answers from it. */
    records: number
    /** Records in scope that already held n answers from it. */
    alreadyFull: number
  }[]
  /** Records in scope. */
  records: number
  /** What was to be generated when it started: records that needed answers, and how many. */
  planned: { records: number; answers: number }
  recordsDone: number
  answers: number
  cancelled: boolean
  seconds: number
}

const pathParts = (p: string): string[] => p.split(/[\\/]+/).filter(Boolean)

/** The candidate source name of a source's answers: the model folder's name for the base model
 *  ("demo-model"), the adapter folder's name and "adapter" for an adapter ("dpo-1 adapter";
 *  "dpo-1/checkpoint-40 adapter" for a checkpoint). The same source always gets the same name:
 *  generating again counts the answers a record holds under it. */
export function answerSourceName(source: ChatSource): string {
  if (!source.adapter) return pathParts(source.model).at(-1) ?? source.model
  const parts = pathParts(source.adapter)
  const last = parts.at(-1) ?? source.adapter
  const name = /^checkpoint-\d+$/.test(last) && parts.length > 1 ? `${parts.at(-2)}/${last}` : last
  return `${name} adapter`
}
