// The bundled demo in the real renderer: the demo model opens from the Models page with one
// click, the Train page is filled with it and offers it again when the field is emptied, and
// a demo dataset is imported into a new project from the import dialog's demo choice.
import assert from 'node:assert/strict'
import { readdir, readFile } from 'node:fs/promises'
import { join } from 'node:path'
import { after, before, describe, it } from 'node:test'
import { unnamedControls } from './a11y'
import { repoRoot, startApp, type AppSession } from './fixture'

const demoModel = join(repoRoot, 'resources/demo-model')
const demoDir = join(repoRoot, 'resources/demo')

describe('bundled demo', () => {
  let app: AppSession
  before(async () => {
    app = await startApp()
  })
  after(async () => {
    await app?.close()
  })

  const goTo = async (name: string) => {
    await app.page.getByRole('navigation', { name: 'Pages' }).getByRole('link', { name, exact: true }).click()
    await app.page.getByRole('heading', { name, level: 1 }).waitFor()
  }

  it('opens the demo model from the Models page with one click', async () => {
    const { page } = app
    await page.getByRole('heading', { name: 'Models', level: 1 }).waitFor()
    await page.getByRole('button', { name: 'Open the demo model' }).click()
    await page.getByRole('heading', { name: 'demo-model' }).waitFor()
    const fact = (key: string) => page.locator(`[data-fact="${key}"]`).innerText()
    assert.equal(await fact('architecture'), 'Qwen3ForCausalLM (qwen3)')
    assert.equal(await fact('layers'), '4')
    assert.equal(await fact('chatTemplate'), 'present')
    assert.equal(await page.getByLabel('Folder path').inputValue(), demoModel)
    // The same open flow as a typed folder: it joins the recent models.
    await page.getByRole('button', { name: 'demo-model', exact: true }).waitFor()
    assert.deepEqual(await unnamedControls(page), [])
    await app.screenshot('demo-model-opened')
  })

  it('fills the Train page with the open model, and offers the demo model while the field is empty', async () => {
    const { page } = app
    await goTo('Train')
    const modelField = page.locator('#cfg-model_name_or_path')
    assert.equal(await modelField.inputValue(), demoModel)
    const offer = page.getByRole('button', { name: 'use the demo model' })
    assert.equal(await offer.count(), 0)
    // Emptying the field brings the offer, which fills it again.
    await modelField.fill('')
    await offer.click()
    assert.equal(await modelField.inputValue(), demoModel)
    await offer.waitFor({ state: 'detached' })
  })

  it('imports a demo dataset into a new project from the import dialog', async () => {
    const { page } = app
    await goTo('Data')
    await page.getByLabel('Project folder').fill(join(app.workDir, 'demo-project'))
    await page.getByRole('button', { name: 'Open', exact: true }).click()
    await page.getByRole('button', { name: 'Import a dataset…' }).click()
    const dialog = page.getByRole('dialog')
    const choice = dialog.getByLabel('Or a bundled demo dataset')
    // Every dataset file in resources/demo is offered, by its path.
    const offered = await choice.locator('option').evaluateAll((options) =>
      options.map((o) => (o as HTMLOptionElement).value).filter((v) => v !== '')
    )
    const onDisk = (await readdir(demoDir)).filter((n) => /\.(jsonl|json|parquet)$/.test(n) && n !== 'datasets.json')
    assert.deepEqual([...offered].sort(), onDisk.map((n) => join(demoDir, n)).sort())

    const file = join(demoDir, 'kto.jsonl')
    const records = (await readFile(file, 'utf8')).trim().split('\n').length
    await choice.selectOption(file)
    assert.equal(await dialog.getByLabel('File (JSON, JSONL or Parquet)').inputValue(), file)
    const facts = dialog.getByTestId('import-facts')
    await facts.getByText(new RegExp(`^JSONL, ${records} records, columns: prompt, completion, label\\. Detected format: `)).waitFor()
    await app.screenshot('demo-dataset-preview')
    await dialog.getByRole('button', { name: 'Import', exact: true }).click()
    assert.match(await dialog.getByTestId('import-result').innerText(), new RegExp(`^Imported ${records} records\\. The project now holds ${records}\\.`))
    await dialog.getByRole('button', { name: 'Done' }).click()
    await page.getByRole('dialog').waitFor({ state: 'detached' })
    assert.equal(await page.getByRole('progressbar', { name: 'Labeling progress' }).getAttribute('aria-valuemax'), String(records))
    await app.screenshot('demo-dataset-imported')
    assert.deepEqual(app.pageErrors, [])
  })
})
