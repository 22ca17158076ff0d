// The Data page in the real renderer, driven by the keyboard: open a project, import the demo's
// unlabeled candidate answers through the preview dialog, label five fresh pairs with 1/2/←/→,
// undo one, and check through an export that the store holds exactly those labels; then the
// labeled demo pairs (mapping preview, gold answers, KTO, filters, checks) in a second project.
import assert from 'node:assert/strict'
import { readFile, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { after, before, describe, it } from 'node:test'
import { unnamedControls } from './a11y'
import { repoRoot, startApp, type AppSession } from './fixture'

interface Pair {
  prompt: string
  chosen: string
  rejected: string
}

async function readJsonl(path: string): Promise<Pair[]> {
  return (await readFile(path, 'utf8')).trim().split('\n').map((line) => JSON.parse(line) as Pair)
}

interface Candidates {
  prompt: string
  completions: { text: string; model: string }[]
}

async function readCandidates(path: string): Promise<Candidates[]> {
  return (await readFile(path, 'utf8')).trim().split('\n').map((line) => JSON.parse(line) as Candidates)
}

describe('Data page: keyboard labeling', () => {
  let app: AppSession
  const demoFile = join(repoRoot, 'resources/demo/preference.jsonl')
  const candidatesFile = join(repoRoot, 'resources/demo/candidates.jsonl')
  before(async () => {
    app = await startApp()
  })
  after(async () => {
    await app?.close()
  })

  it('imports unlabeled candidates, labels five fresh pairs by keyboard, undoes one, and exports exactly those choices', async () => {
    const { page } = app
    const keys = page.keyboard
    await page.getByRole('navigation', { name: 'Pages' }).getByRole('link', { name: 'Data', exact: true }).focus()
    await keys.press('Enter')
    await page.getByRole('heading', { name: 'Data', level: 1 }).waitFor()
    await app.screenshot('data-page-empty')

    // Open (create) the project.
    await page.getByLabel('Project folder').fill(join(app.workDir, 'candidates-project'))
    await keys.press('Enter')
    await page.getByRole('button', { name: 'Import…' }).waitFor()

    // Import the answers of two "models" through the preview: detected, nothing labeled.
    await page.getByRole('button', { name: 'Import…' }).focus()
    await keys.press('Enter')
    await page.getByLabel('File (JSON, JSONL or Parquet)').fill(candidatesFile)
    await keys.press('Enter')
    const facts = page.getByTestId('import-facts')
    await facts.waitFor()
    const rows = await readCandidates(candidatesFile)
    const n = rows.length
    assert.match(await facts.innerText(), new RegExp(`JSONL, ${n} records, columns: prompt, completions\\. Detected format: candidates`))
    assert.match(await page.getByTestId('import-pairable').innerText(), new RegExp(`^${n} of ${n} records have two or more answers`))
    assert.equal(await page.getByLabel('candidates column').inputValue(), 'completions')
    const sample = page.getByRole('table', { name: 'Sample records as they will be stored' })
    const firstRow = sample.locator('tbody tr').first().locator('td')
    // Table cells show an answer's lines on one line.
    const oneLine = (s: string) => s.replace(/\s+/g, ' ').trim()
    assert.equal(oneLine(await firstRow.nth(1).innerText()), oneLine(rows[0].completions[0].text))
    assert.equal(oneLine(await firstRow.nth(2).innerText()), oneLine(rows[0].completions[1].text))
    assert.equal(await firstRow.nth(3).innerText(), '–')
    // A labeled format does not fit these columns: it says why and cannot be imported.
    await page.getByLabel('Format', { exact: true }).selectOption('trl-preference')
    await page.getByRole('dialog').getByRole('alert').waitFor()
    assert.equal(await page.getByRole('button', { name: 'Import', exact: true }).isDisabled(), true)
    await page.getByLabel('Format', { exact: true }).selectOption('candidates')
    await page.getByTestId('import-pairable').waitFor()
    await app.screenshot('data-import-candidates')
    await page.getByRole('button', { name: 'Import', exact: true }).focus()
    await keys.press('Enter')
    assert.match(await page.getByTestId('import-result').innerText(), new RegExp(`Imported ${n} records`))
    await keys.press('Escape')
    await page.getByRole('dialog').waitFor({ state: 'detached' })

    // Every record arrives unlabeled, and the list says so.
    const status = page.getByLabel('Status', { exact: true })
    const progressIs = (labeled: number) =>
      page
        .locator(`[role=progressbar][aria-label="Labeling progress"][aria-valuetext="${labeled} of ${n} done · ${labeled} labeled · 0 skipped · ${n - labeled} unlabeled"]`)
        .waitFor()
    await progressIs(0)
    assert.match(await status.locator('option[value="unlabeled"]').innerText(), new RegExp(`^unlabeled \\(${n}\\)$`))
    const list = page.getByRole('complementary', { name: 'Records' })
    assert.equal(await list.locator('li button.unlabeled').count(), n)
    assert.equal(await page.getByTestId('record-state').innerText(), 'unlabeled')
    assert.match(await page.getByTestId('counts').innerText(), /Ready to train: 0 pairs/)

    // Five fresh pairs by keyboard; for each, read the answer shown on the side the key picks,
    // as a person reads it (the text under the side's header), and find it in the file: that
    // one is chosen, the other rejected.
    const pressed = ['2', '1', 'ArrowRight', 'ArrowLeft', '2']
    const expected = new Map<string, Pair>()
    /** The file's answer (its index) whose text the answer box of `side` shows. */
    const shownAnswer = async (side: 'Left' | 'Right', answers: string[]): Promise<number> => {
      const box = page.getByRole('article', { name: new RegExp(`^${side} answer`) })
      const all = await box.innerText()
      const header = await box.locator('header').innerText()
      assert.ok(all.startsWith(header), `the ${side} box starts with its header: ${JSON.stringify(all)}`)
      const shown = oneLine(all.slice(header.length))
      const matches = answers.flatMap((a, k) => (oneLine(a) === shown ? [k] : []))
      assert.equal(matches.length, 1, `the ${side} box shows exactly one of the record's answers: ${JSON.stringify(shown)} among ${JSON.stringify(answers)}`)
      return matches[0]!
    }
    for (const [i, key] of pressed.entries()) {
      const side = key === '1' || key === 'ArrowLeft' ? 'Left' : 'Right'
      assert.ok(oneLine(await page.getByLabel('Prompt').innerText()).includes(oneLine(rows[i].prompt)), `record ${i + 1} shows its prompt`)
      const answers = rows[i].completions.map((c) => c.text)
      assert.notEqual(oneLine(answers[0]!), oneLine(answers[1]!), `the two answers of record ${i + 1} read differently`)
      const left = await shownAnswer('Left', answers)
      const right = await shownAnswer('Right', answers)
      assert.deepEqual([left, right].sort(), [0, 1], `record ${i + 1} shows both of its answers, one a side`)
      const picked = side === 'Left' ? left : right
      expected.set(rows[i].prompt, { prompt: rows[i].prompt, chosen: answers[picked]!, rejected: answers[1 - picked]! })
      await keys.press(key)
      await page.getByText(`Record ${i + 2} of ${n} in this view`).waitFor()
      await progressIs(i + 1)
    }
    assert.match(await page.getByTestId('label-status').innerText(), /^Saved: (left|right) chosen$/)
    assert.match(await status.locator('option[value="labeled"]').innerText(), /^labeled \(5\)$/)
    assert.equal(await list.locator('li button.labeled').count(), 5)

    // Undo the fifth: it is unlabeled again and comes back into focus.
    await keys.press('z')
    await page.getByTestId('label-status').getByText('Undone').waitFor()
    await page.getByText(`Record 5 of ${n} in this view`).waitFor()
    await progressIs(4)
    assert.equal(await page.getByTestId('record-state').innerText(), 'unlabeled')
    assert.equal(await list.locator('li').nth(4).locator('button.unlabeled').count(), 1)
    expected.delete(rows[4].prompt)
    await page.getByTestId('counts').getByText(/Ready to train: 4 pairs/).waitFor()
    await app.screenshot('data-page-labeling')

    // What the store holds, read back through the export dialog: exactly the four kept choices.
    const out = join(app.workDir, 'pairs.jsonl')
    await page.getByRole('button', { name: 'Export…' }).focus()
    await keys.press('Enter')
    await page.getByLabel(/^Write to/).fill(out)
    await keys.press('Enter')
    assert.match(await page.getByTestId('export-result').innerText(), /: 4 dpo records/)
    await keys.press('Escape')
    const exported = await readJsonl(out)
    assert.deepEqual(
      exported.map((r) => r.prompt),
      rows.slice(0, 4).map((r) => r.prompt)
    )
    for (const [prompt, pair] of expected) {
      const row = exported.find((r) => r.prompt === prompt)
      assert.ok(row, `exported pair for ${prompt}`)
      assert.equal(row.chosen, pair.chosen, `chosen of "${prompt}"`)
      assert.equal(row.rejected, pair.rejected, `rejected of "${prompt}"`)
    }
    assert.deepEqual(app.pageErrors, [])
  })

  it('imports labeled pairs with a format preview whose mapping can be changed', async () => {
    const { page } = app
    const keys = page.keyboard
    await page.getByLabel('Project folder').fill(join(app.workDir, 'project'))
    await keys.press('Enter')
    await page.getByRole('button', { name: 'Import a dataset…' }).click()
    await page.getByLabel('File (JSON, JSONL or Parquet)').fill(demoFile)
    await keys.press('Enter')
    const facts = page.getByTestId('import-facts')
    await facts.waitFor()
    assert.match(await facts.innerText(), /JSONL, 30 records, columns: prompt, chosen, rejected\. Detected format: trl-preference/)
    assert.equal(await page.getByTestId('import-pairable').count(), 0)
    assert.equal(await page.getByLabel('chosen * column').inputValue(), 'chosen')
    const sample = page.getByRole('table', { name: 'Sample records as they will be stored' })
    const firstAnswer = sample.locator('tbody tr').first().locator('td').nth(1)
    // The first pair's answers start differently: the chosen one with <think>, the rejected one
    // with its (wrong) working.
    const [firstPair] = await readJsonl(demoFile)
    const startOf = (s: string) => new RegExp('^' + s.split('\n')[0]!.replace(/[.*+?^${}()|[\]\\]/g, '\\$&'))
    const chosenStart = startOf(firstPair.chosen)
    assert.notEqual(firstPair.chosen.split('\n')[0], firstPair.rejected.split('\n')[0])
    assert.match(await firstAnswer.innerText(), chosenStart)
    // The mapping can be changed, and the sample follows it.
    await page.getByLabel('chosen * column').selectOption('rejected')
    await firstAnswer.getByText(startOf(firstPair.rejected)).waitFor()
    await page.getByLabel('chosen * column').selectOption('chosen')
    await firstAnswer.getByText(chosenStart).waitFor()
    // So can the format; one that does not fit the columns says why and cannot be imported.
    await page.getByLabel('Format', { exact: true }).selectOption('trl-unpaired')
    await page.getByRole('dialog').getByRole('alert').waitFor()
    assert.equal(await page.getByRole('button', { name: 'Import', exact: true }).isDisabled(), true)
    await page.getByLabel('Format', { exact: true }).selectOption('trl-preference')
    await firstAnswer.getByText(chosenStart).waitFor()
    await app.screenshot('data-import-preview')
    await page.getByRole('button', { name: 'Import', exact: true }).focus()
    await keys.press('Enter')
    assert.match(await page.getByTestId('import-result').innerText(), /Imported 30 records/)
    await keys.press('Escape')
    await page.getByRole('dialog').waitFor({ state: 'detached' })
    const progress = page.getByRole('progressbar', { name: 'Labeling progress' })
    assert.equal(await progress.getAttribute('aria-valuemax'), '30')
    // Imported pairs are labeled already; the next flows work from the fifth record.
    assert.match(await page.getByTestId('counts').innerText(), /Ready to train: 30 pairs/)
    for (let i = 2; i <= 5; i++) {
      await keys.press('j')
      await page.getByText(`Record ${i} of 30 in this view`).waitFor()
    }
    assert.deepEqual(app.pageErrors, [])
  })

  it('edits an answer into the gold answer with E, and labels single answers with U/D in KTO mode', async () => {
    const { page } = app
    const keys = page.keyboard
    const counts = page.getByTestId('counts')
    assert.match(await counts.innerText(), /0 gold answers/)
    await keys.press('e')
    const editor = page.getByLabel(/saved as this record's gold answer/)
    await editor.waitFor()
    assert.equal(await editor.evaluate((el) => el === document.activeElement), true)
    await editor.fill('Use `reversed()` or **slicing**: `xs[::-1]`.')
    await keys.press('Control+Enter')
    await page.getByTestId('label-status').getByText('Saved: gold answer').waitFor()
    await counts.getByText(/1 gold answers/).waitFor()

    // KTO mode, chosen with the keyboard: Tab order reaches the mode radios.
    await page.getByLabel('Single answers (KTO)').focus()
    await keys.press('Space')
    // Each answer of the record in turn: U on the first, D on the second, then the next record.
    await page.getByRole('article', { name: 'Answer 1 of 2' }).waitFor()
    await page.getByText('Record 5 of 30 in this view').waitFor()
    await keys.press('u')
    await page.getByRole('article', { name: 'Answer 2 of 2' }).waitFor()
    await keys.press('d')
    await page.getByText('Record 6 of 30 in this view').waitFor()
    // Undo returns to the answer that lost its label.
    await keys.press('z')
    await page.getByText('Record 5 of 30 in this view').waitFor()
    await page.getByRole('article', { name: 'Answer 2 of 2' }).waitFor()
    await keys.press('d')
    await page.getByText('Record 6 of 30 in this view').waitFor()
    await keys.press('k')
    assert.equal(await page.getByTestId('record-state').innerText(), 'desirable')
    await app.screenshot('data-page-kto')
    assert.deepEqual(app.pageErrors, [])
  })

  it('filters the list by status, split and text, with counts', async () => {
    const { page } = app
    const keys = page.keyboard
    const matching = page.getByTestId('list-total')
    await keys.press('s')
    await page.getByTestId('label-status').getByText('Skipped').waitFor()
    const status = page.getByLabel('Status', { exact: true })
    assert.match(await status.locator('option[value="skipped"]').innerText(), /^skipped \(1\)$/)
    await status.selectOption('skipped')
    await matching.getByText(/^1 matching/).waitFor()
    assert.equal(await page.getByTestId('record-state').innerText(), 'skipped')
    await status.selectOption('all')
    // One pair only has a drawer in it.
    await page.getByLabel('Search').fill('drawer')
    await matching.getByText(/^1 matching/).waitFor()
    assert.match(await page.getByLabel('Prompt').innerText(), /There are 46 coins in a drawer\. Omar puts in 15 more\./)
    await page.getByLabel('Split', { exact: true }).selectOption('val')
    await matching.getByText(/^0 matching/).waitFor()
    await page.getByLabel('Split', { exact: true }).selectOption('all')
    await page.getByLabel('Search').fill('')
    await matching.getByText(/^30 matching/).waitFor()
  })

  it('checks tokenisation for a model and excludes prompts found in an evaluation set', async () => {
    const { page } = app
    const demo = await readJsonl(demoFile)
    // An evaluation file that holds two of the training prompts.
    const evalFile = join(app.workDir, 'eval.jsonl')
    const leaked = demo.filter((r) => r.prompt.split(' ').length >= 9).slice(0, 2)
    await writeFile(evalFile, leaked.map((r) => JSON.stringify({ prompt: r.prompt, completion: 'x' })).join('\n') + '\n')

    await page.getByRole('button', { name: 'Check…' }).click()
    await page.getByLabel('Model folder').fill(join(repoRoot, 'resources/demo-model'))
    await page.getByLabel('cutoff_len').fill('44')
    await page.getByRole('button', { name: 'Tokenise' }).click()
    const stats = page.getByTestId('token-stats')
    await stats.waitFor()
    const over = Number(/(\d+) over cutoff_len/.exec(await stats.innerText())?.[1])
    assert.match(await stats.innerText(), /^30 records · tokens per record min \d+/)
    assert.ok(over > 0 && over < 30, `${over} records over cutoff_len 44`)
    await stats.locator('details').first().locator('summary').click()
    // Plain-string records are prompt then completion, without a chat template (docs/algorithms.md).
    assert.ok((await stats.locator('pre').first().innerText()).startsWith(demo[0].prompt))

    await page.getByLabel('Evaluation file (optional)').fill(evalFile)
    await page.getByRole('button', { name: 'Scan' }).click()
    const report = page.getByTestId('decontam-report')
    await report.waitFor()
    assert.match(await report.innerText(), /2 overlap with the evaluation set/)
    await app.screenshot('data-checks')
    await page.getByRole('button', { name: 'Exclude the flagged records from training' }).click()
    await report.getByText('2 records excluded').waitFor()
    await page.getByRole('button', { name: 'Close', exact: true }).click()
    await page.getByTestId('counts').getByText(/2 excluded/).waitFor()
    await page.getByTestId('list-total').getByText(/^28 matching/).waitFor()
  })

  it('edits gold answers in SFT mode, and the SFT export carries the edit', async () => {
    const { page } = app
    const keys = page.keyboard
    await page.getByLabel('Project folder').fill(join(app.workDir, 'sft-project'))
    await keys.press('Enter')
    await page.getByRole('button', { name: 'Import a dataset…' }).click()
    await page.getByLabel('File (JSON, JSONL or Parquet)').fill(join(repoRoot, 'resources/demo/sft.jsonl'))
    await keys.press('Enter')
    await page.getByTestId('import-facts').getByText(/Detected format: trl-messages/).waitFor()
    await page.getByRole('button', { name: 'Import', exact: true }).click()
    await page.getByTestId('import-result').waitFor()
    await keys.press('Escape')
    await page.getByLabel('Gold answers (SFT)').check()
    const gold = page.getByRole('article', { name: 'Gold answer' })
    const firstChat = JSON.parse((await readFile(join(repoRoot, 'resources/demo/sft.jsonl'), 'utf8')).split('\n')[0]!) as { messages: { role: string; content: string }[] }
    const flat = (s: string) => s.replace(/\s+/g, ' ').trim()
    assert.equal(flat((await gold.innerText()).replace(/^Gold answer\s*/, '')), flat(firstChat.messages.at(-1)!.content))
    await page.getByLabel('Prompt').getByText(firstChat.messages[0]!.content).waitFor()
    await keys.press('e')
    await page.getByLabel(/saved as this record's gold answer/).fill('The Pacific Ocean, about 165 million km².')
    await keys.press('Control+Enter')
    await gold.getByText('The Pacific Ocean, about 165 million km².').waitFor()

    const out = join(app.workDir, 'sft.jsonl')
    await page.getByRole('button', { name: 'Export…' }).click()
    await page.getByLabel('Format').selectOption('trl-sft')
    await page.getByLabel(/^Write to/).fill(out)
    await keys.press('Enter')
    await page.getByTestId('export-result').waitFor()
    await keys.press('Escape')
    const first = JSON.parse((await readFile(out, 'utf8')).split('\n')[0]) as { messages: { role: string; content: string }[] }
    assert.deepEqual(first.messages.at(-1), { role: 'assistant', content: 'The Pacific Ocean, about 165 million km².' })
  })

  it('gives every control on the Data page an accessible name', async () => {
    assert.deepEqual(await unnamedControls(app.page), [])
  })
})
