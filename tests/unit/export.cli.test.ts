// `tunebench export` as a script runs it: the files on stdout, progress/warnings/usage on
// stderr, exit 2 for a usage mistake (with the usage), 1 for an export that fails, and nothing
// written under a final name when it does.
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, describe, expect, test } from 'vitest'
import { runCli } from './cli-run'
import { writeByteLevelModel } from './generation-fixture'

const tmp = mkdtempSync(join(tmpdir(), 'tunebench-export-cli-'))
afterAll(() => rmSync(tmp, { recursive: true, force: true }))
const model = writeByteLevelModel(join(tmp, 'model'), { architecture: 'Qwen3ForCausalLM', tied: true })
const exportCli = (args: string[]) => runCli(['export', ...args])

describe('tunebench export', () => {
  test('writes a base model as GGUF and merged, listing the files on stdout', async () => {
    const out = join(tmp, 'gguf')
    const r = await exportCli(['--model', model, '--format', 'gguf', '--dtype', 'q8_0', '--out', out])
    expect(r.stderr).toContain('load it: llama-cli -m')
    expect(r.code).toBe(0)
    const [line] = r.stdout.trim().split('\n')
    const [file, bytes] = line!.split('\t')
    expect(file).toBe(join(out, 'model.gguf'))
    expect(Number(bytes)).toBe(readFileSync(file!).length)
    expect(readFileSync(file!).subarray(0, 4).toString('latin1')).toBe('GGUF')

    const merged = join(tmp, 'merged')
    const m = await exportCli(['--model', model, '--format', 'merged', '--out', merged])
    expect(m.code).toBe(0)
    expect(readdirSync(merged).sort()).toEqual(['config.json', 'model.safetensors', 'tokenizer.json', 'tokenizer_config.json'])
    expect(readFileSync(join(merged, 'tokenizer.json'))).toEqual(readFileSync(join(model, 'tokenizer.json')))
  })

  test('an Ollama folder: the GGUF and a Modelfile with the ChatML TEMPLATE and its stop tokens', async () => {
    const out = join(tmp, 'ollama')
    const r = await exportCli(['--model', model, '--format', 'ollama', '--out', out])
    expect(r.code, r.stderr).toBe(0)
    expect(readdirSync(out).sort()).toEqual(['Modelfile', 'model.gguf'])
    const modelfile = readFileSync(join(out, 'Modelfile'), 'utf8')
    expect(modelfile).toMatch(/^FROM \.\/model\.gguf$/m)
    expect(modelfile).not.toMatch(/^ADAPTER/m)
    expect(modelfile).toMatch(/^TEMPLATE """/m)
    expect(modelfile).toMatch(/^PARAMETER stop <\|im_end\|>$/m)
    expect(r.stderr).toContain(`load it: cd ${out} && ollama create model -f Modelfile`)
    const lora = await exportCli(['--model', model, '--format', 'ollama', '--ollama-adapter', '--out', join(tmp, 'ollama-lora')])
    expect(lora.code).toBe(1)
    expect(lora.stderr).toContain('ollama --ollama-adapter export needs a run (--run) or an adapter folder (--adapter)')
  })

  test('usage mistakes exit 2 with the usage; a failing export exits 1 and writes nothing', async () => {
    for (const args of [[], ['--format', 'nope', '--model', model, '--out', tmp], ['--format', 'gguf', '--model', model],
      ['--format', 'gguf', '--model', model, '--out', tmp, '--dtype', 'q4'], ['--format', 'gguf', '--run', tmp, '--adapter', tmp, '--out', tmp]]) {
      const r = await exportCli(args)
      expect(r.code, args.join(' ')).toBe(2)
      expect(r.stderr).toContain('usage: tunebench export')
    }
    const help = await exportCli(['--help'])
    expect(help.code).toBe(0)
    expect(help.stdout).toContain('gguf-lora')

    const out = join(tmp, 'taken')
    await exportCli(['--model', model, '--format', 'merged', '--out', out])
    writeFileSync(join(out, 'extra.txt'), 'mine')
    const again = await exportCli(['--model', model, '--format', 'merged', '--out', out])
    expect(again.code).toBe(1)
    expect(again.stderr).toMatch(/already exists; choose an empty folder/)
    const lora = await exportCli(['--model', model, '--format', 'gguf-lora', '--out', join(tmp, 'lora')])
    expect(lora.code).toBe(1)
    expect(lora.stderr).toContain('not a base model alone')
    expect(existsSync(join(tmp, 'lora'))).toBe(false)
  })
})
