// Sample generations of a run (samples.jsonl): a few prompts fixed for the whole run, the first
// records of the validation split (else of the training set), answered at each evaluation and at
// the end by the adapter, next to the base model's answers. The base answers are generated once,
// before any update or restored state, since full fine-tuning moves the very weights they come
// from. Decoding is greedy: it draws no random number and changes no weight, so a run trains
// exactly as it would without samples.
import type { SampleGeneration } from '../../../preload/types/training'
import { resolveSettings, type GenerationSettings } from '../../../preload/types/generationSettings'
import type { Text } from '../data/formats'
import { appendLineDurable } from '../fsAtomic'
import { generateRows, type GenerationRow } from '../generation/generate'
import { readEosIds, type GenerationModel } from '../generation/pool'
import { promptIds } from '../generation/prompts'
import type { ChatTokenizer } from './sequences'

export const SAMPLES_FILE = 'samples.jsonl'

/** The first `count` prompts of the validation split, else of the training set, that encode,
 *  cut to their last `cutoffLen` tokens as training cuts them. */
export function samplePrompts(
  prompts: { train: Text[]; eval: Text[] }, count: number, tok: ChatTokenizer, cutoffLen: number
): { prompt: Text; ids: number[] }[] {
  const out: { prompt: Text; ids: number[] }[] = []
  for (const prompt of prompts.eval.length ? prompts.eval : prompts.train) {
    if (out.length >= count) break
    try {
      // As the record was tokenised for training: plain text as is, a conversation templated.
      out.push({ prompt, ids: promptIds(tok, { prompt }, typeof prompt !== 'string').slice(-cutoffLen) })
    } catch {
      // A prompt that renders to nothing (a conversation opening with the answer) asks nothing.
    }
  }
  return out
}

export class SampleGenerations {
  private base: string[] | null = null

  private constructor(
    private readonly model: GenerationModel,
    private readonly tok: ChatTokenizer,
    private readonly eosIds: number[],
    private readonly prompts: { prompt: Text; ids: number[] }[],
    private readonly settings: GenerationSettings,
    private readonly file: string
  ) {}

  /** Null when there is nothing to answer (sample_prompts 0, or no prompt that encodes). */
  static async create(o: {
    model: GenerationModel; tok: ChatTokenizer; modelDir: string; prompts: { train: Text[]; eval: Text[] }
    count: number; maxNewTokens: number; cutoffLen: number; file: string
  }): Promise<SampleGenerations | null> {
    const prompts = samplePrompts(o.prompts, o.count, o.tok, o.cutoffLen)
    if (!prompts.length) return null
    const settings = resolveSettings({ temperature: 0, maxNewTokens: o.maxNewTokens })
    return new SampleGenerations(o.model, o.tok, await readEosIds(o.modelDir, o.tok), prompts, settings, o.file)
  }

  private async answers(adapters: boolean): Promise<string[]> {
    const rows: GenerationRow[] = this.prompts.map((p, index) => ({ index, sample: 0, ids: p.ids }))
    try {
      const out = await generateRows({ model: this.model, tokenizer: this.tok, eosIds: this.eosIds, adapters }, rows, this.settings)
      return out.map((r) => r.text)
    } catch (err) {
      throw new Error(`sample generations (sample_prompts: 0 turns them off): ${(err as Error).message}`)
    }
  }

  /** The base model's answers: call before the first update (and before restoring a checkpoint). */
  async generateBase(): Promise<void> {
    this.base ??= await this.answers(false)
  }

  /** The adapter's answers after `step` steps, appended to samples.jsonl, one line per prompt. */
  async at(step: number): Promise<SampleGeneration[]> {
    if (!this.base) throw new Error('sample generations: the base answers were not generated before training')
    const adapter = await this.answers(true)
    const lines = this.prompts.map((p, index): SampleGeneration => ({ step, index, prompt: p.prompt, base: this.base![index]!, adapter: adapter[index]! }))
    // One write, one fsync: a torn tail is skipped by readers and rewritten by a resume.
    await appendLineDurable(this.file, lines.map((l) => JSON.stringify(l)).join('\n'))
    return lines
  }
}
