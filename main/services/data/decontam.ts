// Decontamination and de-duplication as in Tülu 3: a training prompt is contaminated when a
// large share of its word n-grams (n = 8) appears in the evaluation set; exact duplicates have
// the same normalised prompt; near duplicates are found with MinHash over word 3-gram
// shingles (LSH banding, so the cost stays linear) and confirmed by the signature agreement.
import { DataError } from './errors'
import { inspectFile, readRecords } from './importers'
import { readRows } from './sources'
import { flattenPrompt, type Project } from './store'
import type { DecontamHit, DecontamOptions, DecontamReport } from '../../../preload/types/data'

export function words(text: string): string[] {
  return text.toLowerCase().split(/[^\p{L}\p{N}]+/u).filter(Boolean)
}

/** Word n-grams; a text shorter than n is one gram (so short prompts still match exactly). */
export function ngrams(ws: string[], n: number): string[] {
  if (ws.length === 0) return []
  if (ws.length < n) return [ws.join(' ')]
  const out: string[] = []
  for (let i = 0; i + n <= ws.length; i++) out.push(ws.slice(i, i + n).join(' '))
  return out
}

const EVAL_TEXT_KEYS = ['prompt', 'question', 'problem', 'input', 'instruction', 'query', 'text']

/** The prompts of an evaluation file: any importable format, or rows with a question-like string field. */
async function evalPrompts(file: string): Promise<string[]> {
  const info = await inspectFile(file, 20)
  const out: string[] = []
  if (info.format) {
    for await (const row of readRecords(file)) out.push(flattenPrompt(row.record.prompt))
    return out
  }
  const key = EVAL_TEXT_KEYS.find((k) => info.columns.includes(k))
  if (!key) throw new DataError(`no prompt column found (looked for ${EVAL_TEXT_KEYS.join(', ')}; columns: ${info.columns.join(', ')})`, { file })
  for await (const row of readRows(file, info.kind)) {
    const v = (row.value as Record<string, unknown>)[key]
    out.push(typeof v === 'string' ? v : JSON.stringify(v ?? ''))
  }
  return out
}

// MinHash: 64 hashes of each shingle (FNV-1a, then a murmur3 finaliser per seed), kept as minima.
// Word 3-gram shingles: prompts are short, and longer shingles make one changed word cost too much.
const SHINGLE = 3
const PERMS = 64
const BANDS = 16
const ROWS = PERMS / BANDS
const SEEDS = Array.from({ length: PERMS }, (_, i) => Math.imul(i + 1, 0x9e3779b1) >>> 0)

function fnv1a(s: string): number {
  let h = 0x811c9dc5
  for (let i = 0; i < s.length; i++) {
    h ^= s.charCodeAt(i)
    h = Math.imul(h, 0x01000193)
  }
  return h >>> 0
}

function fmix(h: number): number {
  h ^= h >>> 16
  h = Math.imul(h, 0x85ebca6b)
  h ^= h >>> 13
  h = Math.imul(h, 0xc2b2ae35)
  h ^= h >>> 16
  return h >>> 0
}

export function minhash(shingles: string[]): Uint32Array {
  const sig = new Uint32Array(PERMS).fill(0xffffffff)
  for (const s of new Set(shingles)) {
    const base = fnv1a(s)
    for (let i = 0; i < PERMS; i++) {
      const v = fmix(base ^ SEEDS[i])
      if (v < sig[i]) sig[i] = v
    }
  }
  return sig
}

export function similarity(a: Uint32Array, b: Uint32Array): number {
  let same = 0
  for (let i = 0; i < PERMS; i++) if (a[i] === b[i]) same++
  return same / PERMS
}

function preview(text: string): string {
  const t = text.replace(/\s+/g, ' ').trim()
  return t.length > 120 ? t.slice(0, 117) + '...' : t
}

export async function decontaminate(project: Project, opts: DecontamOptions = {}): Promise<DecontamReport> {
  const n = opts.ngram ?? 8
  const threshold = opts.threshold ?? 0.5
  const nearThreshold = opts.nearThreshold ?? 0.8
  if (!Number.isInteger(n) || n < 1) throw new DataError(`ngram must be a positive integer, got ${n}`, { field: 'ngram' })
  for (const [k, v] of [['threshold', threshold], ['nearThreshold', nearThreshold]] as const)
    if (!(v > 0 && v <= 1)) throw new DataError(`${k} must be in (0, 1], got ${v}`, { field: k })

  // Eval n-gram -> first eval record holding it.
  const evalGrams = new Map<string, number>()
  let evalRecords = 0
  if (opts.evalFile) {
    const prompts = await evalPrompts(opts.evalFile)
    evalRecords = prompts.length
    prompts.forEach((p, i) => {
      for (const g of ngrams(words(p), n)) if (!evalGrams.has(g)) evalGrams.set(g, i + 1)
    })
  }

  const contaminated: DecontamHit[] = []
  const exactDuplicates: DecontamHit[] = []
  const nearDuplicates: DecontamHit[] = []
  const seen = new Map<string, number>()
  const buckets = new Map<string, number[]>()
  const sigs = new Map<number, Uint32Array>()
  let scanned = 0
  for (const rec of project.iterateRecords({ includeExcluded: false })) {
    scanned++
    const text = flattenPrompt(rec.prompt)
    const ws = words((rec.system ? rec.system + '\n' : '') + text)
    if (evalGrams.size) {
      const grams = ngrams(words(text), n)
      let hit = 0
      let match = 0
      for (const g of grams) {
        const m = evalGrams.get(g)
        if (m !== undefined) {
          hit++
          match ||= m
        }
      }
      if (grams.length && hit / grams.length >= threshold) contaminated.push({ recordId: rec.id, score: hit / grams.length, match, preview: preview(text) })
    }
    const key = ws.join(' ')
    const first = seen.get(key)
    if (first !== undefined) {
      exactDuplicates.push({ recordId: rec.id, score: 1, match: first, preview: preview(text) })
      continue
    }
    seen.set(key, rec.id)
    if (!ws.length) continue
    const sig = minhash(ngrams(ws, SHINGLE))
    // The earliest earlier record sharing a band and similar enough is the one this duplicates.
    let best: { id: number; sim: number } | null = null
    const keys: string[] = []
    for (let b = 0; b < BANDS; b++) {
      const bk = `${b}:${Array.from(sig.subarray(b * ROWS, (b + 1) * ROWS)).join(',')}`
      keys.push(bk)
      for (const other of buckets.get(bk) ?? []) {
        if (best && other >= best.id) continue
        const sim = similarity(sig, sigs.get(other)!)
        if (sim >= nearThreshold) best = { id: other, sim }
      }
    }
    if (best) {
      nearDuplicates.push({ recordId: rec.id, score: best.sim, match: best.id, preview: preview(text) })
      continue
    }
    sigs.set(rec.id, sig)
    for (const bk of keys) {
      const list = buckets.get(bk)
      if (list) list.push(rec.id)
      else buckets.set(bk, [rec.id])
    }
  }
  return { evalFile: opts.evalFile ?? null, evalRecords, ngram: n, threshold, nearThreshold, scanned, contaminated, exactDuplicates, nearDuplicates }
}

/** Flags the reported records as excluded (kept in the store, left out of every export). */
export function excludeHits(
  project: Project,
  report: DecontamReport,
  kinds: ('contaminated' | 'exactDuplicates' | 'nearDuplicates')[] = ['contaminated', 'exactDuplicates', 'nearDuplicates']
): number {
  let n = 0
  for (const kind of kinds) {
    for (const h of report[kind]) {
      const reason =
        kind === 'contaminated'
          ? `contaminated: ${(h.score * 100).toFixed(0)}% of ${report.ngram}-grams in eval record ${h.match}`
          : kind === 'exactDuplicates'
            ? `duplicate of record ${h.match}`
            : `near duplicate of record ${h.match}`
      n += project.setExcluded([h.recordId], reason)
    }
  }
  return n
}
