// GRPO in the real renderer through serve mode. The Train page: GRPO in the method picker, its
// task presets, the reward editor (built-in functions with weights, a regex reward checked as
// it is typed, a command reward) making reward_funcs / reward_weights, and the prompts-per-step
// check naming both keys before Start. The dashboard of a GRPO run folder written here (the
// app reads runs from <TUNEBENCH_HOME>/runs): the reward charts, and the Completions panel — a
// step's groups, another step picked by button, slider and key, the "clipped" and "reward 0"
// filters, a long completion expanded.
import assert from 'node:assert/strict'
import { mkdir, mkdtemp, readdir, readFile, rm, symlink, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, before, describe, it } from 'node:test'
import type { Page } from 'playwright-core'
import type { GrpoCompletion } from '../../preload/types/training'
import { unnamedControls } from './a11y'
import { repoRoot, resultsDir, startApp, type AppSession } from './fixture'

/** Where screenshots of this flow go as well as test-results/ (the reviewer's folder). */
const shotsDir = process.env.GRPO_SHOTS ?? '/tmp/grpo-shots'
const demoModel = join(repoRoot, 'resources/demo-model')
const runId = 'grpo-fixture'
const STEPS = 6
const FUNCS = ['accuracy', 'format', 'regex:^\\d+$']
const WEIGHTS = ['1', '0.5', '1']

async function go(page: Page, name: string): Promise<void> {
  await page.getByRole('navigation', { name: 'Pages' }).getByRole('link', { name, exact: true }).click()
  await page.getByRole('heading', { name, level: 1 }).waitFor()
}

/** A screenshot of one part of the page (or the window as it is) in shotsDir and test-results/. */
async function shot(app: AppSession, name: string, target?: ReturnType<Page['locator']>): Promise<void> {
  await mkdir(shotsDir, { recursive: true })
  for (const dir of [shotsDir, resultsDir]) {
    const path = join(dir, `${dir === resultsDir ? 'grpo-' : ''}${name}.png`)
    if (target) await target.screenshot({ path })
    else await app.page.screenshot({ path })
  }
}

/** Step s's batch: 2 prompts × 4 completions. Completion 3 of each group is cut at 64 tokens
 *  (reward 0 at even steps, 1 at odd ones); prompt 2 scores 0 everywhere at step 5 (no signal);
 *  one long completion at step 6. */
function batch(step: number): GrpoCompletion[] {
  const prompts = [`What is ${step} + ${step}?`, [{ role: 'user' as const, content: `Count the letters of "step${step}".` }]]
  return prompts.flatMap((prompt, group) =>
    [0, 1, 2, 3].map((index): GrpoCompletion => {
      const flat = group === 1 && step === 5
      const right = !flat && (index + step) % 2 === 0
      const formatted = !flat && index !== 3
      const rewards = { accuracy: right ? 1 : 0, format: formatted ? 1 : 0, 'regex:^\\d+$': group === 0 ? null : 0 }
      const reward = rewards.accuracy + 0.5 * rewards.format
      const long = step === STEPS && group === 0 && index === 0
      const completion = long
        ? `<think>${'Adding the two numbers one digit at a time, carrying when needed. '.repeat(12)}</think><answer>${2 * step}</answer>`
        : index === 3
          ? `<think>Let me think about step ${step} for a long while and never stop`
          : `<think>${step} + ${step}</think><answer>${right ? 2 * step : 2 * step + 1}</answer>`
      return { step, group, index, prompt, completion, rewards, reward, advantage: 0, tokens: index === 3 ? 64 : 20 + index, clipped: index === 3 }
    })
  ).map((c, _, all) => {
    // Advantages as GRPO makes them with scale_rewards group: reward minus the group mean over the group std.
    const group = all.filter((x) => x.group === c.group).map((x) => x.reward)
    const mean = group.reduce((a, b) => a + b, 0) / group.length
    const std = Math.sqrt(group.reduce((a, b) => a + (b - mean) ** 2, 0) / (group.length - 1))
    return { ...c, advantage: +((c.reward - mean) / (std + 1e-4)).toFixed(4) }
  })
}

function logLine(step: number): Record<string, number | string> {
  const lines = batch(step)
  const mean = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / xs.length
  return {
    current_steps: step, total_steps: STEPS, loss: 0.002 * (STEPS - step), lr: 1e-4, grad_norm: 0.4 / step,
    reward: mean(lines.map((l) => l.reward)), reward_std: 0.45, 'rewards/accuracy/mean': mean(lines.map((l) => l.rewards.accuracy!)),
    'rewards/accuracy/std': 0.5, 'rewards/format/mean': mean(lines.map((l) => l.rewards.format!)), 'rewards/format/std': 0.4,
    'rewards/regex:^\\d+$/mean': 0, 'rewards/regex:^\\d+$/std': 0, frac_reward_zero_std: step === 5 ? 0.5 : 0,
    'completions/mean_length': mean(lines.map((l) => l.tokens)), 'completions/min_length': 20, 'completions/max_length': 64,
    'completions/clipped_ratio': 0.25, 'completions/mean_terminated_length': 21, entropy: 1.4 - 0.1 * step,
    'clip_ratio/low_mean': 0, 'clip_ratio/high_mean': 0.01 * step, 'clip_ratio/region_mean': 0.01 * step,
    'tokens_per_second/generation': 90 + step, 'tokens_per_second/training': 310 - step,
    epoch: step / STEPS, percentage: (100 * step) / STEPS, elapsed_time: `0:00:${String(5 * step).padStart(2, '0')}`, remaining_time: `0:00:${String(5 * (STEPS - step)).padStart(2, '0')}`
  }
}

/** A finished GRPO run folder as the trainer leaves it (what the dashboard reads). */
async function writeGrpoRun(dataDir: string): Promise<string> {
  const dir = join(dataDir, 'runs', runId)
  await mkdir(join(dir, 'completions'), { recursive: true })
  const config = {
    model_name_or_path: demoModel, stage: 'grpo', finetuning_type: 'lora', dataset: [join(dataDir, 'grpo.jsonl')],
    num_generations: 4, max_completion_length: 64, reward_funcs: FUNCS, reward_weights: WEIGHTS, beta: 0, per_device_train_batch_size: 8,
    gradient_accumulation_steps: 1, max_steps: STEPS, sample_prompts: 0, output_dir: dir
  }
  await writeFile(join(dir, 'run.json'), JSON.stringify(config, null, 2))
  const now = new Date().toISOString()
  await writeFile(join(dir, 'status.json'), JSON.stringify({
    state: 'finished', error: null, pid: 1, startedAt: now, updatedAt: now, step: STEPS, totalSteps: STEPS, lastCheckpoint: null
  }))
  await writeFile(join(dir, 'trainer_log.jsonl'), Array.from({ length: STEPS }, (_, i) => JSON.stringify(logLine(i + 1)) + '\n').join(''))
  for (let step = 1; step <= STEPS; step++)
    await writeFile(join(dir, 'completions', `step-${String(step).padStart(5, '0')}.jsonl`), batch(step).map((c) => JSON.stringify(c) + '\n').join(''))
  return dir
}

/** What the Completions panel shows once it shows step `step`: the step, and per group its
 *  prompt and rows. */
async function panel(page: Page, step: number): Promise<{ step: string; groups: { prompt: string; rows: { reward: string; advantage: string; tokens: string; clipped: boolean }[] }[] }> {
  const p = page.getByTestId('completions-panel')
  // A step's lines are read when it is picked: wait for them.
  await p.getByTestId('completions-facts').filter({ hasText: new RegExp(`^\\s*Step ${step}:`) }).waitFor()
  const groups = []
  for (const g of await p.getByTestId('completion-group').all()) {
    const rows = []
    for (const r of await g.getByTestId('completion-row').all())
      rows.push({
        reward: (await r.locator('.total').innerText()).trim(),
        advantage: (await r.locator('.adv').innerText()).trim(),
        tokens: (await r.locator('.tokens').innerText()).trim(),
        clipped: (await r.getAttribute('data-clipped')) === 'true'
      })
    groups.push({ prompt: (await g.locator('.prompt-row').innerText()).trim(), rows })
  }
  return { step: (await p.getByTestId('completions-step').innerText()).trim(), groups }
}

/** The app's resources as they ship, with a GRPO demo dataset of our own in resources/demo (the
 *  bundled one may not be there yet, and this test must not depend on its content). */
async function resourcesWithGrpo(): Promise<{ dir: string; grpo: string }> {
  const dir = await mkdtemp(join(tmpdir(), 'tunebench-e2e-resources-'))
  await mkdir(join(dir, 'demo'))
  await symlink(demoModel, join(dir, 'demo-model'))
  for (const name of await readdir(join(repoRoot, 'resources/demo')))
    if (name !== 'grpo.jsonl' && name !== 'datasets.json') await symlink(join(repoRoot, 'resources/demo', name), join(dir, 'demo', name))
  const grpo = join(dir, 'demo', 'grpo.jsonl')
  await writeFile(grpo, [{ prompt: 'What is 2 + 3?', solution: '5' }, { prompt: 'What is 4 × 2?', solution: '8' }].map((r) => JSON.stringify(r) + '\n').join(''))
  await writeFile(join(dir, 'demo', 'datasets.json'), JSON.stringify({ 'grpo.jsonl': 'Arithmetic prompts with a solution column for GRPO' }))
  return { dir, grpo }
}

describe('GRPO: Train page and run dashboard', () => {
  let app: AppSession
  let resources: { dir: string; grpo: string }
  before(async () => {
    resources = await resourcesWithGrpo()
    app = await startApp({ env: { TUNEBENCH_RESOURCES: resources.dir } })
  })
  after(async () => {
    await app?.close()
    if (resources) await rm(resources.dir, { recursive: true, force: true })
  })

  it('offers GRPO with task presets, a reward editor and the prompts-per-step check', async () => {
    const { page } = app
    await go(page, 'Train')
    const grpo = page.getByRole('radio', { name: /^GRPO/ })
    assert.match((await grpo.locator('xpath=..').innerText()).trim(), /^GRPO\s+Group relative policy optimisation/)
    await grpo.check()
    const editor = page.getByTestId('reward-editor')
    await editor.waitFor()
    // The raw list fields give way to the editor.
    assert.equal(await page.locator('#cfg-reward_funcs').count(), 0)
    assert.equal(await page.locator('#cfg-reward_weights').count(), 0)
    // The first preset: accuracy + format at 1 and 0.25.
    assert.equal(await page.getByRole('button', { name: 'Math with reasoning (accuracy + format)' }).getAttribute('aria-pressed'), 'true')
    assert.equal((await page.getByTestId('reward-formula').innerText()).trim(), "Each completion's reward = 1 × accuracy + 0.25 × format")
    let yaml = await page.getByTestId('config-yaml').innerText()
    for (const line of ['stage: grpo', 'reward_funcs: accuracy,format', 'reward_weights: 1,0.25', 'max_completion_length: 40'])
      assert.ok(yaml.split('\n').includes(line), `YAML has "${line}":\n${yaml}`)
    assert.equal((await page.getByTestId('grpo-prompts-per-step').innerText()).trim(),
      'Prompts per step = per_device_train_batch_size × gradient_accumulation_steps / num_generations = 32 × 1 / 8 = 4')
    // The bundled GRPO prompts fill the dataset (the project's labels are no GRPO data) and are
    // the only demo dataset offered for GRPO.
    assert.equal(await page.locator('#cfg-dataset').inputValue(), resources.grpo)
    const demoPick = page.getByLabel('Or a bundled demo dataset for GRPO')
    assert.equal(await demoPick.inputValue(), resources.grpo)
    assert.deepEqual((await demoPick.locator('option').allInnerTexts()).map((t) => t.trim()),
      ['(choose one)', 'grpo.jsonl — Arithmetic prompts with a solution column for GRPO'])
    assert.match(await page.getByTestId('grpo-dataset-hint').innerText(), /^The bundled GRPO prompts\. GRPO reads prompts only/)
    assert.equal(await page.getByRole('button', { name: "Export and use the open project's labels" }).count(), 0)
    // The top of the page as a newcomer first sees it, then the reward editor.
    await shot(app, 'train-grpo')
    await shot(app, 'train-grpo-rewards', page.locator('[data-group="rewards"]'))
    await page.locator('#cfg-model_name_or_path').fill(demoModel)
    await page.locator('#cfg-dataset').fill(join(app.workDir, 'prompts.jsonl'))
    // A typed path is the user's: the picker lets go of it.
    assert.equal(await demoPick.inputValue(), '')

    // Another preset: its functions and settings.
    await page.getByRole('button', { name: 'Short answers (accuracy + length)' }).click()
    assert.equal((await page.getByTestId('reward-formula').innerText()).trim(), "Each completion's reward = 1 × accuracy + 0.5 × length")
    // length's own setting shows under it.
    assert.equal(await editor.locator('#cfg-length_target').inputValue(), '16')
    // The dataset typed stays.
    assert.equal(await page.locator('#cfg-dataset').inputValue(), join(app.workDir, 'prompts.jsonl'))

    // Edit: format on at 2, a regex reward typed badly then fixed, a command reward.
    const format = editor.getByTestId('builtin-reward').filter({ hasText: /^\s*format/ })
    await format.getByRole('checkbox').check()
    await format.getByLabel('Weight of format').fill('2')
    await editor.getByRole('button', { name: '+ Add a regex reward' }).click()
    const pattern = editor.getByLabel('Regex pattern')
    // The new row's field has the focus: type straight away.
    assert.equal(await pattern.evaluate((el) => el === document.activeElement), true)
    await page.keyboard.type('^<answer>(\\d+')
    assert.equal((await editor.getByTestId('regex-error').innerText()).trim(), 'not a valid regular expression: Unterminated group')
    assert.equal(await pattern.getAttribute('aria-invalid'), 'true')
    await shot(app, 'train-grpo-regex-error', page.locator('[data-group="rewards"]'))
    const start = page.getByRole('button', { name: 'Start', exact: true })
    assert.equal(await start.isDisabled(), true)
    assert.match(await page.locator('.side .error[role="alert"]').first().innerText(), /reward_funcs/)
    await pattern.fill('^<answer>\\d{1,3}</answer>$')
    assert.equal(await editor.getByTestId('regex-error').count(), 0)
    await editor.getByRole('button', { name: '+ Add a command reward' }).click()
    await page.keyboard.type('/opt/rewards/judge.py')
    await editor.getByLabel('Weight of the command reward').fill('0.25')
    yaml = await page.getByTestId('config-yaml').innerText()
    // A pattern with a comma goes as a YAML list (a comma string would split it).
    assert.match(yaml, /^reward_funcs:\n {2}- accuracy\n {2}- format\n {2}- length\n {2}- regex:\^<answer>\\d\{1,3\}<\/answer>\$\n {2}- command:\/opt\/rewards\/judge\.py$/m)
    assert.ok(yaml.includes('reward_weights: 1,2,0.5,1,0.25\n'), yaml)
    assert.equal(await start.isDisabled(), false)

    // Prompts per step: 6 completions do not make whole groups of 8 — said at the field, before Start.
    await page.locator('#cfg-per_device_train_batch_size').fill('6')
    const error = page.locator('#cfg-num_generations-error')
    assert.equal((await error.innerText()).trim(),
      'num_generations: per_device_train_batch_size × gradient_accumulation_steps = 6 × 1 = 6 is not a multiple of num_generations (8): ' +
      'each step trains on whole groups of 8 completions, one group per prompt. Set per_device_train_batch_size to 8 or num_generations to a divisor of 6 (2, 3, 6).')
    assert.match(await page.getByTestId('grpo-batch-check').innerText(), /do not make whole groups of 8/)
    assert.equal(await start.isDisabled(), true)
    await shot(app, 'train-grpo-batch-error', page.locator('[data-group="method"]'))
    await page.locator('#cfg-num_generations').fill('3')
    assert.equal(await error.count(), 0)
    assert.match(await page.getByTestId('grpo-prompts-per-step').innerText(), /= 6 × 1 \/ 3 = 2$/)
    assert.equal(await start.isDisabled(), false)
    assert.deepEqual(await unnamedControls(page), [])
  })

  it("draws a GRPO run's reward charts and lists a step's completions by prompt", async () => {
    const { page } = app
    const dir = await writeGrpoRun(app.dataDir)
    await go(page, 'Runs')
    await page.getByRole('table', { name: 'Run history' }).getByRole('button', { name: runId, exact: true }).click()
    const dash = page.getByTestId('run-dashboard')
    await dash.getByTestId('run-status').getByText('finished').waitFor()
    // One point per step in each chart; one series per reward function, generation and training throughput.
    for (const [id, points] of [['reward', STEPS], ['reward_funcs', 3 * STEPS], ['reward_std', STEPS], ['frac_reward_zero_std', STEPS],
      ['completion_length', 4 * STEPS], ['clipped_ratio', STEPS], ['clip_ratio', 3 * STEPS], ['entropy', STEPS], ['throughput', 2 * STEPS]] as const)
      await dash.locator(`[data-chart="${id}"][data-points="${points}"]`).waitFor()
    assert.match((await dash.locator('[data-chart="reward_funcs"]').getAttribute('aria-label')) ?? '', /^Reward per function \(mean\) chart: accuracy [\d.]+ at step 6; format [\d.]+ at step 6; regex:\^\\d\+\$ 0 at step 6$/)
    // beta 0: no KL logged, no KL chart.
    assert.equal(await dash.locator('[data-chart="kl"]').count(), 0)
    // The reward comes first.
    assert.equal(await dash.locator('[data-chart]').first().getAttribute('data-chart'), 'reward')

    // The newest step by default: 2 prompts, each once, with its 4 completions.
    const completions = page.getByTestId('completions-panel')
    await completions.getByTestId('completions-table').waitFor()
    let shown = await panel(page, STEPS)
    assert.equal(shown.step, String(STEPS))
    assert.equal(shown.groups.length, 2)
    assert.deepEqual(shown.groups.map((g) => g.rows.length), [4, 4])
    assert.match(shown.groups[0]!.prompt, /^Prompt 1\s*mean reward 0.875\nuser What is 6 \+ 6\?$/is)
    assert.match(shown.groups[1]!.prompt, /^Prompt 2\s*mean reward [\d.]+\nuser Count the letters of "step6"\.$/is)
    const expected = batch(STEPS)
    assert.deepEqual(shown.groups[0]!.rows.map((r) => r.reward), expected.slice(0, 4).map((c) => String(c.reward)))
    // Advantages signed (+ / −), clipped completions badged.
    assert.ok(shown.groups[0]!.rows.some((r) => r.advantage.startsWith('+')) && shown.groups[0]!.rows.some((r) => r.advantage.startsWith('−')))
    assert.deepEqual(shown.groups.flatMap((g) => g.rows.map((r) => [r.tokens, r.clipped])), expected.map((c) => [c.clipped ? '64 clipped' : String(c.tokens), c.clipped]))
    // One column per reward function, the weights as run.json gives them; no reward from a function is a dash.
    const heads = (await completions.locator('thead th').allInnerTexts()).map((t) => t.trim().replace(/\s+/g, ' '))
    assert.deepEqual(heads, ['#', 'Completion', 'accuracy', 'format ×0.5', 'regex:^\\d+$', 'Reward', 'Advantage', 'Tokens'])
    assert.equal((await completions.getByTestId('completion-row').first().locator('td').nth(4).innerText()).trim(), '—')

    // A long completion is cut, and opens in place.
    const more = completions.getByRole('button', { name: /^Show all \(\d+ characters\)$/ })
    assert.equal(await more.count(), 1)
    await more.click()
    assert.equal(await completions.getByRole('button', { name: 'Show less' }).getAttribute('aria-expanded'), 'true')
    await completions.scrollIntoViewIfNeeded()
    await shot(app, 'dashboard-completions', completions)
    await dash.locator('[data-chart="reward"]').scrollIntoViewIfNeeded()
    await shot(app, 'dashboard-grpo', dash)

    // Another step: the Previous button, then the keys (K back, J on, N newest), then the slider.
    await completions.getByRole('button', { name: 'Previous step' }).click()
    shown = await panel(page, 5)
    assert.equal(shown.step, '5')
    assert.match(shown.groups[0]!.prompt, /What is 5 \+ 5\?/)
    // Step 5: the second prompt scored 0 everywhere: the group says it teaches nothing.
    assert.match(shown.groups[1]!.prompt, /same reward for all/)
    await completions.getByRole('button', { name: 'Previous step' }).focus()
    await page.keyboard.press('k')
    assert.equal((await panel(page, 4)).step, '4')
    await page.keyboard.press('j')
    assert.equal((await panel(page, 5)).step, '5')
    await page.keyboard.press('n')
    assert.equal((await panel(page, STEPS)).step, String(STEPS))
    const slider = completions.getByRole('slider', { name: 'Completions step' })
    await slider.focus()
    await page.keyboard.press('Home')
    assert.equal((await panel(page, 1)).step, '1')
    assert.equal(await slider.getAttribute('aria-valuetext'), 'step 1, 1 of 6 steps with completions')
    await page.keyboard.press('ArrowRight')
    await page.keyboard.press('ArrowRight')
    shown = await panel(page, 3)
    assert.equal(shown.step, '3')
    assert.match(shown.groups[0]!.prompt, /What is 3 \+ 3\?/)

    // "Clipped": only the cut completions, each under its prompt.
    await completions.getByTestId('filter-clipped').click()
    assert.equal(await completions.getByTestId('filter-clipped').getAttribute('aria-pressed'), 'true')
    shown = await panel(page, 3)
    assert.deepEqual(shown.groups.map((g) => g.rows.length), [1, 1])
    assert.ok(shown.groups.every((g) => g.rows.every((r) => r.clipped && r.tokens === '64 clipped')))
    assert.match(shown.groups[0]!.prompt, /1 of 4 shown/)
    await shot(app, 'dashboard-completions-clipped', completions)
    // And "reward 0" on top: step 3's clipped completions scored 1, so nothing is left — said so,
    // with the way back.
    await completions.getByTestId('filter-reward-zero').click()
    const none = completions.getByTestId('completions-none')
    assert.equal((await none.innerText()).trim(), 'No completion of step 3 is at reward 0 and clipped. Clear the filters')
    await completions.getByRole('button', { name: 'Clear the filters' }).click()
    assert.deepEqual((await panel(page, 3)).groups.map((g) => g.rows.length), [4, 4])
    // The keys: 0 and C set the filters; they hold while the step changes (N: the newest, where
    // the clipped completions scored 0).
    await slider.focus()
    await page.keyboard.press('0')
    await page.keyboard.press('c')
    await page.keyboard.press('n')
    shown = await panel(page, STEPS)
    assert.equal(shown.step, String(STEPS))
    assert.deepEqual(shown.groups.map((g) => g.rows.map((r) => [r.reward, r.clipped])), [[['0', true]], [['0', true]]])
    await page.keyboard.press('0')
    await page.keyboard.press('c')
    assert.equal(await completions.getByTestId('filter-clipped').getAttribute('aria-pressed'), 'false')
    assert.deepEqual((await panel(page, STEPS)).groups.map((g) => g.rows.length), [4, 4])
    assert.deepEqual(await unnamedControls(page), [])
    // Viewing is read-only: every step's completions file is still exactly what was written.
    for (let step = 1; step <= STEPS; step++)
      assert.equal(
        await readFile(join(dir, 'completions', `step-${String(step).padStart(5, '0')}.jsonl`), 'utf8'),
        batch(step).map((c) => JSON.stringify(c) + '\n').join(''),
        `step ${step}'s completions file changed`
      )
  })

  it('names a GRPO run without completions and what will appear', async () => {
    const { page } = app
    const dir = join(app.dataDir, 'runs', 'grpo-empty')
    await mkdir(dir, { recursive: true })
    await writeFile(join(dir, 'run.json'), JSON.stringify({ stage: 'grpo', model_name_or_path: '/m', num_generations: 4, reward_funcs: ['format'] }))
    await writeFile(join(dir, 'status.json'), JSON.stringify({ state: 'failed', error: 'stopped before its first step', pid: 1, startedAt: new Date(0).toISOString(), updatedAt: new Date(0).toISOString(), step: 0, totalSteps: 4, lastCheckpoint: null }))
    await go(page, 'Train')
    await go(page, 'Runs')
    await page.getByRole('table', { name: 'Run history' }).getByRole('button', { name: 'grpo-empty', exact: true }).click()
    const empty = page.getByTestId('completions-empty')
    await empty.filter({ hasText: 'kept no completions' }).waitFor()
    assert.equal((await empty.innerText()).trim(), 'This run kept no completions (its completions/ folder is empty or missing), so there is nothing to show.')
    assert.deepEqual(app.pageErrors.filter((e) => !/Failed to load resource/.test(e)), [])
  })
})

describe('GRPO: a real run of the bundled preset', () => {
  let app: AppSession
  before(async () => {
    app = await startApp()
  })
  after(async () => {
    await app?.close()
  })

  it('starts the math preset on the bundled prompts, draws its reward curves and opens a step of completions', async () => {
    const { page } = app
    await go(page, 'Train')
    await page.getByRole('radio', { name: /GRPO/ }).check()
    await page.getByRole('button', { name: 'Math with reasoning (accuracy + format)' }).click()
    // Nothing typed but a shorter run: the open model and the bundled prompts fill the form.
    assert.equal(await page.locator('#cfg-dataset').inputValue(), join(repoRoot, 'resources/demo/grpo.jsonl'))
    await page.locator('#cfg-max_steps').fill('6')
    await page.getByRole('button', { name: 'Start', exact: true }).click()
    const dash = page.getByTestId('run-dashboard')
    await dash.getByTestId('run-status').getByText('finished').waitFor({ timeout: 240_000 })
    for (const id of ['reward', 'reward_funcs', 'completion_length', 'entropy', 'throughput'])
      await dash.locator(`[data-chart="${id}"][data-points]:not([data-points="0"])`).waitFor()
    assert.equal(await dash.locator('[data-chart="reward"]').getAttribute('data-points'), '6')
    // The newest step's batch: the preset's 4 prompts x 8 completions, each with its rewards.
    const shown = await panel(page, 6)
    assert.equal(shown.groups.length, 4)
    for (const g of shown.groups) assert.equal(g.rows.length, 8)
    for (const g of shown.groups) for (const r of g.rows) assert.match(r.reward, /^-?\d/)
    await shot(app, 'real-run-completions', page.getByTestId('completions-panel'))
    assert.deepEqual(app.pageErrors.filter((e) => !/Failed to load resource/.test(e)), [])
  })
})
