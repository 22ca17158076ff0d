// The Export page as a person uses it with an adapter trained elsewhere: pick "A PEFT adapter
// folder", leave the base to the adapter's own base_model_name_or_path, choose a format and its
// weights, take the suggested destination, Export; the result names the files and how to load
// them. A destination already holding the files is refused on the page with nothing replaced.
import assert from 'node:assert/strict'
import { readdir, readFile } from 'node:fs/promises'
import { after, before, describe, it } from 'node:test'
import { join } from 'node:path'
import { writeDemoAdapter } from './adapters'
import { unnamedControls } from './a11y'
import { startApp, type AppSession } from './fixture'

describe('export page', () => {
  let app: AppSession
  let adapter: string
  before(async () => {
    app = await startApp()
    adapter = join(app.workDir, 'my-lora')
    await writeDemoAdapter(adapter)
  })
  after(async () => {
    await app?.close()
  })

  it('writes a GGUF model, a GGUF LoRA and an Ollama folder from an adapter folder', async () => {
    const { page } = app
    await page.getByRole('heading', { name: 'demo-model' }).waitFor()
    await page.getByRole('navigation', { name: 'Pages' }).getByRole('link', { name: 'Export', exact: true }).click()
    await page.getByRole('heading', { name: 'Export', level: 1 }).waitFor()
    await page.getByLabel('A PEFT adapter folder').check()
    await page.getByLabel('Adapter folder', { exact: true }).fill(adapter)

    const exportAs = async (format: string, weights: string | null) => {
      await page.getByLabel('Format').selectOption({ label: format })
      if (weights) await page.getByLabel('Weights').selectOption({ label: weights })
      await page.getByRole('button', { name: 'Export', exact: true }).click()
      const result = page.getByTestId('export-result')
      await result.waitFor()
      return result
    }

    // GGUF model, q8_0: the destination was suggested beside the adapter.
    await page.getByLabel('Format').selectOption({ label: 'GGUF model (llama.cpp, LM Studio)' })
    assert.equal(await page.getByLabel('Destination folder').inputValue(), `${adapter}-gguf`)
    let result = await exportAs('GGUF model (llama.cpp, LM Studio)', 'q8_0 (half the size)')
    assert.match(await result.innerText(), /model\.gguf/)
    assert.match(await result.innerText(), /llama-cli -m/)
    const gguf = await readFile(join(`${adapter}-gguf`, 'model.gguf'))
    assert.equal(gguf.subarray(0, 4).toString('latin1'), 'GGUF')
    await app.screenshot('export-gguf')

    // The same destination again: refused on the page, the file left as it was.
    await page.getByRole('button', { name: 'Export', exact: true }).click()
    const error = page.getByRole('alert')
    await error.waitFor()
    assert.match(await error.innerText(), /model\.gguf already exists; choose an empty folder/)
    assert.ok((await readFile(join(`${adapter}-gguf`, 'model.gguf'))).equals(gguf))

    // GGUF LoRA in f16.
    await page.getByLabel('Format').selectOption({ label: 'GGUF LoRA adapter (llama.cpp)' })
    assert.equal(await page.getByLabel('Destination folder').inputValue(), `${adapter}-gguf-lora`)
    result = await exportAs('GGUF LoRA adapter (llama.cpp)', 'f16')
    assert.deepEqual(await readdir(`${adapter}-gguf-lora`), ['adapter.gguf'])
    assert.equal(await page.getByRole('alert').count(), 0)

    // Ollama: base GGUF + GGUF LoRA with the Modelfile naming both.
    await page.getByLabel('Format').selectOption({ label: 'Ollama' })
    await page.getByLabel('Base GGUF + GGUF LoRA (an ADAPTER line) instead of one merged GGUF').check()
    result = await exportAs('Ollama', null)
    assert.deepEqual((await readdir(`${adapter}-ollama`)).sort(), ['Modelfile', 'adapter.gguf', 'model.gguf'])
    const modelfile = await readFile(join(`${adapter}-ollama`, 'Modelfile'), 'utf8')
    assert.match(modelfile, /^FROM \.\/model\.gguf$/m)
    assert.match(modelfile, /^ADAPTER \.\/adapter\.gguf$/m)
    assert.match(modelfile, /^PARAMETER stop <\|im_end\|>$/m)
    assert.match(await result.innerText(), /ollama create/)
    await app.screenshot('export-ollama')
    assert.deepEqual(await unnamedControls(page), [])
    assert.deepEqual(app.pageErrors, [])
  })
})
