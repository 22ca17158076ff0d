// Prompts of a generation as token ids. With the chat template (the default) a prompt is a
// conversation (a string is one user message, a system prompt goes first) rendered with
// add_generation_prompt, then encoded without special tokens, as transformers'
// apply_chat_template(tokenize=True) does; without it a string is encoded as is, with the
// tokenizer's own special tokens (bos, ...) as tokenizer(text) adds them.
import { DataError } from '../data/errors'
import type { Message, Text } from '../data/formats'
import { readRecords } from '../data/importers'
import type { ChatTokenizer } from '../training/sequences'

export interface PromptSpec {
  prompt: Text
  system?: string | null
}

export function promptIds(tok: ChatTokenizer, p: PromptSpec, chatTemplate: boolean): number[] {
  let ids: number[]
  if (chatTemplate) {
    if (!tok.hasChatTemplate) throw new Error(`${tok.dir}: the tokenizer has no chat_template; encode the prompt as plain text instead (--no-chat-template)`)
    const turns: Message[] = typeof p.prompt === 'string' ? [{ role: 'user', content: p.prompt }] : p.prompt
    const messages = p.system ? [{ role: 'system', content: p.system }, ...turns] : turns
    ids = tok.encode(tok.renderChat(messages, true), false)
  } else {
    if (typeof p.prompt !== 'string') throw new Error('a prompt of chat messages needs the chat template (it is off: --no-chat-template)')
    if (p.system) throw new Error('a system prompt needs the chat template (it is off: --no-chat-template)')
    ids = tok.encode(p.prompt, true)
  }
  if (!ids.length) throw new Error('the prompt is empty once tokenised')
  return ids
}

/** The prompts of a dataset file in any import format (importFormats.ts): each record's prompt
 *  (text or messages) and system prompt; `index` counts records from 0. */
export async function* readPrompts(file: string): AsyncGenerator<PromptSpec & { index: number }> {
  let index = 0
  for await (const row of readRecords(file)) yield { index: index++, prompt: row.record.prompt, system: row.record.system }
  if (index === 0) throw new DataError('no records', { file })
}
