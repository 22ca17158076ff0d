// `tunebench score --model DIR [--adapter DIR] --data FILE --out FILE`: one JSON line per
// record with summed completion log-probs (chosen_logps, rejected_logps, chosen_tokens,
// rejected_tokens for pairs; logps, tokens for single completions).
import { parseArgs } from 'node:util'
import { scoreRecords } from '../services/training/score'
import { ProgressBar, progressLine } from './progress'

const usage = `usage: tunebench score --model DIR [--adapter DIR] --data FILE --out FILE
                       [--cutoff-len N] [--batch-size N] [--threads N] [--device cpu|cuda]
`

export async function run(argv: string[]): Promise<number> {
  let values
  try {
    ;({ values } = parseArgs({
      args: argv,
      options: {
        model: { type: 'string' }, adapter: { type: 'string' }, data: { type: 'string' }, out: { type: 'string' },
        'cutoff-len': { type: 'string' }, 'batch-size': { type: 'string' }, threads: { type: 'string' },
        device: { type: 'string' }, help: { type: 'boolean', short: 'h' }
      }
    }))
  } catch (err) {
    process.stderr.write(`tunebench score: ${(err as Error).message}\n${usage}`)
    return 2
  }
  if (values.help) {
    process.stdout.write(usage)
    return 0
  }
  for (const key of ['model', 'data', 'out'] as const)
    if (!values[key]) {
      process.stderr.write(`tunebench score: --${key} is required\n${usage}`)
      return 2
    }
  const int = (name: string, v: string | undefined): number | undefined => {
    if (v === undefined) return undefined
    const n = Number(v)
    if (!Number.isInteger(n) || n < 0) throw new Error(`--${name}: expected a whole number, got "${v}"`)
    return n
  }
  if (values.device !== undefined && values.device !== 'cpu' && values.device !== 'cuda') {
    process.stderr.write(`tunebench score: --device: expected cpu or cuda, got "${values.device}"\n`)
    return 2
  }
  const bar = new ProgressBar()
  const t0 = Date.now()
  try {
    const res = await scoreRecords({
      model: values.model!, adapter: values.adapter ?? null, data: values.data!, out: values.out!,
      cutoffLen: int('cutoff-len', values['cutoff-len']), batchSize: int('batch-size', values['batch-size']),
      threads: int('threads', values.threads), device: values.device as 'cpu' | 'cuda' | undefined,
      onProgress: (done, total) => bar.update(progressLine('score', done, total, (Date.now() - t0) / 1000), done === total)
    })
    bar.done()
    process.stderr.write(`tunebench score: ${res.records} records → ${values.out}\n`)
    return 0
  } catch (err) {
    bar.done()
    process.stderr.write(`tunebench score: ${(err as Error).message}\n`)
    return 1
  }
}
