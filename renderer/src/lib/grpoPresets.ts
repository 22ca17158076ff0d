// Starting points of a GRPO run per kind of task: the reward functions and the sampling and
// optimiser settings, sized for the bundled demo model on a laptop CPU (4 prompts x 8 completions
// per step, short completions, a LoRA learning rate, a run of a few minutes). On the demo's
// arithmetic prompts the math preset raises the accuracy reward from about 0.5 to about 0.6 in
// its 300 steps (75 s on one thread here; tests/unit/training.grpo-demo.test.ts checks that run).

export interface GrpoPreset {
  id: string
  label: string
  /** One line: what it rewards and for which data. */
  summary: string
  rewards: { func: string; weight: number }[]
  /** Form values on top of the schema defaults (GRPO keys and the run's length). */
  values: Record<string, string | number | boolean>
}

/** Small enough for two CPU cores: 32 completions a step, 40 new tokens each. Fewer
 *  completions per step make the reward signal too noisy for the accuracy to move. */
const tiny = {
  num_generations: 8,
  max_completion_length: 40,
  per_device_train_batch_size: 32,
  gradient_accumulation_steps: 1,
  learning_rate: 5e-4,
  lr_scheduler_type: 'constant',
  max_steps: 300,
  temperature: 1,
  loss_type: 'dapo',
  beta: 0
}

export const grpoPresets: readonly GrpoPreset[] = [
  {
    id: 'math',
    label: 'Math with reasoning (accuracy + format)',
    summary: 'Prompts with a solution column: reward the right final answer, and reasoning in <think> before the <answer>.',
    rewards: [{ func: 'accuracy', weight: 1 }, { func: 'format', weight: 0.25 }],
    values: { ...tiny }
  },
  {
    id: 'format',
    label: 'Exact format only (format + tag_count)',
    summary: 'Any prompts: teach the <think>…</think><answer>…</answer> layout; tag_count gives partial credit on the way.',
    rewards: [{ func: 'format', weight: 1 }, { func: 'tag_count', weight: 1 }],
    values: { ...tiny, max_steps: 100 }
  },
  {
    id: 'short',
    label: 'Short answers (accuracy + length)',
    summary: 'Prompts with a solution column: reward the right answer, and cost every token beyond 16.',
    rewards: [{ func: 'accuracy', weight: 1 }, { func: 'length', weight: 0.5 }],
    values: { ...tiny, max_completion_length: 48, length_target: 16, max_steps: 150 }
  }
]

export function grpoPresetById(id: string): GrpoPreset | undefined {
  return grpoPresets.find((p) => p.id === id)
}

/** The preset's reward lists as form values (reward_funcs, reward_weights comma strings). */
export function presetRewardValues(preset: GrpoPreset): { reward_funcs: string; reward_weights: string } {
  return { reward_funcs: preset.rewards.map((r) => r.func).join(','), reward_weights: preset.rewards.map((r) => String(r.weight)).join(',') }
}
