// bin/tunebench.js picks what to run: the TypeScript source through tsx in a checkout (even
// with an old build in out/), the built out/main/cli.js in an installed package (no tsx).
import { spawnSync } from 'node:child_process'
import { copyFileSync, mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, describe, expect, it } from 'vitest'

const repo = join(import.meta.dirname, '..', '..')
const made: string[] = []
afterAll(() => made.forEach((d) => rmSync(d, { recursive: true, force: true })))

/** A package folder with the real bin script, a source CLI and a built CLI that say which they are. */
function fakePackage(withTsx: boolean): string {
  const root = mkdtempSync(join(tmpdir(), 'tb-bin-'))
  made.push(root)
  for (const d of ['bin', 'main', 'out/main']) mkdirSync(join(root, d), { recursive: true })
  copyFileSync(join(repo, 'bin/tunebench.js'), join(root, 'bin/tunebench.js'))
  writeFileSync(join(root, 'package.json'), JSON.stringify({ name: 'tunebench', type: 'module' }))
  // `satisfies` is TypeScript only: the source answers only when tsx runs it.
  writeFileSync(join(root, 'main/cli.ts'), `const from = 'source' satisfies string\nconsole.log(from, process.argv.slice(2).join(' '))\n`)
  writeFileSync(join(root, 'out/main/cli.js'), `console.log('built', process.argv.slice(2).join(' '))\n`)
  if (withTsx) symlinkSync(join(repo, 'node_modules'), join(root, 'node_modules'), 'dir')
  return root
}

const runBin = (root: string, ...args: string[]) =>
  spawnSync(process.execPath, [join(root, 'bin/tunebench.js'), ...args], { cwd: tmpdir(), encoding: 'utf8' })

describe('bin/tunebench.js', () => {
  it('runs the TypeScript source when tsx resolves, even beside a stale build', () => {
    const r = runBin(fakePackage(true), 'train', 'x.yaml')
    expect(r.stderr).toBe('')
    expect(r.stdout.trim()).toBe('source train x.yaml')
  })

  it('runs out/main/cli.js in an installed package without tsx', () => {
    const r = runBin(fakePackage(false), 'data', 'check')
    expect(r.stdout.trim()).toBe('built data check')
  })

  it('--help of this checkout lists data, train and score', () => {
    const r = runBin(repo, '--help')
    expect(r.status).toBe(0)
    for (const command of ['data', 'train', 'score']) expect(r.stdout).toMatch(new RegExp(`^  ${command}$`, 'm'))
  })
})
