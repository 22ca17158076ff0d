// Prompt-only records in the real renderer: a file of prompts with no answer yet is previewed
// with its count of prompt-only records, imports unlabeled, and the list marks each one.
import assert from 'node:assert/strict'
import { writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { after, before, describe, it } from 'node:test'
import { startApp, type AppSession } from './fixture'

describe('prompt-only import', () => {
  let app: AppSession
  before(async () => {
    app = await startApp()
  })
  after(async () => {
    await app?.close()
  })

  it('previews, imports and lists prompts with no answer yet', async () => {
    const { page } = app
    const file = join(app.workDir, 'prompts.jsonl')
    const rows = [
      { prompt: 'Write a limerick about a cat.' },
      { prompt: [{ role: 'user', content: 'Explain recursion in one line.' }] },
      { prompt: 'Compare two answers', completions: ['a', 'b'] }
    ]
    await writeFile(file, rows.map((r) => JSON.stringify(r)).join('\n') + '\n')
    await page.getByRole('navigation', { name: 'Pages' }).getByRole('link', { name: 'Data', exact: true }).click()
    await page.getByLabel('Project folder').fill(join(app.workDir, 'prompts-project'))
    await page.getByRole('button', { name: 'Open', exact: true }).click()
    await page.getByRole('button', { name: 'Import a dataset…' }).click()
    const dialog = page.getByRole('dialog')
    await dialog.getByLabel('File (JSON, JSONL or Parquet)').fill(file)
    await dialog.getByRole('button', { name: 'Preview' }).click()
    assert.match(await dialog.getByTestId('import-facts').innerText(), /3 records, .* Detected format: candidates/)
    assert.match(await dialog.getByTestId('import-prompt-only').innerText(), /^2 of 3 records are prompt-only: no answer yet\./)
    assert.match(await dialog.getByTestId('import-pairable').innerText(), /^1 of 3 records have two or more answers/)
    await app.screenshot('data-import-prompt-only')
    await dialog.getByRole('button', { name: 'Import', exact: true }).click()
    await dialog.getByTestId('import-result').waitFor()
    await dialog.getByRole('button', { name: 'Done' }).click()
    await page.getByRole('dialog').waitFor({ state: 'detached' })

    const list = page.getByRole('complementary', { name: 'Records' })
    assert.equal(await list.locator('li button.unlabeled').count(), 3)
    assert.equal(await list.getByTestId('prompt-only').count(), 2)
    await page.getByTestId('no-answer').waitFor()
    await app.screenshot('data-page-prompt-only')
    assert.deepEqual(app.pageErrors, [])
  })
})
