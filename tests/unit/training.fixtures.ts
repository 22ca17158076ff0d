// Shared fixtures of the training tests: a tiny random Llama and an initial adapter made with
// transformers + PEFT, and small datasets in TRL formats.
import { createHash } from 'node:crypto'
import { existsSync, mkdirSync, mkdtempSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { runPython } from './trainingPython'

const root = join(import.meta.dirname, '..', '..')


/** Random-weight tiny Llama (untied lm_head), a LoRA adapter with non-zero B and a DoRA one
 *  (use_dora, non-zero B, so its magnitudes differ from the row norms they scale). Made once
 *  per version of the generator scripts and shared by the test files through a cache folder
 *  (built in a temp folder, then renamed into place, so parallel test files never see half
 *  of one). */
export async function makeModelAndAdapter(_dir?: string): Promise<{ model: string; adapter: string; doraAdapter: string }> {
  const scripts = ['tests/python/train_tiny_llama.py', 'tests/python/train_make_adapter.py']
  const hash = createHash('sha256').update('lora+dora')
  for (const s of scripts) hash.update(readFileSync(join(root, s)))
  const cache = join(tmpdir(), `tunebench-test-llama-${hash.digest('hex').slice(0, 16)}`)
  if (!existsSync(join(cache, 'adapter', 'adapter_model.safetensors'))) {
    const build = mkdtempSync(join(tmpdir(), 'tunebench-test-llama-build-'))
    await runPython([join(root, scripts[0]!), '--out', join(build, 'model'), '--tied', '0', '--seed', '3'])
    await runPython([join(root, scripts[1]!), join(build, 'model'), join(build, 'dora-adapter'), '--rank', '4', '--alpha', '8', '--seed', '2', '--dora'])
    await runPython([join(root, scripts[1]!), join(build, 'model'), join(build, 'adapter'), '--rank', '4', '--alpha', '8', '--seed', '1'])
    try {
      renameSync(build, cache)
    } catch {
      rmSync(build, { recursive: true, force: true }) // another test file made it first
    }
  }
  return { model: join(cache, 'model'), adapter: join(cache, 'adapter'), doraAdapter: join(cache, 'dora-adapter') }
}

/** A tiny random Qwen3-MoE with the tokenizer of makeModelAndAdapter's Llama (3 layers, the
 *  middle one dense via mlp_only_layers, 4 experts, 2 per token, norm_topk_prob, router weights
 *  std 0.5), experts fused as transformers 5 saves them (mlp.experts.gate_up_proj [E, 2I, C],
 *  mlp.experts.down_proj [E, C, I]), and a PEFT LoRA with non-zero B on attention, the dense MLP
 *  and every expert, named per expert (...mlp.experts.E.gate_proj.lora_A.weight). Made by
 *  tests/python/train_reference.py make-moe from engine_moe_parity.py's pieces; cached like
 *  makeModelAndAdapter's. */
export async function makeMoeModelAndAdapter(): Promise<{ model: string; adapter: string }> {
  const { model: llama } = await makeModelAndAdapter()
  const scripts = ['tests/python/train_reference.py', 'tests/python/engine_moe_parity.py']
  const hash = createHash('sha256').update(`qwen3-moe:${llama}`)
  for (const s of scripts) hash.update(readFileSync(join(root, s)))
  const cache = join(tmpdir(), `tunebench-test-qwen3moe-${hash.digest('hex').slice(0, 16)}`)
  if (!existsSync(join(cache, 'adapter', 'adapter_model.safetensors'))) {
    const build = mkdtempSync(join(tmpdir(), 'tunebench-test-qwen3moe-build-'))
    await runPython([join(root, scripts[0]!), 'make-moe', llama, build])
    try {
      renameSync(build, cache)
    } catch {
      rmSync(build, { recursive: true, force: true }) // another test file made it first
    }
  }
  return { model: join(cache, 'model'), adapter: join(cache, 'adapter') }
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
