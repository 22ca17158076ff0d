// Training runs as folders: list and read them from disk (so the dashboard comes back after a
// restart), start runs in this process with their events forwarded, cancel them.
import { existsSync } from 'node:fs'
import { copyFile, mkdir, readdir, readFile, rename, stat } from 'node:fs/promises'
import { basename, dirname, isAbsolute, join, relative, resolve } from 'node:path'
import type { Emit, Handlers } from '../../../preload/contract'
import type { AdapterExport, GrpoCompletion, RunDetail, RunStatus, RunSummary, SampleGeneration, StartRunRequest, TrainerLogEntry } from '../../../preload/types/training'
import { fsyncDir, writeFileAtomic } from '../fsAtomic'
import { processAlive } from '../process'
import type { TrainingConfig } from '../../../preload/types/trainingSchema'
import { ConfigError, resolveConfig } from './config'
import { COMPLETIONS_DIR, completionsFile, completionsStep } from './completions'
import { SAMPLES_FILE } from './samples'
import { listCheckpoints, readJsonLines, Trainer } from './trainer'

async function readJsonIfAny<T>(file: string): Promise<T | null> {
  try {
    return JSON.parse(await readFile(file, 'utf8')) as T
  } catch {
    return null
  }
}

export const readTrainerLog = (dir: string): Promise<TrainerLogEntry[]> => readJsonLines(join(dir, 'trainer_log.jsonl'))

/** The steps of a run folder that have a completions file, ascending; none when the run kept
 *  none. Only the names the trainer writes count (step-00007.jsonl, not step-7.jsonl), so every
 *  step listed reads. */
export async function completionSteps(dir: string): Promise<number[]> {
  let names: string[]
  try {
    names = await readdir(join(dir, COMPLETIONS_DIR))
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return []
    throw err
  }
  const steps = names.flatMap((name) => {
    const step = completionsStep(name)
    return step !== null && step >= 1 && basename(completionsFile(dir, step)) === name ? [step] : []
  })
  return steps.sort((a, b) => a - b)
}

/** One step's completions as written (a torn last line, from a run killed while writing it, is
 *  skipped); an error naming the step and the steps there are when it has no file. */
export async function readCompletions(dir: string, step: number): Promise<GrpoCompletion[]> {
  if (!Number.isSafeInteger(step) || step < 1) throw new Error(`bad step ${JSON.stringify(step)}: a step is a whole number from 1`)
  const file = completionsFile(dir, step)
  if (!existsSync(file)) {
    const steps = await completionSteps(dir)
    const have = steps.length ? `steps with completions: ${listSteps(steps)}` : 'it has no completions yet (GRPO runs write them at each step)'
    throw new Error(`${basename(dir)} has no completions for step ${step} (${file} is missing); ${have}`)
  }
  return readJsonLines<GrpoCompletion>(file)
}

/** "1, 2, 3" or "1, 2, …, 40" for long lists, so an error message stays one line. */
function listSteps(steps: number[]): string {
  return steps.length <= 8 ? steps.join(', ') : `${steps.slice(0, 3).join(', ')}, …, ${steps.slice(-3).join(', ')}`
}

export async function readRun(dir: string, live?: Set<string>): Promise<RunDetail> {
  const config = await readJsonIfAny<TrainingConfig>(join(dir, 'run.json'))
  const status = await readJsonIfAny<RunStatus>(join(dir, 'status.json'))
  const log = await readTrainerLog(dir)
  const samples = await readJsonLines<SampleGeneration>(join(dir, SAMPLES_FILE))
  const checkpoints = (await listCheckpoints(dir)).map((c) => c.name)
  let state: RunSummary['state'] = status?.state ?? 'unknown'
  // A run that says 'running' but whose process is gone (killed, crashed) was interrupted;
  // it resumes from its last checkpoint.
  if (state === 'running' && !live?.has(resolve(dir)) && !(status!.pid !== process.pid && processAlive(status!.pid)))
    state = 'interrupted'
  const lastTrain = [...log].reverse().find((e) => typeof e.loss === 'number')
  return {
    summary: {
      id: basename(dir),
      dir: resolve(dir),
      state,
      stage: config?.stage ?? 'unknown',
      prefLoss: config?.stage === 'dpo' ? config.pref_loss : null,
      model: config?.model_name_or_path ?? '',
      step: status?.step ?? lastTrain?.current_steps ?? 0,
      totalSteps: status?.totalSteps ?? lastTrain?.total_steps ?? 0,
      lastLoss: lastTrain?.loss ?? null,
      startedAt: status?.startedAt ?? null,
      updatedAt: status?.updatedAt ?? null,
      error: status?.error ?? null,
      checkpoints,
      hasAdapter: existsSync(join(dir, 'adapter_model.safetensors'))
    },
    config,
    log,
    samples,
    status
  }
}

export interface RunsServiceOptions {
  /** Folder whose subfolders are runs (the app's <dataDir>/runs); a relative output_dir of a
   *  run started through the service resolves against it. */
  runsRoot: string
  /** JSON file remembering the folders of runs started or resumed through the service outside
   *  runsRoot (the app's <dataDir>/runs-index.json), so they are listed after a restart. */
  indexFile?: string
  emit?: Emit
}

interface RunsIndex {
  version: 1
  /** Absolute run folders, oldest first. */
  runs: string[]
}

/** The runs index; an empty one when the file does not exist yet. */
export async function readRunsIndex(file: string): Promise<RunsIndex> {
  let text: string
  try {
    text = await readFile(file, 'utf8')
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return { version: 1, runs: [] }
    throw new Error(`${file}: cannot read the runs index: ${(err as Error).message}`)
  }
  let index: unknown
  try {
    index = JSON.parse(text)
  } catch (err) {
    throw new Error(`${file}: the runs index is not valid JSON (${(err as Error).message}); fix or remove it`)
  }
  const runs = (index as Partial<RunsIndex> | null)?.runs
  if (!Array.isArray(runs) || !runs.every((r) => typeof r === 'string' && isAbsolute(r)))
    throw new Error(`${file}: field 'runs' must be a list of absolute run folders; fix or remove the file`)
  return { version: 1, runs }
}

export class RunsService {
  private readonly live = new Map<string, { trainer: Trainer; abort: AbortController; done: Promise<unknown> }>()
  /** Index writes one after another, so two runs started together both stay remembered. */
  private indexWrites: Promise<unknown> = Promise.resolve()

  constructor(private readonly opts: RunsServiceOptions) {}

  /** A run id is its folder name under the runs root; an absolute folder is accepted too. */
  dirOf(id: string): string {
    if (isAbsolute(id)) return resolve(id)
    if (id.includes('/') || id.includes('\\') || id === '..' || id === '.') throw new Error(`bad run id "${id}"`)
    return join(this.opts.runsRoot, id)
  }

  async list(): Promise<RunSummary[]> {
    const root = this.opts.runsRoot
    const dirs = new Set<string>(this.live.keys())
    const isRun = async (dir: string) =>
      (await stat(dir)).isDirectory() && (existsSync(join(dir, 'run.json')) || existsSync(join(dir, 'status.json')))
    if (existsSync(root)) {
      for (const name of await readdir(root)) if (await isRun(join(root, name))) dirs.add(resolve(root, name))
    }
    // Runs elsewhere that the service started; one whose folder is gone (deleted, a drive not
    // mounted) is left out of the list but stays in the index.
    if (this.opts.indexFile)
      for (const dir of (await readRunsIndex(this.opts.indexFile)).runs) if (existsSync(dir) && (await isRun(dir))) dirs.add(dir)
    const liveDirs = new Set(this.live.keys())
    const runs = await Promise.all([...dirs].map(async (d) => (await readRun(d, liveDirs)).summary))
    return runs.sort((a, b) => (b.startedAt ?? '').localeCompare(a.startedAt ?? ''))
  }

  async get(id: string): Promise<RunDetail> {
    return readRun(this.existingDir(id), new Set(this.live.keys()))
  }

  /** The steps of a run that have a completions file (GRPO), ascending. */
  async completionSteps(id: string): Promise<number[]> {
    return completionSteps(this.existingDir(id))
  }

  /** The completions of one step of a GRPO run, with their rewards and advantages. */
  async completions(id: string, step: number): Promise<GrpoCompletion[]> {
    return readCompletions(this.existingDir(id), step)
  }

  private existingDir(id: string): string {
    const dir = this.dirOf(id)
    if (!existsSync(dir)) throw new Error(`no run "${id}" (${dir})`)
    return dir
  }

  /** Checks a config from the form; the error names the key. */
  validate(raw: Record<string, unknown>): TrainingConfig {
    const filled = { ...raw }
    if (filled.output_dir === undefined || filled.output_dir === null || filled.output_dir === '')
      filled.output_dir = `run-${new Date().toISOString().replace(/[:.]/g, '-')}`
    // The app has no working directory of the user's: a relative output_dir lives in the runs root.
    if (typeof filled.output_dir === 'string') filled.output_dir = resolve(this.opts.runsRoot, filled.output_dir)
    return resolveConfig(filled, 'config')
  }

  /** Starts a run in this process; resolves at once with its summary (events follow). */
  async start(req: StartRunRequest): Promise<RunSummary> {
    const cfg = this.validate(req.config)
    await this.remember(cfg.output_dir)
    return this.launch(cfg)
  }

  /** Adds a run folder outside the runs root to the index (written atomically). */
  private async remember(dir: string): Promise<void> {
    const file = this.opts.indexFile
    // A direct subfolder of the runs root is found by listing it.
    const rel = relative(resolve(this.opts.runsRoot), resolve(dir))
    const inRoot = rel !== '' && rel !== '..' && !isAbsolute(rel) && dirname(rel) === '.'
    if (!file || inRoot) return
    const write = this.indexWrites.then(async () => {
      const index = await readRunsIndex(file)
      if (index.runs.includes(resolve(dir))) return
      index.runs.push(resolve(dir))
      await mkdir(dirname(file), { recursive: true })
      await writeFileAtomic(file, JSON.stringify(index, null, 2) + '\n')
    })
    this.indexWrites = write.catch(() => {})
    await write
  }

  /** Continues a run from its newest checkpoint, with the config it was started with. */
  async resume(id: string): Promise<RunSummary> {
    const dir = this.dirOf(id)
    const config = await readJsonIfAny<Record<string, unknown>>(join(dir, 'run.json'))
    if (!config) throw new Error(`${join(dir, 'run.json')}: missing or unreadable; the run cannot be resumed`)
    if ((await listCheckpoints(dir)).length === 0) throw new Error(`${dir} has no checkpoint to resume from (save_steps was not reached)`)
    const cfg = resolveConfig({ ...config, output_dir: dir, resume_from_checkpoint: 'last' }, join(dir, 'run.json'))
    await this.remember(dir)
    return this.launch(cfg)
  }

  private launch(cfg: TrainingConfig): RunSummary {
    const dir = resolve(cfg.output_dir)
    if (this.live.has(dir)) throw new Error(`a run is already writing to ${dir}`)
    const abort = new AbortController()
    const trainer = new Trainer(cfg, {
      signal: abort.signal,
      onEvent: (e) => this.opts.emit?.('runs.event', e)
    })
    const done = trainer.run().catch(() => {
      // The failure is in status.json and was sent as a 'failed'/'cancelled' event.
    })
    this.live.set(dir, { trainer, abort, done })
    void done.finally(() => this.live.delete(dir))
    const now = new Date().toISOString()
    return {
      id: basename(dir), dir, state: 'running', stage: cfg.stage, prefLoss: cfg.stage === 'dpo' ? cfg.pref_loss : null,
      model: cfg.model_name_or_path, step: 0, totalSteps: 0, lastLoss: null, startedAt: now, updatedAt: now,
      error: null, checkpoints: [], hasAdapter: false
    }
  }

  /** Copies the run's final adapter into dest; never replaces an adapter already there. */
  async exportAdapter(id: string, dest: string): Promise<AdapterExport> {
    const dir = this.dirOf(id)
    const target = resolve(dest)
    const files: AdapterExport['files'] = []
    for (const name of ADAPTER_FILES) if (!existsSync(join(dir, name))) throw new Error(`${dir} has no ${name}: the run has not finished`)
    await mkdir(target, { recursive: true })
    for (const name of ADAPTER_FILES)
      if (existsSync(join(target, name))) throw new Error(`${join(target, name)} already exists; choose an empty folder`)
    for (const name of ADAPTER_FILES) {
      const tmp = join(target, `.${name}.tmp-${process.pid}`)
      await copyFile(join(dir, name), tmp)
      await rename(tmp, join(target, name))
      files.push({ name, bytes: (await stat(join(target, name))).size })
    }
    await fsyncDir(target)
    return { dir: target, files }
  }

  async stop(id: string): Promise<boolean> {
    const run = this.live.get(this.dirOf(id))
    if (!run) return false
    run.abort.abort()
    await run.done
    return true
  }

  async close(): Promise<void> {
    await Promise.all([...this.live.values()].map(async (r) => {
      r.abort.abort()
      await r.done
    }))
  }
}

const ADAPTER_FILES = ['adapter_config.json', 'adapter_model.safetensors']

type RunHandlers = Pick<
  Handlers,
  'runs.list' | 'runs.get' | 'runs.completionSteps' | 'runs.completions' | 'runs.validate' | 'runs.start' | 'runs.stop' | 'runs.resume' | 'runs.exportAdapter'
>

export function createRunHandlers(opts: RunsServiceOptions, onClose?: (close: () => Promise<void>) => void): RunHandlers {
  const runs = new RunsService(opts)
  onClose?.(() => runs.close())
  return {
    'runs.list': () => runs.list(),
    'runs.get': (id) => runs.get(id),
    'runs.completionSteps': (id) => runs.completionSteps(id),
    'runs.completions': (id, step) => runs.completions(id, step),
    'runs.validate': async (config) => {
      try {
        return { ok: true, error: null, key: null, config: runs.validate(config) }
      } catch (err) {
        return { ok: false, error: (err as Error).message, key: err instanceof ConfigError ? err.key : null, config: null }
      }
    },
    'runs.start': (req) => runs.start(req),
    'runs.stop': (id) => runs.stop(id),
    'runs.resume': (id) => runs.resume(id),
    'runs.exportAdapter': (id, dest) => runs.exportAdapter(id, dest)
  }
}
