// The tokenizer of a Hugging Face folder (tokenizer.json, tokenizer_config.json, config.json) as
// llama.cpp's GGUF metadata, the way llama.cpp's convert_hf_to_gguf.py writes it for byte-level
// BPE (tokenizer.ggml.model "gpt2"): every token in id order (holes up to vocab_size become
// unused "[PAD{id}]" tokens), its type (normal, control for special-looking added tokens,
// user-defined for other added tokens), the merges as "a b" strings, the pre-tokenizer by name
// (llama.cpp implements each named regex itself, src/llama-vocab.cpp), the special token ids,
// add_bos/add_eos and the chat template. Anything llama.cpp would tokenize differently (another
// model type, an unknown pre-tokenizer regex) is refused with the reason.
import { existsSync } from 'node:fs'
import { readFile } from 'node:fs/promises'
import { join } from 'node:path'
import { readJson } from './checkpoint'
import type { GgufMetadata } from './gguf'

/** llama.cpp's token types (enum llama_token_type / gguf TokenType). */
export const TOKEN_TYPE = { NORMAL: 1, UNKNOWN: 2, CONTROL: 3, USER_DEFINED: 4, UNUSED: 5, BYTE: 6 } as const

/** Split regexes of tokenizer.json that llama.cpp has a pre-tokenizer for, by the name it
 *  reads from tokenizer.ggml.pre (llama-vocab.cpp: llama-bpe → LLAMA3, qwen2 → QWEN2, qwen35
 *  → QWEN35, gpt-2 → GPT2, each with the same regex adapted to its own engine). */
const GPT2_REGEX = String.raw`'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+`
export const KNOWN_PRE_TOKENIZERS: Record<string, string> = {
  [String.raw`(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+`]: 'llama-bpe',
  [String.raw`(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+`]: 'qwen2',
  [String.raw`(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?[\p{L}\p{M}]+|\p{N}| ?[^\s\p{L}\p{M}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+`]: 'qwen35',
  [GPT2_REGEX]: 'gpt-2',
  [GPT2_REGEX.slice(0, -'|\\s+'.length)]: 'gpt-2'
}
/** Whether llama.cpp sets ignore_merges for the pre-tokenizer (llama-vocab.cpp). */
const LLAMA_CPP_IGNORES_MERGES: Record<string, boolean> = { 'llama-bpe': true, qwen2: false, qwen35: false, 'gpt-2': false, smollm: false }

/** Tokens llama.cpp treats as end of generation by their text (llama-vocab.cpp). */
const EOG_TEXTS = new Set([
  '<|eot_id|>', '<|im_end|>', '<|end|>', '<|return|>', '<|call|>', '<end_of_turn>', '<|endoftext|>', '<|eom_id|>',
  '<EOT>', '_<EOT>', '<|end_of_text|>', '<end_of_utterance>', '<｜end▁of▁sentence｜>'
])

export interface GgufVocab {
  tokens: string[]
  types: Int32Array
  merges: string[]
  pre: string
  bosId: number | null
  /** tokenizer_config.json's bos_token (what the chat template is rendered with), null if none;
   *  bosId may still come from config.json's bos_token_id, as the converter takes it. */
  bosToken: string | null
  eosId: number | null
  unkId: number | null
  padId: number | null
  addBos: boolean
  addEos: boolean
  /** The default chat template, and any named others (tokenizer_config's list form). */
  chatTemplate: string | null
  namedTemplates: { name: string; template: string }[]
  /** The eos token's text, then generation_config.json's eos_token_id(s) as text. */
  eosStrings: string[]
  /** eosStrings and the control tokens llama.cpp itself treats as end of generation by their
   *  text (<|im_end|>, <|eot_id|>, <|endoftext|>, ...): what ends a turn in llama.cpp. */
  stopStrings: string[]
  warnings: string[]
}

type Json = Record<string, unknown>
const isObj = (v: unknown): v is Json => typeof v === 'object' && v !== null && !Array.isArray(v)

function tokenString(v: unknown): string | null {
  if (typeof v === 'string') return v
  if (isObj(v) && typeof v.content === 'string') return v.content
  return null
}

/** As convert_hf_to_gguf.py's does_token_look_special. */
function looksSpecial(t: string): boolean {
  return t === '<pad>' || t === '<mask>' || t === '<2mass>' || t === '[@BOS@]' ||
    (t.startsWith('<|') && t.endsWith('|>')) || (t.startsWith('<｜') && t.endsWith('｜>')) ||
    (t.startsWith('<unused') && t.endsWith('>'))
}

/** The pre-tokenizer's name for llama.cpp, or an error naming what tokenizer.json has. */
function preTokenizerName(tok: Json, file: string): string {
  const pre = tok.pre_tokenizer
  if (!isObj(pre)) throw new Error(`${file}: no pre_tokenizer; llama.cpp's byte-level BPE needs one it knows (${knownNames()})`)
  const steps = pre.type === 'Sequence' && Array.isArray(pre.pretokenizers) ? (pre.pretokenizers as unknown[]) : [pre]
  const kinds = steps.map((s) => (isObj(s) ? String(s.type) : typeof s)).join(' + ')
  const byteLevel = steps.filter((s) => isObj(s) && s.type === 'ByteLevel') as Json[]
  if (byteLevel.length !== 1 || steps[steps.length - 1] !== byteLevel[0])
    throw new Error(`${file}: pre_tokenizer ${kinds} is not byte-level BPE (a ByteLevel step last); only byte-level BPE tokenizers can be written to GGUF`)
  const bl = byteLevel[0]!
  if (bl.add_prefix_space === true) throw new Error(`${file}: the ByteLevel pre-tokenizer adds a prefix space, which llama.cpp's byte-level BPE never does`)
  let regex: string
  // Digits one by one, then the GPT-2 regex (the bundled demo's tokenizer): llama.cpp's
  // "smollm" pre-tokenizer splits \p{N} first, then by the same regex.
  const digits = steps[0]
  if (steps.length === 2 && isObj(digits) && digits.type === 'Digits') {
    if (digits.individual_digits !== true || bl.use_regex === false)
      throw new Error(`${file}: pre_tokenizer ${kinds} splits digits in runs (individual_digits false) or has no ByteLevel regex; llama.cpp has no such pre-tokenizer`)
    return 'smollm'
  }
  if (steps.length === 1) {
    if (bl.use_regex === false) throw new Error(`${file}: the ByteLevel pre-tokenizer has no regex (use_regex false) and no Split before it; llama.cpp has no such pre-tokenizer`)
    regex = GPT2_REGEX
  } else {
    const split = steps[0]
    if (steps.length !== 2 || !isObj(split) || split.type !== 'Split')
      throw new Error(`${file}: pre_tokenizer ${kinds} is not one llama.cpp knows (a Split regex then ByteLevel, or ByteLevel alone)`)
    if (bl.use_regex !== false) throw new Error(`${file}: the ByteLevel step after the Split also splits by its own regex (use_regex true); llama.cpp has no such pre-tokenizer`)
    const pattern = split.pattern
    if (!isObj(pattern) || typeof pattern.Regex !== 'string')
      throw new Error(`${file}: the Split pre-tokenizer's pattern is ${JSON.stringify(pattern)}, not a regex llama.cpp knows`)
    if (split.behavior !== 'Isolated' || split.invert === true)
      throw new Error(`${file}: the Split pre-tokenizer's behavior is ${JSON.stringify(split.behavior)}${split.invert ? ' (inverted)' : ''}; llama.cpp's pre-tokenizers isolate each match`)
    regex = pattern.Regex
  }
  const name = KNOWN_PRE_TOKENIZERS[regex]
  if (!name) throw new Error(`${file}: the pre-tokenizer regex ${JSON.stringify(regex)} is not one llama.cpp implements (known: ${knownNames()}); the GGUF would tokenize differently`)
  return name
}

function knownNames(): string {
  return [...new Set([...Object.values(KNOWN_PRE_TOKENIZERS), 'smollm (Digits + ByteLevel)'])].join(', ')
}

function chatTemplates(config: Json, dir: string): { chatTemplate: string | null; named: { name: string; template: string }[] } {
  const ct = config.chat_template
  if (ct === undefined || ct === null) return { chatTemplate: null, named: [] }
  if (typeof ct === 'string') return { chatTemplate: ct, named: [] }
  if (!Array.isArray(ct)) throw new Error(`${join(dir, 'tokenizer_config.json')}: chat_template is neither a string nor a list of {name, template}`)
  // As gguf-py: the "default" one is tokenizer.chat_template, the others tokenizer.chat_template.<name>.
  const list = ct
    .filter((t): t is { name: string; template: string } => isObj(t) && typeof t.name === 'string' && t.name !== '' && typeof t.template === 'string')
    .map((t) => ({ name: t.name.replace(/[^A-Za-z0-9]/g, '_'), template: t.template }))
  const def = list.find((t) => t.name === 'default')
  return { chatTemplate: def?.template ?? null, named: list.filter((t) => t.name !== 'default') }
}

async function fallbackTemplate(dir: string): Promise<string | null> {
  const jinja = join(dir, 'chat_template.jinja')
  if (existsSync(jinja)) return readFile(jinja, 'utf8')
  const json = join(dir, 'chat_template.json')
  if (existsSync(json)) {
    const t = (await readJson(json)).chat_template
    if (typeof t === 'string') return t
  }
  return null
}

/** add_bos / add_eos as transformers applies them: tokenizer_config's add_*_token when it is
 *  a boolean, else the post-processor's template (e.g. Llama 3's TemplateProcessing puts
 *  <|begin_of_text|> first), else off. */
function addSpecial(tok: Json, config: Json, bos: string | null, eos: string | null): { addBos: boolean; addEos: boolean } {
  let addBos = false
  let addEos = false
  const pp = tok.post_processor
  const processors = isObj(pp) ? (pp.type === 'Sequence' && Array.isArray(pp.processors) ? pp.processors as unknown[] : [pp]) : []
  for (const p of processors) {
    if (!isObj(p) || p.type !== 'TemplateProcessing' || !Array.isArray(p.single)) continue
    const single = p.single as unknown[]
    const special = (x: unknown): string | null => (isObj(x) && isObj(x.SpecialToken) && typeof x.SpecialToken.id === 'string' ? x.SpecialToken.id : null)
    const first = special(single[0])
    const last = special(single[single.length - 1])
    if (first !== null && (bos === null || first === bos)) addBos = true
    if (single.length > 1 && last !== null && (eos === null || last === eos)) addEos = true
  }
  if (typeof config.add_bos_token === 'boolean') addBos = config.add_bos_token
  if (typeof config.add_eos_token === 'boolean') addEos = config.add_eos_token
  return { addBos, addEos }
}

/** The GGUF vocabulary of a model folder; `modelConfig` is its config.json. */
export async function readGgufVocab(dir: string, modelConfig: Json): Promise<GgufVocab> {
  const file = join(dir, 'tokenizer.json')
  if (!existsSync(file)) throw new Error(`${dir} has no tokenizer.json; a GGUF needs the tokenizer (only tokenizer.json byte-level BPE tokenizers can be written)`)
  const tok = await readJson(file)
  const configFile = join(dir, 'tokenizer_config.json')
  const config = existsSync(configFile) ? await readJson(configFile) : {}
  const model = tok.model
  if (!isObj(model)) throw new Error(`${file}: no "model" section`)
  if (model.type !== 'BPE')
    throw new Error(`${file}: the tokenizer is ${String(model.type)}; only byte-level BPE tokenizers (as Llama 3's and Qwen's) can be written to GGUF here`)
  if (model.byte_fallback === true)
    throw new Error(`${file}: a BPE with byte_fallback is SentencePiece-style (llama.cpp's "llama" tokenizer), not byte-level BPE; it cannot be written to GGUF here`)
  if (model.continuing_subword_prefix || model.end_of_word_suffix)
    throw new Error(`${file}: a BPE with continuing_subword_prefix / end_of_word_suffix is not byte-level BPE as llama.cpp reads it`)
  const normalizer = tok.normalizer
  // llama.cpp's byte-level BPE applies no normalizer; Qwen's NFC is accepted as its converter does.
  if (isObj(normalizer) && normalizer.type !== 'NFC')
    throw new Error(`${file}: the tokenizer normalizes text (${String(normalizer.type)}); llama.cpp's byte-level BPE does not, so the GGUF would tokenize differently`)
  const pre = preTokenizerName(tok, file)
  const warnings: string[] = []
  const ignoreMerges = model.ignore_merges === true
  if (ignoreMerges !== LLAMA_CPP_IGNORES_MERGES[pre])
    warnings.push(`GGUF: tokenizer.json has ignore_merges ${ignoreMerges} but llama.cpp's "${pre}" pre-tokenizer uses ${!ignoreMerges}; a few words may tokenize differently`)

  const vocab = model.vocab
  if (!isObj(vocab)) throw new Error(`${file}: model.vocab is not a token -> id map`)
  const byId = new Map<number, string>()
  const idOf = new Map<string, number>()
  const put = (t: string, id: unknown, where: string): void => {
    if (typeof id !== 'number' || !Number.isInteger(id) || id < 0) throw new Error(`${file}: ${where} token ${JSON.stringify(t)} has id ${JSON.stringify(id)}`)
    const had = byId.get(id)
    if (had !== undefined && had !== t) throw new Error(`${file}: id ${id} is both ${JSON.stringify(had)} and ${JSON.stringify(t)}`)
    byId.set(id, t)
    if (!idOf.has(t)) idOf.set(t, id)
  }
  for (const [t, id] of Object.entries(vocab)) put(t, id, 'vocab')
  const added = new Map<number, { content: string; special: boolean }>()
  const addedTokens = Array.isArray(tok.added_tokens) ? (tok.added_tokens as unknown[]) : []
  for (const a of addedTokens) {
    if (!isObj(a) || typeof a.content !== 'string') throw new Error(`${file}: an added_tokens entry has no content`)
    put(a.content, a.id, 'added')
    added.set(a.id as number, { content: a.content, special: a.special === true })
  }
  let maxId = -1
  for (const id of byId.keys()) if (id > maxId) maxId = id
  const declared = modelConfig.vocab_size
  const vocabSize = typeof declared === 'number' ? declared : maxId + 1
  if (maxId >= vocabSize) throw new Error(`${file}: token id ${maxId} is past config.json's vocab_size ${vocabSize}`)

  const tokens: string[] = new Array(vocabSize)
  const types = new Int32Array(vocabSize)
  for (let i = 0; i < vocabSize; i++) {
    const t = byId.get(i)
    const a = added.get(i)
    if (t === undefined) {
      tokens[i] = `[PAD${i}]`
      types[i] = TOKEN_TYPE.UNUSED
    } else if (a) {
      if (a.special || looksSpecial(a.content)) {
        tokens[i] = a.content
        types[i] = TOKEN_TYPE.CONTROL
      } else {
        tokens[i] = a.content.replaceAll('\u2581', ' ') // as the converter: user-defined tokens are pre-normalized
        types[i] = TOKEN_TYPE.USER_DEFINED
      }
    } else {
      tokens[i] = t
      types[i] = TOKEN_TYPE.NORMAL
    }
  }

  const rawMerges = model.merges
  if (!Array.isArray(rawMerges) || rawMerges.length === 0) throw new Error(`${file}: model.merges is empty; a BPE GGUF needs its merges`)
  const merges = rawMerges.map((m, i): string => {
    if (typeof m === 'string') return m
    if (Array.isArray(m) && m.length === 2 && typeof m[0] === 'string' && typeof m[1] === 'string')
      // transformers >= 4.45 writes pairs so a part may hold a space; llama.cpp splits on the
      // first space, so a space inside a part is written as U+0120 as the converter does.
      return (m as string[]).map((p) => p.replaceAll(' ', '\u0120')).join(' ')
    throw new Error(`${file}: merge ${i} is ${JSON.stringify(m)}, neither "a b" nor ["a", "b"]`)
  })

  // Special ids as gguf-py's SpecialVocab: tokenizer_config's *_token by content, else
  // config.json's *_token_id.
  const specialId = (kind: 'bos' | 'eos' | 'unk' | 'pad'): number | null => {
    const s = tokenString(config[`${kind}_token`])
    if (s !== null) {
      const id = idOf.get(s)
      if (id === undefined) throw new Error(`${configFile}: ${kind}_token ${JSON.stringify(s)} is not in tokenizer.json`)
      return id
    }
    let fromModel = modelConfig[`${kind}_token_id`]
    if (Array.isArray(fromModel)) fromModel = fromModel[0]
    return typeof fromModel === 'number' && Number.isInteger(fromModel) && fromModel >= 0 && fromModel < vocabSize ? fromModel : null
  }
  const bosId = specialId('bos')
  const eosId = specialId('eos')
  const { addBos, addEos } = addSpecial(tok, config, bosId === null ? null : tokens[bosId]!, eosId === null ? null : tokens[eosId]!)
  if (addBos && bosId === null) throw new Error(`${dir}: the tokenizer adds a bos token but names none (bos_token)`)

  let { chatTemplate, named } = chatTemplates(config, dir)
  if (chatTemplate === null && named.length === 0) chatTemplate = await fallbackTemplate(dir)

  const stop: string[] = []
  const addStop = (id: number | null): void => {
    if (id !== null && id >= 0 && id < vocabSize && types[id] !== TOKEN_TYPE.UNUSED && !stop.includes(tokens[id]!)) stop.push(tokens[id]!)
  }
  addStop(eosId)
  const genFile = join(dir, 'generation_config.json')
  if (existsSync(genFile)) {
    const g = (await readJson(genFile)).eos_token_id
    for (const id of Array.isArray(g) ? g : [g]) if (typeof id === 'number') addStop(id)
  }
  const eosStrings = [...stop]
  for (let i = 0; i < vocabSize; i++) if (types[i] === TOKEN_TYPE.CONTROL && EOG_TEXTS.has(tokens[i]!)) addStop(i)

  return {
    tokens, types, merges, pre, bosId, bosToken: tokenString(config.bos_token), eosId, unkId: specialId('unk'), padId: specialId('pad'), addBos, addEos,
    chatTemplate, namedTemplates: named, eosStrings, stopStrings: stop, warnings
  }
}

/** What an Ollama Modelfile next to this model's GGUF needs to know of its tokenizer. */
export interface GgufTokenFacts {
  /** tokenizer_config.json's bos_token (null when it names none). */
  bosToken: string | null
  /** tokenizer.ggml.add_bos_token as written: llama.cpp puts the bos first itself. */
  addsBos: boolean
  /** The eos token's text first, then generation_config.json's eos ids as text. */
  eosTokens: string[]
  /** eosTokens and the other control tokens llama.cpp ends a generation on. */
  stopStrings: string[]
  /** tokenizer.chat_template as written. */
  chatTemplate: string | null
}

export async function ggufTokenFacts(dir: string, modelConfig: Json): Promise<GgufTokenFacts> {
  const v = await readGgufVocab(dir, modelConfig)
  return {
    bosToken: v.bosToken, addsBos: v.addBos,
    eosTokens: v.eosStrings, stopStrings: v.stopStrings, chatTemplate: v.chatTemplate
  }
}

/** The strings that end an assistant turn of the model in `dir` (Ollama's PARAMETER stop). */
export async function ggufStopStrings(dir: string, modelConfig: Json): Promise<string[]> {
  return (await readGgufVocab(dir, modelConfig)).stopStrings
}

/** Writes the tokenizer.* keys. */
export function addVocabMetadata(meta: GgufMetadata, v: GgufVocab): void {
  meta.string('tokenizer.ggml.model', 'gpt2')
  meta.string('tokenizer.ggml.pre', v.pre)
  meta.strings('tokenizer.ggml.tokens', v.tokens)
  meta.int32s('tokenizer.ggml.token_type', v.types)
  meta.strings('tokenizer.ggml.merges', v.merges)
  if (v.bosId !== null) meta.uint32('tokenizer.ggml.bos_token_id', v.bosId)
  if (v.eosId !== null) meta.uint32('tokenizer.ggml.eos_token_id', v.eosId)
  if (v.unkId !== null) meta.uint32('tokenizer.ggml.unknown_token_id', v.unkId)
  if (v.padId !== null) meta.uint32('tokenizer.ggml.padding_token_id', v.padId)
  meta.bool('tokenizer.ggml.add_bos_token', v.addBos)
  meta.bool('tokenizer.ggml.add_eos_token', v.addEos)
  if (v.chatTemplate !== null) meta.string('tokenizer.chat_template', v.chatTemplate)
  if (v.namedTemplates.length) {
    for (const t of v.namedTemplates) meta.string(`tokenizer.chat_template.${t.name}`, t.template)
    meta.strings('tokenizer.chat_templates', v.namedTemplates.map((t) => t.name))
  }
}
