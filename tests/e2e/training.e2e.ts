// Train, watch, reload, compare, export — in the real renderer through serve mode: a DPO run
// of the bundled demo model on labels exported from a project, its live charts and progress,
// its sample generations (held-out prompts, base and adapter answers), the same dashboard after a reload, a failed run's error, the config diff and metric overlay
// of two runs, and the PEFT adapter exported to a folder.
import assert from 'node:assert/strict'
import { existsSync } from 'node:fs'
import { readdir, readFile } from 'node:fs/promises'
import { isAbsolute, join } from 'node:path'
import { after, before, describe, it } from 'node:test'
import type { Page } from 'playwright-core'
import { repoRoot, resultsDir, startApp, type AppSession } from './fixture'
import { unnamedControls } from './a11y'

const demoModel = join(repoRoot, 'resources/demo-model')
const demoPairs = join(repoRoot, 'resources/demo/preference.jsonl')

async function go(page: Page, name: string): Promise<void> {
  await page.getByRole('navigation', { name: 'Pages' }).getByRole('link', { name, exact: true }).click()
  await page.getByRole('heading', { name, level: 1 }).waitFor()
}

async function field(page: Page, key: string, value: string): Promise<void> {
  await page.locator(`#cfg-${key}`).fill(value)
}

/** data-points of every chart of a dashboard, by chart id. */
async function chartPoints(page: Page): Promise<Record<string, number>> {
  const dash = page.getByTestId('run-dashboard')
  const out: Record<string, number> = {}
  for (const chart of await dash.locator('[data-chart]').all())
    out[(await chart.getAttribute('data-chart'))!] = Number(await chart.getAttribute('data-points'))
  return out
}

/** What the sample panel shows: its step selector and, per prompt, the prompt and both answers. */
async function samplePanel(page: Page): Promise<{ steps: string[]; step: string; samples: { prompt: string; base: string; adapter: string }[] }> {
  const panel = page.getByTestId('sample-panel')
  const select = panel.getByTestId('sample-step')
  const samples = []
  for (const s of await panel.getByTestId('sample').all())
    samples.push({
      prompt: (await s.locator('.prompt').innerText()).trim(),
      base: (await s.getByTestId('sample-base').innerText()).trim(),
      adapter: (await s.getByTestId('sample-adapter').innerText()).trim()
    })
  return { steps: (await select.locator('option').allInnerTexts()).map((t) => t.trim()), step: await select.inputValue(), samples }
}

const progressSelector = '[role="progressbar"][aria-label="Training progress"]'

async function currentStep(page: Page): Promise<number> {
  const text = (await page.locator(progressSelector).getAttribute('aria-valuetext')) ?? ''
  return Number(/step (\d+)/.exec(text)?.[1] ?? NaN)
}

/** Waits until the dashboard's progress shows a step that satisfies `ok`. */
async function waitForStep(page: Page, ok: (step: number) => boolean): Promise<void> {
  for (let tries = 0; tries < 1200; tries++) {
    if (ok(await currentStep(page))) return
    await page.waitForTimeout(50)
  }
  throw new Error(`the run never reached the step it was waited for (now at ${await currentStep(page)})`)
}

describe('Train, Runs and Export pages', () => {
  let app: AppSession
  before(async () => {
    app = await startApp()
  })
  after(async () => {
    await app?.close()
  })

  let firstRun = ''
  let pointsBefore: Record<string, number> = {}
  let samplesBefore: Awaited<ReturnType<typeof samplePanel>> | null = null

  it('starts a DPO run from the form and draws its charts live until 100 %', async () => {
    const { page } = app
    // Labels to train on: the demo pairs imported into a project.
    await go(page, 'Data')
    await page.getByLabel('Project folder').fill(join(app.workDir, 'project'))
    await page.getByRole('button', { name: 'Open', exact: true }).click()
    await page.getByRole('button', { name: 'Import…' }).click()
    await page.getByLabel('File (JSON, JSONL or Parquet)').fill(demoPairs)
    await page.getByRole('button', { name: 'Preview' }).click()
    await page.getByTestId('import-facts').waitFor()
    await page.getByRole('button', { name: 'Import', exact: true }).click()
    await page.getByTestId('import-result').waitFor()
    await page.getByRole('button', { name: 'Done' }).click()

    await go(page, 'Train')
    await app.screenshot('train-page-empty')
    await page.getByRole('radio', { name: /^DPO/ }).check()
    assert.equal(await page.getByLabel('DPO loss (pref_loss)').inputValue(), 'sigmoid')
    await page.getByRole('button', { name: "Export and use the open project's labels" }).click()
    await page.getByText('Exported 30 records of the open project for DPO.').waitFor()
    assert.match(await page.locator('#cfg-dataset').inputValue(), /exports\/trl-dpo\.jsonl$/)
    await field(page, 'model_name_or_path', demoModel)
    // A short run: 12 steps of 2 pairs, a log line per step, checkpoints every 6.
    await field(page, 'max_steps', '12')
    await field(page, 'per_device_train_batch_size', '2')
    await field(page, 'logging_steps', '1')
    await field(page, 'save_steps', '6')
    await field(page, 'learning_rate', '0.001')
    await field(page, 'threads', '1')
    // Four pairs held out, evaluated every 6 steps: eval_loss joins the loss chart.
    await field(page, 'val_size', '4')
    await field(page, 'eval_steps', '6')
    // A bad value is named at its field and blocks Start.
    await field(page, 'lora_rank', '0')
    assert.equal(await page.locator('#cfg-lora_rank-error').innerText(), 'lora_rank: must be at least 1')
    assert.equal(await page.getByRole('button', { name: 'Start', exact: true }).isDisabled(), true)
    await field(page, 'lora_rank', '4')

    const yaml = await page.getByTestId('config-yaml').innerText()
    for (const line of ['stage: dpo', 'pref_loss: sigmoid', 'max_steps: 12', 'lora_rank: 4', `model_name_or_path: ${demoModel}`])
      assert.ok(yaml.split('\n').includes(line), `YAML has "${line}":\n${yaml}`)

    await page.getByRole('button', { name: 'Start', exact: true }).click()
    const status = page.getByTestId('run-status')
    await status.getByText('finished').waitFor({ timeout: 120_000 })
    const progress = page.getByRole('progressbar', { name: 'Training progress' })
    assert.equal(await progress.getAttribute('aria-valuenow'), '100')
    assert.match(await progress.getAttribute('aria-valuetext') ?? '', /^100 % · step 12 of 12 · elapsed /)
    pointsBefore = await chartPoints(page)
    // One loss point per step and an eval_loss point at steps 6 and 12; the DPO metrics and
    // the optimiser's series are drawn too.
    assert.equal(pointsBefore.loss, 14)
    assert.match((await page.locator('[data-chart="loss"]').getAttribute('aria-label')) ?? '', /^Loss chart: loss [\d.]+ at step 12; eval_loss [\d.]+ at step 12$/)
    for (const id of ['rewards', 'margins', 'accuracies', 'lr', 'grad_norm', 'throughput']) assert.ok(pointsBefore[id] > 0, `${id} chart has points`)
    firstRun = (await page.getByTestId('run-dashboard').locator('h2').innerText()).trim()
    samplesBefore = await samplePanel(page)
    // Evaluated at steps 6 and 12: the latest shows, three held-out prompts with both answers.
    assert.deepEqual(samplesBefore.steps, ['6', '12 (latest)'])
    assert.equal(samplesBefore.step, '12')
    assert.equal(samplesBefore.samples.length, 3)
    for (const s of samplesBefore.samples) {
      assert.ok(s.prompt.length > 0 && s.base.startsWith('Base model\n') && /^Adapter at step 12( · same as the base model)?\n/.test(s.adapter), JSON.stringify(s))
      assert.ok(s.base.length > 'Base model\n'.length && s.adapter.split('\n').slice(1).join('').trim().length > 0, JSON.stringify(s))
    }
    // The page scrolls inside the shell, so bring the dashboard into the picture.
    await page.getByTestId('run-dashboard').scrollIntoViewIfNeeded()
    await app.screenshot('train-page-finished')
    // The panel alone, at the size it is read.
    await page.getByTestId('sample-panel').screenshot({ path: join(resultsDir, 'train-page-samples.png') })
    // An earlier evaluation, picked in the selector.
    await page.getByLabel('Sample step').selectOption('6')
    await page.getByText('Adapter at step 6').first().waitFor()
    assert.equal((await samplePanel(page)).samples.length, 3)
    assert.deepEqual(await unnamedControls(app.page), [])
  })

  it('draws the same dashboard after a reload, from the run folder', async () => {
    const { page } = app
    await page.reload()
    await go(page, 'Runs')
    await page.getByRole('button', { name: firstRun, exact: true }).click()
    await page.getByTestId('run-status').getByText('finished').waitFor()
    // Charts draw from the log read back from trainer_log.jsonl.
    await page.locator('[data-chart="loss"][data-points="14"]').waitFor()
    assert.deepEqual(await chartPoints(page), pointsBefore)
    // The samples are read back from samples.jsonl.
    await page.getByTestId('sample').first().waitFor()
    assert.deepEqual(await samplePanel(page), samplesBefore)
    assert.equal(await page.getByRole('progressbar', { name: 'Training progress' }).getAttribute('aria-valuenow'), '100')
  })

  it('shows the error of a failed run', async () => {
    const { page } = app
    await go(page, 'Train')
    await field(page, 'dataset', join(app.workDir, 'missing.jsonl'))
    await page.getByRole('button', { name: 'Start', exact: true }).click()
    const error = page.getByTestId('run-error')
    await error.waitFor({ timeout: 60_000 })
    assert.match((await error.innerText()).trim(), /^The run failed: .*missing\.jsonl/)
    await app.screenshot('train-page-failed-run')
  })

  it('compares two runs: config diff and a metric overlay', async () => {
    const { page } = app
    // A second good run that differs in two keys.
    await page.getByRole('button', { name: "Export and use the open project's labels" }).click()
    await page.getByText(/^Exported 30 records/).waitFor()
    await field(page, 'learning_rate', '0.0005')
    await field(page, 'max_steps', '6')
    await page.getByRole('button', { name: 'Start', exact: true }).click()
    await page.getByTestId('run-status').getByText('finished').waitFor({ timeout: 120_000 })
    const secondRun = (await page.getByTestId('run-dashboard').locator('h2').innerText()).trim()

    await go(page, 'Runs')
    const history = page.getByRole('table', { name: 'Run history' })
    await history.getByRole('button', { name: secondRun, exact: true }).waitFor()
    assert.equal(await history.locator('tbody tr').count(), 3)
    await page.getByLabel('Run A').selectOption({ label: firstRun })
    await page.getByLabel('Run B').selectOption({ label: secondRun })
    const diff = page.getByRole('table', { name: 'Config keys that differ' })
    await diff.waitFor()
    const rows = await diff.locator('tbody th').allInnerTexts()
    assert.ok(rows.includes('learning_rate') && rows.includes('max_steps') && rows.includes('output_dir'), rows.join(','))
    assert.ok(!rows.includes('stage'), 'same stage is not listed')

    await page.getByLabel(`Overlay ${firstRun}`).check()
    await page.getByLabel(`Overlay ${secondRun}`).check()
    await page.getByLabel('Metric', { exact: true }).selectOption('loss')
    // 12 + 6 train loss points, one series per run.
    await page.locator('[data-chart="overlay"][data-points="18"]').waitFor()
    await app.screenshot('runs-page')
    assert.deepEqual(await unnamedControls(app.page), [])
  })

  it('stops a run and resumes it from its last checkpoint', async () => {
    const { page } = app
    await go(page, 'Train')
    // Long enough that it is still running when Stop is pressed: ~2000 short steps.
    await field(page, 'max_steps', '2000')
    await field(page, 'save_steps', '3')
    await field(page, 'logging_steps', '50')
    await page.getByRole('button', { name: 'Start', exact: true }).click()
    const status = page.getByTestId('run-status')
    await status.getByText('running').waitFor()
    const resume = page.getByRole('button', { name: 'Resume', exact: true })
    const stop = page.getByRole('button', { name: 'Stop', exact: true })
    // Wait for a checkpoint (the first step past save_steps), then stop.
    await waitForStep(page, (step) => step >= 4)
    await stop.click()
    await status.getByText('cancelled').waitFor()
    assert.equal(await resume.isDisabled(), false)
    const stoppedAt = await currentStep(page)
    // Resume goes on from the last checkpoint (at or before stoppedAt) and past it.
    await resume.click()
    await status.getByText('running').waitFor()
    await waitForStep(page, (step) => step > stoppedAt)
    // A reload while it trains: the Train page finds the running run and follows it on.
    await page.reload()
    await page.getByRole('heading', { name: 'Train', level: 1 }).waitFor()
    await status.getByText('running').waitFor()
    const afterReload = await currentStep(page)
    await waitForStep(page, (step) => step > afterReload)
    await stop.click()
    await status.getByText('cancelled').waitFor()

    // The Runs page offers the same for the run it shows.
    const runName = (await page.getByTestId('run-dashboard').locator('h2').innerText()).trim()
    await go(page, 'Runs')
    await page.getByRole('table', { name: 'Run history' }).getByRole('button', { name: runName, exact: true }).click()
    await status.getByText('cancelled').waitFor()
    await page.getByRole('button', { name: 'Resume', exact: true }).click()
    await status.getByText('running').waitFor()
    await page.getByRole('button', { name: 'Stop', exact: true }).click()
    await status.getByText('cancelled').waitFor()
  })

  it('exports the adapter of a run to a folder, as PEFT files', async () => {
    const { page } = app
    await go(page, 'Export')
    const dest = join(app.workDir, 'my-adapter')
    const runOption = page.getByLabel('Run', { exact: true }).locator('option', { hasText: firstRun })
    const runValue = (await runOption.getAttribute('value'))!
    await page.getByLabel('Run', { exact: true }).selectOption(runValue)
    const runDir = isAbsolute(runValue) ? runValue : join(app.dataDir, 'runs', runValue)
    // The folder does not exist before the export: everything found there afterwards came from it.
    assert.equal(existsSync(dest), false)
    // The destination is suggested inside the run's folder; the format starts at PEFT.
    assert.equal(await page.getByLabel('Destination folder').inputValue(), `${runDir}/exports/peft`)
    await page.getByLabel('Destination folder').fill(dest)
    await page.getByRole('button', { name: 'Export', exact: true }).click()
    const result = page.getByTestId('export-result')
    await result.waitFor()
    assert.match(await result.innerText(), /adapter_config\.json/)
    assert.match(await result.innerText(), /PeftModel\.from_pretrained/)
    await app.screenshot('export-page')

    const config = JSON.parse(await readFile(join(dest, 'adapter_config.json'), 'utf8')) as Record<string, unknown>
    assert.equal(config.peft_type, 'LORA')
    assert.equal(config.r, 4)
    const weights = await readFile(join(dest, 'adapter_model.safetensors'))
    const headerLength = Number(weights.readBigUInt64LE(0))
    const header = JSON.parse(weights.subarray(8, 8 + headerLength).toString('utf8')) as Record<string, unknown>
    const keys = Object.keys(header).filter((k) => k !== '__metadata__')
    assert.ok(keys.length > 0 && keys.every((k) => /^base_model\.model\.model\.layers\.\d+\..+\.lora_[AB]\.weight$/.test(k)), keys.join('\n'))
    // Exactly the PEFT files, no temp file left, each a byte-for-byte copy of the run's adapter.
    assert.deepEqual((await readdir(dest)).sort(), ['adapter_config.json', 'adapter_model.safetensors'])
    for (const name of ['adapter_config.json', 'adapter_model.safetensors'])
      assert.ok((await readFile(join(dest, name))).equals(await readFile(join(runDir, name))), `${name} differs from the run's`)
    assert.deepEqual(await unnamedControls(page), [])
    assert.deepEqual(app.pageErrors, [])
  })
})
