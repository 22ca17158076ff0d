// Full and read-only disks: label writes, imports, data exports, runs and their checkpoints, and
// model exports fail with a message naming the file and saying what was kept, and every earlier
// label, checkpoint and file is intact (compared by content hashes). Each case runs in a child
// process with a mount namespace of its own (unshare) where a small tmpfs is the disk: it fills
// it or remounts it read-only without touching the machine's disks. The child is
// tests/unit/fixtures/disk-child.ts; this file checks what it reports.
import { spawn, spawnSync } from 'node:child_process'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { writeDatasets } from './training.fixtures'
import { engineBuilt } from './trainingPython'

const root = join(import.meta.dirname, '..', '..')
const child = join(root, 'tests', 'unit', 'fixtures', 'disk-child.ts')

/** unshare with a user namespace works unprivileged where the kernel allows it; as root a plain
 *  mount namespace is enough. */
function unshareArgs(): string[] | null {
  for (const args of [['--map-root-user', '--mount'], ['--mount']]) {
    if (spawnSync('unshare', [...args, 'sh', '-c', 'mount -t tmpfs -o size=64k tmpfs /tmp'], { stdio: 'ignore' }).status === 0) return args
  }
  return null
}
const unshare = process.platform === 'linux' ? unshareArgs() : null
if (!unshare) console.log('SKIPPED disk tests: no mount namespace (unshare) on this machine')

/** Runs one mode of the child on a fresh tmpfs of `size` (e.g. '2m'); resolves with its report. */
function onSmallDisk(size: string, mode: string, ...args: string[]): Promise<Record<string, any>> {
  const mnt = mkdtempSync(join(tmpdir(), 'tb-disk-'))
  const script = 'mount -t tmpfs -o size="$1" tmpfs "$0" && shift && exec "$@"'
  const argv = [...unshare!, 'sh', '-c', script, mnt, size, process.execPath, '--import', 'tsx', child, mode, mnt, ...args]
  return new Promise((resolveRun, reject) => {
    const p = spawn('unshare', argv, { cwd: root, stdio: ['ignore', 'pipe', 'pipe'] })
    let out = ''
    let err = ''
    p.stdout.on('data', (d) => (out += d))
    p.stderr.on('data', (d) => (err += d))
    p.on('close', (code) => {
      rmSync(mnt, { recursive: true, force: true })
      const last = out.trim().split('\n').pop() ?? ''
      if (code !== 0 || !last.startsWith('{')) reject(new Error(`disk child ${mode} exited ${code}:\n${err}\n${out}`))
      else resolveRun(JSON.parse(last))
    })
  })
}

const failedWith = (pattern: RegExp) => ({ ok: false, message: expect.stringMatching(pattern) })

// In CI the namespace must work (the tests are not skipped there).
describe.runIf((unshare !== null || process.env.CI === 'true') && engineBuilt())('full and read-only disks', () => {
  let dir: string
  let data: Record<string, string>
  beforeAll(() => {
    dir = mkdtempSync(join(tmpdir(), 'tb-disk-data-'))
    data = writeDatasets(dir)
  })
  afterAll(() => rmSync(dir, { recursive: true, force: true }))

  it('labels, records and an import on a full disk: refused with the file named, nothing earlier lost', async () => {
    const r = await onSmallDisk('2m', 'labels', data.sft_messages!)
    const db = /^Disk full while writing \/.*\/project\/tunebench\.db; this change was not saved and everything saved before is intact \(free some space and try again\)$/
    expect(r.labelWrites).toMatchObject(Array(5).fill(failedWith(db)))
    expect(r.undo).toMatchObject(failedWith(db))
    expect(r.addRecords).toMatchObject(failedWith(db))
    expect(r.setSplit).toMatchObject(failedWith(db))
    expect(r.import).toMatchObject(failedWith(/^Disk full while writing \/.*\/project; nothing was imported and the project is unchanged/))
    expect(r.before).toHaveLength(40)
    expect(r.before.filter((x: unknown[]) => x[1] !== null)).toHaveLength(10)
    expect(r.whileFull).toEqual(r.before)
    // A data export over an earlier one: refused by name, the earlier file as it was, no temp file.
    expect(r.dataExport).toMatchObject(failedWith(/^Disk full while writing \/.*\/exports\/pairs\.jsonl; nothing was written under that name and an earlier file there is unchanged/))
    expect(Object.keys(r.exportedBefore)).toEqual(['pairs.jsonl'])
    expect(r.exportedWhileFull).toEqual(r.exportedBefore)
    // No scratch database of the failed import is left holding space.
    expect(r.filesWhileFull).toEqual(['tunebench.db', 'tunebench.db-shm', 'tunebench.db-wal'])
    expect(r.reopened).toEqual(r.before)
    // With space again, the same project takes labels and imports.
    expect(r.afterFree).toEqual([{ ok: true }])
    expect(r.importAfterFree).toEqual({ ok: true })
    expect(r.countAfterFree).toBe(40 + 6)
  })

  it('a read-only disk: the project, a run and an export are refused by name and nothing changes', async () => {
    const r = await onSmallDisk('2m', 'readonly', data.sft_messages!)
    expect(r.open).toMatchObject(failedWith(/^\/.*\/project\/tunebench\.db is on a read-only disk; the project was not opened and its file is unchanged \(choose a folder on a writable disk\)$/))
    expect(r.newProject).toMatchObject(failedWith(/\/another\/tunebench\.db is on a read-only disk; the project was not opened/))
    expect(r.train).toMatchObject({ name: 'TrainingError', ...failedWith(/\/run is on a read-only disk; the run was not started \(choose a folder on a writable disk\)$/) })
    expect(r.export).toMatchObject(failedWith(/\/gguf is on a read-only disk; nothing was written/))
    expect(r.projectFilesAfter).toEqual(r.projectFiles)
    expect(r.entries).toEqual(['project'])
    expect(r.after).toEqual(r.before)
  })

  // keep 0: the next log line fails; keep 64 KiB: the log goes on and the engine's write of the
  // next checkpoint's adapter runs out half way.
  for (const keep of [0, 65536]) {
    it(`a run whose disk fills after checkpoint-1 (${keep} bytes left): stops with the checkpoint named, resumes when space is back`, async () => {
      const r = await onSmallDisk('8m', 'checkpoint', data.sft_messages!, String(keep))
      expect(r.run).toMatchObject({
        name: 'TrainingError',
        ...failedWith(/^Disk full while writing \/.*\/run; the run stopped; checkpoint-1 and the files before it are intact, so it can be resumed from there \(free some space and try again\)$/)
      })
      expect(r.events).toContain('failed')
      expect(Object.keys(r.checkpointAtEvent).sort()).toEqual(['adapter_config.json', 'adapter_model.safetensors', 'trainer_state.json', 'training_state.bin'])
      expect(r.checkpointAfter).toEqual(r.checkpointAtEvent)
      // No half-written checkpoint or temp file is left taking space.
      expect(r.runFiles.filter((f: string) => f.includes('.tmp') || f.split('/').some((part) => part.startsWith('.')))).toEqual([])
      expect(r.resume).toEqual({ ok: true })
      expect(r.steps).toEqual([1, 2, 3, 4])
    })
  }

  it('an export the disk runs out under, and one without room: nothing under a final name, files there kept', async () => {
    const r = await onSmallDisk('8m', 'export', data.sft_messages!)
    expect(r.midway).toMatchObject(failedWith(/^Disk full while writing \/.*\/gguf\/model\.gguf; nothing was written under that name \(free some space and try again\)$/))
    expect(Object.keys(r.afterMidway)).toEqual(['notes.txt'])
    expect(r.upFront).toMatchObject(failedWith(/^Not enough disk space in \/.*\/gguf: the export needs 3\.\d MiB and 0\.0 MiB is free$/))
    expect(r.afterUpFront).toEqual(r.afterMidway)
    expect(r.afterFree).toEqual({ ok: true })
    expect(r.finalFiles).toEqual(['model.gguf', 'notes.txt'])
  })
})
