// A first run with no typing: on a fresh app data dir the services open a default project
// holding the bundled demo candidates (imported through the normal import) and the demo
// model; what the user opened last comes back after a restart; a project that exists is
// opened as it is, never imported into again.
import { cp, mkdtemp, readFile, rm } from 'node:fs/promises'
import { existsSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterEach, describe, expect, it } from 'vitest'
import { createServices, type Services } from '../../main/services'
import { DEFAULT_PROJECT } from '../../main/services/data/lastProject'
import { openProject, closeProject } from '../../main/services/data/store'

const root = join(import.meta.dirname, '..', '..')
const demoModel = join(root, 'resources', 'demo-model')
const demoCandidates = join(root, 'resources', 'demo', 'candidates.jsonl')

const scratch: string[] = []
const running: Services[] = []
afterEach(async () => {
  await Promise.all(running.splice(0).map((s) => s.close()))
  await Promise.all(scratch.splice(0).map((d) => rm(d, { recursive: true, force: true })))
})

async function freshHome(): Promise<string> {
  const home = await mkdtemp(join(tmpdir(), 'tb-first-run-'))
  scratch.push(home)
  return home
}

/** One start of the app: its services on this data dir. */
function start(home: string): Services {
  const services = createServices({ dataDir: home, emit: () => {} })
  running.push(services)
  return services
}

async function restart(home: string, services: Services): Promise<Services> {
  await services.close()
  running.splice(running.indexOf(services), 1)
  return start(home)
}

async function demoRows(): Promise<{ prompt: string; completions: { text: string; model: string }[] }[]> {
  return (await readFile(demoCandidates, 'utf8')).trim().split('\n').map((l) => JSON.parse(l))
}

describe('first run', () => {
  it('a fresh data dir opens the default project with the demo candidates, unlabeled, with their sources', async () => {
    const home = await freshHome()
    const h = start(home).handlers
    expect(await h['data.info']()).toBeNull()
    const info = await h['data.openLast']()
    const rows = await demoRows()
    expect(info).toMatchObject({ dir: join(home, DEFAULT_PROJECT), counts: { total: rows.length, unlabeled: rows.length, labeled: 0 } })
    const page = await h['data.list']({ limit: 1000 })
    expect(page.records.map((r) => r.prompt)).toEqual(rows.map((r) => r.prompt))
    expect(page.records.map((r) => r.candidates.map((c) => [c.content, c.source]))).toEqual(rows.map((r) => r.completions.map((c) => [c.text, c.model])))
    // Through the normal import path: the import log names the file and format.
    expect(page.records[0]).toMatchObject({ source: 'candidates.jsonl', sourceIndex: 1, status: 'unlabeled' })
    // The demo model, opened, so it is also the last (and a recent) model.
    expect(await h['models.last']()).toMatchObject({ dir: demoModel, architecture: 'Qwen3ForCausalLM' })
    expect((await h['models.recent']()).map((m) => m.dir)).toEqual([demoModel])
  })

  it('a second start opens the same project with its labels and does not import again', async () => {
    const home = await freshHome()
    let services = start(home)
    const first = await services.handlers['data.openLast']()
    const rec = (await services.handlers['data.list']({ limit: 1 })).records[0]!
    await services.handlers['data.label'](rec.id, { kind: 'pair', chosen: rec.candidates[1]!.id, rejected: rec.candidates[0]!.id })

    services = await restart(home, services)
    const again = await services.handlers['data.openLast']()
    expect(again!.dir).toBe(first!.dir)
    expect(again!.counts).toMatchObject({ total: first!.counts.total, labeled: 1, pairs: 1 })
    expect((await services.handlers['data.get'](rec.id)).pair).toEqual({ chosen: rec.candidates[1]!.id, rejected: rec.candidates[0]!.id })
    // A reload (same services) gets the project they have open.
    expect((await services.handlers['data.openLast']())!.counts.total).toBe(first!.counts.total)
  })

  it('an existing default project is opened as it is: its own records and labels, no demo import', async () => {
    const home = await freshHome()
    const dir = join(home, DEFAULT_PROJECT)
    const own = openProject(dir)
    own.addRecords([{ prompt: 'mine', system: null, candidates: [{ content: 'a' }, { content: 'b' }] }])
    own.setLabel(1, { kind: 'skip' })
    closeProject(dir)
    const h = start(home).handlers
    const info = await h['data.openLast']()
    expect(info).toMatchObject({ dir, counts: { total: 1, skipped: 1 } })
    expect((await h['data.get'](1)).prompt).toBe('mine')
  })

  it('the project opened last comes back after a restart; one whose folder is gone gives the default', async () => {
    const home = await freshHome()
    const other = join(home, 'elsewhere', 'mine')
    let services = start(home)
    await services.handlers['data.open'](other)
    await services.handlers['data.addRecords']([{ prompt: 'p', system: null, candidates: [] }])
    services = await restart(home, services)
    expect(await services.handlers['data.openLast']()).toMatchObject({ dir: other, counts: { total: 1 } })

    services = await restart(home, services)
    await rm(other, { recursive: true })
    expect((await services.handlers['data.openLast']())!.dir).toBe(join(home, DEFAULT_PROJECT))
    // Not made again empty where it was.
    expect(existsSync(other)).toBe(false)
  })

  it('two pages asking at once share one default project and one import', async () => {
    const home = await freshHome()
    const h = start(home).handlers
    const [a, b] = await Promise.all([h['data.openLast'](), h['data.openLast']()])
    expect(a!.counts.total).toBe((await demoRows()).length)
    expect(b!.counts.total).toBe(a!.counts.total)
  })

  it('the model opened last comes back after a restart; a folder that no longer opens says why', async () => {
    const home = await freshHome()
    const copy = join(home, 'models', 'my-llama')
    await cp(demoModel, copy, { recursive: true })
    let services = start(home)
    await services.handlers['models.open'](copy)
    services = await restart(home, services)
    expect(await services.handlers['models.last']()).toMatchObject({ dir: copy })
    // Written atomically in the data dir: the recent list, newest first.
    expect(JSON.parse(await readFile(join(home, 'recent-models.json'), 'utf8'))[0]).toMatchObject({ dir: copy })

    await rm(copy, { recursive: true })
    services = await restart(home, services)
    await expect(services.handlers['models.last']()).rejects.toThrow(/my-llama/)
  })
})
