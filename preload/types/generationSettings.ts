// Sampling settings of a generation, one table for the CLI flags, the Playground's form and
// the checks (docs/algorithms.md "Sampling"). Defaults are transformers' GenerationConfig
// where it has one (temperature 1, top_p 1, top_k off, repetition_penalty 1), with
// max_new_tokens 256 (transformers' max_length 20 would cut most answers) and a fixed seed so
// that a run repeats. Pure: no Node or engine imports.

export interface GenerationSettings {
  maxNewTokens: number
  /** 0: greedy. */
  temperature: number
  topP: number
  /** 0: off. */
  topK: number
  minP: number
  repetitionPenalty: number
  seed: number
  numReturnSequences: number
  /** The text is cut where any of these first appears. */
  stop: string[]
}

type NumericKey = Exclude<keyof GenerationSettings, 'stop'>

export interface SettingSpec {
  key: NumericKey
  flag: string
  integer: boolean
  /** What the value must be, in words, for errors and help. */
  range: string
  ok: (v: number) => boolean
  help: string
}

export const SETTING_SPECS: readonly SettingSpec[] = [
  { key: 'maxNewTokens', flag: 'max-new-tokens', integer: true, range: 'a whole number ≥ 1', ok: (v) => v >= 1,
    help: 'The most tokens to generate after the prompt; the answer ends sooner at an eos token or a stop string.' },
  { key: 'temperature', flag: 'temperature', integer: false, range: 'a number ≥ 0', ok: (v) => v >= 0,
    help: 'Divides the logits before sampling: below 1 sharper, above 1 flatter; 0 always takes the most likely token (greedy).' },
  { key: 'topP', flag: 'top-p', integer: false, range: 'a number in (0, 1]', ok: (v) => v > 0 && v <= 1,
    help: 'Nucleus sampling: keep the smallest set of most likely tokens whose probabilities sum to at least this; 1 keeps all.' },
  { key: 'topK', flag: 'top-k', integer: true, range: 'a whole number ≥ 0', ok: (v) => v >= 0,
    help: 'Keep only the k most likely tokens; 0 keeps all.' },
  { key: 'minP', flag: 'min-p', integer: false, range: 'a number in [0, 1)', ok: (v) => v >= 0 && v < 1,
    help: 'Drop tokens whose probability is below this fraction of the most likely token\'s; 0 keeps all.' },
  { key: 'repetitionPenalty', flag: 'repetition-penalty', integer: false, range: 'a number > 0', ok: (v) => v > 0,
    help: 'Makes tokens already in the prompt or the answer less likely (above 1) or more likely (below 1); 1 is off.' },
  { key: 'seed', flag: 'seed', integer: true, range: `a whole number in [0, ${Number.MAX_SAFE_INTEGER}]`, ok: (v) => v >= 0 && v <= Number.MAX_SAFE_INTEGER,
    help: 'The same seed, model and settings give the same answers, whatever else is generated with them.' },
  { key: 'numReturnSequences', flag: 'num-return-sequences', integer: true, range: 'a whole number ≥ 1', ok: (v) => v >= 1,
    help: 'Answers sampled per prompt, each with its own seed.' }
]

export const DEFAULT_GENERATION_SETTINGS: Readonly<GenerationSettings> = Object.freeze({
  maxNewTokens: 256, temperature: 1, topP: 1, topK: 0, minP: 0, repetitionPenalty: 1, seed: 0, numReturnSequences: 1, stop: []
})

/** Why `v` is not a valid value of the setting, or null. */
export function settingProblem(spec: SettingSpec, v: unknown): string | null {
  if (typeof v !== 'number' || !Number.isFinite(v) || (spec.integer && !Number.isInteger(v)) || !spec.ok(v))
    return `expected ${spec.range}, got ${typeof v === 'number' ? v : JSON.stringify(v)}`
  return null
}

/** The defaults overlaid with `partial`, checked; an error names the setting. */
export function resolveSettings(partial: Partial<GenerationSettings> = {}): GenerationSettings {
  const out: GenerationSettings = { ...DEFAULT_GENERATION_SETTINGS, stop: [...DEFAULT_GENERATION_SETTINGS.stop] }
  for (const spec of SETTING_SPECS) {
    const v = partial[spec.key]
    if (v === undefined) continue
    const problem = settingProblem(spec, v)
    if (problem) throw new Error(`generation setting ${spec.key}: ${problem}`)
    out[spec.key] = v
  }
  if (partial.stop !== undefined) {
    if (!Array.isArray(partial.stop) || partial.stop.some((s) => typeof s !== 'string' || s === ''))
      throw new Error('generation setting stop: expected a list of non-empty strings')
    out.stop = [...partial.stop]
  }
  return out
}
