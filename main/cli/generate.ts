// `tunebench generate`: completions of a prompt or of a data file's prompts. With --out, one
// JSON line per (record, sample) written atomically when all are done, progress on stderr;
// without it, each completion's text streams to stdout as it is decoded.
import { writeFileAtomic } from '../services/fsAtomic'
import { generate, type GenerationPrompt, type GenerationResult } from '../services/generation/generate'
import { GenerationPool } from '../services/generation/pool'
import { readPrompts } from '../services/generation/prompts'
import { ProgressBar, progressLine } from './progress'
import { parseFlags, samplingFlagOptions, samplingSettings, UsageError, wholeFlag } from './flags'

const usage = `usage: tunebench generate --model DIR [--adapter DIR] (--prompt TEXT | --data FILE) [--out FILE]
                          [--system TEXT] [--max-new-tokens N] [--temperature T] [--top-p P] [--top-k K]
                          [--min-p P] [--repetition-penalty R] [--seed S] [--num-return-sequences N]
                          [--stop STR]... [--no-chat-template] [--batch-size N] [--threads N]
`

function parse(argv: string[]) {
  const v = parseFlags(argv, {
    model: { type: 'string' }, adapter: { type: 'string' }, prompt: { type: 'string' }, data: { type: 'string' },
    out: { type: 'string' }, system: { type: 'string' },
    'no-chat-template': { type: 'boolean' }, 'batch-size': { type: 'string' }, threads: { type: 'string' },
    help: { type: 'boolean', short: 'h' }, ...samplingFlagOptions()
  })
  if (v.help) return { help: true as const }
  const str = (k: string): string | undefined => v[k] as string | undefined
  if (!str('model')) throw new UsageError('--model is required')
  if (str('prompt') === undefined && !str('data')) throw new UsageError('one of --prompt or --data is required')
  if (str('prompt') !== undefined && str('data')) throw new UsageError('--prompt and --data cannot be used together')
  if (str('system') !== undefined && str('data')) throw new UsageError('--system goes with --prompt (a data file brings its own system prompts)')
  const settings = samplingSettings(v)
  return {
    help: false as const, model: str('model')!, adapter: str('adapter') ?? null, prompt: str('prompt'), data: str('data'),
    system: str('system') ?? null, out: str('out'), settings, chatTemplate: !v['no-chat-template'],
    batchSize: wholeFlag(v, 'batch-size', 1), threads: wholeFlag(v, 'threads', 0)
  }
}

export async function run(argv: string[]): Promise<number> {
  let args
  try {
    args = parse(argv)
  } catch (err) {
    if (!(err instanceof UsageError)) throw err
    process.stderr.write(`tunebench generate: ${err.message}\n${usage}`)
    return 2
  }
  if (args.help) {
    process.stdout.write(usage)
    return 0
  }
  const pool = new GenerationPool({ threads: args.threads || undefined })
  const abort = new AbortController()
  const onSigint = (): void => abort.abort()
  process.once('SIGINT', onSigint)
  const bar = new ProgressBar()
  try {
    const prompts: GenerationPrompt[] = []
    if (args.data) for await (const p of readPrompts(args.data)) prompts.push(p)
    else prompts.push({ prompt: args.prompt!, system: args.system })
    const source = { model: args.model, adapter: args.adapter }
    const call = { settings: args.settings, chatTemplate: args.chatTemplate, signal: abort.signal }
    if (args.out) {
      const total = prompts.length * (args.settings.numReturnSequences ?? 1)
      const t0 = Date.now()
      let done = 0
      const results = await generate(pool, source, prompts, {
        ...call, batchSize: args.batchSize,
        onResults: (rs) => {
          done += rs.length
          bar.update(progressLine('generate', done, total, (Date.now() - t0) / 1000), done === total)
        }
      })
      bar.done()
      await writeFileAtomic(args.out, results.map((r) => JSON.stringify(outLine(r)) + '\n').join(''))
      process.stderr.write(`tunebench generate: ${results.length} completions of ${prompts.length} prompts → ${args.out}\n`)
    } else {
      // One prompt per engine call: its first sample streams, the others (decoded alongside)
      // print whole when the call ends, so that each completion reads in one piece.
      const many = prompts.length * (args.settings.numReturnSequences ?? 1) > 1
      const held = new Map<number, string>()
      await generate(pool, source, prompts, {
        ...call, batchSize: 1,
        onText: (d) => {
          if (d.sample === 0) process.stdout.write(d.delta)
          else held.set(d.sample, (held.get(d.sample) ?? '') + d.delta)
        },
        onResults: (rs) => {
          for (const r of rs) {
            if (r.sample > 0) process.stdout.write(held.get(r.sample) ?? '')
            process.stdout.write(many ? `\n--- index ${r.index} sample ${r.sample}: ${r.finish_reason}\n` : '\n')
          }
          held.clear()
        }
      })
    }
    return 0
  } catch (err) {
    bar.done()
    process.stderr.write(`tunebench generate: ${(err as Error).message}\n`)
    return abort.signal.aborted ? 130 : 1
  } finally {
    process.off('SIGINT', onSigint)
    await pool.dispose()
  }
}

/** The --out line, with exactly its documented keys in order. */
function outLine(r: GenerationResult): GenerationResult {
  return { index: r.index, sample: r.sample, prompt_ids: r.prompt_ids, completion_ids: r.completion_ids, text: r.text, finish_reason: r.finish_reason, logps: r.logps }
}
