// The main process's one durable write and one liveness check.
import { spawnSync } from 'node:child_process'
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterEach, beforeEach, describe, expect, it } from 'vitest'
import { writeFileAtomic, writeFileAtomicSync } from '../../main/services/fsAtomic'
import { processAlive } from '../../main/services/process'

let dir: string
beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'tunebench-atomic-'))
})
afterEach(() => rmSync(dir, { recursive: true, force: true }))

describe('writeFileAtomic', () => {
  it('replaces the file whole and leaves no temp file, also for writes racing on one file', async () => {
    const file = join(dir, 'state.json')
    await writeFileAtomic(file, 'old')
    await Promise.all(Array.from({ length: 8 }, (_, i) => writeFileAtomic(file, `new ${i}`.repeat(1000))))
    expect(readFileSync(file, 'utf8')).toMatch(/^(new \d)+$/)
    expect(readdirSync(dir)).toEqual(['state.json'])
  })

  it('streams chunks synchronously with the same guarantee, and cleans up when the source throws', () => {
    const file = join(dir, 'out.jsonl')
    expect(writeFileAtomicSync(file, ['a\n', 'b\n'])).toBe(2)
    const failing = (function* () {
      yield 'c\n'
      throw new Error('source broke')
    })()
    expect(() => writeFileAtomicSync(file, failing)).toThrow('source broke')
    expect(readFileSync(file, 'utf8')).toBe('a\nb\n')
    expect(readdirSync(dir)).toEqual(['out.jsonl'])
  })
})

describe('processAlive', () => {
  it('is true for this process and for one owned by another user (EPERM), false for an exited one', () => {
    expect(processAlive(process.pid)).toBe(true)
    // pid 1 always exists; unprivileged, signalling it fails with EPERM, which still means alive.
    expect(processAlive(1)).toBe(true)
    const child = spawnSync(process.execPath, ['-e', 'process.stdout.write(String(process.pid))'], { encoding: 'utf8' })
    expect(processAlive(Number(child.stdout))).toBe(false)
  })
})
