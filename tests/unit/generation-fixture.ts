// Model folders for the generation tests: a tiny random checkpoint (engine-fixture's tensors)
// with a byte-level BPE tokenizer like GPT-2's and Qwen's (every byte is a token, so a
// multi-byte character can be split across tokens), ChatML specials and a ChatML template.
import { mkdirSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { encodeSafetensors, tinyTensors, type TinyOptions } from './engine-fixture'

/** GPT-2's bytes_to_unicode: the printable stand-in of each byte in a byte-level vocabulary. */
function byteChars(): string[] {
  const keep: number[] = []
  for (let b = 33; b <= 126; b++) keep.push(b)
  for (let b = 161; b <= 172; b++) keep.push(b)
  for (let b = 174; b <= 255; b++) keep.push(b)
  const chars: string[] = new Array(256)
  let n = 0
  for (let b = 0; b < 256; b++) chars[b] = String.fromCodePoint(keep.includes(b) ? b : 256 + n++)
  return chars
}

const BYTES = byteChars()
const enc = (s: string): string => [...Buffer.from(s, 'utf8')].map((b) => BYTES[b]).join('')

/** Merges (as byte-level strings, in rank order) that make a few multi-byte tokens. */
const MERGES: [string, string][] = [
  ['a', 'b'], ['c', 'd'], ['e', 'f'], ['ab', 'cd'], ['Ġ', 't'], ['h', 'e'], ['Ġt', 'he'], ['l', 'l'], ['ll', 'o'], ['he', 'llo'],
  // é (C3 A9) as one token; 😀 (F0 9F 98 80) as two halves, so both splits occur.
  [enc('é')[0]!, enc('é')[1]!], [enc('😀').slice(0, 1), enc('😀').slice(1, 2)], [enc('😀').slice(2, 3), enc('😀').slice(3, 4)]
]
export const SPECIALS = ['<|endoftext|>', '<|im_start|>', '<|im_end|>']

export function byteLevelVocab(): Record<string, number> {
  const vocab: Record<string, number> = {}
  BYTES.forEach((c, i) => (vocab[c] = i))
  for (const [a, b] of MERGES) if (!(a + b in vocab)) vocab[a + b] = Object.keys(vocab).length
  for (const s of SPECIALS) vocab[s] = Object.keys(vocab).length
  return vocab
}
export const BYTE_VOCAB = byteLevelVocab()
export const BYTE_VOCAB_SIZE = Object.keys(BYTE_VOCAB).length
export const IM_END = BYTE_VOCAB['<|im_end|>']!
/** The id of byte b. */
export const byteId = (b: number): number => b

export const CHATML =
  "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>\\n' }}{% endfor %}" +
  "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"

export function writeByteLevelTokenizer(dir: string, opts: { chatTemplate?: boolean } = {}): void {
  const vocab = BYTE_VOCAB
  const tokenizer = {
    version: '1.0',
    truncation: null,
    padding: null,
    added_tokens: SPECIALS.map((content) => ({ id: vocab[content], content, single_word: false, lstrip: false, rstrip: false, normalized: false, special: true })),
    normalizer: null,
    pre_tokenizer: { type: 'ByteLevel', add_prefix_space: false, trim_offsets: false, use_regex: true },
    post_processor: null,
    decoder: { type: 'ByteLevel', add_prefix_space: false, trim_offsets: false, use_regex: true },
    model: { type: 'BPE', dropout: null, unk_token: null, continuing_subword_prefix: null, end_of_word_suffix: null, fuse_unk: false, byte_fallback: false, ignore_merges: false, vocab, merges: MERGES.map(([a, b]) => `${a} ${b}`) }
  }
  writeFileSync(join(dir, 'tokenizer.json'), JSON.stringify(tokenizer))
  writeFileSync(join(dir, 'tokenizer_config.json'), JSON.stringify({
    eos_token: '<|im_end|>', pad_token: '<|endoftext|>', bos_token: null, tokenizer_class: 'Qwen2Tokenizer', model_max_length: 4096,
    ...(opts.chatTemplate === false ? {} : { chat_template: CHATML })
  }))
}

/** A tiny random model (hidden 32, 2 layers) over the byte-level vocabulary, with its tokenizer. */
export function writeByteLevelModel(dir: string, o: TinyOptions & { generationConfig?: Record<string, unknown> } = {}): string {
  mkdirSync(dir, { recursive: true })
  const { config, tensors } = tinyTensors({ ...o, vocab: BYTE_VOCAB_SIZE })
  writeFileSync(join(dir, 'config.json'), JSON.stringify({ ...config, eos_token_id: IM_END }, null, 2))
  writeFileSync(join(dir, 'model.safetensors'), encodeSafetensors(tensors))
  writeByteLevelTokenizer(dir)
  if (o.generationConfig) writeFileSync(join(dir, 'generation_config.json'), JSON.stringify(o.generationConfig))
  return dir
}

/** A WordLevel tokenizer of `size` tokens t0 ... t{size-1} (the last is the eos), for
 *  checkpoints made elsewhere (python) whose tests pass token ids. */
export function writeIdTokenizer(dir: string, size: number): void {
  const vocab = Object.fromEntries(Array.from({ length: size }, (_, i) => [`t${i}`, i]))
  const eos = `t${size - 1}`
  writeFileSync(join(dir, 'tokenizer.json'), JSON.stringify({
    version: '1.0', added_tokens: [{ id: size - 1, content: eos, single_word: false, lstrip: false, rstrip: false, normalized: false, special: true }],
    normalizer: null, pre_tokenizer: { type: 'WhitespaceSplit' }, post_processor: null, decoder: null,
    model: { type: 'WordLevel', vocab, unk_token: 't0' }
  }))
  writeFileSync(join(dir, 'tokenizer_config.json'), JSON.stringify({ eos_token: eos, tokenizer_class: 'PreTrainedTokenizerFast' }))
}
