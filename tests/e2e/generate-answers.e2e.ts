// "Generate answers…" as a person uses it: prompt-only records imported into the default
// project, the dialog opened with the demo model ticked, K = 2, Enter starts; the progress bar
// counts records and answers with an ETA, Escape cancels (the answers written stay), Start
// again completes the rest, and the answers show in the labeling view as a pair to judge.
import assert from 'node:assert/strict'
import { writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { after, before, describe, it } from 'node:test'
import { unnamedControls } from './a11y'
import { startApp, type AppSession } from './fixture'

const PROMPTS = 40

describe('generate answers', () => {
  let app: AppSession
  before(async () => {
    app = await startApp()
  })
  after(async () => {
    await app?.close()
  })

  it('fills prompt-only records with the demo model\'s answers, with progress, cancel and a rerun', async () => {
    const { page } = app
    await page.getByRole('heading', { name: 'demo-model' }).waitFor()
    const file = join(app.workDir, 'prompts.jsonl')
    await writeFile(file, Array.from({ length: PROMPTS }, (_, i) => JSON.stringify({ prompt: `What is the capital of Italy? (${i})` })).join('\n') + '\n')

    await page.getByRole('navigation', { name: 'Pages' }).getByRole('link', { name: 'Data', exact: true }).click()
    await page.getByRole('button', { name: 'Import…' }).click()
    let dialog = page.getByRole('dialog')
    await dialog.getByLabel('File (JSON, JSONL or Parquet)').fill(file)
    await dialog.getByRole('button', { name: 'Preview' }).click()
    await dialog.getByTestId('import-prompt-only').waitFor()
    await dialog.getByRole('button', { name: 'Import', exact: true }).click()
    await dialog.getByTestId('import-result').waitFor()
    await dialog.getByRole('button', { name: 'Done' }).click()
    await page.getByRole('dialog').waitFor({ state: 'detached' })
    const list = page.getByRole('complementary', { name: 'Records' })
    assert.equal(await list.getByTestId('prompt-only').count(), PROMPTS)

    await page.getByRole('button', { name: 'Generate answers…' }).click()
    dialog = page.getByRole('dialog', { name: 'Generate answers' })
    const demo = dialog.getByRole('checkbox', { name: /demo-model \(base\)/ })
    assert.equal(await demo.isChecked(), true)
    await dialog.getByTestId('generate-plan').getByText(`Will write ${2 * PROMPTS} answers to ${PROMPTS} of ${PROMPTS} records.`).waitFor()
    // Long, hot answers first, so that the run lasts long enough to watch and cancel.
    await dialog.getByText('Sampling settings').click()
    await dialog.getByLabel('max-new-tokens').fill('2000')
    await dialog.getByLabel('temperature').fill('3')
    assert.deepEqual(await unnamedControls(page), [])
    await app.screenshot('generate-answers-form')

    await dialog.getByLabel('Answers per prompt (K)').fill('2')
    await dialog.getByLabel('Answers per prompt (K)').press('Enter')
    const bar = dialog.getByRole('progressbar', { name: 'Generation progress' })
    await bar.waitFor()
    await dialog.getByTestId('generate-progress').getByText(/written · elapsed .* · ETA /).waitFor()
    assert.match(await dialog.getByTestId('generate-progress').innerText(), new RegExp(`\\d+ of ${PROMPTS} records done · \\d+ of ${2 * PROMPTS} answers written`))
    assert.match(await dialog.getByTestId('generate-source').innerText(), /Answering: demo-model/)
    await app.screenshot('generate-answers-progress')

    await page.keyboard.press('Escape')
    const result = dialog.getByTestId('generate-result')
    await result.getByText(/^Cancelled\. The \d+ answers? written are kept/).waitFor()
    const kept = Number(/(\d+) answers?/.exec(await result.innerText())![1])
    assert.ok(kept > 0 && kept < 2 * PROMPTS, `kept ${kept}`)
    await app.screenshot('generate-answers-cancelled')

    await dialog.getByRole('button', { name: 'Generate more…' }).click()
    await dialog.getByText('Sampling settings').click()
    await dialog.getByLabel('max-new-tokens').fill('48')
    await dialog.getByLabel('temperature').fill('1')
    await dialog.getByTestId('generate-plan').getByText(`Will write ${2 * PROMPTS - kept} answers`).waitFor()
    await dialog.getByRole('button', { name: 'Start (Enter)' }).click()
    await result.getByText(`Wrote ${2 * PROMPTS - kept} answers`).waitFor({ timeout: 60_000 })
    await app.screenshot('generate-answers-done')
    await dialog.getByRole('button', { name: 'Done' }).click()
    await page.getByRole('dialog').waitFor({ state: 'detached' })

    assert.equal(await list.getByTestId('prompt-only').count(), 0)
    // The last record: answered by the second run, with the usual settings.
    await page.getByLabel('Search').fill(`capital of Italy? (${PROMPTS - 1})`)
    await list.getByTestId('list-total').getByText('1 matching').waitFor()
    await list.getByText(`What is the capital of Italy? (${PROMPTS - 1})`).click()
    await page.getByRole('article', { name: /^Left answer/ }).waitFor()
    await page.getByRole('article', { name: /^Right answer/ }).waitFor()
    await app.screenshot('generate-answers-labeling')

    // Again: every record holds its two answers, so nothing is left to generate.
    await page.getByRole('button', { name: 'Generate answers…' }).click()
    await dialog.getByTestId('generate-plan').getByText(/No prompt-only records here|already hold 2/).waitFor()
    assert.equal(await dialog.getByRole('button', { name: 'Start (Enter)' }).isDisabled(), true)
    await page.keyboard.press('Escape')
    await page.getByRole('dialog').waitFor({ state: 'detached' })
    assert.deepEqual(app.pageErrors, [])
  })
})
