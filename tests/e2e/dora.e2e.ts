// DoRA from the Train page, in the real renderer through serve mode: the use_dora box with its
// help, the YAML it writes, a short run of the demo model to the end, and the adapter it leaves
// (use_dora in adapter_config.json, a magnitude per adapted matrix under PEFT's names).
import assert from 'node:assert/strict'
import { readFile } from 'node:fs/promises'
import { join } from 'node:path'
import { after, before, describe, it } from 'node:test'
import { repoRoot, startApp, type AppSession } from './fixture'

const demoModel = join(repoRoot, 'resources/demo-model')
const demoPairs = join(repoRoot, 'resources/demo/preference.jsonl')

/** The tensor names of a safetensors file (its JSON header). */
async function tensorNames(file: string): Promise<string[]> {
  const bytes = await readFile(file)
  const n = Number(bytes.readBigUInt64LE(0))
  return Object.keys(JSON.parse(bytes.subarray(8, 8 + n).toString('utf8'))).filter((k) => k !== '__metadata__')
}

describe('DoRA on the Train page', () => {
  let app: AppSession
  before(async () => {
    app = await startApp()
  })
  after(async () => {
    await app?.close()
  })

  it('trains a DoRA adapter from the form and saves it for PEFT', async () => {
    const { page } = app
    await page.getByRole('navigation', { name: 'Pages' }).getByRole('link', { name: 'Train', exact: true }).click()
    await page.getByRole('heading', { name: 'Train', level: 1 }).waitFor()
    await page.getByRole('radio', { name: /^DPO/ }).check()
    for (const [key, value] of Object.entries({
      model_name_or_path: demoModel, dataset: demoPairs, output_dir: 'dora-run', max_steps: '3', per_device_train_batch_size: '2',
      logging_steps: '1', save_steps: '3', lora_rank: '4', threads: '1'
    }))
      await page.locator(`#cfg-${key}`).fill(value)
    const box = page.locator('#cfg-use_dora')
    assert.equal(await box.isChecked(), false)
    await box.check()
    const yaml = await page.getByTestId('config-yaml').innerText()
    assert.ok(yaml.split('\n').includes('use_dora: true'), yaml)
    await box.scrollIntoViewIfNeeded()
    await app.screenshot('train-dora-field')

    await page.getByRole('button', { name: 'Start', exact: true }).click()
    await page.getByTestId('run-status').getByText('finished').waitFor({ timeout: 120_000 })
    const runDir = join(app.dataDir, 'runs', 'dora-run')
    const config = JSON.parse(await readFile(join(runDir, 'adapter_config.json'), 'utf8')) as { use_dora: boolean; r: number }
    assert.equal(config.use_dora, true)
    assert.equal(config.r, 4)
    const names = await tensorNames(join(runDir, 'adapter_model.safetensors'))
    const magnitudes = names.filter((n) => n.endsWith('.lora_magnitude_vector'))
    const pairs = names.filter((n) => n.endsWith('.lora_A.weight'))
    assert.ok(pairs.length > 0 && magnitudes.length === pairs.length, `${magnitudes.length} magnitudes for ${pairs.length} LoRA pairs`)
    assert.deepEqual(app.pageErrors, [])
  })
})
