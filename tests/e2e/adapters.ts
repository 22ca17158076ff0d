// A PEFT adapter of the bundled demo model "trained elsewhere", for the e2e tests that import
// or export one: made by the engine, then B filled with fixed values (not zero), so the adapter
// changes the model's answers.
import { writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { Model } from '../../native/index'
import { encodeSafetensors, readSafetensors } from '../unit/engine-fixture'
import { repoRoot } from './fixture'

export const demoModel = join(repoRoot, 'resources/demo-model')

export async function writeDemoAdapter(dir: string): Promise<void> {
  const m = await Model.load(demoModel, { threads: 1 })
  m.addLora({ rank: 4, alpha: 8, dropout: 0, targets: ['q', 'v'], rslora: false, seed: 5 })
  await m.saveAdapter(dir, demoModel)
  m.dispose()
  const file = join(dir, 'adapter_model.safetensors')
  const tensors = readSafetensors(file)
  let s = 11
  for (const [name, t] of tensors)
    if (name.includes('lora_B')) for (let i = 0; i < t.data.length; i++) t.data[i] = (((s = (s * 48271) % 2147483647) % 2000) / 1000 - 1) * 0.5
  writeFileSync(file, encodeSafetensors(tensors))
}
