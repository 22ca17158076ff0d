// The training config schema as data: LLaMA-Factory's key names and defaults (plus our own
// `threads` and `device`). The config parser (main/services/training/config.ts) validates
// against it and the renderer builds the Train form from it, so it stays free of Node imports.

export type TrainingStage = 'sft' | 'dpo' | 'kto'
export type PrefLoss = 'sigmoid' | 'hinge' | 'ipo' | 'sigmoid_norm' | 'orpo' | 'simpo'
export type LrSchedulerType = 'linear' | 'cosine' | 'constant' | 'constant_with_warmup'
export type FinetuningType = 'lora' | 'full'

/** int and float accept numbers (and numeric strings, as HfArgumentParser does); `list`
 *  accepts a comma-separated string or an array of strings. */
export type ConfigValueType = 'string' | 'int' | 'float' | 'bool' | 'enum' | 'list'

export interface ConfigKeySpec {
  name: string
  type: ConfigValueType
  /** null = unset (the help text says what unset means). */
  default: string | number | boolean | string[] | null
  help: string
  /** For enum keys. */
  choices?: readonly string[]
  /** Inclusive bounds for numbers; `exclusiveMin` makes the lower bound strict. */
  min?: number
  max?: number
  exclusiveMin?: boolean
  /** A run cannot start without it. */
  required?: boolean
  /** The stages the key matters for; absent = every stage. */
  stages?: readonly TrainingStage[]
  /** Form section. */
  group: 'model' | 'method' | 'lora' | 'data' | 'optimiser' | 'schedule' | 'output' | 'engine'
}

const PREF: readonly TrainingStage[] = ['dpo']
const PREF_KTO: readonly TrainingStage[] = ['dpo', 'kto']

export const LORA_TARGET_MODULES = ['q_proj', 'k_proj', 'v_proj', 'o_proj', 'gate_proj', 'up_proj', 'down_proj'] as const

export const trainingConfigSchema: readonly ConfigKeySpec[] = [
  // model
  { name: 'model_name_or_path', type: 'string', default: null, required: true, group: 'model',
    help: 'Local Hugging Face model folder (config.json, *.safetensors, tokenizer.json, tokenizer_config.json).' },
  { name: 'adapter_name_or_path', type: 'string', default: null, group: 'model',
    help: 'Existing PEFT LoRA adapter folder to continue training from (LoRA only).' },
  { name: 'template', type: 'string', default: null, group: 'model',
    help: "LLaMA-Factory template name, kept in run.json; Tunebench formats conversations with the tokenizer's own chat_template." },
  // method
  { name: 'stage', type: 'enum', default: 'sft', choices: ['sft', 'dpo', 'kto'], group: 'method',
    help: 'Training method: sft (supervised), dpo (preference pairs: DPO family, ORPO, SimPO) or kto (single answers labelled good/bad).' },
  { name: 'finetuning_type', type: 'enum', default: 'lora', choices: ['lora', 'full'], group: 'method',
    help: 'lora trains low-rank adapters on frozen weights; full trains every weight (small models only).' },
  { name: 'pref_beta', type: 'float', default: 0.1, min: 0, exclusiveMin: true, stages: PREF_KTO, group: 'method',
    help: 'β: strength of the preference loss (the inverse temperature of DPO, KTO, ORPO and SimPO).' },
  { name: 'pref_loss', type: 'enum', default: 'sigmoid', choices: ['sigmoid', 'hinge', 'ipo', 'sigmoid_norm', 'orpo', 'simpo'],
    stages: PREF, group: 'method',
    help: 'Preference loss of stage dpo: sigmoid (DPO), hinge, ipo, sigmoid_norm (length-normalised DPO), orpo or simpo (no reference model).' },
  { name: 'pref_ftx', type: 'float', default: 0, min: 0, stages: PREF, group: 'method',
    help: 'Weight of the SFT loss on the chosen answer added to the preference loss.' },
  { name: 'dpo_label_smoothing', type: 'float', default: 0, min: 0, max: 0.5, stages: PREF, group: 'method',
    help: 'ε of robust DPO (pref_loss sigmoid): the assumed rate of flipped preference labels.' },
  { name: 'simpo_gamma', type: 'float', default: 0.5, stages: PREF, group: 'method',
    help: 'γ: target reward margin of SimPO.' },
  { name: 'kto_chosen_weight', type: 'float', default: 1, min: 0, stages: ['kto'], group: 'method',
    help: 'λ_D: weight of the loss on desirable answers.' },
  { name: 'kto_rejected_weight', type: 'float', default: 1, min: 0, stages: ['kto'], group: 'method',
    help: 'λ_U: weight of the loss on undesirable answers.' },
  // lora
  { name: 'lora_rank', type: 'int', default: 8, min: 1, group: 'lora', help: 'r: rank of the LoRA matrices.' },
  { name: 'lora_alpha', type: 'int', default: null, min: 1, group: 'lora',
    help: 'α: LoRA scale numerator (scale α/r); unset = 2 × lora_rank.' },
  { name: 'lora_dropout', type: 'float', default: 0, min: 0, max: 1, group: 'lora',
    help: 'Dropout on the LoRA input during training.' },
  { name: 'lora_target', type: 'list', default: ['all'], group: 'lora',
    help: `Modules that get adapters: "all" or a comma list of ${LORA_TARGET_MODULES.join(', ')}.` },
  { name: 'use_rslora', type: 'bool', default: false, group: 'lora', help: 'Rank-stabilised LoRA: scale α/√r instead of α/r.' },
  // data
  { name: 'dataset', type: 'list', default: null, required: true, group: 'data',
    help: 'Comma list of dataset files (JSON, JSONL) or names defined in dataset_dir/dataset_info.json.' },
  { name: 'dataset_dir', type: 'string', default: 'data', group: 'data',
    help: 'Folder holding dataset_info.json; relative dataset paths resolve against it.' },
  { name: 'cutoff_len', type: 'int', default: 2048, min: 2, group: 'data',
    help: 'Maximum tokens per sequence: the end of the prompt is kept, then the completion is cut.' },
  { name: 'max_samples', type: 'int', default: null, min: 1, group: 'data', help: 'Use at most this many records of each dataset.' },
  { name: 'val_size', type: 'float', default: 0, min: 0, group: 'data',
    help: 'Held-out evaluation split: a fraction in [0, 1) or, when > 1, a number of records.' },
  { name: 'disable_shuffling', type: 'bool', default: false, group: 'data', help: 'Keep the dataset order instead of shuffling each epoch.' },
  // optimiser
  { name: 'per_device_train_batch_size', type: 'int', default: 8, min: 1, group: 'optimiser',
    help: 'Records per micro-batch (a preference pair counts once).' },
  { name: 'per_device_eval_batch_size', type: 'int', default: 8, min: 1, group: 'optimiser', help: 'Records per evaluation batch.' },
  { name: 'gradient_accumulation_steps', type: 'int', default: 1, min: 1, group: 'optimiser',
    help: 'Micro-batches per optimiser step.' },
  { name: 'learning_rate', type: 'float', default: 5e-5, min: 0, group: 'optimiser', help: 'Peak learning rate of AdamW.' },
  { name: 'weight_decay', type: 'float', default: 0, min: 0, group: 'optimiser', help: 'Decoupled weight decay of AdamW.' },
  { name: 'adam_beta1', type: 'float', default: 0.9, min: 0, max: 1, group: 'optimiser', help: 'AdamW β1.' },
  { name: 'adam_beta2', type: 'float', default: 0.999, min: 0, max: 1, group: 'optimiser', help: 'AdamW β2.' },
  { name: 'adam_epsilon', type: 'float', default: 1e-8, min: 0, exclusiveMin: true, group: 'optimiser', help: 'AdamW ε.' },
  { name: 'max_grad_norm', type: 'float', default: 1, min: 0, group: 'optimiser',
    help: 'Clip the global gradient norm to this value before each update (0 = no clipping).' },
  { name: 'disable_gradient_checkpointing', type: 'bool', default: false, group: 'optimiser',
    help: 'Keep all activations instead of recomputing them per layer (faster, more memory).' },
  // schedule
  { name: 'num_train_epochs', type: 'float', default: 3, min: 0, exclusiveMin: true, group: 'schedule', help: 'Passes over the training set.' },
  { name: 'max_steps', type: 'int', default: -1, min: -1, group: 'schedule',
    help: 'Total optimiser steps; overrides num_train_epochs when > 0.' },
  { name: 'lr_scheduler_type', type: 'enum', default: 'linear', choices: ['linear', 'cosine', 'constant', 'constant_with_warmup'],
    group: 'schedule', help: 'Learning-rate schedule after warmup.' },
  { name: 'warmup_ratio', type: 'float', default: 0, min: 0, max: 1, group: 'schedule',
    help: 'Warmup steps as a fraction of the total steps (ceil), unless warmup_steps is set.' },
  { name: 'warmup_steps', type: 'int', default: 0, min: 0, group: 'schedule', help: 'Linear warmup steps; overrides warmup_ratio when > 0.' },
  { name: 'seed', type: 'int', default: 42, min: 0, group: 'schedule', help: 'Seed of shuffling, LoRA init and dropout.' },
  { name: 'eval_strategy', type: 'enum', default: null, choices: ['no', 'steps'], group: 'schedule',
    help: 'When to evaluate on the val_size split; unset = every eval_steps when val_size > 0.' },
  { name: 'eval_steps', type: 'int', default: null, min: 1, group: 'schedule', help: 'Evaluate every this many steps; unset = logging_steps.' },
  // output
  { name: 'output_dir', type: 'string', default: null, required: true, group: 'output',
    help: 'Run folder: adapter, trainer_log.jsonl, run.json, checkpoint-N/.' },
  { name: 'logging_steps', type: 'int', default: 500, min: 1, group: 'output', help: 'Write a trainer_log.jsonl line every this many steps.' },
  { name: 'save_steps', type: 'int', default: 500, min: 1, group: 'output', help: 'Write checkpoint-N/ every this many steps.' },
  { name: 'resume_from_checkpoint', type: 'string', default: null, group: 'output',
    help: 'checkpoint-N folder to resume from (or "true"/"last" for the newest in output_dir).' },
  { name: 'overwrite_output_dir', type: 'bool', default: false, group: 'output',
    help: 'Allow starting a fresh run in an output_dir that already holds one.' },
  // engine (Tunebench's own)
  { name: 'threads', type: 'int', default: 0, min: 0, group: 'engine', help: 'CPU threads of the engine (0 = all cores).' },
  { name: 'device', type: 'enum', default: 'cpu', choices: ['cpu', 'cuda'], group: 'engine', help: 'Where the engine runs.' }
]

/** The resolved config: every key present, defaults filled in, lists split. */
export interface TrainingConfig {
  model_name_or_path: string
  adapter_name_or_path: string | null
  template: string | null
  stage: TrainingStage
  finetuning_type: FinetuningType
  pref_beta: number
  pref_loss: PrefLoss
  pref_ftx: number
  dpo_label_smoothing: number
  simpo_gamma: number
  kto_chosen_weight: number
  kto_rejected_weight: number
  lora_rank: number
  lora_alpha: number
  lora_dropout: number
  lora_target: string[]
  use_rslora: boolean
  dataset: string[]
  dataset_dir: string
  cutoff_len: number
  max_samples: number | null
  val_size: number
  disable_shuffling: boolean
  per_device_train_batch_size: number
  per_device_eval_batch_size: number
  gradient_accumulation_steps: number
  learning_rate: number
  weight_decay: number
  adam_beta1: number
  adam_beta2: number
  adam_epsilon: number
  max_grad_norm: number
  disable_gradient_checkpointing: boolean
  num_train_epochs: number
  max_steps: number
  lr_scheduler_type: LrSchedulerType
  warmup_ratio: number
  warmup_steps: number
  seed: number
  eval_strategy: 'no' | 'steps'
  eval_steps: number
  output_dir: string
  logging_steps: number
  save_steps: number
  resume_from_checkpoint: string | null
  overwrite_output_dir: boolean
  threads: number
  device: 'cpu' | 'cuda'
}
