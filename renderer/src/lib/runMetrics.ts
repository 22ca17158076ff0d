// Turns trainer_log.jsonl entries (LLaMA-Factory's fields plus the method's metrics under
// their docs/algorithms.md names) into chart series and progress facts. The same code reads the
// live events and the log read back after a reload, so both draw the same charts.

export type LogEntry = Record<string, unknown>
export type Point = [step: number, value: number]

/** Fields of a log line that describe progress, not a metric. */
const progressKeys = new Set(['current_steps', 'total_steps', 'epoch', 'percentage', 'elapsed_time', 'remaining_time', 'step'])

export interface ChartSpec {
  id: string
  title: string
  /** Metric keys drawn in this chart, in legend order. */
  metrics: string[]
  /** Keys whose name a method makes up (GRPO's rewards/<func>/mean): drawn here too, in order
   *  of first appearance, with the legend name `legend` gives them. */
  pattern?: RegExp
  legend?: (key: string) => string
}

/** The reward function of a GRPO per-function metric (rewards/<func>/mean; func may hold '/'). */
const rewardFunc = (key: string) => key.replace(/^rewards\//, '').replace(/\/(mean|std)$/, '')
/** A legend name without the group the chart's title already says ('completions/min_length' → 'min'). */
const after = (prefix: string, suffix = '') => (key: string) =>
  key.startsWith(prefix) ? key.slice(prefix.length, suffix && key.endsWith(suffix) ? -suffix.length : undefined).replace(/_/g, ' ') : key

/** The dashboard's fixed charts; metrics a method adds beyond these get charts of their own.
 *  GRPO's come first: a GRPO run is read by its reward, its loss says little. */
export const dashboardCharts: readonly ChartSpec[] = [
  { id: 'reward', title: 'Reward (mean over completions)', metrics: ['reward'] },
  { id: 'reward_funcs', title: 'Reward per function (mean)', metrics: [], pattern: /^rewards\/.+\/mean$/, legend: rewardFunc },
  { id: 'reward_std', title: 'Reward std within groups', metrics: ['reward_std'] },
  { id: 'reward_funcs_std', title: 'Reward std per function', metrics: [], pattern: /^rewards\/.+\/std$/, legend: rewardFunc },
  { id: 'frac_reward_zero_std', title: 'Groups with one reward for all (no signal)', metrics: ['frac_reward_zero_std'] },
  {
    id: 'completion_length', title: 'Completion length (tokens)',
    metrics: ['completions/mean_length', 'completions/min_length', 'completions/max_length', 'completions/mean_terminated_length'],
    legend: (key) => (key === 'completions/mean_terminated_length' ? 'mean (ended)' : after('completions/', '_length')(key))
  },
  { id: 'clipped_ratio', title: 'Clipped completions (no eos, share)', metrics: ['completions/clipped_ratio'] },
  {
    id: 'clip_ratio', title: 'Ratio clipping (share of tokens)', metrics: ['clip_ratio/region_mean', 'clip_ratio/low_mean', 'clip_ratio/high_mean'],
    legend: after('clip_ratio/', '_mean')
  },
  { id: 'loss', title: 'Loss', metrics: ['loss', 'eval_loss'] },
  { id: 'rewards', title: 'Rewards', metrics: ['rewards/chosen', 'rewards/rejected', 'eval_rewards/chosen', 'eval_rewards/rejected'] },
  { id: 'margins', title: 'Reward margins', metrics: ['rewards/margins', 'eval_rewards/margins'] },
  { id: 'accuracies', title: 'Reward accuracies', metrics: ['rewards/accuracies', 'eval_rewards/accuracies'] },
  { id: 'kl', title: 'KL', metrics: ['kl', 'eval_kl'] },
  { id: 'entropy', title: 'Entropy (per completion token)', metrics: ['entropy'] },
  { id: 'lr', title: 'Learning rate', metrics: ['lr', 'learning_rate'] },
  { id: 'grad_norm', title: 'Grad norm', metrics: ['grad_norm'] },
  {
    id: 'throughput', title: 'Tokens/s',
    metrics: ['tokens_per_second', 'tokens_per_sec', 'tokens/s', 'train_tokens_per_second', 'tokens_per_second/generation', 'tokens_per_second/training'],
    legend: after('tokens_per_second/')
  }
]

function stepOf(entry: LogEntry): number | null {
  const s = entry.current_steps ?? entry.step
  return typeof s === 'number' && Number.isFinite(s) ? s : null
}

/** Every numeric metric key that occurs in the log, in order of first appearance. */
export function metricKeys(entries: readonly LogEntry[]): string[] {
  const seen = new Set<string>()
  for (const e of entries)
    for (const [k, v] of Object.entries(e)) if (!progressKeys.has(k) && typeof v === 'number') seen.add(k)
  return [...seen]
}

/** (step, value) points of one metric, skipping lines without it. */
export function metricSeries(entries: readonly LogEntry[], key: string): Point[] {
  const out: Point[] = []
  for (const e of entries) {
    const step = stepOf(e)
    const v = e[key]
    if (step !== null && typeof v === 'number' && Number.isFinite(v)) out.push([step, v])
  }
  return out
}

/** The metric keys of the log a chart draws: its fixed ones, then those its pattern matches. */
function chartKeys(spec: ChartSpec, keys: readonly string[]): string[] {
  return [...spec.metrics.filter((m) => keys.includes(m)), ...(spec.pattern ? keys.filter((k) => spec.pattern!.test(k) && !spec.metrics.includes(k)) : [])]
}

/** The charts to draw for a log: the fixed ones that have data, then one per other metric. */
export function chartsFor(entries: readonly LogEntry[]): { spec: ChartSpec; series: { name: string; points: Point[] }[] }[] {
  const keys = metricKeys(entries)
  const placed = new Set(dashboardCharts.flatMap((c) => chartKeys(c, keys)))
  const specs: ChartSpec[] = [
    ...dashboardCharts,
    ...keys.filter((k) => !placed.has(k)).map((k) => ({ id: `metric:${k}`, title: k, metrics: [k] }))
  ]
  return specs
    .map((spec) => ({
      spec,
      series: chartKeys(spec, keys).map((m) => ({ name: spec.legend?.(m) ?? m, points: metricSeries(entries, m) }))
    }))
    .filter((c) => c.series.length > 0)
}

/** Seconds from a number of seconds or transformers' "H:MM:SS" (also "D days, H:MM:SS"). */
export function parseDuration(value: unknown): number | null {
  if (typeof value === 'number') return Number.isFinite(value) ? value : null
  if (typeof value !== 'string') return null
  const m = /^(?:(\d+) days?, )?(\d+):(\d{1,2}):(\d{1,2}(?:\.\d+)?)$/.exec(value.trim())
  if (!m) return null
  return (Number(m[1] ?? 0) * 24 + Number(m[2])) * 3600 + Number(m[3]) * 60 + Number(m[4])
}

export function formatDuration(seconds: number | null): string {
  if (seconds === null || !Number.isFinite(seconds) || seconds < 0) return '—'
  const s = Math.round(seconds)
  const h = Math.floor(s / 3600)
  const mm = String(Math.floor((s % 3600) / 60)).padStart(h > 0 ? 2 : 1, '0')
  const ss = String(s % 60).padStart(2, '0')
  return h > 0 ? `${h}:${mm}:${ss}` : `${mm}:${ss}`
}

export interface RunProgress {
  step: number
  totalSteps: number | null
  /** 0..100 */
  percent: number
  elapsedSeconds: number | null
  etaSeconds: number | null
}

/** Progress from the newest log line that carries a step. */
export function runProgress(entries: readonly LogEntry[]): RunProgress {
  for (let i = entries.length - 1; i >= 0; i--) {
    const e = entries[i]
    const step = stepOf(e)
    if (step === null) continue
    const total = typeof e.total_steps === 'number' && e.total_steps > 0 ? e.total_steps : null
    const percent = typeof e.percentage === 'number' ? e.percentage : total ? (100 * step) / total : 0
    const elapsed = parseDuration(e.elapsed_time)
    let eta = parseDuration(e.remaining_time)
    // Without a logged ETA, assume the remaining steps go at the average pace so far.
    if (eta === null && elapsed !== null && total && step > 0) eta = (elapsed / step) * (total - step)
    return { step, totalSteps: total, percent: Math.min(100, Math.max(0, percent)), elapsedSeconds: elapsed, etaSeconds: eta }
  }
  return { step: 0, totalSteps: null, percent: 0, elapsedSeconds: null, etaSeconds: null }
}
