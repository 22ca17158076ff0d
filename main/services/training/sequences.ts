// Token ids and loss masks of training records, as docs/algorithms.md "Sequences and masks" says:
//   plain:          tok(prompt) ++ tok(completion) ++ [eos]; loss on completion and eos
//   conversational: prompt = template(prompt, add_generation_prompt), completion =
//                   template(prompt + completion) with the prompt prefix removed
//   SFT messages:   loss on assistant turns only
// tokenizer.json runs through @huggingface/tokenizers, the chat template (tokenizer_config.json)
// through @huggingface/jinja, so ids equal those of transformers' tokenizer.
import { readFile } from 'node:fs/promises'
import { join } from 'node:path'
import { setImmediate as nextTurn } from 'node:timers/promises'
import { Tokenizer } from '@huggingface/tokenizers'
import type { Template } from '@huggingface/jinja'
import { compileChatTemplate, parseJsonFile, readChatTemplateSource, tokenizerJsonProblem } from '../models/tokenizerFiles'
import type { Message, Text, TrainingRecord } from '../data/formats'
import type { TrainingStage } from '../../../preload/types/trainingSchema'

type TokenConfig = Record<string, unknown>

function tokenString(v: unknown): string | null {
  if (typeof v === 'string') return v
  if (v && typeof v === 'object' && typeof (v as { content?: unknown }).content === 'string') return (v as { content: string }).content
  return null
}

async function readJson(file: string): Promise<Record<string, unknown>> {
  let text: string
  try {
    text = await readFile(file, 'utf8')
  } catch (err) {
    throw new Error(`${file}: cannot read: ${(err as Error).message}`)
  }
  const value = parseJsonFile(file, text)
  if (typeof value !== 'object' || value === null || Array.isArray(value)) throw new Error(`${file}: expected a JSON object at the top level`)
  return value as Record<string, unknown>
}

export class ChatTokenizer {
  private constructor(
    private readonly tokenizer: Tokenizer,
    private readonly template: Template | null,
    private readonly specialStrings: Record<string, string>,
    readonly eosId: number,
    readonly bosId: number | null,
    readonly padId: number,
    readonly dir: string
  ) {}

  static async load(dir: string): Promise<ChatTokenizer> {
    const tokenizerFile = join(dir, 'tokenizer.json')
    const tokenizerJson = await readJson(tokenizerFile)
    const problem = tokenizerJsonProblem(tokenizerJson)
    if (problem) throw new Error(`${tokenizerFile}: ${problem}`)
    const configFile = join(dir, 'tokenizer_config.json')
    const config: TokenConfig = await readJson(configFile)
    let modelConfig: Record<string, unknown> = {}
    try {
      modelConfig = await readJson(join(dir, 'config.json'))
    } catch {
      // config.json only supplies a fallback eos id.
    }
    // Parsing tokenizer.json, building the tokenizer and compiling the template each block the
    // main process for a while on a large vocabulary: a turn of the event loop between them.
    await nextTurn()
    let tokenizer: Tokenizer
    try {
      tokenizer = new Tokenizer(tokenizerJson, config)
    } catch (err) {
      throw new Error(`${tokenizerFile}: not a tokenizer Tunebench can read: ${(err as Error).message}`)
    }
    await nextTurn()
    const special: Record<string, string> = {}
    for (const name of ['bos_token', 'eos_token', 'pad_token', 'unk_token']) {
      const s = tokenString(config[name])
      if (s !== null) special[name] = s
    }
    const idOf = (name: string): number | null => {
      const s = special[name]
      if (s === undefined) return null
      const id = tokenizer.token_to_id(s)
      if (id === undefined) throw new Error(`${configFile}: ${name} "${s}" is not in tokenizer.json's vocabulary`)
      return id
    }
    let eos = idOf('eos_token')
    if (eos === null) {
      const fromModel = modelConfig.eos_token_id
      eos = typeof fromModel === 'number' ? fromModel : Array.isArray(fromModel) && typeof fromModel[0] === 'number' ? fromModel[0] : null
    }
    if (eos === null) throw new Error(`${configFile}: no eos_token (and no eos_token_id in config.json); sequences need one`)
    const bos = idOf('bos_token')
    const pad = idOf('pad_token') ?? eos

    const templateSource = await readChatTemplateSource(dir, config)
    const template = templateSource ? compileChatTemplate(templateSource) : null
    return new ChatTokenizer(tokenizer, template, special, eos, bos, pad, dir)
  }

  /** add_special_tokens as transformers: the post-processor's bos/eos, if the tokenizer has one. */
  encode(text: string, addSpecialTokens: boolean): number[] {
    return this.tokenizer.encode(text, { add_special_tokens: addSpecialTokens }).ids
  }

  decode(ids: number[], skipSpecialTokens = false): string {
    return this.tokenizer.decode(ids, { skip_special_tokens: skipSpecialTokens })
  }

  get hasChatTemplate(): boolean {
    return this.template !== null
  }

  renderChat(messages: Message[], addGenerationPrompt: boolean): string {
    if (!this.template)
      throw new Error(`${join(this.dir, 'tokenizer_config.json')}: no chat_template, so conversational records cannot be formatted`)
    return this.template.render({
      messages,
      add_generation_prompt: addGenerationPrompt,
      ...this.specialStrings
    })
  }
}

/** A prompt and one completion, tokenised but not yet joined or truncated. */
export interface PromptCompletion {
  prompt: number[]
  completion: number[]
}

/** A sequence with its loss mask: mask[t] = 1 where lp_t (predicted from t−1) counts. */
export interface Sequence {
  ids: number[]
  mask: number[]
}

export type Example =
  | { kind: 'sft'; sequence: Sequence }
  | { kind: 'pair'; prompt: number[]; chosen: number[]; rejected: number[] }
  | { kind: 'unpaired'; prompt: number[]; completion: number[]; desirable: boolean }
  /** GRPO: a prompt to sample from, its text and the record's other columns (solution, ...). */
  | { kind: 'prompt'; prompt: number[]; text: Text; columns: Record<string, unknown> }

/** What a GRPO record gives: the prompt and every other column (what rewards read). */
export interface PromptRecord {
  prompt: Text
  columns: Record<string, unknown>
}

/** A GRPO prompt as token ids: a conversation rendered with the chat template and its
 *  generation prompt, a plain string encoded as it is (with the tokenizer's special tokens),
 *  as TRL does; the start is cut so that max_completion_length tokens fit in cutoff_len. */
export function promptExample(tok: ChatTokenizer, rec: PromptRecord, cutoffLen: number, maxCompletionLength: number): Example {
  const ids = Array.isArray(rec.prompt) ? tok.encode(tok.renderChat(rec.prompt, true), false) : tok.encode(rec.prompt, true)
  if (!ids.length) throw new Error('the prompt is empty once tokenised')
  const keep = cutoffLen - maxCompletionLength
  return { kind: 'prompt', prompt: ids.slice(Math.max(0, ids.length - keep)), text: rec.prompt, columns: rec.columns }
}

/** Tokenises a prompt and its completion (plain strings or messages) as docs/algorithms.md says. */
export function tokenizePromptCompletion(tok: ChatTokenizer, prompt: Text, completion: Text): PromptCompletion {
  if (typeof prompt === 'string' && typeof completion === 'string') {
    return { prompt: tok.encode(prompt, true), completion: [...tok.encode(completion, false), tok.eosId] }
  }
  if (Array.isArray(prompt) && Array.isArray(completion)) {
    const promptText = tok.renderChat(prompt, true)
    const fullText = tok.renderChat([...prompt, ...completion], false)
    const promptIds = tok.encode(promptText, false)
    const fullIds = tok.encode(fullText, false)
    if (promptIds.every((id, i) => fullIds[i] === id)) return { prompt: promptIds, completion: fullIds.slice(promptIds.length) }
    // The tokens across the boundary merged: split the text instead, as TRL does.
    if (!fullText.startsWith(promptText))
      throw new Error('the chat template renders the prompt differently once the completion follows it; cannot find where the completion starts')
    return { prompt: promptIds, completion: tok.encode(fullText.slice(promptText.length), false) }
  }
  throw new Error('prompt and completion must both be strings or both be message lists')
}

/** Tokenises a multi-turn conversation with the loss on assistant turns only: each assistant
 *  turn is the text the template adds between the conversation-so-far with the generation
 *  prompt and the conversation including the turn. Segments are tokenised one by one (as
 *  LLaMA-Factory encodes turn by turn) so the boundaries are exact. */
export function tokenizeConversation(tok: ChatTokenizer, messages: Message[]): Sequence {
  if (!messages.some((m) => m.role === 'assistant')) throw new Error('the conversation has no assistant turn to learn from')
  const ids: number[] = []
  const mask: number[] = []
  let done = ''
  const push = (text: string, learn: boolean) => {
    if (!text) return
    for (const id of tok.encode(text, false)) {
      ids.push(id)
      mask.push(learn ? 1 : 0)
    }
  }
  for (let k = 0; k < messages.length; k++) {
    if (messages[k]!.role !== 'assistant') continue
    const before = tok.renderChat(messages.slice(0, k), true)
    const after = tok.renderChat(messages.slice(0, k + 1), false)
    if (!before.startsWith(done) || !after.startsWith(before))
      throw new Error(`the chat template does not render message ${k} as an extension of the earlier turns; cannot mask the assistant turns`)
    push(before.slice(done.length), false)
    push(after.slice(before.length), true)
    done = after
  }
  push(tok.renderChat(messages, false).slice(done.length), false)
  mask[0] = 0
  return { ids, mask }
}

/** Joins prompt and completion within cutoff_len: the end of the prompt is kept (cut from
 *  its start) and the completion is cut at its end. The prompt gives up tokens first but
 *  keeps at least half of cutoff_len, so a long completion cannot erase its context;
 *  `completionLen` lets both answers of a pair share one prompt cut. */
export function promptBudget(promptLen: number, completionLen: number, cutoffLen: number): number {
  if (promptLen + completionLen <= cutoffLen) return promptLen
  return Math.min(promptLen, Math.max(cutoffLen - completionLen, Math.floor(cutoffLen / 2)))
}

export function joinSequence(prompt: number[], completion: number[], cutoffLen: number, promptKeep?: number): Sequence {
  const p = promptKeep ?? promptBudget(prompt.length, completion.length, cutoffLen)
  const keptPrompt = prompt.slice(prompt.length - p)
  const keptCompletion = completion.slice(0, Math.max(0, cutoffLen - p))
  const ids = [...keptPrompt, ...keptCompletion]
  const mask = ids.map((_, t) => (t >= keptPrompt.length && t > 0 ? 1 : 0))
  return { ids, mask }
}

export const maskedCount = (s: Sequence): number => s.mask.reduce((a, b) => a + b, 0)

/** Turns one record into the example its stage trains on; errors say why a record does not fit. */
export function buildExample(tok: ChatTokenizer, rec: TrainingRecord, stage: TrainingStage, cutoffLen: number): Example[] {
  switch (stage) {
    case 'sft':
      if (rec.type === 'messages') {
        const s = tokenizeConversation(tok, rec.messages)
        return [{ kind: 'sft', sequence: { ids: s.ids.slice(0, cutoffLen), mask: s.mask.slice(0, cutoffLen) } }]
      }
      if (rec.type === 'prompt_completion') {
        const pc = tokenizePromptCompletion(tok, rec.prompt, rec.completion)
        return [{ kind: 'sft', sequence: joinSequence(pc.prompt, pc.completion, cutoffLen) }]
      }
      throw new Error(`stage sft trains on prompt/completion or messages records, not ${rec.type} records`)
    case 'dpo': {
      if (rec.type !== 'preference')
        throw new Error(`stage dpo trains on preference records (prompt/chosen/rejected), not ${rec.type} records`)
      const c = tokenizePromptCompletion(tok, rec.prompt, rec.chosen)
      const r = tokenizePromptCompletion(tok, rec.prompt, rec.rejected)
      return [{ kind: 'pair', prompt: c.prompt, chosen: c.completion, rejected: r.completion }]
    }
    case 'grpo':
      throw new Error('stage grpo reads prompts (promptExample), not training records')
    case 'kto': {
      if (rec.type === 'unpaired') {
        const pc = tokenizePromptCompletion(tok, rec.prompt, rec.completion)
        return [{ kind: 'unpaired', prompt: pc.prompt, completion: pc.completion, desirable: rec.label }]
      }
      if (rec.type === 'preference') {
        // A pair gives one desirable and one undesirable record (TRL's unpair_preference_dataset).
        const c = tokenizePromptCompletion(tok, rec.prompt, rec.chosen)
        const r = tokenizePromptCompletion(tok, rec.prompt, rec.rejected)
        return [
          { kind: 'unpaired', prompt: c.prompt, completion: c.completion, desirable: true },
          { kind: 'unpaired', prompt: r.prompt, completion: r.completion, desirable: false }
        ]
      }
      throw new Error(`stage kto trains on prompt/completion/label records, not ${rec.type} records`)
    }
  }
}
