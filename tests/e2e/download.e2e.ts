// Hub download in the real renderer, against a local server in the Hub's URL layout: progress
// events cross the WebSocket and the downloaded model opens with its facts.
import assert from 'node:assert/strict'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, before, describe, it } from 'node:test'
import { startFakeHub, type FakeHub } from '../fixtures/hubServer'
import { writeTinyModel } from '../fixtures/tinyModel'
import { startApp, type AppSession } from './fixture'

describe('Hub download', () => {
  let app: AppSession
  let hub: FakeHub
  let source: string
  before(async () => {
    source = await mkdtemp(join(tmpdir(), 'tunebench-hub-'))
    hub = await startFakeHub({ 'tiny-org/tiny-llama': await writeTinyModel(join(source, 'tiny-llama')) })
    app = await startApp({ env: { HF_ENDPOINT: hub.endpoint } })
  })
  after(async () => {
    await app?.close()
    await hub?.close()
    await rm(source, { recursive: true, force: true })
  })

  it('downloads a model by id, shows the finished progress and the model facts', async () => {
    const { page } = app
    await page.getByLabel('Model id').fill('tiny-org/tiny-llama')
    await page.getByRole('button', { name: 'Download' }).click()
    await page.getByRole('heading', { name: 'tiny-org/tiny-llama' }).waitFor()
    const progress = page.getByRole('progressbar', { name: 'Download progress' })
    assert.equal(await progress.getAttribute('aria-valuenow'), await progress.getAttribute('aria-valuemax'))
    assert.match(await progress.getAttribute('aria-valuetext') ?? '', /^Done: .* in .*tiny-org--tiny-llama$/)
    assert.equal(await page.locator('[data-fact="layers"]').innerText(), '2')
    await app.screenshot('models-download')
    assert.ok(hub.requests.some((r) => r.path === '/api/models/tiny-org/tiny-llama/revision/main'))
  })

  it('shows the Hub\'s answer for an unknown model id', async () => {
    const { page } = app
    await page.getByLabel('Model id').fill('tiny-org/missing')
    await page.getByRole('button', { name: 'Download' }).click()
    const alert = page.getByRole('alert')
    await alert.waitFor()
    assert.match(await alert.innerText(), /Model tiny-org\/missing \(revision main\) not found/)
  })
})
