// Reading rows out of JSONL, JSON and Parquet files. JSONL streams: lines are cut from raw
// byte chunks and decoded one at a time with a strict UTF-8 decoder, so a multi-gigabyte file
// never sits in memory and a bad byte is reported with its line instead of silently becoming
// U+FFFD (which readline with 'utf8' would do).
import { createReadStream } from 'node:fs'
import { open, stat } from 'node:fs/promises'
import { extname } from 'node:path'
import { DataError } from './errors'

export type SourceKind = 'jsonl' | 'json' | 'parquet'

export interface SourceRow {
  value: unknown
  /** 1-based line (JSONL) or record/row number (JSON array, Parquet). */
  index: number
  kind: SourceKind
  /** Bytes of the file consumed so far (for progress). */
  bytesRead: number
}

/** A single JSONL line (one record) larger than this is refused before it is parsed. */
export const MAX_LINE_BYTES = 64 * 1024 * 1024
/** A JSON array file is parsed whole, so it has a ceiling; JSONL has none. */
export const MAX_JSON_FILE_BYTES = 512 * 1024 * 1024

const decoder = new TextDecoder('utf-8', { fatal: true })

export async function sniffKind(file: string): Promise<SourceKind> {
  const ext = extname(file).toLowerCase()
  if (ext === '.parquet') return 'parquet'
  if (ext === '.jsonl' || ext === '.ndjson') return 'jsonl'
  const head = await readHead(file, 4096)
  if (head.length >= 4 && head.subarray(0, 4).toString('latin1') === 'PAR1') return 'parquet'
  checkEncoding(head, file)
  const text = head.toString('utf8').replace(/^\uFEFF/, '').trimStart()
  if (text.startsWith('[')) return 'json'
  // A pretty-printed single object: read whole, so the error says what the file holds.
  const nl = text.indexOf('\n')
  if (text.startsWith('{') && nl >= 0 && !parses(text.slice(0, nl))) return 'json'
  if (ext === '.json' || text.startsWith('{')) return 'jsonl' // a .json file holding one object per line
  throw new DataError('not a JSON, JSONL or Parquet file (expected .json, .jsonl or .parquet)', { file })
}

function parses(line: string): boolean {
  try {
    JSON.parse(line)
    return true
  } catch {
    return false
  }
}

async function readHead(file: string, n: number): Promise<Buffer> {
  const fh = await open(file, 'r').catch((e: NodeJS.ErrnoException) => {
    throw new DataError(e.code === 'ENOENT' ? 'file not found' : `cannot open: ${e.message}`, { file })
  })
  try {
    const buf = Buffer.alloc(n)
    const { bytesRead } = await fh.read(buf, 0, n, 0)
    return buf.subarray(0, bytesRead)
  } finally {
    await fh.close()
  }
}

/** Refuses UTF-16/UTF-32 files up front: they are the common "wrong encoding" export from Windows tools. */
function checkEncoding(head: Buffer, file: string): void {
  if (head.length >= 2 && ((head[0] === 0xff && head[1] === 0xfe) || (head[0] === 0xfe && head[1] === 0xff)))
    throw new DataError('the file is UTF-16 encoded; save it as UTF-8', { file })
  const probe = head.subarray(0, 64)
  if (probe.length >= 4 && probe.includes(0)) throw new DataError('the file contains NUL bytes (UTF-16 or binary?); expected UTF-8 text', { file })
}

export async function* readRows(file: string, kind?: SourceKind): AsyncGenerator<SourceRow> {
  const k = kind ?? (await sniffKind(file))
  if (k === 'jsonl') yield* readJsonl(file)
  else if (k === 'json') yield* readJsonArray(file)
  else yield* readParquet(file)
}

function decodeLine(buf: Buffer, file: string, line: number): string {
  try {
    return decoder.decode(buf)
  } catch {
    throw new DataError('invalid UTF-8 (the file must be UTF-8 encoded)', { file, line })
  }
}

function parseJson(text: string, file: string, line: number): unknown {
  try {
    return JSON.parse(text)
  } catch (e) {
    throw new DataError(`invalid JSON: ${(e as Error).message}`, { file, line })
  }
}

export async function* readJsonl(file: string): AsyncGenerator<SourceRow> {
  const head = await readHead(file, 4096)
  checkEncoding(head, file)
  const stream = createReadStream(file, { highWaterMark: 1 << 20 })
  let pending: Buffer[] = []
  let pendingBytes = 0
  let line = 0
  let bytesRead = 0
  let first = true
  const emit = (buf: Buffer): SourceRow | null => {
    line++
    if (first) {
      first = false
      if (buf.length >= 3 && buf[0] === 0xef && buf[1] === 0xbb && buf[2] === 0xbf) buf = buf.subarray(3)
    }
    const text = decodeLine(buf, file, line)
    if (text.trim() === '') return null
    return { value: parseJson(text, file, line), index: line, kind: 'jsonl', bytesRead }
  }
  try {
    for await (const chunk of stream as AsyncIterable<Buffer>) {
      bytesRead += chunk.length
      let start = 0
      for (;;) {
        const nl = chunk.indexOf(0x0a, start)
        if (nl < 0) break
        let piece = chunk.subarray(start, nl)
        if (pendingBytes) {
          piece = Buffer.concat([...pending, piece], pendingBytes + piece.length)
          pending = []
          pendingBytes = 0
        }
        if (piece.length > MAX_LINE_BYTES) throw new DataError(`line is longer than ${MAX_LINE_BYTES >> 20} MB`, { file, line: line + 1 })
        const row = emit(piece)
        if (row) yield row
        start = nl + 1
      }
      if (start < chunk.length) {
        pending.push(chunk.subarray(start))
        pendingBytes += chunk.length - start
        // Stop buffering a runaway line early instead of holding gigabytes.
        if (pendingBytes > MAX_LINE_BYTES) throw new DataError(`line is longer than ${MAX_LINE_BYTES >> 20} MB`, { file, line: line + 1 })
      }
    }
    if (pendingBytes) {
      const row = emit(Buffer.concat(pending, pendingBytes))
      if (row) yield row
    }
  } finally {
    stream.destroy()
  }
}

export async function* readJsonArray(file: string): AsyncGenerator<SourceRow> {
  const { size } = await stat(file)
  if (size > MAX_JSON_FILE_BYTES)
    throw new DataError(`a JSON array file over ${MAX_JSON_FILE_BYTES >> 20} MB is read whole; convert it to JSONL (one record per line)`, { file })
  const fh = await open(file, 'r')
  let buf: Buffer
  try {
    buf = await fh.readFile()
  } finally {
    await fh.close()
  }
  checkEncoding(buf.subarray(0, 4096), file)
  let text: string
  try {
    text = decoder.decode(buf)
  } catch {
    // Find the line of the first bad byte so the user can look at it.
    let line = 1
    let start = 0
    for (let i = 0; i <= buf.length; i++) {
      if (i === buf.length || buf[i] === 0x0a) {
        try {
          decoder.decode(buf.subarray(start, i))
        } catch {
          throw new DataError('invalid UTF-8 (the file must be UTF-8 encoded)', { file, line })
        }
        line++
        start = i + 1
      }
    }
    throw new DataError('invalid UTF-8 (the file must be UTF-8 encoded)', { file })
  }
  text = text.replace(/^\uFEFF/, '')
  let value: unknown
  try {
    value = JSON.parse(text)
  } catch (e) {
    const msg = (e as Error).message
    const pos = /position (\d+)/.exec(msg)
    const line = pos ? text.slice(0, Number(pos[1])).split('\n').length : undefined
    throw new DataError(`invalid JSON: ${msg}`, { file, line })
  }
  if (!Array.isArray(value)) {
    const keys = value && typeof value === 'object' ? ` (an object with keys: ${Object.keys(value).slice(0, 10).join(', ')})` : ''
    throw new DataError(`expected a JSON array of records (or JSONL, one record per line); the file holds one JSON value${keys}`, { file })
  }
  for (let i = 0; i < value.length; i++) yield { value: value[i], index: i + 1, kind: 'json', bytesRead: size }
}

export async function* readParquet(file: string): AsyncGenerator<SourceRow> {
  const { asyncBufferFromFile, parquetMetadataAsync, parquetReadObjects } = await import('hyparquet')
  let buffer: Awaited<ReturnType<typeof asyncBufferFromFile>>
  let metadata: Awaited<ReturnType<typeof parquetMetadataAsync>>
  try {
    buffer = await asyncBufferFromFile(file)
    metadata = await parquetMetadataAsync(buffer)
  } catch (e) {
    throw new DataError(`not a readable Parquet file: ${(e as Error).message}`, { file })
  }
  const { size } = await stat(file)
  let rowStart = 0
  // One row group at a time: hyparquet decodes whole row groups, so this bounds memory.
  for (const group of metadata.row_groups) {
    const rowEnd = rowStart + Number(group.num_rows)
    let rows: Record<string, unknown>[]
    try {
      rows = (await parquetReadObjects({ file: buffer, metadata, rowStart, rowEnd })) as Record<string, unknown>[]
    } catch (e) {
      throw new DataError(`cannot decode rows ${rowStart + 1}-${rowEnd}: ${(e as Error).message}`, { file })
    }
    for (let i = 0; i < rows.length; i++) yield { value: normaliseParquetValue(rows[i]), index: rowStart + i + 1, kind: 'parquet', bytesRead: size }
    rowStart = rowEnd
  }
}

/** Parquet gives BigInt for int64 and typed arrays for some lists; make rows look like JSON. */
function normaliseParquetValue(v: unknown): unknown {
  if (typeof v === 'bigint') return Number(v)
  if (Array.isArray(v)) return v.map(normaliseParquetValue)
  if (ArrayBuffer.isView(v) && !(v instanceof DataView)) return Array.from(v as unknown as ArrayLike<number>, normaliseParquetValue)
  if (v instanceof Date) return v.toISOString()
  if (v && typeof v === 'object') {
    const out: Record<string, unknown> = {}
    for (const [k, x] of Object.entries(v)) out[k] = normaliseParquetValue(x)
    return out
  }
  return v
}

function blank(buf: Buffer, start: number, end: number): boolean {
  for (let i = start; i < end; i++) {
    const b = buf[i]
    if (b !== 0x20 && b !== 0x09 && b !== 0x0d) return false
  }
  return true
}

/** Records in a JSONL file (non-blank lines), counted from the bytes without parsing them. */
export async function countJsonlRecords(file: string): Promise<number> {
  let count = 0
  let lineHasText = false
  for await (const chunk of createReadStream(file, { highWaterMark: 1 << 20 }) as AsyncIterable<Buffer>) {
    let start = 0
    for (;;) {
      const nl = chunk.indexOf(0x0a, start)
      const end = nl < 0 ? chunk.length : nl
      if (!lineHasText && !blank(chunk, start, end)) lineHasText = true
      if (nl < 0) break
      if (lineHasText) count++
      lineHasText = false
      start = nl + 1
    }
  }
  return lineHasText ? count + 1 : count
}
