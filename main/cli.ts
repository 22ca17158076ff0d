// `tunebench` command line: one subcommand per module under main/cli/, all on the same
// services as the desktop app and serve mode.
type Command = (argv: string[]) => Promise<number>

const commands: Record<string, () => Promise<{ run: Command }>> = {
  // Each entry loads its module lazily so `tunebench data ...` never loads the engine.
  data: () => import('./cli/data'),
  train: () => import('./cli/train'),
  score: () => import('./cli/score'),
  generate: () => import('./cli/generate'),
  export: () => import('./cli/export'),
  serve: () => import('./serve').then((m) => ({ run: m.serve })),
}

const usage = `usage: tunebench <command> [options]

commands:
${Object.keys(commands)
  .map((name) => `  ${name}`)
  .join('\n')}
`

export async function main(argv: string[]): Promise<number> {
  const [name, ...rest] = argv
  if (!name || name === '--help' || name === '-h') {
    process.stdout.write(usage)
    return name ? 0 : 2
  }
  const load = commands[name]
  if (!load) {
    process.stderr.write(`tunebench: unknown command '${name}'\n${usage}`)
    return 2
  }
  const { run } = await load()
  return run(rest)
}

const invokedDirectly = process.argv[1] && /cli\.(ts|js)$/.test(process.argv[1])
if (invokedDirectly) {
  main(process.argv.slice(2)).then(
    (code) => process.exit(code),
    (err: unknown) => {
      process.stderr.write(`tunebench: ${err instanceof Error ? err.message : String(err)}\n`)
      process.exit(1)
    }
  )
}
