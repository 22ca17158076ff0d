// Types of the model library (pure types: the renderer type-checks this file too).

/** What the app knows about a local Hugging Face model folder after validating it. */
export interface ModelFacts {
  /** Absolute path of the folder. */
  dir: string
  /** Folder name, or the Hub repo id for downloaded models. */
  name: string
  /** config.json `architectures[0]`, e.g. LlamaForCausalLM. */
  architecture: string
  /** config.json `model_type`, e.g. llama. */
  modelType: string
  layers: number
  hidden: number
  intermediate: number
  heads: number
  kvHeads: number
  headDim: number
  vocab: number
  /** config.json `torch_dtype` (or `dtype`), else the most common tensor dtype. */
  dtype: string
  /** Distinct safetensors dtypes found in the headers, e.g. ['BF16']. */
  tensorDtypes: string[]
  /** Sum over tensors of the product of their shapes, read from the safetensors headers. */
  parameters: number
  /** Parameters one token uses: all but the experts the router leaves out (Qwen3-MoE); equal to
   *  `parameters` for a dense model. */
  activeParameters: number
  /** Qwen3-MoE's experts (config.json and the checkpoint's tensors); absent for a dense model. */
  moe?: ModelMoe
  tensorCount: number
  /** 1 for model.safetensors, else the number of shards in the index. */
  shards: number
  /** Bytes of tensor data over all shards. */
  weightBytes: number
  tiedEmbeddings: boolean
  /** tokenizer_config.json has a chat_template, or chat_template.jinja exists. */
  chatTemplate: boolean
  /** Planned memory (main/services/training/memoryPlan.ts) to chat with it and to train a LoRA
   *  adapter with the default settings. */
  memory: ModelMemory
}

/** The sparse (mixture-of-experts) layers of a Qwen3-MoE model. */
export interface ModelMoe {
  /** num_experts: experts in each sparse layer. */
  experts: number
  /** num_experts_per_tok: experts the router picks for each token. */
  expertsPerToken: number
  /** moe_intermediate_size: each expert's MLP width. */
  expertIntermediate: number
  /** Layers whose MLP is the experts (decoder_sparse_step, mlp_only_layers); the others keep a
   *  dense MLP of `intermediate`. */
  sparseLayers: number
  normTopkProb: boolean
  routerAuxLossCoef: number
  /** How the checkpoint stores the experts: a tensor per expert and projection
   *  (mlp.experts.{e}.gate_proj.weight, ...), transformers 5's fused mlp.experts.gate_up_proj and
   *  mlp.experts.down_proj, or both in different layers. */
  expertLayout: 'per-expert' | 'fused' | 'mixed'
}

/** Bytes a model needs (peak resident memory of the process), planned from its config. */
export interface ModelMemory {
  /** Weights, a KV cache of one sequence of `inferenceTokens` and the process. */
  inference: number
  inferenceTokens: number
  /** LoRA training with the default settings (SFT, rank 8 on every projection, 8 × 2048 tokens,
   *  gradient checkpointing). */
  loraTraining: number
  /** How the frozen weights are held (precision auto: bf16 for a BF16/F16 checkpoint). */
  precision: 'f32' | 'bf16'
}

/** An entry of the recently opened models list (kept in the app data dir). */
export interface RecentModel {
  dir: string
  name: string
  architecture: string
  parameters: number
  /** Qwen3-MoE: the parameters one token uses (absent for a dense model). */
  activeParameters?: number
  /** ISO time of the last open. */
  openedAt: string
  /** Planned memory, read from the folder when the list is asked for (absent when it no longer reads). */
  memory?: ModelMemory
}

export interface DownloadRequest {
  /** Hub model id, `owner/name`. */
  repo: string
  /** Branch, tag or commit; default `main`. */
  revision?: string
}

export type DownloadState = 'listing' | 'downloading' | 'verifying' | 'done' | 'error'

/** Pushed while a download runs; `bytes`/`totalBytes` cover all files of the repo. */
export interface DownloadProgress {
  repo: string
  state: DownloadState
  /** The file being fetched, when state is 'downloading'. */
  file: string | null
  fileIndex: number
  fileCount: number
  bytes: number
  /** null while unknown (the Hub listing did not give sizes). */
  totalBytes: number | null
  /** Bytes that were already on disk from an interrupted download and were not fetched again. */
  resumedBytes: number
  /** Where the model is written. */
  dir: string
  error: string | null
}
