// Types of model export (pure types: the renderer type-checks this file too).

export const EXPORT_FORMATS = ['peft', 'merged', 'gguf', 'gguf-lora', 'ollama', 'llamafactory'] as const
export type ExportFormat = (typeof EXPORT_FORMATS)[number]

export const EXPORT_DTYPES = ['f32', 'f16', 'bf16', 'q8_0'] as const
export type ExportDtype = (typeof EXPORT_DTYPES)[number]

export interface ModelExportRequest {
  format: ExportFormat
  /** Destination folder (created if missing; files already there are never replaced). */
  out: string
  /** A run folder (its adapter, or a full fine-tuning run's weights, and its config). */
  run?: string
  /** A PEFT adapter folder, instead of a run. */
  adapter?: string
  /** The base model folder; default: the run's model_name_or_path or the adapter's
   *  base_model_name_or_path. */
  model?: string
  /** Weights' number format: merged keeps the base's dtype by default (f32/f16/bf16);
   *  gguf and ollama default to f16 (q8_0 too); gguf-lora to f32 (f32/f16/q8_0). */
  dtype?: ExportDtype
  /** ollama: base GGUF + GGUF LoRA (ADAPTER line) instead of one merged GGUF. */
  ollamaAdapter?: boolean
  /** merged: shard size limit in bytes (default 5 GB, as transformers). */
  maxShardBytes?: number
}

export interface ModelExportResult {
  format: ExportFormat
  dir: string
  files: { name: string; bytes: number }[]
  /** Things the user should know (e.g. an adapter vLLM would refuse). */
  warnings: string[]
  /** How to load what was written, e.g. a command. */
  usage: string[]
}

/** Pushed while an export writes. */
export interface ModelExportProgress {
  out: string
  file: string
  bytes: number
  totalBytes: number
}

export interface ImportAdapterRequest {
  /** A PEFT adapter folder trained elsewhere. */
  dir: string
  /** Its base model folder; default the adapter's base_model_name_or_path. */
  model?: string
}
