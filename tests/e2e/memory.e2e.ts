// The memory estimate in the real renderer through serve mode: the Train page shows the run's
// planned memory against the free memory as the form changes, with its breakdown, and warns
// (naming what to change) when it does not fit; Start is then refused with the estimate. The
// Models page shows each model's memory to chat and to train LoRA. The server's free memory is
// faked with TUNEBENCH_MEMORY_AVAILABLE so that the test decides what fits.
import assert from 'node:assert/strict'
import { existsSync } from 'node:fs'
import { join } from 'node:path'
import { after, before, describe, it } from 'node:test'
import type { Page } from 'playwright-core'
import { repoRoot, startApp, type AppSession } from './fixture'

const demoModel = join(repoRoot, 'resources/demo-model')

async function go(page: Page, name: string): Promise<void> {
  await page.getByRole('navigation', { name: 'Pages' }).getByRole('link', { name, exact: true }).click()
  await page.getByRole('heading', { name, level: 1 }).waitFor()
}

/** The estimate's line once it says `pattern`. */
async function estimate(page: Page, pattern: RegExp): Promise<string> {
  const line = page.getByTestId('memory-estimate').locator('summary')
  const end = Date.now() + 15_000
  for (;;) {
    const text = ((await line.innerText().catch(() => '')) ?? '').trim()
    if (pattern.test(text)) return text
    if (Date.now() > end) throw new Error(`the memory estimate says "${text}", not ${pattern}`)
    await page.waitForTimeout(100)
  }
}

describe('memory estimate', () => {
  let app: AppSession
  before(async () => {
    app = await startApp({ env: { TUNEBENCH_MEMORY_AVAILABLE: '1G' } })
  })
  after(async () => {
    await app?.close()
  })

  it('the Train page shows the run\'s memory as the form changes, and warns with what to change when it does not fit', async () => {
    const { page } = app
    await go(page, 'Train')
    await page.locator('#cfg-model_name_or_path').fill(demoModel)
    await page.locator('#cfg-per_device_train_batch_size').fill('2')
    await page.locator('#cfg-cutoff_len').fill('512')
    const small = await estimate(page, /^Memory: about [\d.]+ [kMG]B of 1\.1 GB free$/)
    const box = page.getByTestId('memory-estimate')
    assert.equal(await box.getAttribute('data-fits'), 'yes')
    // The breakdown opens on click and names each part.
    await box.locator('summary').click()
    for (const key of ['weights', 'packed', 'trainable', 'activations', 'runtime'])
      assert.match(await box.locator(`[data-memory="${key}"]`).innerText(), /^[\d.]+ [kMG]B$/, key)
    await app.screenshot('memory-train-fits')

    // A run far larger than the (faked) free memory: warning, and the changes that would help.
    await page.locator('#cfg-per_device_train_batch_size').fill('64')
    await page.locator('#cfg-cutoff_len').fill('4096')
    await page.locator('#cfg-disable_gradient_checkpointing').check()
    const large = await estimate(page, /^Memory: about [\d.]+ GB of 1\.1 GB free$/)
    assert.notEqual(large, small)
    assert.equal(await box.getAttribute('data-fits'), 'no')
    const advice = await page.getByTestId('memory-advice').innerText()
    assert.match(advice, /Does not fit/)
    assert.match(advice, /per_device_train_batch_size 64 → 32/)
    assert.match(advice, /cutoff_len 4096 → 2048/)
    assert.match(advice, /gradient checkpointing on/)
    await app.screenshot('memory-train-too-large')

    // Start is refused by main with the same estimate; no run folder appears.
    await page.locator('#cfg-dataset').fill(join(repoRoot, 'resources/demo/preference.jsonl'))
    await page.locator('#cfg-output_dir').fill('too-large')
    await page.getByRole('button', { name: 'Start', exact: true }).click()
    const error = page.locator('.run-buttons + .error[role="alert"]')
    await error.waitFor()
    assert.match(await error.innerText(), /not enough memory for this run: it needs about [\d.]+ GB .* and 1\.1 GB is free/)
    assert.equal(existsSync(join(app.dataDir, 'runs', 'too-large')), false)
    assert.deepEqual(app.pageErrors, [])
  })

  it('the Models page shows the open model\'s and each recent model\'s memory to chat and to train LoRA', async () => {
    const { page } = app
    await go(page, 'Models')
    await page.getByLabel('Folder path').fill(demoModel)
    await page.getByRole('button', { name: 'Open', exact: true }).click()
    await page.getByRole('heading', { name: 'demo-model' }).waitFor()
    assert.match(await page.locator('[data-fact="memoryInference"]').innerText(), /^about [\d.]+ MB \(f32 weights and the KV cache of a 4,096-token conversation\)$/)
    assert.match(await page.locator('[data-fact="memoryTraining"]').innerText(), /^about [\d.]+ [MG]B with the default settings/)
    const recent = page.locator('[data-recent-memory="yes"]').first()
    await recent.waitFor()
    assert.match(await recent.innerText(), /[\d.]+ MB to chat, [\d.]+ [MG]B to train LoRA/)
    await app.screenshot('memory-models')
    assert.deepEqual(app.pageErrors, [])
  })
})
