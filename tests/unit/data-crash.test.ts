// kill -9 during labeling and during an import: the store reopens consistent, with every
// acknowledged label present and a killed import leaving nothing behind.
import { spawn } from 'node:child_process'
import { readdirSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { createInterface } from 'node:readline'
import { afterEach, describe, expect, it } from 'vitest'
import { Project } from '../../main/services/data/store'
import { dump, tempDir } from './data-helpers'

const child = join(__dirname, 'fixtures', 'data-child.ts')
let cleanups: (() => void)[] = []
afterEach(() => {
  for (const c of cleanups) c()
  cleanups = []
})

interface Killed {
  /** Every line the child printed, those read after the kill included. */
  lines: string[]
  /** How many lines had been read when the kill was sent. */
  killedAfter: number
}

/**
 * Runs the child until `stopAt` says a line is the point of interest, then waits for one more
 * line that `working` accepts (the child still at work after that point: alive when killed),
 * and SIGKILLs it. Rejects unless the kill was delivered (process.kill returned true) and the
 * child ended by that signal, not by an exit of its own; and when the whole exchange takes
 * longer than `limitMs` (the child is then killed too).
 */
function runAndKill(args: string[], stopAt: (line: string, n: number) => boolean, working: (line: string) => boolean, limitMs = 30_000): Promise<Killed> {
  return new Promise((resolve, reject) => {
    const proc = spawn(process.execPath, ['--import', 'tsx', child, ...args], { stdio: ['ignore', 'pipe', 'pipe'] })
    const lines: string[] = []
    let stderr = ''
    let pointAt = 0
    let killedAfter = 0
    /** Fails the test; the child, if still there, is not left running. */
    const fail = (message: string) => {
      if (proc.exitCode === null && proc.signalCode === null) proc.kill('SIGKILL')
      reject(new Error(message))
    }
    const timer = setTimeout(
      () => fail(`no kill within ${limitMs} ms: ${lines.length} lines, point of interest at line ${pointAt || 'never'}; last line ${JSON.stringify(lines.at(-1))}`),
      limitMs
    )
    proc.stderr.on('data', (d) => (stderr += d))
    createInterface({ input: proc.stdout }).on('line', (line) => {
      lines.push(line)
      if (killedAfter) return
      if (!pointAt) {
        if (stopAt(line, lines.length)) pointAt = lines.length
        return
      }
      if (!working(line)) return fail(`after the point of interest (line ${pointAt}) the child printed ${JSON.stringify(line)}, not a sign of work in progress`)
      killedAfter = lines.length
      if (!proc.kill('SIGKILL')) fail(`process.kill did not deliver SIGKILL to the child (pid ${proc.pid}) after line ${killedAfter}`)
    })
    proc.on('error', reject)
    proc.on('close', (code, signal) => {
      clearTimeout(timer)
      if (!killedAfter) reject(new Error(`child ended with ${code ?? signal} before it was killed (${lines.length} lines, point of interest at line ${pointAt || 'never'}): ${stderr}`))
      else if (signal !== 'SIGKILL' || code !== null) reject(new Error(`child was sent SIGKILL but ended with code ${code}, signal ${signal}: ${stderr}`))
      else resolve({ lines, killedAfter })
    })
  })
}

function integrity(p: Project): string {
  return p.db.pragma('integrity_check', { simple: true }) as string
}

describe('SIGKILL', () => {
  it('during labeling loses no acknowledged label', async () => {
    const { dir, cleanup } = tempDir()
    cleanups.push(cleanup)
    const proj = join(dir, 'proj')
    const p = new Project(proj)
    p.addRecords(Array.from({ length: 3000 }, (_, i) => ({ prompt: `q${i}`, system: null, candidates: [{ content: 'a' }, { content: 'b' }] })))
    p.close()

    // Killed once it has acknowledged a 151st label after the 150th: still labeling.
    const { lines, killedAfter } = await runAndKill(['label', proj], (_line, n) => n === 150, (line) => line.startsWith('ack '))
    expect(killedAfter).toBe(151)
    expect(lines).not.toContain('done')
    const acks = lines.filter((l) => l.startsWith('ack ')).map((l) => l.split(' ').slice(1).map(Number))
    expect(acks.length).toBeGreaterThanOrEqual(151)
    expect(acks.length).toBeLessThan(3000)

    const q = new Project(proj)
    expect(integrity(q)).toBe('ok')
    for (const [id, chosen, rejected] of acks) expect(q.getRecord(id).pair).toEqual({ chosen, rejected })
    // Consistent: every labeled record has its history row, and labels form a prefix of the ids.
    const labeled = q.listRecords({ status: 'labeled', limit: 1000 })
    const history = q.db.prepare('SELECT COUNT(*) AS n FROM label_history').get() as { n: number }
    expect(history.n).toBe(labeled.total)
    expect(labeled.records.map((r) => r.id)).toEqual(Array.from({ length: labeled.total }, (_, i) => i + 1))
    // The store still works after the crash: undo takes back the last label written.
    expect(q.undo()?.id).toBe(labeled.total)
    q.close()
  })

  it('during an import leaves the project as it was', async () => {
    const { dir, cleanup } = tempDir()
    cleanups.push(cleanup)
    const proj = join(dir, 'proj')
    const p = new Project(proj)
    p.addRecords([{ prompt: 'kept', system: null, candidates: [{ content: 'a' }, { content: 'b' }] }])
    p.setLabel(1, { kind: 'pair', chosen: 1, rejected: 2 })
    const before = dump(p)
    p.close()

    const big = join(dir, 'big.jsonl')
    const rows: string[] = []
    for (let i = 0; i < 30_000; i++) rows.push(JSON.stringify({ prompt: `prompt ${i}`, chosen: `chosen ${i}`, rejected: `rejected ${i}` }))
    writeFileSync(big, rows.join('\n') + '\n')

    // Killed once a second batch is staged after the first: still reading the file.
    const staging = (line: string) => /^progress \d+$/.test(line) && Number(line.split(' ')[1]) < 30_000
    const { lines, killedAfter } = await runAndKill(['import', proj, big], staging, staging)
    expect(killedAfter).toBe(2)
    expect(lines).not.toContain('done')
    // The killed import's scratch database is still there ...
    expect(readdirSync(proj).some((f) => f.startsWith('.import-'))).toBe(true)

    const q = new Project(proj)
    expect(integrity(q)).toBe('ok')
    expect(dump(q)).toBe(before)
    // ... and is cleared when the project is opened again.
    expect(readdirSync(proj).some((f) => f.startsWith('.import-'))).toBe(false)
    // A later import of the same file goes through.
    await q.importFiles([big])
    expect(q.counts().total).toBe(30_001)
    q.close()
  })
})
