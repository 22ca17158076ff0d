// The arguments of every invoke channel, checked at the boundary (IPC and WebSocket alike)
// before a service sees them: a wrong type, a missing or extra argument, an unknown key (a typo
// would otherwise be dropped silently) or an oversized string or list is a ProtocolError that
// names the channel, the argument and the path of the bad field.
//
// One small table, `argSchemas`, built from a handful of combinators. Each schema carries the
// type it accepts as an invariant phantom, and the table `satisfies` a mapped type over the
// contract, so the compiler insists on an entry per InvokeChannel and on each entry accepting
// exactly InvokeMap[channel]['args'] (a field missing from a schema, an extra one, a wrong enum
// member or a required/optional mismatch does not compile).
//
// Messages never echo a value that could be large or secret: strings are described by kind
// and length; only where one of a few fixed words was expected (an enum) is the string shown,
// cut to a few dozen characters, as are unknown keys.
import type { InvokeChannel, InvokeMap } from '../../preload/contract'
import type { DataFormatId, DecontamKind, ExportFormat as DataExportFormat, LabelStatus, Split } from '../../preload/types/data'
import { EXPORT_DTYPES, EXPORT_FORMATS } from '../../preload/types/export'
import type { AnswerScope, ChatTurn } from '../../preload/types/generation'

// --- bounds ---------------------------------------------------------------------------------

/** Generous limits: far above anything the app sends, low enough that a runaway value is
 *  refused at the door instead of being worked on. */
export const limits = {
  /** A file or folder path (Linux PATH_MAX). Run ids are folder names or run folders. */
  path: 4096,
  /** An identifier or name: a Hub repo id or revision, a chat id, a message role, a dataset
   *  name. */
  name: 1024,
  /** A short free text: a search, an exclusion reason, a stop string, a preview, a
   *  candidate's source name. */
  shortText: 64 * 1024,
  /** A record's text (prompt, answer, gold, note, system, chat turn): the store's own
   *  per-field limit (MAX_FIELD_CHARS in main/services/data/formats.ts). */
  text: 16 * 1024 * 1024,
  /** Lists of record ids, of records, of decontamination hits. */
  items: 1_000_000,
  /** Shorter lists: files, candidates of a record, chat turns, sources, stop strings. */
  fewItems: 100_000,
  /** Keys of a free-form object (a training config, a field mapping). */
  keys: 10_000
} as const

// --- combinators ----------------------------------------------------------------------------

/** What is wrong, where: `path` below the argument (".kind", ".turns[2].content"). */
export interface Issue {
  path: string
  message: string
  /** Set when the value was not of the schema's kind at all (a number for a string): what it
   *  was, so that nullable() and union() can say what else would have done. */
  got?: string
}

/** Accepts values of type T. `check` returns the first problem found, or null. */
export interface Schema<T> {
  /** What it accepts, in words ("a string", "one of \"train\", \"val\""). */
  readonly expected: string
  readonly check: (v: unknown) => Issue | null
  /** Type only, never set: ties the schema to T both ways (invariant), so that
   *  `Schema<A>` fits `Schema<B>` only when A and B are the same type. */
  readonly __type?: (t: T) => T
}

/** A field of an object, or a trailing argument, that may be left out (or be undefined). */
export interface Optional<T> {
  readonly optional: Schema<T>
}

interface AnySchema {
  readonly expected: string
  readonly check: (v: unknown) => Issue | null
}
type Field = AnySchema | { readonly optional: AnySchema }
type Out<S> = S extends Optional<infer T> ? T : S extends Schema<infer T> ? T : never
type Flat<T> = { [K in keyof T]: T[K] } & {}

const ok = null
const at = (path: string, message: string): Issue => ({ path, message })
function expectedGot(expected: string, v: unknown, got = describe(v)): Issue {
  return { path: '', message: `expected ${expected}, got ${got}`, got }
}
/** Prefixes a nested issue's path (it is no longer about the value's own kind). */
const under = (prefix: string, issue: Issue | null): Issue | null => (issue ? { path: prefix + issue.path, message: issue.message } : null)

function schema<T>(expected: string, check: (v: unknown) => Issue | null): Schema<T> {
  return { expected, check }
}

/** A string of at most `max` characters. */
export function str(max: number): Schema<string> {
  return schema('a string', (v) => {
    if (typeof v !== 'string') return expectedGot('a string', v)
    if (v.length > max) return at('', `expected a string of at most ${max} characters, got ${v.length} characters`)
    return ok
  })
}

/** A finite number (NaN and ±Infinity are refused). */
export const num: Schema<number> = schema('a finite number', (v) => (typeof v === 'number' && Number.isFinite(v) ? ok : expectedGot('a finite number', v)))

/** A whole number (a safe integer): ids, indices, counts. */
export const int: Schema<number> = schema('a whole number', (v) => (Number.isSafeInteger(v) ? ok : expectedGot('a whole number', v)))

export const bool: Schema<boolean> = schema('true or false', (v) => (typeof v === 'boolean' ? ok : expectedGot('true or false', v)))

/** Any value: the contents of a free-form config, checked by its own service. */
export const anything: Schema<unknown> = schema('any value', () => ok)

/** One of a fixed list of strings; give the list the type itself is built from where there is one. */
export function oneOf<const L extends readonly string[]>(list: L): Schema<L[number]> {
  const set = new Set<unknown>(list)
  const expected = `one of ${list.map((s) => JSON.stringify(s)).join(', ')}`
  return schema(expected, (v) => (set.has(v) ? ok : expectedGot(expected, v, typeof v === 'string' ? quote(v) : describe(v))))
}

export function nullable<T>(s: Schema<T>): Schema<T | null> {
  const expected = `${s.expected} or null`
  return schema(expected, (v) => {
    if (v === null) return ok
    const issue = s.check(v)
    // The value's kind was not the schema's at all: say null would have done too.
    return issue?.got !== undefined ? expectedGot(expected, v, issue.got) : issue
  })
}

export function optional<T>(s: Schema<T>): Optional<T> {
  return { optional: s }
}

/** A list of at most `max` items, each checked. */
export function array<T>(item: Schema<T>, max: number): Schema<T[]> {
  return schema('a list', (v) => {
    if (!Array.isArray(v)) return expectedGot('a list', v)
    if (v.length > max) return at('', `expected a list of at most ${max} items, got ${v.length} items`)
    for (let i = 0; i < v.length; i++) {
      const issue = under(`[${i}]`, item.check(v[i]))
      if (issue) return issue
    }
    return ok
  })
}

/** Either schema; a value of the right kind for one of them is reported against that one. */
export function union<A, B>(a: Schema<A>, b: Schema<B>): Schema<A | B> {
  const expected = `${a.expected} or ${b.expected}`
  return schema(expected, (v) => {
    const ia = a.check(v)
    if (!ia) return ok
    const ib = b.check(v)
    if (!ib) return ok
    // An issue that is not about the value's kind means it was that schema's kind.
    return [ia, ib].find((i) => i.got === undefined) ?? expectedGot(expected, v)
  })
}

type ObjectOut<F extends Record<string, Field>> = Flat<
  { -readonly [K in keyof F as F[K] extends { optional: AnySchema } ? never : K]: Out<F[K]> } & {
    -readonly [K in keyof F as F[K] extends { optional: AnySchema } ? K : never]?: Out<F[K]>
  }
>

/** A plain object with exactly these keys (optional ones may be absent or undefined); any
 *  other key is an error naming it. */
export function obj<const F extends Record<string, Field>>(fields: F): Schema<ObjectOut<F>> {
  return schema('an object', (v) => {
    if (!isPlainObject(v)) return expectedGot('an object', v)
    return checkFields(fields, v, new Set())
  })
}

/** A union of objects told apart by a string key, e.g. LabelAction by `kind`: the key's value
 *  picks the variant, whose other keys are then checked as obj() does. */
export function tagged<const K extends string, const V extends Record<string, Record<string, Field>>>(
  key: K,
  variants: V
): Schema<{ [T in keyof V]: Flat<{ -readonly [P in K]: T } & ObjectOut<V[T]>> }[keyof V]> {
  const kinds = oneOf(Object.keys(variants))
  return schema('an object', (v) => {
    if (!isPlainObject(v)) return expectedGot('an object', v)
    const tag = v[key]
    if (tag === undefined) return at(`.${key}`, `missing (expected ${kinds.expected})`)
    const issue = under(`.${key}`, kinds.check(tag))
    if (issue || !Object.hasOwn(variants, tag as string)) return issue ?? at(`.${key}`, `expected ${kinds.expected}`)
    return checkFields(variants[tag as string]!, v, new Set([key]))
  })
}

/** A plain object with any keys (at most `max`), each value checked: field mappings, configs. */
export function record<T>(value: Schema<T>, max: number): Schema<Record<string, T>> {
  return schema('an object', (v) => {
    if (!isPlainObject(v)) return expectedGot('an object', v)
    const keys = Object.keys(v)
    if (keys.length > max) return at('', `expected an object of at most ${max} keys, got ${keys.length} keys`)
    for (const k of keys) {
      // Keys that reach prototypes when a service assigns them (obj[k] = ...) have no use here.
      if (k === '__proto__' || k === 'constructor' || k === 'prototype') return at(keyPath(k), 'this key is not allowed')
      const issue = under(keyPath(k), value.check(v[k]))
      if (issue) return issue
    }
    return ok
  })
}

function checkFields(fields: Record<string, Field>, v: Record<string, unknown>, skip: Set<string>): Issue | null {
  for (const k of Object.keys(v)) {
    if (!skip.has(k) && !Object.hasOwn(fields, k)) return at(keyPath(k), `unknown key (expected one of ${listKeys(fields, skip)})`)
  }
  for (const [k, field] of Object.entries(fields)) {
    const value = Object.hasOwn(v, k) ? v[k] : undefined
    if ('optional' in field) {
      if (value === undefined) continue
      const issue = under(keyPath(k), field.optional.check(value))
      if (issue) return issue
    } else {
      if (value === undefined) return at(keyPath(k), `missing (expected ${field.expected})`)
      const issue = under(keyPath(k), field.check(value))
      if (issue) return issue
    }
  }
  return ok
}

// --- argument lists -------------------------------------------------------------------------

type ArgSpec = readonly [name: string, schema: Field]
type ArgsOut<A extends readonly ArgSpec[]> = A extends readonly [infer H, ...infer R extends readonly ArgSpec[]]
  ? H extends readonly [string, Optional<infer T>]
    ? [T?, ...ArgsOut<R>]
    : H extends readonly [string, Schema<infer T>]
      ? [T, ...ArgsOut<R>]
      : never
  : []

/** The checked arguments to pass on, or what is wrong with them. */
export type ArgsCheck = { ok: true; args: unknown[] } | { ok: false; message: string }

/** The argument list of a channel: named positions, optional ones last. */
export interface Args<T extends unknown[]> {
  readonly names: readonly string[]
  /** `channel` only names the channel in messages. */
  readonly check: (channel: string, args: unknown[]) => ArgsCheck
  /** Type only, never set (see Schema). */
  readonly __type?: (t: T) => T
}

export function args<const A extends readonly ArgSpec[]>(...specs: A): Args<ArgsOut<A>> {
  const required = specs.filter(([, s]) => !('optional' in s)).length
  if (specs.slice(0, required).some(([, s]) => 'optional' in s)) throw new Error('args: optional arguments must come last')
  const names = specs.map(([name, s]) => ('optional' in s ? `${name}?` : name))
  const wanted =
    specs.length === 0
      ? 'no arguments'
      : `${required === specs.length ? specs.length : `${required} to ${specs.length}`} argument${specs.length === 1 ? '' : 's'} (${names.join(', ')})`
  return {
    names,
    check(channel, given) {
      if (given.length > specs.length) return { ok: false, message: `${channel}: expected ${wanted}, got ${given.length}` }
      const out = [...given]
      for (let i = 0; i < specs.length; i++) {
        const [name, s] = specs[i]!
        const where = `${channel}: argument ${i + 1} (${name})`
        const v = given[i]
        if ('optional' in s) {
          // JSON has no undefined: in a list it writes null, so over the WebSocket an optional
          // argument left undefined arrives as null. Either way it is absent.
          if (v === undefined || (v === null && s.optional.check(null) !== null)) {
            if (i < out.length) out[i] = undefined
            continue
          }
          const issue = s.optional.check(v)
          if (issue) return { ok: false, message: `${where}${issue.path}: ${issue.message}` }
        } else {
          if (i >= given.length || v === undefined) return { ok: false, message: `${where}: missing (expected ${s.expected})` }
          const issue = s.check(v)
          if (issue) return { ok: false, message: `${where}${issue.path}: ${issue.message}` }
        }
      }
      // Absent trailing optional arguments are not passed on (a handler's defaults apply).
      while (out.length > required && out[out.length - 1] === undefined) out.pop()
      return { ok: true, args: out }
    }
  }
}

// --- describing values (short, and never the content of a string) ---------------------------

function isPlainObject(v: unknown): v is Record<string, unknown> {
  if (typeof v !== 'object' || v === null || Array.isArray(v)) return false
  const proto = Object.getPrototypeOf(v)
  return proto === Object.prototype || proto === null
}

/** A string cut to a few dozen characters, quoted. */
function quote(s: string): string {
  const chars = Array.from(s.length > 200 ? s.slice(0, 200) : s)
  return chars.length > 40 ? `${JSON.stringify(chars.slice(0, 40).join(''))}… (${s.length} characters)` : JSON.stringify(s)
}

function describe(v: unknown): string {
  if (v === undefined) return 'undefined'
  if (v === null) return 'null'
  if (typeof v === 'number' || typeof v === 'boolean') return String(v)
  if (typeof v === 'string') return v.length === 0 ? 'an empty string' : `a string of ${v.length} character${v.length === 1 ? '' : 's'}`
  if (typeof v === 'bigint') return 'a bigint'
  if (Array.isArray(v)) return `a list of ${v.length} item${v.length === 1 ? '' : 's'}`
  if (typeof v === 'object') {
    const tag = Object.prototype.toString.call(v).slice(8, -1)
    return tag === 'Object' ? 'an object' : `a ${tag}`
  }
  return `a ${typeof v}`
}

function keyPath(k: string): string {
  return /^[A-Za-z_$][\w$]*$/.test(k) && k.length <= 60 ? `.${k}` : `[${quote(k)}]`
}

function listKeys(fields: Record<string, Field>, skip: Set<string>): string {
  const keys = [...skip, ...Object.keys(fields)]
  return keys.length ? keys.join(', ') : 'none'
}

// --- enums ----------------------------------------------------------------------------------

/** True only when A and B are the same set of members; `const x: Same<A, B> = true` fails to
 *  compile otherwise. For string unions the types declare without a runtime list. */
type Same<A, B> = [A] extends [B] ? ([B] extends [A] ? true : false) : false

const SPLITS = ['train', 'val'] as const
const LABEL_STATUSES = ['unlabeled', 'labeled', 'skipped'] as const
const DATA_FORMAT_IDS = [
  'trl-preference',
  'trl-unpaired',
  'trl-prompt-completion',
  'trl-messages',
  'alpaca',
  'sharegpt',
  'openai-preference',
  'candidates'
] as const
const DATA_EXPORT_FORMATS = ['trl-dpo', 'trl-kto', 'trl-sft', 'llamafactory', 'candidates'] as const
const DECONTAM_KINDS = ['contaminated', 'exactDuplicates', 'nearDuplicates'] as const
const ANSWER_SCOPES = ['all', 'unlabeled', 'prompt-only'] as const
const CHAT_ROLES = ['user', 'assistant'] as const

const sameSplits: Same<(typeof SPLITS)[number], Split> = true
const sameStatuses: Same<(typeof LABEL_STATUSES)[number], LabelStatus> = true
const sameFormats: Same<(typeof DATA_FORMAT_IDS)[number], DataFormatId> = true
const sameExportFormats: Same<(typeof DATA_EXPORT_FORMATS)[number], DataExportFormat> = true
const sameKinds: Same<(typeof DECONTAM_KINDS)[number], DecontamKind> = true
const sameScopes: Same<(typeof ANSWER_SCOPES)[number], AnswerScope> = true
const sameRoles: Same<(typeof CHAT_ROLES)[number], ChatTurn['role']> = true
void [sameSplits, sameStatuses, sameFormats, sameExportFormats, sameKinds, sameScopes, sameRoles]

// --- the contract's argument types ----------------------------------------------------------

const path = str(limits.path)
const name = str(limits.name)
const shortText = str(limits.shortText)
const text = str(limits.text)
const split = oneOf(SPLITS)
const ids = array(int, limits.items)
/** A free-form config (the training form's): any keys, checked against the schema by runs.*. */
const config = record(anything, limits.keys)

const chatMessage = obj({ role: name, content: text })
const prompt = union(text, array(chatMessage, limits.fewItems))
/** A file's column name (any JSON key or Parquet column): as generous as a path. */
const column = str(limits.path)
const fieldMapping = record(column, limits.keys)
/** Where a candidate answer came from: "import", a model's or an adapter's name. */
const answerSource = shortText

const recordInput = obj({
  prompt,
  system: nullable(text),
  candidates: array(obj({ content: text, source: optional(answerSource), kto: optional(nullable(bool)) }), limits.fewItems),
  pair: optional(obj({ chosen: int, rejected: int })),
  gold: optional(nullable(text)),
  note: optional(nullable(text)),
  split: optional(split),
  source: optional(path),
  sourceIndex: optional(int)
})

const labelAction = tagged('kind', {
  pair: { chosen: int, rejected: int },
  tie: { a: int, b: int },
  skip: {},
  kto: { candidate: int, desirable: nullable(bool) },
  gold: { text: nullable(text) },
  note: { text: nullable(text) },
  clear: {}
})

const recordFilter = obj({
  status: optional(oneOf([...LABEL_STATUSES, 'all'])),
  split: optional(split),
  search: optional(shortText),
  excluded: optional(union(bool, oneOf(['all']))),
  offset: optional(int),
  limit: optional(int)
})

const decontamHit = obj({ recordId: int, score: num, match: int, preview: shortText })
const decontamReport = obj({
  evalFile: nullable(path),
  evalRecords: int,
  ngram: int,
  threshold: num,
  nearThreshold: num,
  scanned: int,
  contaminated: array(decontamHit, limits.items),
  exactDuplicates: array(decontamHit, limits.items),
  nearDuplicates: array(decontamHit, limits.items)
})

const chatSource = obj({ model: path, adapter: nullable(path) })
// Types only: the ranges (whole numbers, top_p in (0, 1], ...) are SETTING_SPECS' to check, in
// resolveSettings, with its own messages.
const samplingFields = {
  maxNewTokens: optional(num),
  temperature: optional(num),
  topP: optional(num),
  topK: optional(num),
  minP: optional(num),
  repetitionPenalty: optional(num),
  seed: optional(num),
  stop: optional(array(shortText, limits.fewItems))
}

export const argSchemas = {
  'app.demo': args(),
  'engine.facts': args(),
  'models.inspect': args(['dir', path]),
  'models.open': args(['dir', path]),
  'models.recent': args(),
  'models.last': args(),
  'models.forget': args(['dir', path]),
  'models.pickFolder': args(),
  'models.download': args(['request', obj({ repo: name, revision: optional(name) })]),
  'models.cancelDownload': args(['repo', name]),
  'data.open': args(['dir', path]),
  'data.info': args(),
  'data.openLast': args(),
  'data.list': args(['filter', recordFilter]),
  'data.get': args(['id', int]),
  'data.label': args(['id', int], ['action', labelAction]),
  'data.undo': args(),
  'data.setSplit': args(['ids', ids], ['split', split]),
  'data.setExcluded': args(['ids', ids], ['reason', nullable(shortText)]),
  'data.addRecords': args(['records', array(recordInput, limits.items)]),
  'data.addCandidates': args(['id', int], ['candidates', array(obj({ content: text, source: answerSource }), limits.fewItems)]),
  'data.previewImport': args(['file', path], ['options', optional(obj({ format: optional(oneOf(DATA_FORMAT_IDS)), mapping: optional(fieldMapping) }))]),
  'data.import': args(
    ['files', array(path, limits.fewItems)],
    ['options', optional(obj({ format: optional(oneOf(DATA_FORMAT_IDS)), mapping: optional(fieldMapping), split: optional(split) }))]
  ),
  'data.export': args(['options', obj({ format: oneOf(DATA_EXPORT_FORMATS), out: path, split: optional(split), name: optional(name) })]),
  'data.decontam': args(['options', obj({ evalFile: optional(path), ngram: optional(int), threshold: optional(num), nearThreshold: optional(num) })]),
  'data.excludeFlagged': args(['report', decontamReport], ['kinds', optional(array(oneOf(DECONTAM_KINDS), limits.fewItems))]),
  'data.tokenizePreview': args(['options', obj({ modelDir: path, cutoffLen: int, sample: optional(int), split: optional(split) })]),
  'data.generateAnswers': args([
    'request',
    obj({
      sources: array(chatSource, limits.fewItems),
      n: int,
      scope: optional(oneOf(ANSWER_SCOPES)),
      ids: optional(ids),
      split: optional(split),
      settings: optional(obj(samplingFields)),
      batchSize: optional(int),
      dryRun: optional(bool)
    })
  ]),
  'data.cancelGenerate': args(),
  'runs.list': args(),
  'runs.get': args(['id', path]),
  'runs.completionSteps': args(['id', path]),
  'runs.completions': args(['id', path], ['step', int]),
  'runs.validate': args(['config', config]),
  'runs.memoryPlan': args(['config', config]),
  'runs.start': args(['request', obj({ config })]),
  'runs.stop': args(['id', path]),
  'runs.resume': args(['id', path]),
  'runs.importAdapter': args(['request', obj({ dir: path, model: optional(path) })]),
  'export.start': args([
    'request',
    obj({
      format: oneOf(EXPORT_FORMATS),
      out: path,
      run: optional(path),
      adapter: optional(path),
      model: optional(path),
      dtype: optional(oneOf(EXPORT_DTYPES)),
      ollamaAdapter: optional(bool),
      maxShardBytes: optional(int)
    })
  ]),
  'export.cancel': args(['out', path]),
  'generation.chat': args([
    'request',
    obj({
      id: name,
      source: chatSource,
      system: nullable(text),
      turns: array(obj({ role: oneOf(CHAT_ROLES), content: text }), limits.fewItems),
      settings: obj({ ...samplingFields, numReturnSequences: optional(num) })
    })
  ]),
  'generation.cancelChat': args(['id', name])
} satisfies { [C in InvokeChannel]: Args<InvokeMap[C]['args']> }

// `satisfies` above compares each entry with the contract both ways, which still lets an
// object schema leave out an optional key ({a} and {a, b?} fit each other both ways); this
// stricter check wants the very same type, and names the channels that differ.
type Identical<X, Y> = (<T>() => T extends X ? 1 : 2) extends <T>() => T extends Y ? 1 : 2 ? true : false
type ArgsOf<A> = A extends Args<infer T> ? T : never
type NotExact = { [C in InvokeChannel]: Identical<ArgsOf<(typeof argSchemas)[C]>, InvokeMap[C]['args']> extends true ? never : C }[InvokeChannel]
const exact: [NotExact] extends [never] ? true : { notExact: NotExact } = true
void exact

/** Checks a call's arguments against its channel's schema. */
export function checkArgs(channel: InvokeChannel, given: unknown[]): ArgsCheck {
  return argSchemas[channel].check(channel, given)
}
