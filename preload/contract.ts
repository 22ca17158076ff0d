// The IPC contract: the only place channel names are written. Main registers a handler for
// every invoke channel, the preload exposes them as verbs, and the renderer calls the verbs.
// The same contract is carried over a WebSocket in `serve` mode.
import type { DemoResources } from './types/app'
import type { EngineFacts } from './types/engine'
import type { DownloadProgress, DownloadRequest, ModelFacts, RecentModel } from './types/models'
import type {
  DataRecord,
  DecontamKind,
  DecontamOptions,
  DecontamReport,
  ExportOptions,
  ExportResult,
  FieldMapping,
  DataFormatId,
  ImportOptions,
  ImportPreview,
  ImportProgress,
  ImportResult,
  LabelAction,
  LabelResult,
  ProjectInfo,
  RecordFilter,
  RecordInput,
  RecordPage,
  Split as DataSplit,
  TokenizePreview,
  TokenizePreviewOptions
} from './types/data'
import type {
  ChatDelta,
  ChatReply,
  ChatRequest,
  GenerateAnswersProgress,
  GenerateAnswersRequest,
  GenerateAnswersResult
} from './types/generation'
import type { ImportAdapterRequest, ModelExportProgress, ModelExportRequest, ModelExportResult } from './types/export'
import type { ConfigCheck, GrpoCompletion, MemoryCheck, RunDetail, RunEvent, RunSummary, StartRunRequest } from './types/training'

/** Request/response channels: channel name -> [arguments, result]. */
export interface InvokeMap {
  // app
  /** The bundled demo model folder and the demo datasets present in resources/demo. */
  'app.demo': { args: []; result: DemoResources }
  // engine
  'engine.facts': { args: []; result: EngineFacts }
  // models
  /** Validates a folder and returns its facts (no side effects). */
  'models.inspect': { args: [dir: string]; result: ModelFacts }
  /** Validates a folder and remembers it among the recent models. */
  'models.open': { args: [dir: string]; result: ModelFacts }
  'models.recent': { args: []; result: RecentModel[] }
  /** The model opened last, validated again; the first time, the bundled demo model (opened,
   *  so it becomes the last). */
  'models.last': { args: []; result: ModelFacts | null }
  'models.forget': { args: [dir: string]; result: RecentModel[] }
  /** Native folder dialog (desktop only; serve mode rejects, the page offers a path field). */
  'models.pickFolder': { args: []; result: string | null }
  /** Downloads a Hub repo into the app's models folder, resuming partial files; opens it. */
  'models.download': { args: [request: DownloadRequest]; result: ModelFacts }
  /** Stops a running download (its partial file stays for a later resume). */
  'models.cancelDownload': { args: [repo: string]; result: boolean }
  // data (annotation store)
  /** Opens (creating if needed) the project folder; later data.* calls act on it. */
  'data.open': { args: [dir: string]; result: ProjectInfo }
  /** The open project, or null. */
  'data.info': { args: []; result: ProjectInfo | null }
  /** The open project; else the one opened last (after a restart); else the default project in
   *  the app data dir, created with the bundled demo candidates on first start. */
  'data.openLast': { args: []; result: ProjectInfo | null }
  'data.list': { args: [filter: RecordFilter]; result: RecordPage }
  'data.get': { args: [id: number]; result: DataRecord }
  /** Writes one label; durable when it resolves. */
  'data.label': { args: [id: number, action: LabelAction]; result: LabelResult }
  /** Reverts the most recent label write; null when there is none. */
  'data.undo': { args: []; result: LabelResult | null }
  'data.setSplit': { args: [ids: number[], split: DataSplit]; result: number }
  /** Flags records as excluded (reason) or includes them again (null); never deletes. */
  'data.setExcluded': { args: [ids: number[], reason: string | null]; result: number }
  'data.addRecords': { args: [records: RecordInput[]]; result: number[] }
  'data.addCandidates': { args: [id: number, candidates: { content: string; source: string }[]]; result: DataRecord }
  'data.previewImport': { args: [file: string, options?: { format?: DataFormatId; mapping?: FieldMapping }]; result: ImportPreview }
  /** One transaction for all files: everything or nothing. Progress on data.importProgress. */
  'data.import': { args: [files: string[], options?: ImportOptions]; result: ImportResult }
  'data.export': { args: [options: ExportOptions]; result: ExportResult }
  'data.decontam': { args: [options: DecontamOptions]; result: DecontamReport }
  /** Excludes the records a report flagged; returns how many. */
  'data.excludeFlagged': { args: [report: DecontamReport, kinds?: DecontamKind[]]; result: number }
  'data.tokenizePreview': { args: [options: TokenizePreviewOptions]; result: TokenizePreview }
  /** Samples the missing answers of the records in scope from each source and stores them as
   *  candidates (one at a time; progress on data.generateProgress). Resolves when done or
   *  cancelled, with what was written. */
  'data.generateAnswers': { args: [request: GenerateAnswersRequest]; result: GenerateAnswersResult }
  /** Stops the answers being generated (those written stay); false when none runs. */
  'data.cancelGenerate': { args: []; result: boolean }
  // training and runs
  /** Runs under the runs root (and live ones), newest first. */
  'runs.list': { args: []; result: RunSummary[] }
  /** A run's summary, resolved config (run.json), trainer_log.jsonl entries and status. */
  'runs.get': { args: [id: string]; result: RunDetail }
  /** The steps of a GRPO run that have a completions/step-NNNNN.jsonl file, ascending. */
  'runs.completionSteps': { args: [id: string]; result: number[] }
  /** One step's scored completions (prompt, completion, each reward, advantage, tokens). */
  'runs.completions': { args: [id: string, step: number]; result: GrpoCompletion[] }
  /** Checks a config from the form against the schema; the error names the key. */
  'runs.validate': { args: [config: Record<string, unknown>]; result: ConfigCheck }
  /** The memory a run of the form's config will need (planned from the model's config.json,
   *  nothing loaded) against the free memory; runs.start refuses one that does not fit. */
  'runs.memoryPlan': { args: [config: Record<string, unknown>]; result: MemoryCheck }
  /** Starts training in main; step events follow on runs.event. */
  'runs.start': { args: [request: StartRunRequest]; result: RunSummary }
  /** Cancels a live run (its checkpoints stay); false when it was not running. */
  'runs.stop': { args: [id: string]; result: boolean }
  /** Continues a stopped, failed or interrupted run from its last checkpoint. */
  'runs.resume': { args: [id: string]; result: RunSummary }
  /** Adds a PEFT adapter trained elsewhere to the runs (for the Playground and export). */
  'runs.importAdapter': { args: [request: ImportAdapterRequest]; result: RunSummary }
  // export
  /** Writes a run's or adapter's export (PEFT, merged, GGUF, GGUF LoRA, Ollama, LLaMA-Factory);
   *  progress on export.progress. */
  'export.start': { args: [request: ModelExportRequest]; result: ModelExportResult }
  /** Stops the export writing to `out` (nothing is left under a final name); false when none runs. */
  'export.cancel': { args: [out: string]; result: boolean }
  // generation (Playground)
  /** Answers the conversation's last user turn; the text streams on generation.delta. */
  'generation.chat': { args: [request: ChatRequest]; result: ChatReply }
  /** Stops a chat answer being written (it rejects with "cancelled"); false when none runs. */
  'generation.cancelChat': { args: [id: string]; result: boolean }
}

/** Events pushed from main to the renderer: channel name -> payload. */
export interface EventMap {
  'models.downloadProgress': DownloadProgress
  'data.importProgress': ImportProgress
  'data.generateProgress': GenerateAnswersProgress
  /** Streamed events of training runs (started, log, eval, checkpoint, progress, finished, ...). */
  'runs.event': RunEvent
  'export.progress': ModelExportProgress
  /** Text of a chat answer as it is written. */
  'generation.delta': ChatDelta
}

export type InvokeChannel = keyof InvokeMap
export type EventChannel = keyof EventMap

// Runtime lists (the preload and the WebSocket bridge need names at run time); the
// `satisfies` clauses make the compiler check they match the maps above exactly.
export const invokeChannels = [
  'app.demo',
  'engine.facts',
  'models.inspect',
  'models.open',
  'models.recent',
  'models.last',
  'models.forget',
  'models.pickFolder',
  'models.download',
  'models.cancelDownload',
  'data.open',
  'data.info',
  'data.openLast',
  'data.list',
  'data.get',
  'data.label',
  'data.undo',
  'data.setSplit',
  'data.setExcluded',
  'data.addRecords',
  'data.addCandidates',
  'data.previewImport',
  'data.import',
  'data.export',
  'data.decontam',
  'data.excludeFlagged',
  'data.tokenizePreview',
  'data.generateAnswers',
  'data.cancelGenerate',
  'runs.list',
  'runs.get',
  'runs.completionSteps',
  'runs.completions',
  'runs.validate',
  'runs.memoryPlan',
  'runs.start',
  'runs.stop',
  'runs.resume',
  'runs.importAdapter',
  'export.start',
  'export.cancel',
  'generation.chat',
  'generation.cancelChat'
] as const satisfies readonly InvokeChannel[]

export const eventChannels = [
  'models.downloadProgress',
  'data.importProgress',
  'data.generateProgress',
  'runs.event',
  'export.progress',
  'generation.delta'
] as const satisfies readonly EventChannel[]

type Missing<All, Listed> = Exclude<All, Listed>
// Compile-time check that every channel of the maps is listed.
const _allInvokeListed: Missing<InvokeChannel, (typeof invokeChannels)[number]> extends never ? true : never = true
const _allEventsListed: Missing<EventChannel, (typeof eventChannels)[number]> extends never ? true : never = true
void _allInvokeListed
void _allEventsListed

/** What main implements for each invoke channel. */
export type Handlers = { [C in InvokeChannel]: (...args: InvokeMap[C]['args']) => Promise<InvokeMap[C]['result']> }

/** Pushes an event to every connected renderer. */
export type Emit = <C extends EventChannel>(channel: C, payload: EventMap[C]) => void

/** The verbs the renderer sees: `api.models.inspect(dir)`, `api.on('runs.event', cb)`. */
type Split<S extends string> = S extends `${infer A}.${infer B}` ? [A, B] : never
export type Verbs = {
  [NS in Split<InvokeChannel>[0]]: {
    [C in InvokeChannel as Split<C>[0] extends NS ? Split<C>[1] : never]: Handlers[C]
  }
}
export type Api = Verbs & {
  /** Subscribes to an event; returns the unsubscribe function. */
  on<C extends EventChannel>(channel: C, listener: (payload: EventMap[C]) => void): () => void
}

/** Builds the verb tree from one generic invoke function (used by preload and the WS client). */
export function buildApi(
  invoke: (channel: InvokeChannel, args: unknown[]) => Promise<unknown>,
  on: (channel: EventChannel, listener: (payload: unknown) => void) => () => void
): Api {
  const verbs: Record<string, Record<string, (...args: unknown[]) => Promise<unknown>>> = {}
  for (const channel of invokeChannels) {
    const [ns, verb] = channel.split('.') as [string, string]
    ;(verbs[ns] ??= {})[verb] = (...args: unknown[]) => invoke(channel, args)
  }
  return { ...(verbs as unknown as Verbs), on: on as Api['on'] }
}
