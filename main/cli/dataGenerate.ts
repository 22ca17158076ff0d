// `tunebench data generate`: K answers per prompt of a project's records from one source (the
// model, or the model with an adapter), stored as candidates under the source's name; records
// that already hold K from it are skipped, those with fewer get the rest. Progress with ETA on
// stderr, a summary on stdout; Ctrl-C stops (exit 130) and the answers written stay.
import { generateAnswers } from '../services/data/generateAnswers'
import { closeProject, openProject } from '../services/data/store'
import { GenerationPool } from '../services/generation/pool'
import type { AnswerScope } from '../../preload/types/generation'
import { SETTING_SPECS } from '../../preload/types/generationSettings'
import { ProgressBar, progressLine } from './progress'
import { parseFlags, samplingFlagOptions, samplingSettings, UsageError, wholeFlag } from './flags'

// --n is the number of answers; the other settings' flags are those of `tunebench generate`.
const specs = SETTING_SPECS.filter((s) => s.key !== 'numReturnSequences')
const scopes: AnswerScope[] = ['all', 'unlabeled', 'prompt-only']

function parse(argv: string[]) {
  const v = parseFlags(argv, {
    project: { type: 'string' }, model: { type: 'string' }, adapter: { type: 'string' }, n: { type: 'string' },
    only: { type: 'string' }, split: { type: 'string' }, 'batch-size': { type: 'string' }, threads: { type: 'string' },
    ...samplingFlagOptions(specs)
  })
  const str = (k: string): string | undefined => v[k] as string | undefined
  if (!str('project')) throw new UsageError('data generate needs --project DIR')
  if (!str('model')) throw new UsageError('data generate needs --model DIR')
  if (str('n') === undefined) throw new UsageError('data generate needs --n K (answers per prompt)')
  const only = str('only') ?? 'all'
  if (!scopes.includes(only as AnswerScope)) throw new UsageError(`--only must be one of ${scopes.join(', ')}, got '${only}'`)
  const split = str('split')
  if (split !== undefined && split !== 'train' && split !== 'val') throw new UsageError(`--split must be train or val, got '${split}'`)
  return {
    project: str('project')!, source: { model: str('model')!, adapter: str('adapter') ?? null }, n: wholeFlag(v, 'n', 1)!,
    scope: only as AnswerScope, split: split as 'train' | 'val' | undefined, settings: samplingSettings(v, specs),
    batchSize: wholeFlag(v, 'batch-size', 1), threads: wholeFlag(v, 'threads', 0)
  }
}

export async function runGenerate(argv: string[]): Promise<number> {
  const args = parse(argv)
  const pool = new GenerationPool({ threads: args.threads || undefined })
  const project = openProject(args.project)
  const abort = new AbortController()
  const onSigint = (): void => abort.abort()
  process.once('SIGINT', onSigint)
  const bar = new ProgressBar()
  try {
    const r = await generateAnswers(project, pool, {
      sources: [args.source], n: args.n, scope: args.scope, split: args.split, settings: args.settings, batchSize: args.batchSize
    }, {
      signal: abort.signal,
      onProgress: (p) => {
        if (p.finished || p.answersTotal === 0) return
        bar.update(progressLine('generate', p.answersWritten, p.answersTotal, p.elapsedSeconds,
          `answers, ${p.recordsDone}/${p.recordsTotal} records`), p.answersWritten === p.answersTotal)
      }
    })
    bar.done()
    const s = r.sources[0]!
    process.stdout.write(
      `${r.cancelled ? 'cancelled: ' : ''}wrote ${r.answers} answers from ${s.name} to ${s.records} of ${r.records} records` +
      `${s.alreadyFull ? ` (${s.alreadyFull} already held ${args.n})` : ''} in ${r.seconds.toFixed(1)} s\n`
    )
    return r.cancelled ? 130 : 0
  } catch (err) {
    bar.done()
    process.stderr.write(`tunebench data generate: ${(err as Error).message}\n`)
    return 1
  } finally {
    process.off('SIGINT', onSigint)
    await pool.dispose()
    closeProject(args.project)
  }
}

