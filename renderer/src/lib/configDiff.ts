// The config difference between two runs, in the order of the config schema so that related
// keys sit together.
import { trainingConfigSchema } from '../../../preload/types/trainingSchema'

export interface ConfigDiffRow {
  key: string
  left: unknown
  right: unknown
}

const schemaOrder = new Map(trainingConfigSchema.map((s, i) => [s.name, i]))

function same(a: unknown, b: unknown): boolean {
  return JSON.stringify(a ?? null) === JSON.stringify(b ?? null)
}

/** Keys whose values differ (a key missing on one side counts as null). */
export function diffConfigs(left: Record<string, unknown>, right: Record<string, unknown>): ConfigDiffRow[] {
  const keys = [...new Set([...Object.keys(left), ...Object.keys(right)])]
  keys.sort((a, b) => (schemaOrder.get(a) ?? Infinity) - (schemaOrder.get(b) ?? Infinity) || a.localeCompare(b))
  return keys.filter((k) => !same(left[k], right[k])).map((k) => ({ key: k, left: left[k] ?? null, right: right[k] ?? null }))
}

/** A config value as the YAML file writes it. */
export function formatConfigValue(value: unknown): string {
  if (value === null || value === undefined) return '(unset)'
  if (Array.isArray(value)) return value.join(',')
  return String(value)
}
