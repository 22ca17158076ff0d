// Training runs as folders: list and read them from disk (so the dashboard comes back after a
// restart), start runs in this process with their events forwarded, cancel them, and add
// adapters trained elsewhere (a PEFT folder) as finished runs.
import { randomBytes } from 'node:crypto'
import { existsSync } from 'node:fs'
import { copyFile, mkdir, open, readdir, readFile, rename, rm, stat } from 'node:fs/promises'
import { basename, dirname, isAbsolute, join, relative, resolve } from 'node:path'
import type { Emit, Handlers } from '../../../preload/contract'
import type { ImportAdapterRequest } from '../../../preload/types/export'
import type { GrpoCompletion, RunDetail, RunStatus, RunSummary, SampleGeneration, StartRunRequest, TrainerLogEntry } from '../../../preload/types/training'
import { ADAPTER_CONFIG, ADAPTER_WEIGHTS, readPeftAdapter, type PeftAdapter } from '../export/adapter'
import { fsyncDir, writeFileAtomic } from '../fsAtomic'
import { inspectModelFolder, readWeights, typedPath, type Weights } from '../models/inspect'
import { processAlive } from '../process'
import { LORA_TARGET_MODULES, type TrainingConfig } from '../../../preload/types/trainingSchema'
import { ConfigError, resolveConfig } from './config'
import { COMPLETIONS_DIR, completionsFile, completionsStep } from './completions'
import { SAMPLES_FILE } from './samples'
import { checkMemory } from './memoryCheck'
import { listCheckpoints, readJsonLines, refuseIfTooLarge, Trainer } from './trainer'

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
      hasAdapter: existsSync(join(dir, 'adapter_model.safetensors')),
      ...(typeof status?.imported?.from === 'string' ? { importedFrom: status.imported.from } : {})
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
      // Dot-folders are imports being written (importAdapter), never runs.
      for (const name of await readdir(root)) if (!name.startsWith('.') && (await isRun(join(root, name)))) dirs.add(resolve(root, name))
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
    // Refused here (the request rejects with the estimate) rather than by a run that fails at once.
    await refuseIfTooLarge(cfg)
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
    await refuseIfTooLarge(cfg)
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

  /**
   * Adds a PEFT LoRA adapter trained elsewhere as a finished run in the runs root, so it is
   * listed, chats in the Playground and exports like a run trained here. The adapter must be
   * one the engine loads (LoRA on q/k/v/o/gate/up/down of every layer) and fit its base model:
   * `model`, or else the adapter's base_model_name_or_path when that is a local folder. The
   * files are copied into a hidden folder that is renamed into place once complete.
   */
  async importAdapter(req: ImportAdapterRequest): Promise<RunSummary> {
    if (typeof req?.dir !== 'string' || !req.dir.trim()) throw new Error('No adapter folder given: enter the path of a PEFT adapter folder (adapter_config.json + adapter_model.safetensors)')
    const from = typedPath(req.dir)
    const fromStat = await stat(from).catch(() => null)
    if (!fromStat) throw new Error(`Adapter folder not found: ${from}`)
    if (!fromStat.isDirectory()) throw new Error(`Not a folder: ${from} (give the folder that holds ${ADAPTER_CONFIG} and ${ADAPTER_WEIGHTS})`)
    const adapter = await readPeftAdapter(from)
    const targets = engineTargets(adapter)
    const modelDir = await baseModelOf(adapter, req.model)
    const facts = await inspectModelFolder(modelDir).catch((err: Error) => {
      throw new Error(`Base model ${modelDir}: ${err.message}`)
    })
    checkFitsBase(adapter, targets, await readWeights(facts.dir), facts.layers, facts.dir)

    const root = resolve(this.opts.runsRoot)
    await mkdir(root, { recursive: true })
    const name = importName(from)
    const tmp = join(root, `.import-${name}-${process.pid}-${randomBytes(4).toString('hex')}`)
    try {
      await mkdir(tmp)
      for (const f of [ADAPTER_CONFIG, ADAPTER_WEIGHTS]) {
        await copyFile(join(from, f), join(tmp, f))
        await fsyncFile(join(tmp, f))
      }
      const now = new Date().toISOString()
      const status: RunStatus = {
        state: 'finished', error: null, pid: process.pid, startedAt: now, updatedAt: now, step: 0, totalSteps: 0,
        lastCheckpoint: null, imported: { from, at: now }
      }
      await writeFileAtomic(join(tmp, 'status.json'), JSON.stringify(status, null, 2) + '\n')
      // The folder name is taken only by the rename; another import may take a name first.
      for (let i = 1; ; i++) {
        const dir = join(root, i === 1 ? name : `${name}-${i}`)
        if (existsSync(dir)) continue
        const config = importedConfig(adapter, targets, facts.dir, dir)
        await writeFileAtomic(join(tmp, 'run.json'), JSON.stringify(config, null, 2) + '\n')
        await fsyncDir(tmp)
        try {
          await rename(tmp, dir)
        } catch (err) {
          const code = (err as NodeJS.ErrnoException).code
          if (code === 'EEXIST' || code === 'ENOTEMPTY') continue
          throw err
        }
        await fsyncDir(root)
        return (await readRun(dir, new Set(this.live.keys()))).summary
      }
    } catch (err) {
      await rm(tmp, { recursive: true, force: true })
      throw err
    }
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

async function fsyncFile(file: string): Promise<void> {
  const h = await open(file, 'r+')
  try {
    await h.sync()
  } finally {
    await h.close()
  }
}

/** The run folder's name: the adapter folder's, with its parent's when it is a generic one
 *  (adapter, checkpoint-500, ...). */
function importName(from: string): string {
  const base = basename(from)
  const generic = /^(adapter|adapters|lora|peft|output|outputs|final|checkpoint-\d+)$/i.test(base)
  const raw = generic && basename(dirname(from)) ? `${basename(dirname(from))}-${base}` : base
  return raw.replace(/[^A-Za-z0-9_.-]+/g, '-').replace(/^[.-]+/, '') || 'adapter'
}

/** The modules the engine attaches LoRA to, as adapter_config.json names them. */
type Target = (typeof LORA_TARGET_MODULES)[number]

/** What the engine's loader (native load_adapter) refuses, said before anything is copied; the
 *  LoRA targets the adapter names. */
function engineTargets(adapter: PeftAdapter): Target[] {
  const cfg = adapter.config
  const file = join(adapter.dir, ADAPTER_CONFIG)
  if (typeof cfg.bias === 'string' && cfg.bias !== 'none') throw new Error(`${file}: bias "${cfg.bias}" is not supported (none only)`)
  if (cfg.layers_to_transform !== undefined && cfg.layers_to_transform !== null)
    throw new Error(`${file}: layers_to_transform is not supported (the engine adapts every layer)`)
  if (cfg.lora_bias === true) throw new Error(`${file}: lora_bias is not supported`)
  if (Array.isArray(cfg.modules_to_save) && cfg.modules_to_save.length)
    throw new Error(`${file}: modules_to_save (${cfg.modules_to_save.join(', ')}) is not supported: the engine loads LoRA weights only`)
  const tm = cfg.target_modules
  if (tm === 'all-linear') return [...LORA_TARGET_MODULES]
  if (!Array.isArray(tm) || tm.some((m) => typeof m !== 'string'))
    throw new Error(`${file}: target_modules must be a list of module names or "all-linear" (got ${JSON.stringify(tm)})`)
  const unknown = (tm as string[]).filter((m) => !(LORA_TARGET_MODULES as readonly string[]).includes(m))
  if (unknown.length)
    throw new Error(`${file}: target module${unknown.length > 1 ? 's' : ''} ${unknown.join(', ')} ${unknown.length > 1 ? 'are' : 'is'} not supported (${LORA_TARGET_MODULES.join(', ')})`)
  return LORA_TARGET_MODULES.filter((m) => (tm as string[]).includes(m))
}

/** The base model folder: the one given, else the adapter's base_model_name_or_path when it is
 *  a local folder (relative to the adapter folder, as the export resolves it). */
async function baseModelOf(adapter: PeftAdapter, model: string | undefined): Promise<string> {
  if (typeof model === 'string' && model.trim()) return typedPath(model)
  const named = adapter.config.base_model_name_or_path
  const file = join(adapter.dir, ADAPTER_CONFIG)
  if (typeof named !== 'string' || !named.trim()) throw new Error(`${file} names no base_model_name_or_path: give the base model folder`)
  const dir = isAbsolute(named) ? named : resolve(adapter.dir, named)
  if (!existsSync(join(dir, 'config.json')))
    throw new Error(`The adapter's base model ${JSON.stringify(named)} is not a local model folder: give the base model folder`)
  return dir
}

const LAYER_WEIGHT = /^model\.layers\.(\d+)\.(self_attn|mlp)\.([a-z_]+)\.weight$/

/** Every LoRA pair adapts a weight of the base with its shape, and every targeted module of
 *  every layer has one (the engine attaches LoRA to whole modules). */
function checkFitsBase(adapter: PeftAdapter, targets: Target[], base: Weights, layers: number, modelDir: string): void {
  const weights = join(adapter.dir, ADAPTER_WEIGHTS)
  const seen = new Map<Target, Set<number>>(targets.map((t) => [t, new Set()]))
  for (const p of adapter.pairs.values()) {
    const m = LAYER_WEIGHT.exec(p.base)
    const module = m?.[3] as Target | undefined
    if (!m || !module || !seen.has(module))
      throw new Error(`${weights}: adapts ${p.base.replace(/\.weight$/, '')}, which is not one of its target_modules (${targets.join(', ')}) in a layer`)
    const w = base.tensors.get(p.base)
    if (!w) throw new Error(`${weights}: adapts ${p.base}, which the base model ${modelDir} does not have (is it the model the adapter was trained on?)`)
    if (w.shape[0] !== p.outFeatures || w.shape[1] !== p.inFeatures)
      throw new Error(`${weights}: ${p.base} is [${w.shape.join(', ')}] in the base model ${modelDir} but the adapter is for [${p.outFeatures}, ${p.inFeatures}] (is it the model the adapter was trained on?)`)
    seen.get(module)!.add(Number(m[1]))
  }
  for (const [t, got] of seen)
    if (got.size !== layers)
      throw new Error(`${weights}: ${t} is adapted in ${got.size} of the base model's ${layers} layers; the engine loads adapters that cover every layer`)
}

/** run.json of an imported adapter: the config's defaults with the adapter's LoRA settings and
 *  no data (nothing to resume, or to hand to another trainer). */
function importedConfig(adapter: PeftAdapter, targets: Target[], modelDir: string, dir: string): TrainingConfig {
  const cfg = resolveConfig({ model_name_or_path: modelDir, stage: 'sft', finetuning_type: 'lora', dataset: 'imported', output_dir: dir }, 'imported adapter')
  const dropout = adapter.config.lora_dropout
  return {
    ...cfg,
    dataset: [],
    lora_rank: adapter.rank,
    lora_alpha: adapter.alpha,
    lora_dropout: typeof dropout === 'number' ? dropout : 0,
    lora_target: targets.length === LORA_TARGET_MODULES.length ? ['all'] : targets,
    use_rslora: adapter.rslora,
    use_dora: adapter.dora
  }
}

type RunHandlers = Pick<
  Handlers,
  | 'runs.list' | 'runs.get' | 'runs.completionSteps' | 'runs.completions' | 'runs.validate' | 'runs.memoryPlan' | 'runs.start'
  | 'runs.stop' | 'runs.resume' | 'runs.importAdapter'
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
    'runs.memoryPlan': (config) => checkMemory(config ?? {}),
    'runs.start': (req) => runs.start(req),
    'runs.stop': (id) => runs.stop(id),
    'runs.resume': (id) => runs.resume(id),
    'runs.importAdapter': (req) => runs.importAdapter(req)
  }
}
