// The bench scripts' command line: `--name value` flags read leniently, since a script also
// passes its own internal flags to the processes it spawns.
export const argv = process.argv.slice(2)

/** The value after `name`, or `dflt` when the flag is absent or has no value. */
export function flag(name: string, dflt: string): string {
  const i = argv.indexOf(name)
  return i >= 0 && argv[i + 1] ? argv[i + 1]! : dflt
}
