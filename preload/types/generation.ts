// Types of the generation channels (the Playground's chat).
import type { GenerationSettings } from './generationSettings'

export interface ChatTurn {
  role: 'user' | 'assistant'
  content: string
}

/** Who answers: a model folder, with a PEFT adapter folder or none (the base model). */
export interface ChatSource {
  model: string
  adapter: string | null
}

export interface ChatRequest {
  /** Chosen by the caller; names the streamed deltas and cancelChat. */
  id: string
  source: ChatSource
  system: string | null
  /** The conversation so far, ending with a user turn. */
  turns: ChatTurn[]
  settings: Partial<GenerationSettings>
}

export interface ChatReply {
  id: string
  text: string
  finishReason: 'eos' | 'length' | 'stop'
  /** Completion tokens. */
  tokens: number
  seconds: number
}

/** Text of a reply that became safe to show, in order. */
export interface ChatDelta {
  id: string
  delta: string
}
