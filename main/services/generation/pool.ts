// Loaded models for generation, kept between calls so that a chat does not reload per message.
// One engine Model per model folder, with its tokenizer and eos ids; a source's adapter is
// loaded into it when the call needs a different one (or the folder's weights changed on disk
// since, e.g. a run saved a new checkpoint), and a source without an adapter runs the same
// Model with its adapters off. Calls on one model run one at a time: the engine has one
// generation in flight per Model (stopRow and cancel address it). A call that says its size
// (rows × capacity) is planned first (memoryCheck.ts checkInference): a model whose weights and
// KV cache would not fit in the free memory is refused before the engine loads or allocates
// anything, with the estimate and what to change.
import { readFile, stat } from 'node:fs/promises'
import { join, resolve } from 'node:path'
import type { GenerateOptions, GenerateStep, GeneratedRow, LoraOptions } from '../../../native/index'
import type { ModelShape } from '../training/memoryPlan'
import { availableMemory, checkInference, inferenceRefusal, readModelShape, type InferenceCall } from '../training/memoryCheck'
import { engineForPlan } from '../training/planEngine'
import { ChatTokenizer } from '../training/sequences'

export interface GenerationSource {
  /** A model folder (config.json, safetensors, tokenizer). */
  model: string
  /** A PEFT adapter folder, or none for the base model. */
  adapter?: string | null
}

/** The part of the engine's Model (native/index.ts) generation uses. */
export interface GenerationModel {
  loadAdapter(dir: string): Promise<LoraOptions>
  generate(prompts: Int32Array[], opts: GenerateOptions, onStep?: (step: GenerateStep) => void): Promise<GeneratedRow[]>
  stopRow(row: number): void
  cancel(): void
  dispose(): void
}

export type GenerationModelLoader = (dir: string, opts: { threads?: number }) => Promise<GenerationModel>

export const loadGenerationModel: GenerationModelLoader = async (dir, opts) => {
  const native = await import('../../../native/index')
  return native.Model.load(dir, opts)
}

/** A source made ready for a call: `adapters` says whether this call runs with them on. */
export interface ReadySource {
  model: GenerationModel
  tokenizer: ChatTokenizer
  eosIds: number[]
  adapters: boolean
}

/** generation_config.json's eos_token_id (an int or a list) when the folder has one, else the tokenizer's eos. */
export async function readEosIds(modelDir: string, tok: ChatTokenizer): Promise<number[]> {
  const file = join(modelDir, 'generation_config.json')
  let text: string
  try {
    text = await readFile(file, 'utf8')
  } catch {
    return [tok.eosId]
  }
  let cfg: { eos_token_id?: unknown }
  try {
    cfg = JSON.parse(text) as { eos_token_id?: unknown }
  } catch (err) {
    throw new Error(`${file}: not valid JSON: ${(err as Error).message}`)
  }
  const v = cfg.eos_token_id
  if (v === undefined || v === null) return [tok.eosId]
  const ids = Array.isArray(v) ? v : [v]
  if (!ids.length || ids.some((x) => !Number.isInteger(x) || (x as number) < 0))
    throw new Error(`${file}: eos_token_id must be a token id or a list of them, got ${JSON.stringify(v)}`)
  return ids as number[]
}

/** What identifies an adapter's weights: its folder and its files' sizes and times. */
async function adapterStamp(dir: string): Promise<string> {
  const parts = [dir]
  for (const f of ['adapter_config.json', 'adapter_model.safetensors']) {
    try {
      const s = await stat(join(dir, f))
      parts.push(`${s.size}:${s.mtimeMs}`)
    } catch {
      parts.push('missing')
    }
  }
  return parts.join('|')
}

export class GenerationMemoryError extends Error {
  constructor(message: string) {
    super(message)
    this.name = 'GenerationMemoryError'
  }
}

interface Entry {
  ready: Promise<{ model: GenerationModel; tokenizer: ChatTokenizer; eosIds: number[]; shape: ModelShape }>
  /** The adapter stamp loaded into the model, or null. */
  adapter: string | null
  /** The tail of this model's queue of calls. */
  tail: Promise<unknown>
}

export class GenerationPool {
  private readonly entries = new Map<string, Entry>()
  private readonly tokenizers = new Map<string, Promise<ChatTokenizer>>()

  constructor(private readonly opts: {
    threads?: number
    load?: GenerationModelLoader
    /** Free memory in bytes for the check before a load or a call; availableMemory() by default
     *  ($TUNEBENCH_MEMORY_AVAILABLE, else MemAvailable). */
    availableMemory?: () => number
  } = {}) {}

  /** Throws a GenerationMemoryError when `call` on this model would not fit. */
  private refuseIfTooLarge(dir: string, shape: ModelShape, call: InferenceCall, loaded: boolean): void {
    const check = checkInference(shape, call, {
      available: (this.opts.availableMemory ?? availableMemory)(), threads: this.opts.threads ?? engineForPlan().threads, loaded
    })
    if (!check.fits) throw new GenerationMemoryError(inferenceRefusal(dir, check))
  }

  /** The tokenizer of a model folder (loaded once; no weights are read). */
  tokenizer(modelDir: string): Promise<ChatTokenizer> {
    const dir = resolve(modelDir)
    let t = this.tokenizers.get(dir)
    if (!t) {
      t = ChatTokenizer.load(dir)
      this.tokenizers.set(dir, t)
      t.catch(() => this.tokenizers.delete(dir))
    }
    return t
  }

  /** Runs `fn` with the source ready, after any call on the same model has finished. `call`,
   *  the engine call's rows and capacity, is checked against the free memory first: before the
   *  model loads (weights + KV cache), or, when it is loaded, before `fn` runs (KV cache). */
  use<T>(source: GenerationSource, fn: (ready: ReadySource) => Promise<T>, call?: InferenceCall): Promise<T> {
    const dir = resolve(source.model)
    let entry = this.entries.get(dir)
    const loadsHere = !entry
    if (!entry) {
      const ready = (async () => {
        const tokenizer = await this.tokenizer(dir)
        const eosIds = await readEosIds(dir, tokenizer)
        const shape = await readModelShape(dir)
        if (call) this.refuseIfTooLarge(dir, shape, call, false)
        const model = await (this.opts.load ?? loadGenerationModel)(dir, { threads: this.opts.threads })
        return { model, tokenizer, eosIds, shape }
      })()
      entry = { ready, adapter: null, tail: Promise.resolve() }
      this.entries.set(dir, entry)
      // A folder that fails to load is forgotten, so that a fixed folder loads next time.
      ready.catch(() => {
        if (this.entries.get(dir) === entry) this.entries.delete(dir)
      })
    }
    const e = entry
    const run = e.tail.then(async () => {
      const { model, tokenizer, eosIds, shape } = await e.ready
      if (call && !loadsHere) this.refuseIfTooLarge(dir, shape, call, true)
      const adapterDir = source.adapter ? resolve(source.adapter) : null
      if (adapterDir) {
        const stamp = await adapterStamp(adapterDir)
        if (e.adapter !== stamp) {
          e.adapter = null
          await model.loadAdapter(adapterDir)
          e.adapter = stamp
        }
      }
      return fn({ model, tokenizer, eosIds, adapters: adapterDir !== null })
    })
    e.tail = run.catch(() => undefined)
    return run
  }

  /** Frees the model of one folder (or of all) once its calls in flight have finished. */
  async dispose(modelDir?: string): Promise<void> {
    const dirs = modelDir === undefined ? [...this.entries.keys()] : [resolve(modelDir)]
    await Promise.all(dirs.map(async (dir) => {
      const e = this.entries.get(dir)
      if (!e) return
      this.entries.delete(dir)
      this.tokenizers.delete(dir)
      await e.tail
      try {
        ;(await e.ready).model.dispose()
      } catch {
        // it never loaded: nothing to free
      }
    }))
  }

  /** The model folders loaded (or loading) now. */
  get loaded(): string[] {
    return [...this.entries.keys()]
  }
}
