// The Playground as a person uses it: the demo model answers, side by side with a LoRA adapter
// folder given by path, with the same settings; "This one is better" keeps the two answers as a
// labeled pair of the open project, which the Data page then counts. (Stopping an answer is
// tested on the service: tests/unit/generation.handlers.test.ts.)
import assert from 'node:assert/strict'
import { join } from 'node:path'
import { after, before, describe, it } from 'node:test'
import type { Page } from 'playwright-core'
import { Model } from '../../native/index'
import { encodeSafetensors, readSafetensors } from '../unit/engine-fixture'
import { unnamedControls } from './a11y'
import { repoRoot, startApp, type AppSession } from './fixture'
import { writeFileSync } from 'node:fs'

const demoModel = join(repoRoot, 'resources/demo-model')

/** A PEFT adapter of the demo model whose B is not zero, so that it answers differently. */
async function writeAdapter(dir: string): Promise<void> {
  const m = await Model.load(demoModel, { threads: 1 })
  m.addLora({ rank: 4, alpha: 8, dropout: 0, targets: ['q', 'v', 'down'], rslora: false, seed: 3 })
  await m.saveAdapter(dir, demoModel)
  m.dispose()
  const file = join(dir, 'adapter_model.safetensors')
  const tensors = readSafetensors(file)
  let s = 7
  for (const [name, t] of tensors)
    if (name.includes('lora_B')) for (let i = 0; i < t.data.length; i++) t.data[i] = (((s = (s * 48271) % 2147483647) % 2000) / 1000 - 1) * 0.5
  writeFileSync(file, encodeSafetensors(tensors))
}

async function labeledCount(page: Page): Promise<number> {
  await page.getByRole('navigation', { name: 'Pages' }).getByRole('link', { name: 'Data', exact: true }).click()
  const bar = page.getByRole('progressbar', { name: 'Labeling progress' })
  await bar.waitFor()
  return Number(await bar.getAttribute('aria-valuenow'))
}

describe('playground', () => {
  let app: AppSession
  let adapter: string
  before(async () => {
    app = await startApp()
    adapter = join(app.workDir, 'my-adapter')
    await writeAdapter(adapter)
  })
  after(async () => {
    await app?.close()
  })

  it('answers side by side, streaming, and keeps the better answer as a labeled pair', async () => {
    const { page } = app
    await page.getByRole('heading', { name: 'demo-model' }).waitFor()
    const before = await labeledCount(page)
    await page.getByRole('navigation', { name: 'Pages' }).getByRole('link', { name: 'Playground', exact: true }).click()
    await page.getByRole('heading', { name: 'Playground', level: 1 }).waitFor()
    assert.match(await page.getByLabel('Answers from').locator('option:checked').innerText(), /demo-model \(base\)/)
    await page.getByLabel('Adapter folder').fill(adapter)
    await page.getByRole('button', { name: 'Add', exact: true }).click()
    assert.match(await page.getByLabel('Compare with').locator('option:checked').innerText(), /my-adapter \(adapter\)/)
    await page.getByText('Sampling settings').click()
    await page.getByLabel('max-new-tokens').fill('24')
    await page.getByLabel('temperature').fill('0')
    assert.deepEqual(await unnamedControls(page), [])
    await app.screenshot('playground-empty')

    const box = page.getByRole('textbox', { name: 'Message' })
    await box.fill('Say hello in one word.')
    await box.press('Enter')
    const answers = page.locator('article.answer')
    await page.waitForFunction(() => {
      const statuses = [...document.querySelectorAll('article.answer .status')].map((e) => e.textContent ?? '')
      return statuses.length === 2 && statuses.every((t) => !t.includes('writing'))
    })
    assert.equal(await answers.count(), 2)
    for (let i = 0; i < 2; i++) {
      const status = await answers.nth(i).locator('.status').innerText()
      assert.match(status, /ended by the model|cut at max new tokens/)
      assert.ok((await answers.nth(i).locator('.markdown, p').first().innerText()).length > 0)
    }
    const texts = await Promise.all([0, 1].map((i) => answers.nth(i).innerText()))
    assert.notEqual(texts[0], texts[1], 'the adapter answers differently from the base')
    await app.screenshot('playground-side-by-side')

    await answers.nth(1).getByRole('button', { name: 'This one is better' }).click()
    await page.getByRole('status').getByText(/Kept in default: a pair, my-adapter \(adapter\) chosen/).waitFor()
    assert.equal(await labeledCount(page), before + 1)
    assert.deepEqual(app.pageErrors, [])
  })
})
