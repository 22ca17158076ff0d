// `tunebench train CONFIG [key=value ...]`: trains as the config says (LLaMA-Factory keys);
// run events as JSON lines on stdout, a progress bar with ETA on stderr.
// Exit status: 0 finished, 1 failed, 2 usage, 130 cancelled (SIGINT/SIGTERM).
import { parse as parseYaml } from 'yaml'
import { ConfigError, loadTrainingConfig, parseTrainingConfig, resolveConfig } from '../services/training/config'
import { CancelledError, Trainer } from '../services/training/trainer'
import type { RunEvent } from '../../preload/types/training'
import { ProgressBar, progressLine } from './progress'
import { readFile } from 'node:fs/promises'

const usage = `usage: tunebench train CONFIG [key=value ...]

CONFIG is a YAML or JSON file with LLaMA-Factory's training keys (model_name_or_path, stage,
dataset, output_dir, ...); key=value pairs override it. Run events go to stdout as JSON lines,
progress to stderr. Resume with resume_from_checkpoint=last.
`

export async function run(argv: string[]): Promise<number> {
  if (argv.length === 0 || argv[0] === '--help' || argv[0] === '-h') {
    process.stdout.write(usage)
    return argv.length === 0 ? 2 : 0
  }
  const [file, ...overrides] = argv
  let cfg
  try {
    if (overrides.length === 0) cfg = await loadTrainingConfig(file!)
    else {
      // Parse the file for its line numbers first, then apply the overrides on its keys.
      parseTrainingConfig(await readFile(file!, 'utf8'), file!)
      const raw = parseYaml(await readFile(file!, 'utf8')) as Record<string, unknown>
      for (const o of overrides) {
        const eq = o.indexOf('=')
        if (eq <= 0) {
          process.stderr.write(`tunebench train: expected key=value, got "${o}"\n${usage}`)
          return 2
        }
        raw[o.slice(0, eq)] = parseYaml(o.slice(eq + 1))
      }
      cfg = resolveConfig(raw, `${file} (with command-line overrides)`)
    }
  } catch (err) {
    if (err instanceof ConfigError) {
      process.stderr.write(`tunebench train: ${err.message}\n`)
      return 1
    }
    throw err
  }

  const bar = new ProgressBar()
  let lastLoss = ''
  const abort = new AbortController()
  const onSignal = () => abort.abort()
  process.once('SIGINT', onSignal)
  process.once('SIGTERM', onSignal)
  const onEvent = (e: RunEvent) => {
    if (e.type === 'progress') {
      bar.update(progressLine('train', e.step, e.totalSteps, e.elapsedSeconds, lastLoss), e.step === e.totalSteps)
      return
    }
    if (e.type === 'log' && typeof e.entry.loss === 'number') lastLoss = `loss ${e.entry.loss.toFixed(4)}`
    const { type, ...rest } = e
    process.stdout.write(JSON.stringify({ event: type, ...rest }) + '\n')
  }
  try {
    await new Trainer(cfg, { onEvent, signal: abort.signal }).run()
    bar.done()
    return 0
  } catch (err) {
    bar.done()
    if (err instanceof CancelledError) {
      process.stderr.write('tunebench train: cancelled; resume with resume_from_checkpoint=last\n')
      return 130
    }
    process.stderr.write(`tunebench train: ${(err as Error).message}\n`)
    return 1
  } finally {
    process.off('SIGINT', onSignal)
    process.off('SIGTERM', onSignal)
  }
}
