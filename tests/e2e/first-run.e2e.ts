// A first run with no typing, as a newcomer meets the app: serve mode on a fresh data dir opens
// the demo model and a default project holding the demo candidates; one pair labeled with the
// keyboard, then Start on the Train page with no field typed trains on it to the end, the
// charts drawing the logged step. A reload keeps the project, the model and the label.
import assert from 'node:assert/strict'
import { readFile } from 'node:fs/promises'
import { join } from 'node:path'
import { after, before, describe, it } from 'node:test'
import type { Page } from 'playwright-core'
import { unnamedControls } from './a11y'
import { repoRoot, startApp, type AppSession } from './fixture'

const demoModel = join(repoRoot, 'resources/demo-model')
const demoCandidates = join(repoRoot, 'resources/demo/candidates.jsonl')

async function go(page: Page, name: string): Promise<void> {
  await page.getByRole('navigation', { name: 'Pages' }).getByRole('link', { name, exact: true }).click()
  await page.getByRole('heading', { name, level: 1 }).waitFor()
}

describe('first run with no typing', () => {
  let app: AppSession
  let records = 0
  before(async () => {
    app = await startApp()
    records = (await readFile(demoCandidates, 'utf8')).trim().split('\n').length
  })
  after(async () => {
    await app?.close()
  })

  it('opens on the demo model and a default project holding the demo candidates', async () => {
    const { page } = app
    // The first page: the model opened for the newcomer.
    await page.getByRole('heading', { name: 'demo-model' }).waitFor()
    assert.equal(await page.getByLabel('Folder path').inputValue(), demoModel)
    await app.screenshot('first-run-models')

    await go(page, 'Data')
    const progress = page.getByRole('progressbar', { name: 'Labeling progress' })
    await page.locator(`[role=progressbar][aria-label="Labeling progress"][aria-valuemax="${records}"]`).waitFor()
    assert.equal(await progress.getAttribute('aria-valuenow'), '0')
    assert.equal(await page.getByLabel('Project folder').inputValue(), join(app.dataDir, 'projects', 'default'))
    const list = page.getByRole('complementary', { name: 'Records' })
    assert.equal(await list.locator('li button.unlabeled').count(), records)
    await page.getByRole('article', { name: /^Left answer/ }).waitFor()
    await app.screenshot('first-run-data')
  })

  it('labels a pair with the keyboard, then trains on it with Start and nothing typed', async () => {
    const { page } = app
    await page.keyboard.press('1')
    await page.locator('[role=progressbar][aria-label="Labeling progress"][aria-valuenow="1"]').waitFor()
    await page.getByTestId('counts').getByText(/Ready to train: 1 pairs/).waitFor()

    await go(page, 'Train')
    assert.equal(await page.locator('#cfg-model_name_or_path').inputValue(), demoModel)
    const dataset = join(app.dataDir, 'projects', 'default', 'exports', 'trl-dpo.jsonl')
    assert.equal(await page.locator('#cfg-dataset').inputValue(), dataset)
    assert.match(await page.getByTestId('dataset-filled').innerText(), /The open project's 1 labeled pair for DPO/)
    // LLaMA-Factory's 500 would log nothing here: unset, they follow the run's one step.
    assert.equal((await page.getByTestId('logging_steps-resolved').innerText()).trim(), 'Unset: every step for this run of 1 step.')
    assert.equal((await page.getByTestId('save_steps-resolved').innerText()).trim(), 'Unset: every step for this run of 1 step.')
    const yaml = await page.getByTestId('config-yaml').innerText()
    assert.ok(yaml.includes("# logging_steps: unset, follows the run's length: every step of 1"), yaml)
    assert.equal(await page.getByRole('button', { name: 'use the demo model' }).count(), 0)
    await app.screenshot('first-run-train')

    await page.getByRole('button', { name: 'Start', exact: true }).click()
    await page.getByTestId('run-status').getByText('finished').waitFor({ timeout: 120_000 })
    assert.match((await page.getByRole('progressbar', { name: 'Training progress' }).getAttribute('aria-valuetext')) ?? '', /^100 % · step 1 of 1 · /)
    // The step was logged, so the charts have it.
    await page.locator('[data-chart="loss"][data-points="1"]').waitFor()
    assert.match((await page.locator('[data-chart="loss"]').getAttribute('aria-label')) ?? '', /^Loss chart: loss [\d.]+ at step 1$/)
    // The export written at Start holds the labeled pair.
    const exported = (await readFile(dataset, 'utf8')).trim().split('\n')
    assert.equal(exported.length, 1)
    await page.getByTestId('run-dashboard').scrollIntoViewIfNeeded()
    await app.screenshot('first-run-trained')
    assert.deepEqual(await unnamedControls(page), [])
  })

  it('keeps the project, its label and the model after a reload', async () => {
    const { page } = app
    await page.reload()
    await go(page, 'Data')
    await page.locator(`[role=progressbar][aria-label="Labeling progress"][aria-valuenow="1"][aria-valuemax="${records}"]`).waitFor()
    await go(page, 'Train')
    assert.equal(await page.locator('#cfg-model_name_or_path').inputValue(), demoModel)
    assert.match(await page.locator('#cfg-dataset').inputValue(), /projects\/default\/exports\/trl-dpo\.jsonl$/)
    assert.deepEqual(app.pageErrors, [])
  })
})
