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

/** What the dashboard's progress bar says: the step it shows and the run's total. */
async function progressOf(page: Page): Promise<{ step: number; total: number }> {
  const text = (await page.locator(progressSelector).getAttribute('aria-valuetext')) ?? ''
  const match = /step (\d+)(?: of (\d+))?/.exec(text)
  return { step: Number(match?.[1] ?? NaN), total: Number(match?.[2] ?? NaN) }
}

async function currentStep(page: Page): Promise<number> {
  return (await progressOf(page)).step
}

/** Waits, at most `timeout` ms, until the dashboard's progress shows step `min` or a later one. */
async function waitForStep(page: Page, min: number, timeout = 60_000): Promise<void> {
  try {
    await page.waitForFunction(
      ({ selector, min }) => {
        const match = /step (\d+)/.exec(document.querySelector(selector)?.getAttribute('aria-valuetext') ?? '')
        return match !== null && Number(match[1]) >= min
      },
      { selector: progressSelector, min },
      { timeout }
    )
  } catch (err) {
    throw new Error(`the run did not reach step ${min} within ${timeout} ms (the page shows step ${await currentStep(page)}): ${(err as Error).message}`)
  }
}

/** Polls `probe` until it returns a value, at most `timeout` ms; the error names `what`. */
async function until<T>(what: string, probe: () => Promise<T | null | undefined>, timeout = 60_000): Promise<T> {
  const end = Date.now() + timeout
  for (;;) {
    const value = await probe()
    if (value !== null && value !== undefined) return value
    if (Date.now() > end) throw new Error(`waited ${timeout} ms for ${what}`)
    await new Promise((r) => setTimeout(r, 25))
  }
}

interface LogLine {
  current_steps: number
  total_steps: number
  loss?: number
  eval_loss?: number
}

/** The complete lines of a run's trainer_log.jsonl (a line being appended is left out). */
async function readLog(runDir: string): Promise<LogLine[]> {
  const text = await readFile(join(runDir, 'trainer_log.jsonl'), 'utf8')
  return text.slice(0, text.lastIndexOf('\n') + 1).split('\n').filter(Boolean).map((l) => JSON.parse(l) as LogLine)
}

/** The training lines of a log (evaluations have eval_loss instead of loss). */
const trainLines = (log: LogLine[]) => log.filter((e) => typeof e.loss === 'number')

async function readStatus(runDir: string): Promise<{ state: string; step: number; totalSteps: number; startedAt: string; lastCheckpoint: string | null }> {
  return JSON.parse(await readFile(join(runDir, 'status.json'), 'utf8'))
}

/** The step of the newest checkpoint-N folder of a run, 0 when it has none. */
async function lastCheckpoint(runDir: string): Promise<number> {
  const steps = (await readdir(runDir)).map((n) => /^checkpoint-(\d+)$/.exec(n)).filter((m) => m !== null).map((m) => Number(m[1]))
  return Math.max(0, ...steps)
}

const range = (from: number, to: number) => Array.from({ length: Math.max(0, to - from + 1) }, (_, i) => from + i)

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

  it('stops a run while it trains and resumes it from its last checkpoint, at the step after it', async () => {
    const { page } = app
    await go(page, 'Train')
    // Long enough that it is still running when Stop is pressed (checked before each Stop): 2000
    // short steps, a log line per step (so that the steps of a resume can be compared with
    // those of the stopped run), a checkpoint every 3.
    const totalSteps = 2000
    const saveSteps = 3
    await field(page, 'max_steps', String(totalSteps))
    await field(page, 'save_steps', String(saveSteps))
    await field(page, 'logging_steps', '1')
    await page.getByRole('button', { name: 'Start', exact: true }).click()
    const status = page.getByTestId('run-status')
    await status.getByText('running').waitFor()
    const runName = (await page.getByTestId('run-dashboard').locator('h2').innerText()).trim()
    const runDir = join(app.dataDir, 'runs', runName)
    assert.equal(existsSync(runDir), true, `${runDir} exists`)
    const resume = page.getByRole('button', { name: 'Resume', exact: true })

    /** Presses Stop once the run is seen training: a progress event has brought it to step
     *  `minStep` (>= 1), it says running, and it is far from its last step, so that it cannot
     *  end on its own before the Stop lands. Returns the step it stopped at, after checking on
     *  disk that it was cancelled there without finishing. */
    async function stopWhileRunning(minStep: number): Promise<number> {
      await waitForStep(page, minStep)
      assert.equal((await status.innerText()).trim(), 'running', 'the run says running when Stop is pressed')
      const before = await progressOf(page)
      assert.equal(before.total, totalSteps, 'the run is as long as asked')
      assert.ok(before.step >= minStep && before.step < totalSteps - 500, `step ${before.step} of ${before.total} when Stop is pressed: far from the end`)
      await page.getByRole('button', { name: 'Stop', exact: true }).click()
      await status.getByText('cancelled').waitFor()
      const onDisk = await readStatus(runDir)
      assert.equal(onDisk.state, 'cancelled')
      assert.ok(onDisk.step >= before.step && onDisk.step < totalSteps, `stopped at step ${onDisk.step} of ${totalSteps}`)
      assert.equal(await currentStep(page), onDisk.step, 'the page shows the step the run stopped at')
      // A run that ran to its end would have written its adapter next to the checkpoints.
      assert.equal(existsSync(join(runDir, 'adapter_model.safetensors')), false, 'a stopped run writes no final adapter')
      return onDisk.step
    }

    /** What a stopped run left for a resume: a training line per step up to where it stopped,
     *  and checkpoints, the newest one at or before that step. */
    async function stoppedRun(stoppedAt: number): Promise<{ log: LogLine[]; checkpoint: number; startedAt: string }> {
      const log = trainLines(await readLog(runDir))
      assert.deepEqual(log.map((e) => e.current_steps), range(1, stoppedAt), 'a training line per step up to the stop')
      const checkpoint = await lastCheckpoint(runDir)
      assert.ok(checkpoint >= saveSteps && checkpoint <= stoppedAt && checkpoint % saveSteps === 0, `checkpoint-${checkpoint} of a run stopped at ${stoppedAt}`)
      return { log, checkpoint, startedAt: (await readStatus(runDir)).startedAt }
    }

    /** After Resume: the run started again (status.json rewritten) and went on from the step
     *  after its checkpoint: the lines up to the checkpoint are those of the stopped run, the
     *  next lines are steps checkpoint + 1, + 2, + 3, and each of them that the stopped run had
     *  logged too has the same loss. Returns those resumed lines. */
    async function resumedLines(stopped: { log: LogLine[]; checkpoint: number; startedAt: string }): Promise<LogLine[]> {
      const { checkpoint } = stopped
      // Until the resumed run has rewritten status.json, the log still holds the stopped run's lines.
      await until('the resumed run to write its status.json', async () => {
        const s = await readStatus(runDir).catch(() => null)
        return s && s.state === 'running' && s.startedAt !== stopped.startedAt ? s : null
      })
      const want = checkpoint + 3
      const log = await until(`a log line for step ${want} from the resumed run`, async () => {
        const lines = trainLines(await readLog(runDir))
        return lines.some((e) => e.current_steps >= want) ? lines : null
      })
      assert.deepEqual(log.slice(0, checkpoint), stopped.log.slice(0, checkpoint), `the lines up to checkpoint-${checkpoint} are the stopped run's`)
      const resumed = log.slice(checkpoint, checkpoint + 3)
      assert.equal(resumed[0]?.current_steps, checkpoint + 1, `the first resumed step is the one after checkpoint-${checkpoint}`)
      assert.deepEqual(resumed.map((e) => e.current_steps), range(checkpoint + 1, want))
      for (const e of resumed) {
        const same = stopped.log.find((s) => s.current_steps === e.current_steps)
        if (same) assert.equal(e.loss, same.loss, `loss of resumed step ${e.current_steps} (from checkpoint-${checkpoint}) equals the stopped run's`)
      }
      return resumed
    }

    // Stop once a checkpoint is written (at step 3: the first step past it shows).
    const stoppedAt = await stopWhileRunning(saveSteps + 1)
    assert.equal(await resume.isDisabled(), false)
    const firstStop = await stoppedRun(stoppedAt)
    await resume.click()
    await status.getByText('running').waitFor()
    const firstResume = await resumedLines(firstStop)
    // Past the stop: new progress events, the page follows the resumed run.
    await waitForStep(page, stoppedAt + 1)
    // A reload while it trains: the Train page finds the running run and follows it on.
    await page.reload()
    await page.getByRole('heading', { name: 'Train', level: 1 }).waitFor()
    await status.getByText('running').waitFor()
    const afterReload = await currentStep(page)
    const stoppedAgain = await stopWhileRunning(afterReload + 1)
    const secondStop = await stoppedRun(stoppedAgain)

    // The Runs page offers the same for the run it shows: its row and last checkpoint as on disk.
    await go(page, 'Runs')
    const history = page.getByRole('table', { name: 'Run history' })
    await history.getByRole('button', { name: runName, exact: true }).click()
    await status.getByText('cancelled').waitFor()
    const row = history.locator('tbody tr', { has: page.getByRole('button', { name: runName, exact: true }) })
    const cells = (await row.locator('td').allInnerTexts()).map((t) => t.trim())
    assert.equal(cells[2], 'cancelled')
    assert.equal(cells[4], `${stoppedAgain} / ${totalSteps}`)
    assert.equal(cells[5], secondStop.log.at(-1)!.loss!.toFixed(4))
    await page.getByText(`last checkpoint: checkpoint-${secondStop.checkpoint}`, { exact: true }).waitFor()
    await page.getByRole('button', { name: 'Resume', exact: true }).click()
    await status.getByText('running').waitFor()
    const secondResume = await resumedLines(secondStop)
    await stopWhileRunning(stoppedAgain + 1)

    // The same config run without a stop, as far as the resumed steps: they have its losses.
    await go(page, 'Train')
    await page.getByRole('button', { name: 'Start', exact: true }).click()
    await status.getByText('running').waitFor()
    const referenceName = (await page.getByTestId('run-dashboard').locator('h2').innerText()).trim()
    assert.notEqual(referenceName, runName)
    const referenceDir = join(app.dataDir, 'runs', referenceName)
    const last = secondResume.at(-1)!.current_steps
    await waitForStep(page, last + 1)
    assert.equal((await status.innerText()).trim(), 'running')
    await page.getByRole('button', { name: 'Stop', exact: true }).click()
    await status.getByText('cancelled').waitFor()
    const config = async (dir: string) => {
      const { output_dir: _dir, resume_from_checkpoint: _resume, ...rest } = JSON.parse(await readFile(join(dir, 'run.json'), 'utf8')) as Record<string, unknown>
      return rest
    }
    assert.deepEqual(await config(referenceDir), await config(runDir), 'the reference run has the config of the resumed one')
    const reference = trainLines(await readLog(referenceDir))
    assert.deepEqual(reference.slice(0, last).map((e) => e.current_steps), range(1, last))
    for (const e of [...firstResume, ...secondResume])
      assert.equal(e.loss, reference[e.current_steps - 1]!.loss, `loss of resumed step ${e.current_steps} equals the uninterrupted run's`)
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
