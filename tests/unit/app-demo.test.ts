// The bundled demo service: finds resources/ from the sources, lists what is in resources/demo
// at run time (not a fixed list), and names the file of a broken manifest.
import { existsSync, readdirSync } from 'node:fs'
import { cp, mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterEach, describe, expect, it } from 'vitest'
import { demoResources, findResourcesDir } from '../../main/services/app/demo'
import { createServices } from '../../main/services'
import { inspectModelFolder } from '../../main/services/models/inspect'

const root = join(import.meta.dirname, '..', '..')
const scratch: string[] = []
afterEach(async () => {
  await Promise.all(scratch.splice(0).map((d) => rm(d, { recursive: true, force: true })))
})

async function copyOfResources(): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'tunebench-demo-'))
  scratch.push(dir)
  await cp(join(root, 'resources'), join(dir, 'resources'), { recursive: true })
  return join(dir, 'resources')
}

describe('app.demo', () => {
  it('finds the repository resources folder from the sources', () => {
    expect(findResourcesDir({})).toBe(join(root, 'resources'))
    expect(findResourcesDir({ TUNEBENCH_RESOURCES: '/elsewhere/resources' })).toBe('/elsewhere/resources')
  })

  it('gives the demo model folder, which opens as the 4-layer Qwen3, and every dataset file in resources/demo', async () => {
    const demo = await demoResources()
    expect(demo.modelDir).toBe(join(root, 'resources', 'demo-model'))
    const facts = await inspectModelFolder(demo.modelDir)
    expect(facts.architecture).toBe('Qwen3ForCausalLM')
    expect(facts.layers).toBe(4)

    const onDisk = readdirSync(join(root, 'resources', 'demo')).filter((n) => /\.(jsonl|json|parquet)$/.test(n) && n !== 'datasets.json')
    expect(demo.datasets.map((d) => d.name).sort()).toEqual(onDisk.sort())
    for (const name of ['preference.jsonl', 'kto.jsonl', 'sft.jsonl']) {
      const d = demo.datasets.find((x) => x.name === name)
      expect(d, name).toBeDefined()
      expect(existsSync(d!.file)).toBe(true)
      expect(d!.description).not.toBe('')
    }
    // The manifest's order: the pairs first.
    expect(demo.datasets[0]!.name).toBe('preference.jsonl')
  })

  it('is served by the app handlers', async () => {
    const home = await mkdtemp(join(tmpdir(), 'tunebench-demo-home-'))
    scratch.push(home)
    const services = createServices({ dataDir: home, emit: () => {} })
    try {
      expect(await services.handlers['app.demo']()).toEqual(await demoResources())
    } finally {
      await services.close()
    }
  })

  it('lists the files present now: an added file appears, with an empty description when the manifest has none', async () => {
    const resources = await copyOfResources()
    await writeFile(join(resources, 'demo', 'extra.jsonl'), '{"prompt":"a","completion":"b"}\n')
    await writeFile(join(resources, 'demo', 'notes.txt'), 'not a dataset')
    const demo = await demoResources(resources)
    expect(demo.modelDir).toBe(join(resources, 'demo-model'))
    const extra = demo.datasets.find((d) => d.name === 'extra.jsonl')
    expect(extra).toEqual({ name: 'extra.jsonl', file: join(resources, 'demo', 'extra.jsonl'), description: '' })
    expect(demo.datasets.some((d) => d.name === 'notes.txt' || d.name === 'datasets.json')).toBe(false)
  })

  it('names the manifest and the key when the manifest is broken', async () => {
    const resources = await copyOfResources()
    const manifest = join(resources, 'demo', 'datasets.json')
    await writeFile(manifest, '{"sft.jsonl": 3}')
    await expect(demoResources(resources)).rejects.toThrow(`${manifest}: key "sft.jsonl" must be a string description`)
    await writeFile(manifest, '{not json')
    await expect(demoResources(resources)).rejects.toThrow(`${manifest}: not valid JSON`)
  })

  it('says where it looked when there is no demo', async () => {
    await expect(demoResources(null)).rejects.toThrow(/the bundled demo was not found: no resources\/demo-model\/config\.json/)
    const empty = await mkdtemp(join(tmpdir(), 'tunebench-demo-empty-'))
    scratch.push(empty)
    await expect(demoResources(empty)).rejects.toThrow(`${join(empty, 'demo-model', 'config.json')} is missing`)
  })
})
