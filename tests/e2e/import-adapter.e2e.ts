// "Import adapter…" on the Runs page as a person uses it, keyboard first: the dialog opens with
// the folder field focused, Enter imports, a bad folder's error shows in the dialog, Escape
// closes it; the imported adapter is then a run in the history, answers in the Playground next
// to the base model, and is offered on the Export page.
import assert from 'node:assert/strict'
import { join } from 'node:path'
import { after, before, describe, it } from 'node:test'
import { demoModel, writeDemoAdapter } from './adapters'
import { unnamedControls } from './a11y'
import { startApp, type AppSession } from './fixture'

describe('import adapter', () => {
  let app: AppSession
  let adapter: string
  before(async () => {
    app = await startApp()
    adapter = join(app.workDir, 'elsewhere-lora')
    await writeDemoAdapter(adapter)
  })
  after(async () => {
    await app?.close()
  })

  it('imports by keyboard, shows errors in the dialog, and the run chats and exports', async () => {
    const { page } = app
    await page.getByRole('heading', { name: 'demo-model' }).waitFor()
    await page.getByRole('navigation', { name: 'Pages' }).getByRole('link', { name: 'Runs', exact: true }).click()
    await page.getByRole('heading', { name: 'Runs', level: 1 }).waitFor()

    // Opens with the folder field focused; a folder that is not an adapter: the error stays in the dialog.
    await page.getByRole('button', { name: 'Import adapter…' }).click()
    const dialog = page.getByRole('dialog', { name: 'Import an adapter' })
    await dialog.waitFor()
    assert.equal(await page.evaluate(() => document.activeElement?.id), 'import-adapter-dir')
    assert.deepEqual(await unnamedControls(page), [])
    await page.keyboard.type(app.workDir)
    await page.keyboard.press('Enter')
    const error = dialog.getByRole('alert')
    await error.waitFor()
    assert.equal(await error.innerText(), `${app.workDir} is not a PEFT adapter folder: adapter_config.json is missing`)
    await app.screenshot('import-adapter-error')

    // A base model that is not there, named in the optional field.
    await dialog.getByLabel('Adapter folder').fill(adapter)
    await dialog.getByLabel('Base model folder').fill(join(app.workDir, 'no-such-model'))
    await dialog.getByLabel('Base model folder').press('Enter')
    await page.waitForFunction((dir) => document.querySelector('[data-testid="import-adapter-error"]')?.textContent?.includes(`Base model ${dir}: Folder not found`), join(app.workDir, 'no-such-model'))

    // Escape closes it; nothing was imported.
    await page.keyboard.press('Escape')
    await dialog.waitFor({ state: 'detached' })
    assert.equal(await page.getByRole('table', { name: 'Run history' }).count(), 0)

    // Again, with the base from the adapter's own base_model_name_or_path: Enter imports.
    await page.getByRole('button', { name: 'Import adapter…' }).click()
    await dialog.waitFor()
    assert.equal(await dialog.getByRole('alert').count(), 0)
    await dialog.getByLabel('Adapter folder').fill(adapter)
    await dialog.getByLabel('Base model folder').fill('')
    await app.screenshot('import-adapter-dialog')
    await dialog.getByLabel('Adapter folder').press('Enter')
    await dialog.waitFor({ state: 'detached' })
    const result = page.getByTestId('import-adapter-result')
    await result.waitFor()
    assert.match(await result.innerText(), new RegExp(`^Imported elsewhere-lora from ${adapter} \\(base model ${demoModel}\\)`))
    const row = page.getByRole('table', { name: 'Run history' }).getByRole('row').filter({ hasText: 'elsewhere-lora' })
    assert.match(await row.innerText(), /Imported LoRA\s+imported/)
    assert.match(await page.getByTestId('imported-from').innerText(), new RegExp(`imported from ${adapter}`))
    // No progress bar at "100 % · step 0" for a run that had no steps here.
    assert.equal(await page.getByTestId('run-progress').count(), 0)
    await app.screenshot('import-adapter-imported')

    // The Playground: the imported run is a source, and answers.
    await result.getByRole('button', { name: 'Chat with it in the Playground' }).click()
    await page.getByRole('heading', { name: 'Playground', level: 1 }).waitFor()
    const compare = page.getByLabel('Compare with')
    const option = compare.locator('option', { hasText: 'elsewhere-lora' })
    await option.waitFor({ state: 'attached' })
    await compare.selectOption({ label: await option.innerText() })
    await page.getByText('Sampling settings').click()
    await page.getByLabel('max-new-tokens').fill('12')
    await page.getByLabel('temperature').fill('0')
    const box = page.getByRole('textbox', { name: 'Message' })
    await box.fill('Say hello.')
    await box.press('Enter')
    await page.waitForFunction(() => {
      const statuses = [...document.querySelectorAll('article.answer .status')].map((e) => e.textContent ?? '')
      return statuses.length === 2 && statuses.every((t) => !t.includes('writing'))
    })
    for (const status of await page.locator('article.answer .status').allInnerTexts()) assert.match(status, /ended by the model|cut at max new tokens/)
    assert.match(await page.locator('article.answer').nth(1).innerText(), /elsewhere-lora/)

    // The Export page offers it like a trained run.
    await page.getByRole('navigation', { name: 'Pages' }).getByRole('link', { name: 'Export', exact: true }).click()
    const run = page.getByLabel('Run', { exact: true })
    await run.waitFor()
    assert.match(await run.locator('option:checked').innerText(), /^elsewhere-lora — Imported LoRA, finished$/)
    assert.deepEqual(app.pageErrors, [])
  })
})
