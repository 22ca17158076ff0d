// Data store benchmark: import of 100k records (records/s) and label-write latency (p50/p99)
// with the store at 100k records. Each figure is printed beside a peer measured in the same
// run on the same disk, so the ratio means something on any machine:
//   import  vs  reading and JSON-parsing the same file (the floor of any importer)
//   label   vs  a bare one-row INSERT commit with the same WAL + synchronous=FULL (the fsync floor)
// Run: node --import tsx bench/data-bench.ts [records]
import Database from 'better-sqlite3'
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { readRows } from '../main/services/data/sources'
import { Project } from '../main/services/data/store'

const N = Number(process.argv[2] ?? 100_000)
const LABELS = 2000

function pct(sorted: number[], q: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))]
}

const dir = mkdtempSync(join(tmpdir(), 'tb-data-bench-'))
try {
  const file = join(dir, 'prefs.jsonl')
  const words = 'the quick brown fox jumps over a lazy dog while seven wizards quietly judge boxing matches'.split(' ')
  const text = (i: number, n: number) => Array.from({ length: n }, (_, k) => words[(i * 7 + k * 3) % words.length]).join(' ')
  const lines: string[] = []
  for (let i = 0; i < N; i++) lines.push(JSON.stringify({ prompt: `${i}: ${text(i, 30)}?`, chosen: text(i + 1, 60), rejected: text(i + 2, 50) }))
  writeFileSync(file, lines.join('\n') + '\n')
  lines.length = 0

  let t = performance.now()
  let parsed = 0
  for await (const _ of readRows(file)) parsed++
  const parseS = (performance.now() - t) / 1000

  const project = new Project(join(dir, 'proj'))
  t = performance.now()
  const res = await project.importFiles([file])
  const importS = (performance.now() - t) / 1000
  if (res.records !== N || parsed !== N) throw new Error(`expected ${N} records, imported ${res.records}, parsed ${parsed}`)

  // Peer: the bare durable commit on the same disk, interleaved with the label writes so
  // both see the same disk contention (fsync time swings with what else the machine writes).
  const peer = new Database(join(dir, 'peer.db'))
  peer.pragma('journal_mode = WAL')
  peer.pragma('synchronous = FULL')
  peer.exec('CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT)')
  const ins = peer.prepare('INSERT INTO t (v) VALUES (?)')

  // Label writes at random records, alternating actions as a labeler would.
  project.counts()
  const lat: number[] = []
  const base: number[] = []
  let seed = 12345
  const rand = () => ((seed = (Math.imul(seed, 1103515245) + 12345) >>> 0) / 2 ** 32)
  for (let i = 0; i < LABELS; i++) {
    const id = 1 + Math.floor(rand() * N)
    const c1 = 2 * id - 1
    const c2 = 2 * id
    const action = i % 3 === 0 ? { kind: 'skip' as const } : i % 3 === 1 ? { kind: 'pair' as const, chosen: c2, rejected: c1 } : { kind: 'kto' as const, candidate: c1, desirable: true }
    let s = performance.now()
    // What data.label does: the write, then the counts the UI shows.
    project.setLabel(id, action)
    project.counts()
    lat.push(performance.now() - s)
    s = performance.now()
    ins.run('x')
    base.push(performance.now() - s)
  }
  project.close()
  peer.close()

  lat.sort((a, b) => a - b)
  base.sort((a, b) => a - b)
  const f = (x: number) => x.toFixed(3)
  console.log(`records: ${N} (${(res.records / 1).toLocaleString('en')} pairs)`)
  console.log(`import: ${importS.toFixed(2)} s, ${Math.round(N / importS).toLocaleString('en')} records/s`)
  console.log(`  peer (read + JSON.parse only): ${parseS.toFixed(2)} s, ${Math.round(N / parseS).toLocaleString('en')} records/s; import/parse time ratio ${(importS / parseS).toFixed(2)}`)
  console.log(`label write at ${N} records (${LABELS} writes): p50 ${f(pct(lat, 0.5))} ms, p99 ${f(pct(lat, 0.99))} ms, max ${f(lat[lat.length - 1])} ms`)
  console.log(`  peer (bare INSERT commit, WAL + synchronous=FULL): p50 ${f(pct(base, 0.5))} ms, p99 ${f(pct(base, 0.99))} ms; label/peer p50 ratio ${(pct(lat, 0.5) / pct(base, 0.5)).toFixed(2)}`)
  console.log(`target p99 < 5 ms: ${pct(lat, 0.99) < 5 ? 'met' : 'NOT met'}`)
} finally {
  rmSync(dir, { recursive: true, force: true })
}
