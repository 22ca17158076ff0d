// bin/tunebench.js picks what to run: the TypeScript source through tsx in a checkout (even
// with an old build in out/), the built out/main/cli.js in an installed package (no tsx).
import { spawn, spawnSync } from 'node:child_process'
import { request } from 'node:http'
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

describe('bin/tunebench.js signals', () => {
  const get = (url: string) => new Promise<number>((resolve, reject) => {
    request(url, (res) => {
      res.resume()
      res.on('end', () => resolve(res.statusCode!))
    }).on('error', reject).end()
  })

  it('passes SIGTERM sent to the wrapper alone (kill PID) on, so `serve` stops instead of running on', async () => {
    const child = spawn(process.execPath, ['bin/tunebench.js', 'serve', '--port', '0'], {
      cwd: repo, env: { ...process.env, TUNEBENCH_HOME: mkdtempSync(join(tmpdir(), 'tb-bin-sig-')) }, stdio: ['ignore', 'pipe', 'pipe'], detached: true
    })
    let out = ''
    child.stdout.on('data', (d: Buffer) => (out += d.toString()))
    try {
      const deadline = Date.now() + 30_000
      while (!/TUNEBENCH_URL=\S+\n/.test(out)) {
        if (Date.now() > deadline) throw new Error(`serve printed no URL within 30 s:\n${out}`)
        await new Promise((r) => setTimeout(r, 20))
      }
      const url = /TUNEBENCH_URL=(\S+)\n/.exec(out)![1]!
      expect(await get(url)).toBe(200)
      const exited = new Promise<number | null>((r) => child.once('exit', (code) => r(code)))
      child.kill('SIGTERM') // the wrapper only, as `kill PID` does
      expect(await exited).toBe(0) // the CLI shut down cleanly and the wrapper passed its code on
      await expect(get(url)).rejects.toThrow(/ECONNREFUSED/)
    } finally {
      try {
        process.kill(-child.pid!, 'SIGKILL')
      } catch {
        // already gone
      }
    }
  }, 60_000)
})
