// The model library in the real renderer: open a tiny model folder, see its facts; and the
// access token guarding serve mode.
import assert from 'node:assert/strict'
import { writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { after, before, describe, it } from 'node:test'
import { engineFacts } from '../../native/index'
import { writeTinyModel } from '../fixtures/tinyModel'
import { startApp, type AppSession } from './fixture'

describe('Models page', () => {
  let app: AppSession
  before(async () => {
    app = await startApp()
  })
  after(async () => {
    await app?.close()
  })

  it('opens a model folder the test made and shows its facts', async () => {
    const dir = await writeTinyModel(join(app.workDir, 'tiny-llama'))
    const { page } = app
    await page.getByRole('heading', { name: 'Models', level: 1 }).waitFor()
    await page.getByLabel('Folder path').fill(dir)
    await page.getByRole('button', { name: 'Open', exact: true }).click()
    await page.getByRole('heading', { name: 'tiny-llama' }).waitFor()
    const fact = (key: string) => page.locator(`[data-fact="${key}"]`).innerText()
    assert.equal(await fact('architecture'), 'LlamaForCausalLM (llama)')
    assert.equal(await fact('layers'), '2')
    assert.equal(await fact('hidden'), '8')
    assert.equal(await fact('heads'), '2 / 1 (head dim 4)')
    assert.equal(await fact('vocab'), '32')
    assert.match(await fact('dtype'), /^float32 \(tensors: F32\)$/)
    // 32*8 embeddings + 32*8 lm_head + 2 layers * (attention 192 + MLP 384 + norms 16) + final norm 8
    assert.match(await fact('parameters'), /\(1,704\)$/)
    assert.equal(await fact('chatTemplate'), 'present')
    // The folder joins the recent list, and the engine panel shows the addon's own facts.
    await page.getByRole('button', { name: 'tiny-llama', exact: true }).waitFor()
    const engine = engineFacts()
    assert.equal(await page.locator('[data-engine="version"]').innerText(), engine.version)
    assert.equal(await page.locator('[data-engine="blas"]').innerText(), engine.blas)
    // CUDA: what the runtime says (here: no GPU, and why), and that models run on the CPU.
    const cuda = await page.locator('[data-engine="cuda"]').innerText()
    if (!engine.cuda.toolkit) assert.match(cuda, /no CUDA toolkit/)
    else if (engine.cuda.gpus.length === 0) assert.ok(cuda.includes(`no GPU: ${engine.cuda.note}`) && cuda.includes(`runtime ${engine.cuda.runtime}`), cuda)
    else assert.ok(cuda.includes(engine.cuda.gpus[0]!.name), cuda)
    await app.screenshot('models-page')
    assert.deepEqual(app.pageErrors, [])
  })

  it('names the missing file of a broken folder', async () => {
    const dir = await writeTinyModel(join(app.workDir, 'broken'))
    await writeFile(join(dir, 'tokenizer.json'), '{"version": "1.0"}')
    const { page } = app
    await page.getByLabel('Folder path').fill(dir)
    await page.getByRole('button', { name: 'Open', exact: true }).click()
    const alert = page.getByRole('alert')
    await alert.waitFor()
    assert.equal(await alert.innerText(), 'tokenizer.json: field "model" is missing')
  })

  it('keeps working after a reload, with the token gone from the address bar', async () => {
    const { page } = app
    assert.equal(new URL(page.url()).searchParams.get('token'), null)
    await page.reload()
    await page.getByRole('button', { name: 'tiny-llama', exact: true }).click()
    await page.getByRole('heading', { name: 'tiny-llama' }).waitFor()
  })

  it('has the other pages in the navigation', async () => {
    const { page } = app
    for (const name of ['Data', 'Train', 'Runs', 'Export']) {
      await page.getByRole('navigation', { name: 'Pages' }).getByRole('link', { name, exact: true }).click()
      await page.getByRole('heading', { name, level: 1 }).waitFor()
      assert.equal(new URL(page.url()).hash, `#/${name.toLowerCase()}`)
    }
  })
})

describe('serve mode access', () => {
  let app: AppSession
  before(async () => {
    app = await startApp({ open: false })
  })
  after(async () => {
    await app?.close()
  })

  it('refuses requests without the token: the page, and the WebSocket from that origin', async () => {
    const response = await fetch(`${app.origin}/`)
    assert.equal(response.status, 403)
    const page = await app.page.goto(`${app.origin}/`)
    assert.equal(page?.status(), 403)
    // Same origin as the app, but no token in the URL and no cookie yet.
    const refused = await app.page.evaluate(
      (origin) =>
        new Promise<boolean>((resolve) => {
          const socket = new WebSocket(origin.replace('http', 'ws') + '/ws')
          socket.onopen = () => resolve(false)
          socket.onerror = () => resolve(true)
        }),
      app.origin
    )
    assert.equal(refused, true)
  })

  it('serves the app with the token', async () => {
    await app.page.goto(app.url)
    await app.page.getByRole('heading', { name: 'Models', level: 1 }).waitFor()
    await app.page.locator('#engine-title').waitFor()
  })
})
