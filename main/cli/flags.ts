// Flags of the commands built on node:util parseArgs: the sampling flags of `tunebench generate`
// and `tunebench data generate` (one per setting of SETTING_SPECS plus the repeatable --stop) and
// their reading into settings; every mistake is a UsageError naming the flag.
import { parseArgs, type ParseArgsConfig } from 'node:util'
import { SETTING_SPECS, settingProblem, type GenerationSettings, type SettingSpec } from '../../preload/types/generationSettings'

/** A mistake on the command line: the command prints it with its usage and exits 2. */
export class UsageError extends Error {}

type FlagValues = Record<string, string | string[] | boolean | undefined>

/** The flags' values (no positionals); an unknown or malformed flag is a UsageError. */
export function parseFlags(argv: string[], options: NonNullable<ParseArgsConfig['options']>): FlagValues {
  try {
    return parseArgs({ args: argv, options }).values as FlagValues
  } catch (err) {
    throw new UsageError((err as Error).message)
  }
}

/** parseArgs options of the settings' flags (all of SETTING_SPECS unless given fewer) and --stop. */
export function samplingFlagOptions(specs: readonly SettingSpec[] = SETTING_SPECS) {
  return {
    ...Object.fromEntries(specs.map((s) => [s.flag, { type: 'string' as const }])),
    stop: { type: 'string' as const, multiple: true as const }
  }
}

/** The settings the flags give (those absent are left to the defaults). */
export function samplingSettings(values: FlagValues, specs: readonly SettingSpec[] = SETTING_SPECS): Partial<GenerationSettings> {
  const settings: Partial<GenerationSettings> = {}
  for (const spec of specs) {
    const raw = values[spec.flag] as string | undefined
    if (raw === undefined) continue
    const n = raw.trim() === '' ? NaN : Number(raw)
    if (settingProblem(spec, n)) throw new UsageError(`--${spec.flag}: expected ${spec.range}, got "${raw}"`)
    settings[spec.key] = n
  }
  const stop = (values.stop as string[] | undefined) ?? []
  if (stop.some((s) => s === '')) throw new UsageError('--stop: a stop string cannot be empty')
  settings.stop = stop
  return settings
}

/** A whole-number flag (--batch-size, --threads, ...), or undefined when absent. */
export function wholeFlag(values: FlagValues, flag: string, min: number): number | undefined {
  const raw = values[flag] as string | undefined
  if (raw === undefined) return undefined
  const n = Number(raw)
  if (raw.trim() === '' || !Number.isInteger(n) || n < min) throw new UsageError(`--${flag}: expected a whole number ≥ ${min}, got "${raw}"`)
  return n
}
