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

/** Runs the child until `stopAt` says so, then SIGKILLs it; returns the lines it printed. */
function runAndKill(args: string[], stopAt: (line: string, n: number) => boolean): Promise<{ lines: string[]; signal: string | null }> {
  return new Promise((resolve, reject) => {
    const proc = spawn(process.execPath, ['--import', 'tsx', child, ...args], { stdio: ['ignore', 'pipe', 'pipe'] })
    const lines: string[] = []
    let stderr = ''
    proc.stderr.on('data', (d) => (stderr += d))
    createInterface({ input: proc.stdout }).on('line', (line) => {
      lines.push(line)
      if (stopAt(line, lines.length)) proc.kill('SIGKILL')
    })
    proc.on('error', reject)
    proc.on('close', (code, signal) => {
      if (signal !== 'SIGKILL') reject(new Error(`child ended with ${code ?? signal} before it was killed: ${stderr}`))
      else resolve({ lines, signal })
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

    const { lines } = await runAndKill(['label', proj], (_line, n) => n === 150)
    const acks = lines.filter((l) => l.startsWith('ack ')).map((l) => l.split(' ').slice(1).map(Number))
    expect(acks.length).toBeGreaterThanOrEqual(150)

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

    const { lines } = await runAndKill(['import', proj, big], (line) => line.startsWith('progress'))
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
