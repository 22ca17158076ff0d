// Training runs as the renderer sees them: log entries of trainer_log.jsonl, streamed run
// events and run summaries. Pure types (no Node imports): the renderer type-checks them.
import type { ChatMessage } from './data'
import type { TrainingConfig } from './trainingSchema'

export type { TrainingConfig } from './trainingSchema'

/** One line of trainer_log.jsonl (LLaMA-Factory's fields) plus the method's metrics under
 *  docs/algorithms.md's names ('rewards/chosen', 'logps/rejected', 'kl', 'nll_loss', ...).
 *  Evaluation lines carry eval_loss and 'eval_'-prefixed metrics instead of loss/lr. */
export interface TrainerLogEntry {
  current_steps: number
  total_steps: number
  loss?: number
  eval_loss?: number
  lr?: number
  grad_norm?: number
  epoch: number
  percentage: number
  /** "H:MM:SS", as LLaMA-Factory writes them. */
  elapsed_time: string
  remaining_time: string
  /** Completion tokens per second of wall time over the logging window. */
  tokens_per_second?: number
  [metric: string]: number | string | undefined
}

export type RunState = 'running' | 'finished' | 'failed' | 'cancelled'

/** status.json of a run folder. A 'running' status whose process is gone reads as 'interrupted'. */
export interface RunStatus {
  state: RunState
  error: string | null
  pid: number
  startedAt: string
  updatedAt: string
  step: number
  totalSteps: number
  /** Newest complete checkpoint folder name, if any. */
  lastCheckpoint: string | null
  /** An adapter trained elsewhere and added with `runs.importAdapter` (state 'finished', no
   *  log): the folder it was copied from. Absent for runs trained here. */
  imported?: ImportedAdapter
}

export interface ImportedAdapter {
  /** The PEFT folder the adapter was copied from. */
  from: string
  /** When it was imported (ISO time). */
  at: string
}

/** One line of samples.jsonl: at an evaluation (or the end of the run), one of the run's fixed
 *  validation prompts answered greedily by the base model and by the adapter as it is at `step`. */
export interface SampleGeneration {
  step: number
  /** Which of the run's sample prompts (0, 1, ...); the same prompt at every step. */
  index: number
  /** As the record gives it: a string (plain text) or the conversation up to the answer. */
  prompt: string | ChatMessage[]
  /** The base model's answer (adapters off; for full fine-tuning, the weights before the first update). */
  base: string
  /** The answer of the adapter (full fine-tuning: the weights) after `step` steps. */
  adapter: string
}

/** One line of completions/step-NNNNN.jsonl of a GRPO run: one sampled completion of the
 *  generation batch used at `step` (1-based optimiser step; with num_iterations > 1 the file is
 *  written at the batch's first step). Lines of one group (same `group`) share the prompt. */
export interface GrpoCompletion {
  step: number
  /** The prompt's group in this batch (0, 1, ...) and the completion's place in it. */
  group: number
  index: number
  /** As the record gives it: a string (plain text) or the conversation up to the answer. */
  prompt: string | ChatMessage[]
  completion: string
  /** Each reward function's value (reward_funcs order, by name); null = no reward from it. */
  rewards: Record<string, number | null>
  /** Σ weight · reward over the functions that gave one. */
  reward: number
  advantage: number
  /** Completion tokens (the eos included when it was sampled). */
  tokens: number
  /** Stopped by max_completion_length rather than by eos. */
  clipped: boolean
}

/** Events of a run; runDir is the run's absolute folder, the same string as RunSummary.dir. */
export type RunEvent =
  | { type: 'started'; runDir: string; totalSteps: number; config: TrainingConfig; resumedFrom: string | null }
  | { type: 'log'; runDir: string; entry: TrainerLogEntry }
  | { type: 'eval'; runDir: string; entry: TrainerLogEntry }
  | { type: 'samples'; runDir: string; step: number; samples: SampleGeneration[] }
  | { type: 'completions'; runDir: string; step: number; completions: GrpoCompletion[] }
  | { type: 'checkpoint'; runDir: string; step: number; dir: string }
  | { type: 'progress'; runDir: string; step: number; totalSteps: number; elapsedSeconds: number; remainingSeconds: number }
  | { type: 'finished'; runDir: string; adapterDir: string; step: number }
  | { type: 'failed'; runDir: string; error: string; lastCheckpoint: string | null }
  | { type: 'cancelled'; runDir: string; step: number; lastCheckpoint: string | null }

export interface RunSummary {
  /** Folder name under the runs root; the run's id in the app. */
  id: string
  /** The run's absolute folder (output_dir); events name the run by it. */
  dir: string
  state: RunState | 'interrupted' | 'unknown'
  stage: string
  prefLoss: string | null
  model: string
  step: number
  totalSteps: number
  lastLoss: number | null
  startedAt: string | null
  updatedAt: string | null
  error: string | null
  checkpoints: string[]
  hasAdapter: boolean
  /** For an imported adapter (RunStatus.imported): the folder it was copied from. */
  importedFrom?: string
}

export interface RunDetail {
  summary: RunSummary
  config: TrainingConfig | null
  log: TrainerLogEntry[]
  /** samples.jsonl, in the order written (steps ascending). */
  samples: SampleGeneration[]
  status: RunStatus | null
}

export interface StartRunRequest {
  /** The config as the form produced it (keys as the schema); validated in main. */
  config: Record<string, unknown>
}

/** Per-record result of `tunebench score`. */
export type ScoreLine =
  | { index: number; chosen_logps: number; rejected_logps: number; chosen_tokens: number; rejected_tokens: number }
  | { index: number; logps: number; tokens: number }

/** Result of checking a form's config: the resolved config, or the error and its key. */
export interface ConfigCheck {
  ok: boolean
  error: string | null
  key: string | null
  config: TrainingConfig | null
}

/** How the engine holds the frozen weights in a plan (the config's precision, auto resolved). */
export type MemoryPrecision = 'f32' | 'bf16'

/** Memory a training run will hold at its peak, in bytes, planned before anything is allocated
 *  (main/services/training/memoryPlan.ts documents each term). */
export interface MemoryPlan {
  precision: MemoryPrecision
  /** The base weights as the engine holds them (2 bytes per matrix element in bf16). */
  weights: number
  /** oneDNN's packed copy of the frozen f32 weights (0 in bf16, full fine-tuning or other builds). */
  packed: number
  /** LoRA weights, gradients and AdamW moments (full fine-tuning: every weight's gradient and moments). */
  trainable: number
  /** Activations kept for backward, the no-grad passes' state and the passes' scratch. */
  activations: number
  /** KV caches of the generations (GRPO's completions, the sample answers). */
  kvCache: number
  /** The process itself (Node, the engine, oneDNN): already running when a run starts. */
  runtime: number
  /** Peak resident memory of a process running it. */
  total: number
  /** What starting it takes from free memory: total − runtime. */
  need: number
  detail: {
    parameters: number
    trainableParameters: number
    /** Sequences and tokens of the pass that keeps activations (worst case: every one cutoff_len long). */
    trainSequences: number
    trainTokens: number
    /** Tokens of the largest pass without gradients (reference, KL, evaluation, prefill). */
    inferTokens: number
    decodeSequences: number
    decodeTokens: number
    checkpointing: boolean
  }
}

/** The Train form's memory estimate against the machine's free memory (runs.memoryPlan). */
export interface MemoryCheck {
  /** Null when there is nothing to plan (no model yet, unreadable config.json); error says why. */
  plan: MemoryPlan | null
  /** Bytes free now (Linux MemAvailable). */
  available: number
  /** plan.need fits in available. */
  fits: boolean
  /** When it does not fit: the changes that would save memory, most first. */
  advice: { change: string; saves: number }[]
  error: string | null
}
