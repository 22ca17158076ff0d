// The training config schema as data: LLaMA-Factory's key names and defaults (plus our own
// `threads` and `device`). The config parser (main/services/training/config.ts) validates
// against it, the renderer builds the Train form from it, and the TrainingConfig type is
// inferred from it, so a key is written down once. It stays free of Node imports.
import type { EngineLimits } from './engine'

export const TRAINING_STAGES = ['sft', 'dpo', 'kto', 'grpo'] as const
export const GRPO_LOSS_TYPES = ['grpo', 'bnpo', 'dr_grpo', 'dapo', 'cispo'] as const
export const SCALE_REWARDS = ['group', 'batch', 'none'] as const
/** Built-in reward functions of stage grpo; `regex:<pattern>` and `command:<path>` are the two
 *  user-defined kinds (main/services/training/rewards.ts). */
export const REWARD_FUNCS = ['accuracy', 'format', 'tag_count', 'length', 'cosine', 'repetition'] as const
export const PREF_LOSSES = ['sigmoid', 'hinge', 'ipo', 'sigmoid_norm', 'orpo', 'simpo'] as const
export const LR_SCHEDULER_TYPES = ['linear', 'cosine', 'constant', 'constant_with_warmup'] as const
export const FINETUNING_TYPES = ['lora', 'full'] as const
/** Devices a config may name; the engine build says which of them it offers (schemaForEngine). */
export const DEVICES = ['cpu', 'cuda'] as const
/** How the engine holds the frozen weights and multiplies them: `auto` = bf16 for a bf16 or f16
 *  checkpoint, f32 otherwise (native/README.md, "Precision"). */
export const PRECISIONS = ['auto', 'f32', 'bf16'] as const

export type TrainingStage = (typeof TRAINING_STAGES)[number]
export type PrefLoss = (typeof PREF_LOSSES)[number]
export type GrpoLossType = (typeof GRPO_LOSS_TYPES)[number]
export type ScaleRewards = (typeof SCALE_REWARDS)[number]
export type LrSchedulerType = (typeof LR_SCHEDULER_TYPES)[number]
export type FinetuningType = (typeof FINETUNING_TYPES)[number]
export type Device = (typeof DEVICES)[number]
export type Precision = (typeof PRECISIONS)[number]

/** int and float accept numbers (and numeric strings, as HfArgumentParser does); `list`
 *  accepts a comma-separated string or an array of strings. */
export type ConfigValueType = 'string' | 'int' | 'float' | 'bool' | 'enum' | 'list'

export interface ConfigKeySpec {
  name: string
  type: ConfigValueType
  /** null = unset (the help text says what unset means). */
  default: string | number | boolean | readonly string[] | null
  help: string
  /** For enum keys. */
  choices?: readonly string[]
  /** Why the choices are what they are, when something outside the key decides it (the engine). */
  choicesFrom?: string
  /** Bounds for numbers, inclusive unless `exclusiveMin` / `exclusiveMax`. */
  min?: number
  max?: number
  exclusiveMin?: boolean
  exclusiveMax?: boolean
  /** A run cannot start without it. */
  required?: boolean
  /** Unset resolves from other keys (config.ts), so the resolved config always has a value. */
  derived?: boolean
  /** The stages the key matters for; absent = every stage. */
  stages?: readonly TrainingStage[]
  /** Form section. */
  group: 'model' | 'method' | 'rewards' | 'lora' | 'moe' | 'data' | 'optimiser' | 'schedule' | 'output' | 'engine'
}

const PREF: readonly TrainingStage[] = ['dpo']
const PREF_KTO: readonly TrainingStage[] = ['dpo', 'kto']
const GRPO: readonly TrainingStage[] = ['grpo']

export const LORA_TARGET_MODULES = ['q_proj', 'k_proj', 'v_proj', 'o_proj', 'gate_proj', 'up_proj', 'down_proj'] as const

/** Log lines and checkpoints of a run whose logging_steps / save_steps are unset. */
const LOG_POINTS = 50
const CHECKPOINTS = 10

const configKeys = [
  // model
  { name: 'model_name_or_path', type: 'string', default: null, required: true, group: 'model',
    help: 'Local Hugging Face model folder (config.json, *.safetensors, tokenizer.json, tokenizer_config.json).' },
  { name: 'adapter_name_or_path', type: 'string', default: null, group: 'model',
    help: 'Existing PEFT LoRA adapter folder to continue training from (LoRA only).' },
  { name: 'template', type: 'string', default: null, group: 'model',
    help: "LLaMA-Factory template name, kept in run.json; Tunebench formats conversations with the tokenizer's own chat_template." },
  // method
  { name: 'stage', type: 'enum', default: 'sft', choices: TRAINING_STAGES, group: 'method',
    help: 'Training method: sft (supervised), dpo (preference pairs: DPO family, ORPO, SimPO), kto (single answers labelled good/bad) or grpo (sampled answers scored by reward functions).' },
  { name: 'finetuning_type', type: 'enum', default: 'lora', choices: FINETUNING_TYPES, group: 'method',
    help: 'lora trains low-rank adapters on frozen weights; full trains every weight (small models only).' },
  { name: 'pref_beta', type: 'float', default: 0.1, min: 0, exclusiveMin: true, stages: PREF_KTO, group: 'method',
    help: 'β: strength of the preference loss (the inverse temperature of DPO, KTO, ORPO and SimPO).' },
  { name: 'pref_loss', type: 'enum', default: 'sigmoid', choices: PREF_LOSSES,
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
  // grpo (TRL GRPOConfig names and defaults)
  { name: 'num_generations', type: 'int', default: 8, min: 2, stages: GRPO, group: 'method',
    help: 'G: completions sampled per prompt; each is scored against the others of its group. per_device_train_batch_size × gradient_accumulation_steps must be a multiple of it.' },
  { name: 'max_completion_length', type: 'int', default: 512, min: 1, stages: GRPO, group: 'method',
    help: 'The most tokens of each sampled completion.' },
  { name: 'temperature', type: 'float', default: 1, min: 0, exclusiveMin: true, stages: GRPO, group: 'method',
    help: 'Sampling temperature T; the policy log-probs of the loss are taken at the same T.' },
  { name: 'top_p', type: 'float', default: 1, min: 0, max: 1, exclusiveMin: true, stages: GRPO, group: 'method',
    help: 'Nucleus sampling: keep the smallest set of tokens whose probability reaches top_p (1 = off).' },
  { name: 'top_k', type: 'int', default: 0, min: 0, stages: GRPO, group: 'method',
    help: 'Sample among the top_k most likely tokens only (0 = off).' },
  { name: 'beta', type: 'float', default: 0, min: 0, stages: GRPO, group: 'method',
    help: 'β: weight of the KL penalty against the base model (adapters off); 0 = no reference pass.' },
  { name: 'epsilon', type: 'float', default: 0.2, min: 0, exclusiveMin: true, stages: GRPO, group: 'method',
    help: 'ε: lower clipping range of the probability ratio.' },
  { name: 'epsilon_high', type: 'float', default: null, derived: true, min: 0, exclusiveMin: true, stages: GRPO, group: 'method',
    help: 'ε_high: upper clipping range (DAPO\'s clip-higher; the cap of the weight for cispo); unset = epsilon.' },
  { name: 'num_iterations', type: 'int', default: 1, min: 1, stages: GRPO, group: 'method',
    help: 'μ: optimiser steps taken on each generation batch; above 1 the ratio is against the log-probs kept from sampling.' },
  { name: 'loss_type', type: 'enum', default: 'dapo', choices: GRPO_LOSS_TYPES, stages: GRPO, group: 'method',
    help: 'How token losses are averaged: grpo (per sequence, then over sequences), bnpo (over the micro-batch\'s tokens), dr_grpo (by batch × max_completion_length), dapo (over the generation batch\'s tokens) or cispo (clipped importance weights, dapo\'s averaging).' },
  { name: 'scale_rewards', type: 'enum', default: 'group', choices: SCALE_REWARDS, stages: GRPO, group: 'method',
    help: 'Advantages are rewards minus the group mean, divided by the std of the group, of the whole batch, or not at all (none: Dr. GRPO).' },
  { name: 'mask_truncated_completions', type: 'bool', default: false, stages: GRPO, group: 'method',
    help: 'Completions cut at max_completion_length (no eos) get no loss.' },
  // rewards (stage grpo)
  { name: 'reward_funcs', type: 'list', default: ['accuracy', 'format'], stages: GRPO, group: 'rewards',
    help: `Reward functions summed into each completion's reward: ${REWARD_FUNCS.join(', ')}, regex:<pattern> (1 when the completion matches) or command:<path> (a program reading JSON lines on stdin and writing one number or null per line).` },
  { name: 'reward_weights', type: 'list', default: null, stages: GRPO, group: 'rewards',
    help: 'Weight of each reward function, in the order of reward_funcs; unset = 1 each.' },
  { name: 'reward_timeout', type: 'float', default: 60, min: 0, exclusiveMin: true, stages: GRPO, group: 'rewards',
    help: 'Seconds a command reward may take for one batch before the run stops with its error.' },
  { name: 'length_target', type: 'int', default: null, min: 1, stages: GRPO, group: 'rewards',
    help: 'length reward: completions up to this many tokens get 0, longer ones down to −1 at max_completion_length; unset = half of max_completion_length.' },
  { name: 'cosine_min_value_wrong', type: 'float', default: 0, stages: GRPO, group: 'rewards',
    help: 'cosine reward of a wrong answer at length 0 (Open-R1\'s default).' },
  { name: 'cosine_max_value_wrong', type: 'float', default: -0.5, stages: GRPO, group: 'rewards',
    help: 'cosine reward of a wrong answer at cosine_max_len.' },
  { name: 'cosine_min_value_correct', type: 'float', default: 0.5, stages: GRPO, group: 'rewards',
    help: 'cosine reward of a correct answer at cosine_max_len.' },
  { name: 'cosine_max_value_correct', type: 'float', default: 1, stages: GRPO, group: 'rewards',
    help: 'cosine reward of a correct answer at length 0.' },
  { name: 'cosine_max_len', type: 'int', default: 1000, min: 1, stages: GRPO, group: 'rewards',
    help: 'Length (tokens) at which the cosine reward reaches its end values.' },
  { name: 'repetition_n_grams', type: 'int', default: 3, min: 1, stages: GRPO, group: 'rewards',
    help: 'repetition reward: n of the repeated word n-grams it counts.' },
  { name: 'repetition_max_penalty', type: 'float', default: -1, max: 0, stages: GRPO, group: 'rewards',
    help: 'repetition reward of a completion made of one repeated n-gram (the most negative it gets).' },
  // lora
  { name: 'lora_rank', type: 'int', default: 8, min: 1, group: 'lora', help: 'r: rank of the LoRA matrices.' },
  { name: 'lora_alpha', type: 'int', default: null, derived: true, min: 1, group: 'lora',
    help: 'α: LoRA scale numerator (scale α/r); unset = 2 × lora_rank.' },
  // A probability; the engine narrows the range to what it implements (schemaForEngine).
  { name: 'lora_dropout', type: 'float', default: 0, min: 0, max: 1, group: 'lora',
    help: 'Dropout on the LoRA input during training.' },
  { name: 'lora_target', type: 'list', default: ['all'], group: 'lora',
    help: `Modules that get adapters: "all" or a comma list of ${LORA_TARGET_MODULES.join(', ')}.` },
  { name: 'use_rslora', type: 'bool', default: false, group: 'lora', help: 'Rank-stabilised LoRA: scale α/√r instead of α/r.' },
  { name: 'use_dora', type: 'bool', default: false, group: 'lora',
    help: 'DoRA (as PEFT): also train a magnitude per output row of each adapted matrix. Often closer to full fine-tuning at a low rank; a step costs about 2% more. Exports as PEFT, merged or GGUF; not as a GGUF LoRA (llama.cpp cannot load DoRA).' },
  // mixture of experts (LLaMA-Factory's ModelArguments.moe_aux_loss_coef)
  { name: 'moe_aux_loss_coef', type: 'float', default: null, min: 0, group: 'moe',
    help: "Qwen3-MoE models only (dense models ignore it): weight of the router's load-balancing loss (transformers' load_balancing_loss_func), added to the training loss as loss + coef × aux_loss and logged as aux_loss; unset = no load-balancing term, as in LLaMA-Factory. Qwen3-MoE checkpoints suggest their router_aux_loss_coef (often 0.001)." },
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
    help: 'Records per micro-batch (a preference pair counts once; for grpo, completions).' },
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
  { name: 'lr_scheduler_type', type: 'enum', default: 'linear', choices: LR_SCHEDULER_TYPES,
    group: 'schedule', help: 'Learning-rate schedule after warmup.' },
  { name: 'warmup_ratio', type: 'float', default: 0, min: 0, max: 1, group: 'schedule',
    help: 'Warmup steps as a fraction of the total steps (ceil), unless warmup_steps is set.' },
  { name: 'warmup_steps', type: 'int', default: 0, min: 0, group: 'schedule', help: 'Linear warmup steps; overrides warmup_ratio when > 0.' },
  { name: 'seed', type: 'int', default: 42, min: 0, group: 'schedule', help: 'Seed of shuffling, LoRA init and dropout.' },
  { name: 'eval_strategy', type: 'enum', default: null, derived: true, choices: ['no', 'steps'], group: 'schedule',
    help: 'When to evaluate on the val_size split; unset = every eval_steps when val_size > 0.' },
  { name: 'eval_steps', type: 'int', default: null, min: 1, group: 'schedule', help: 'Evaluate every this many steps; unset = logging_steps.' },
  // Tunebench's own: what the dashboard's sample panel shows.
  { name: 'sample_prompts', type: 'int', default: 3, min: 0, group: 'schedule',
    help: 'Prompts answered at each evaluation and at the end of the run, by the adapter and by the base model, greedily (samples.jsonl): the first records of the val_size split, else of the training set; 0 = none.' },
  { name: 'sample_max_new_tokens', type: 'int', default: 64, min: 1, group: 'schedule',
    help: 'The most tokens of each sample answer.' },
  // output
  { name: 'output_dir', type: 'string', default: null, required: true, group: 'output',
    help: 'Run folder: adapter, trainer_log.jsonl, run.json, checkpoint-N/.' },
  // Unset follows the run's length (stepIntervals): LLaMA-Factory's fixed 500 logs nothing in
  // a run shorter than that, which is every first run on a small set.
  { name: 'logging_steps', type: 'int', default: null, min: 1, group: 'output',
    help: `Write a trainer_log.jsonl line every this many steps; unset = about ${LOG_POINTS} lines over the run (every step in a run of up to ${LOG_POINTS} steps).` },
  { name: 'save_steps', type: 'int', default: null, min: 1, group: 'output',
    help: `Write checkpoint-N/ every this many steps; unset = about ${CHECKPOINTS} checkpoints over the run.` },
  { name: 'resume_from_checkpoint', type: 'string', default: null, group: 'output',
    help: 'checkpoint-N folder to resume from (or "true"/"last" for the newest in output_dir).' },
  { name: 'overwrite_output_dir', type: 'bool', default: false, group: 'output',
    help: 'Allow starting a fresh run in an output_dir that already holds one.' },
  // engine (Tunebench's own)
  { name: 'threads', type: 'int', default: 0, min: 0, group: 'engine', help: 'CPU threads of the engine (0 = all cores).' },
  { name: 'device', type: 'enum', default: 'cpu', choices: DEVICES, group: 'engine', help: 'Where the engine runs.' },
  { name: 'precision', type: 'enum', default: 'auto', choices: PRECISIONS, group: 'engine',
    help: 'Frozen weights and their products: bf16 holds them in 16 bits (half the memory, about twice the speed; f32 sums), f32 in 32 bits; auto = bf16 for a bf16 or f16 checkpoint. LoRA weights, norms and the loss stay f32.' },
  { name: 'bf16', type: 'bool', default: false, group: 'engine',
    help: "LLaMA-Factory's mixed-precision switch: true means precision bf16." }
] as const satisfies readonly ConfigKeySpec[]

/** The table, read as plain specs (what the parser and the form iterate over). */
export const trainingConfigSchema: readonly ConfigKeySpec[] = configKeys

type KeySpec = (typeof configKeys)[number]
type ValueOf<S extends ConfigKeySpec> = S['type'] extends 'int' | 'float'
  ? number
  : S['type'] extends 'bool'
    ? boolean
    : S['type'] extends 'list'
      ? string[]
      : S extends { type: 'enum'; choices: readonly (infer C)[] }
        ? C
        : string
/** null where a key may stay unset; a required or derived key always ends up with a value. */
type UnsetOf<S extends ConfigKeySpec> = S extends { default: null } ? (S extends { required: true } | { derived: true } ? never : null) : never

/** The resolved config: every key present, defaults filled in, lists split. */
export type TrainingConfig = { [S in KeySpec as S['name']]: ValueOf<S> | UnsetOf<S> }

/**
 * The schema as this engine build accepts it: `device` offers the devices the engine was
 * built with, `lora_dropout` the range its LoRA implements. The config parser validates with
 * it and the Train form is built from it, so the form never offers what the engine refuses.
 */
export function schemaForEngine(limits: EngineLimits): readonly ConfigKeySpec[] {
  return trainingConfigSchema.map((spec): ConfigKeySpec => {
    if (spec.name === 'device')
      return { ...spec, choices: DEVICES.filter((d) => limits.devices.includes(d)), choicesFrom: 'the devices this engine build offers' }
    if (spec.name === 'lora_dropout')
      return { ...spec, min: limits.loraDropout.min, max: limits.loraDropout.maxExclusive, exclusiveMax: true }
    return spec
  })
}

/** Optimiser steps per epoch: one per gradient_accumulation_steps micro-batches, the last
 *  update of an epoch taking the remainder (as transformers' Trainer counts them). */
export function stepsPerEpoch(microBatches: number, accumulation: number): number {
  return Math.max(1, Math.ceil(microBatches / accumulation))
}

/** Optimiser steps of a run; max_steps > 0 overrides the epochs. */
export function totalSteps(maxSteps: number, epochs: number, perEpoch: number): number {
  return maxSteps > 0 ? maxSteps : Math.max(1, Math.ceil(epochs * perEpoch))
}

/** The steps of a run of `examples` training examples under these keys. GRPO's step takes
 *  batch × accumulation / num_generations prompts, num_iterations times (as the trainer's
 *  stage layout does). */
export function runSteps(
  cfg: Pick<TrainingConfig, 'max_steps' | 'num_train_epochs' | 'per_device_train_batch_size' | 'gradient_accumulation_steps'> &
    Partial<Pick<TrainingConfig, 'stage' | 'num_generations' | 'num_iterations'>>,
  examples: number
): number {
  const B = cfg.per_device_train_batch_size
  const GA = cfg.gradient_accumulation_steps
  const perEpoch =
    cfg.stage === 'grpo'
      ? Math.ceil(examples / Math.max(1, Math.floor((B * GA) / (cfg.num_generations ?? 8)))) * (cfg.num_iterations ?? 1)
      : stepsPerEpoch(Math.ceil(examples / B), GA)
  return totalSteps(cfg.max_steps, cfg.num_train_epochs, perEpoch)
}

export interface StepIntervals {
  logging: number
  save: number
  eval: number
}

/**
 * logging_steps, save_steps and eval_steps of a run of `total` steps: the values given, and
 * for the unset ones about LOG_POINTS log lines and CHECKPOINTS checkpoints over the run (a
 * 1-step run logs its step); eval_steps unset follows logging_steps. The trainer resolves them
 * with this once it knows the run's length, the Train form to say what they will be.
 */
export function stepIntervals(
  cfg: Pick<TrainingConfig, 'logging_steps' | 'save_steps' | 'eval_steps'>,
  total: number
): StepIntervals {
  const logging = cfg.logging_steps ?? Math.max(1, Math.ceil(total / LOG_POINTS))
  return {
    logging,
    save: cfg.save_steps ?? Math.max(1, Math.ceil(total / CHECKPOINTS)),
    eval: cfg.eval_steps ?? logging
  }
}
