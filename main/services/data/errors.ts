// One error type for everything that reads user data, so every message names the file and,
// where known, the line (JSONL/JSON) or row (Parquet) and the field.
export interface DataErrorWhere {
  file?: string
  /** 1-based line of a JSONL file or of the JSON text. */
  line?: number
  /** 1-based record of a JSON array or row of a Parquet file. */
  row?: number
  field?: string
}

export class DataError extends Error {
  readonly where: DataErrorWhere
  readonly reason: string
  constructor(reason: string, where: DataErrorWhere = {}) {
    super(formatWhere(where) + reason)
    this.name = 'DataError'
    this.reason = reason
    this.where = where
  }
  /** The same error with more of the location filled in (inner code knows the field, outer the line). */
  at(where: DataErrorWhere): DataError {
    return new DataError(this.reason, { ...where, ...stripUndefined(this.where) })
  }
}

function stripUndefined(w: DataErrorWhere): DataErrorWhere {
  const out: DataErrorWhere = {}
  for (const [k, v] of Object.entries(w)) if (v !== undefined) (out as Record<string, unknown>)[k] = v
  return out
}

function formatWhere(w: DataErrorWhere): string {
  const parts: string[] = []
  if (w.file) parts.push(w.file)
  if (w.line !== undefined) parts.push(`line ${w.line}`)
  if (w.row !== undefined) parts.push(`row ${w.row}`)
  if (w.field !== undefined) parts.push(`field '${w.field}'`)
  return parts.length ? parts.join(': ') + ': ' : ''
}
