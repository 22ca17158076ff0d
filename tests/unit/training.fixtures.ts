// Shared fixtures of the training tests: a tiny random Llama and an initial adapter made with
// transformers + PEFT, and small datasets in TRL formats.
import { mkdirSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { runPython } from './trainingPython'

const root = join(import.meta.dirname, '..', '..')


/** Random-weight tiny Llama (untied lm_head) and a LoRA adapter with non-zero B. */
export async function makeModelAndAdapter(dir: string): Promise<{ model: string; adapter: string }> {
  const model = join(dir, 'model')
  const adapter = join(dir, 'adapter')
  await runPython([join(root, 'tests/python/train_tiny_llama.py'), '--out', model, '--tied', '0', '--seed', '3'])
  await runPython([join(root, 'tests/python/train_make_adapter.py'), model, adapter, '--rank', '4', '--alpha', '8', '--seed', '1'])
  return { model, adapter }
}

const jsonl = (rows: unknown[]) => rows.map((r) => JSON.stringify(r)).join('\n') + '\n'

export function writeDatasets(dir: string): Record<string, string> {
  mkdirSync(dir, { recursive: true })
  const files: Record<string, unknown[]> = {
    sft_messages: [
      { messages: [{ role: 'user', content: 'What is the capital of France?' }, { role: 'assistant', content: 'Paris.' }] },
      { messages: [{ role: 'system', content: 'Be kind.' }, { role: 'user', content: 'Say hello.' }, { role: 'assistant', content: 'Hello! How can I help?' }] },
      { messages: [{ role: 'user', content: 'Two plus two?' }, { role: 'assistant', content: 'Four.' }, { role: 'user', content: 'And three plus four?' }, { role: 'assistant', content: 'Seven.' }] },
      { messages: [{ role: 'user', content: 'Name a fruit.' }, { role: 'assistant', content: 'An apple is a fruit.' }] },
      { messages: [{ role: 'user', content: 'What colour is grass?' }, { role: 'assistant', content: 'Grass is green.' }] },
      { messages: [{ role: 'user', content: 'Who are you?' }, { role: 'assistant', content: 'A tiny demo model.' }] }
    ],
    pairs_plain: [
      { prompt: 'What is the capital of France?', chosen: ' The capital of France is Paris.', rejected: ' I do not know.' },
      { prompt: 'Name an animal.', chosen: ' A dog is an animal.', rejected: ' A rock.' },
      { prompt: 'What do bees make?', chosen: ' Bees make honey.', rejected: ' Bees make cars and trucks.' },
      { prompt: 'How many legs does a cat have?', chosen: ' A cat has four legs.', rejected: ' Seven.' }
    ],
    pairs_chat: [
      { prompt: [{ role: 'user', content: 'What colour is the sky?' }], chosen: [{ role: 'assistant', content: 'The sky is blue.' }], rejected: [{ role: 'assistant', content: 'Green.' }] },
      { prompt: [{ role: 'user', content: 'Say hello.' }], chosen: [{ role: 'assistant', content: 'Hello!' }], rejected: [{ role: 'assistant', content: 'No.' }] },
      { prompt: [{ role: 'user', content: 'Where does the sun rise?' }], chosen: [{ role: 'assistant', content: 'In the east.' }], rejected: [{ role: 'assistant', content: 'In the west, always.' }] },
      { prompt: [{ role: 'user', content: 'Two plus two?' }], chosen: [{ role: 'assistant', content: 'Four.' }], rejected: [{ role: 'assistant', content: 'Five.' }] }
    ],
    unpaired: [
      { prompt: 'What is the capital of Italy?', completion: ' Rome.', label: true },
      { prompt: 'What is the capital of Spain?', completion: ' Paris, surely.', label: false },
      { prompt: 'Name a fruit.', completion: ' An apple.', label: true },
      { prompt: 'What colour is grass?', completion: ' Purple.', label: false },
      { prompt: 'Say hello.', completion: ' Hello there!', label: true },
      { prompt: 'What is two plus two?', completion: ' Four.', label: true }
    ]
  }
  const out: Record<string, string> = {}
  for (const [name, rows] of Object.entries(files)) {
    out[name] = join(dir, `${name}.jsonl`)
    writeFileSync(out[name], jsonl(rows))
  }
  return out
}
