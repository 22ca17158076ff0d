// `tunebench data check|import|export|decontam|generate`: the annotation store from scripts and
// tests, on the same services as the app.
import { DataError } from '../services/data/errors'
import { exportProject } from '../services/data/export'
import { FORMATS } from '../services/data/importFormats'
import { checkFile } from '../services/data/preview'
import { closeProject, openProject } from '../services/data/store'
import type { DataFormatId, ExportFormat, Split } from '../../preload/types/data'
import { UsageError } from './flags'

const usage = `usage:
  tunebench data check FILE [--format F] [--map field=column,...]
  tunebench data import FILE... --project DIR [--split train|val] [--format F] [--map field=column,...]
  tunebench data export --project DIR --format trl-dpo|trl-kto|trl-sft|llamafactory|candidates --out PATH [--split train|val] [--name NAME]
  tunebench data decontam --project DIR [--eval FILE] [--ngram 8] [--threshold 0.5] [--near 0.8] [--exclude]
  tunebench data generate --project DIR --model DIR [--adapter DIR] --n K [--only all|unlabeled|prompt-only]
                          [--split train|val] [sampling flags of tunebench generate] [--batch-size N] [--threads N]

import formats (detected unless --format is given): ${FORMATS.map((f) => f.id).join(', ')}
--map names the column of each field, e.g. --map prompt=question,chosen=good,rejected=bad
`

interface Parsed {
  positional: string[]
  flags: Map<string, string | true>
}

function parse(argv: string[], valued: string[], bools: string[] = []): Parsed {
  const positional: string[] = []
  const flags = new Map<string, string | true>()
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]
    if (a.startsWith('--')) {
      const [k, inline] = a.slice(2).split(/=(.*)/s, 2)
      if (bools.includes(k)) flags.set(k, true)
      else if (valued.includes(k)) {
        const v = inline ?? argv[++i]
        if (v === undefined) throw new UsageError(`--${k} needs a value`)
        flags.set(k, v)
      } else throw new UsageError(`unknown option --${k}`)
    } else positional.push(a)
  }
  return { positional, flags }
}

function str(p: Parsed, k: string): string | undefined {
  const v = p.flags.get(k)
  return typeof v === 'string' ? v : undefined
}

function split(p: Parsed): Split | undefined {
  const s = str(p, 'split')
  if (s !== undefined && s !== 'train' && s !== 'val') throw new UsageError(`--split must be train or val, got '${s}'`)
  return s
}

function mapping(p: Parsed): Record<string, string> | undefined {
  const m = str(p, 'map')
  if (!m) return undefined
  const out: Record<string, string> = {}
  for (const pair of m.split(',')) {
    const [field, column] = pair.split('=')
    if (!field || !column) throw new UsageError(`--map expects field=column pairs, got '${pair}'`)
    out[field.trim()] = column.trim()
  }
  return out
}

export async function run(argv: string[]): Promise<number> {
  const [sub, ...rest] = argv
  try {
    switch (sub) {
      case 'check': {
        const p = parse(rest, ['format', 'map'])
        if (p.positional.length !== 1) throw new UsageError('data check takes one FILE')
        const r = await checkFile(p.positional[0], { format: str(p, 'format') as DataFormatId | undefined, mapping: mapping(p) })
        process.stdout.write(`file: ${r.file}\nkind: ${r.fileKind ?? 'unknown'}\nformat: ${r.format ?? 'unknown'}\nrecords: ${r.records}\n`)
        if (r.problem) {
          process.stdout.write(`problem: ${r.problem}\n`)
          return 1
        }
        process.stdout.write('problem: none\n')
        return 0
      }
      case 'import': {
        const p = parse(rest, ['project', 'split', 'format', 'map'])
        const dir = str(p, 'project')
        if (!dir) throw new UsageError('data import needs --project DIR')
        if (!p.positional.length) throw new UsageError('data import needs at least one FILE')
        const project = openProject(dir)
        try {
          const r = await project.importFiles(p.positional, { split: split(p), format: str(p, 'format') as DataFormatId | undefined, mapping: mapping(p) })
          for (const f of r.files) process.stdout.write(`imported ${f.records} records from ${f.file}\n`)
          process.stdout.write(`project: ${r.counts.total} records (${r.counts.pairs} pairs, ${r.counts.kto} kto, ${r.counts.gold} sft)\n`)
        } finally {
          closeProject(dir)
        }
        return 0
      }
      case 'export': {
        const p = parse(rest, ['project', 'format', 'out', 'split', 'name'])
        const dir = str(p, 'project')
        const format = str(p, 'format') as ExportFormat | undefined
        const out = str(p, 'out')
        if (!dir || !format || !out) throw new UsageError('data export needs --project DIR --format F --out PATH')
        const project = openProject(dir)
        try {
          const r = exportProject(project, { format, out, split: split(p), name: str(p, 'name') })
          for (const f of r.files) process.stdout.write(`wrote ${f.records} ${f.method} records to ${f.path}\n`)
          if (r.datasetInfo) process.stdout.write(`dataset_info: ${r.datasetInfo}\n`)
        } finally {
          closeProject(dir)
        }
        return 0
      }
      case 'decontam': {
        const p = parse(rest, ['project', 'eval', 'ngram', 'threshold', 'near'], ['exclude'])
        const dir = str(p, 'project')
        if (!dir) throw new UsageError('data decontam needs --project DIR')
        const { decontaminate, excludeHits } = await import('../services/data/decontam')
        const project = openProject(dir)
        try {
          const num = (k: string): number | undefined => (str(p, k) === undefined ? undefined : Number(str(p, k)))
          const r = await decontaminate(project, { evalFile: str(p, 'eval'), ngram: num('ngram'), threshold: num('threshold'), nearThreshold: num('near') })
          process.stdout.write(
            `scanned ${r.scanned} records${r.evalFile ? ` against ${r.evalRecords} eval records (${r.ngram}-grams)` : ''}\n` +
              `contaminated: ${r.contaminated.length}\nexact duplicates: ${r.exactDuplicates.length}\nnear duplicates: ${r.nearDuplicates.length}\n`
          )
          for (const h of r.contaminated.slice(0, 20)) process.stdout.write(`  record ${h.recordId}: ${(h.score * 100).toFixed(0)}% of n-grams in eval record ${h.match}: ${h.preview}\n`)
          if (p.flags.get('exclude')) {
            const n = excludeHits(project, r)
            process.stdout.write(`excluded ${n} records\n`)
          }
        } finally {
          closeProject(dir)
        }
        return 0
      }
      case 'generate': {
        // Loaded here so that the other data commands never load the engine's tokenizers.
        const { runGenerate } = await import('./dataGenerate')
        return await runGenerate(rest)
      }
      case undefined:
      case '--help':
      case '-h':
        process.stdout.write(usage)
        return sub ? 0 : 2
      default:
        throw new UsageError(`unknown data command '${sub}'`)
    }
  } catch (e) {
    if (e instanceof UsageError) {
      process.stderr.write(`tunebench data: ${e.message}\n${usage}`)
      return 2
    }
    if (e instanceof DataError) {
      process.stderr.write(`tunebench data: ${e.message}\n`)
      return 1
    }
    throw e
  }
}
