// Sample generations of a run (samples.jsonl): the first records of the val_size split are
// answered at each evaluation and at the end, the base answers equal the generation service's
// greedy answers of the model without adapter (for full fine-tuning too, so they come from the
// weights before the first update) and the last adapter answers its answers with the saved
// adapter; generating them changes no training number, and a resumed run writes the same file.
import { mkdtempSync, readFileSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { resolveConfig } from '../../main/services/training/config'
import { CancelledError, Trainer, train } from '../../main/services/training/trainer'
import { readRun } from '../../main/services/training/runs'
import { mixSeed, permutation, SEED_PURPOSE } from '../../main/services/training/rng'
import { generate } from '../../main/services/generation/generate'
import { GenerationPool } from '../../main/services/generation/pool'
import type { RunEvent, SampleGeneration, TrainerLogEntry } from '../../preload/types/training'
import { writeDatasets } from './training.fixtures'
import { engineBuilt } from './trainingPython'

const demoModel = join(import.meta.dirname, '..', '..', 'resources', 'demo-model')
const readJsonl = <T>(file: string): T[] => readFileSync(file, 'utf8').split('\n').filter(Boolean).map((l) => JSON.parse(l) as T)

describe.runIf(engineBuilt())('sample generations', () => {
  let dir: string
  let data: Record<string, string>
  const pool = new GenerationPool({ threads: 1 })
  // SFT on 6 conversations, 3 held out, evaluated at steps 2 and 4 of 5; dropout and shuffling
  // on, so that a generation drawing from the run's randomness would show in the losses; a
  // learning rate high enough that the adapter's answers move away from the base model's.
  const sft = (out: string, extra: Record<string, unknown> = {}) => ({
    model_name_or_path: demoModel, stage: 'sft', dataset: data.sft_messages, output_dir: out, val_size: 3, eval_steps: 2,
    per_device_train_batch_size: 1, max_steps: 5, logging_steps: 1, save_steps: 2, lora_rank: 4, lora_dropout: 0.1,
    learning_rate: 5e-2, threads: 1, seed: 11, sample_max_new_tokens: 16, ...extra
  })
  /** Greedy answers of the generation service, as a user would ask for them. */
  const greedy = async (prompts: SampleGeneration['prompt'][], adapter: string | null): Promise<string[]> =>
    (await generate(pool, { model: demoModel, adapter }, prompts.map((prompt) => ({ prompt })), {
      settings: { temperature: 0, maxNewTokens: 16 }, chatTemplate: true
    })).map((r) => r.text)

  beforeAll(() => {
    dir = mkdtempSync(join(tmpdir(), 'tb-samples-'))
    data = writeDatasets(join(dir, 'data'))
  })
  afterAll(async () => {
    await pool.dispose()
    rmSync(dir, { recursive: true, force: true })
  })

  it('answers the held-out prompts at each evaluation and at the end, base next to adapter, in the run folder and in RunDetail', async () => {
    const out = join(dir, 'sft')
    const events: RunEvent[] = []
    await train(resolveConfig(sft(out), 'sft'), { onEvent: (e) => events.push(e) })
    const lines = readJsonl<SampleGeneration>(join(out, 'samples.jsonl'))
    expect(lines.map((l) => [l.step, l.index])).toEqual([2, 4, 5].flatMap((s) => [[s, 0], [s, 1], [s, 2]]))

    // The held-out records (the split's own permutation), in dataset order, up to their answer.
    const records = readJsonl<{ messages: { role: string; content: string }[] }>(data.sft_messages)
    const held = permutation(records.length, mixSeed(11, SEED_PURPOSE.split)).slice(0, 3).sort((a, b) => a - b)
    const prompts = held.map((i) => records[i]!.messages.slice(0, records[i]!.messages.map((m) => m.role).lastIndexOf('assistant')))
    for (const l of lines) expect(l.prompt).toEqual(prompts[l.index])

    const base = await greedy(prompts, null)
    for (const l of lines) expect(l.base).toBe(base[l.index])
    const last = lines.filter((l) => l.step === 5)
    expect(last.some((l) => l.adapter !== l.base)).toBe(true)
    expect(last.map((l) => l.adapter)).toEqual(await greedy(prompts, out))

    const sent = events.filter((e): e is Extract<RunEvent, { type: 'samples' }> => e.type === 'samples')
    expect(sent.map((e) => e.step)).toEqual([2, 4, 5])
    expect(sent.flatMap((e) => e.samples)).toEqual(lines)
    expect((await readRun(out)).samples).toEqual(lines)
  })

  it('change no training number: the same run without samples logs the same losses and saves the same adapter', async () => {
    const withSamples = join(dir, 'with')
    const without = join(dir, 'without')
    await train(resolveConfig(sft(withSamples), 'with'))
    await train(resolveConfig(sft(without, { sample_prompts: 0 }), 'without'))
    const strip = (e: TrainerLogEntry) => ({ ...e, elapsed_time: '', remaining_time: '', tokens_per_second: 0 })
    expect(readJsonl<TrainerLogEntry>(join(withSamples, 'trainer_log.jsonl')).map(strip))
      .toEqual(readJsonl<TrainerLogEntry>(join(without, 'trainer_log.jsonl')).map(strip))
    expect(readFileSync(join(withSamples, 'adapter_model.safetensors')).equals(readFileSync(join(without, 'adapter_model.safetensors')))).toBe(true)
    expect(readFileSync(join(without, 'samples.jsonl'), 'utf8')).toBe('')
    expect((await readRun(without)).samples).toEqual([])
  })

  it('a run stopped after a checkpoint and resumed writes the same samples as an uninterrupted one', async () => {
    const full = join(dir, 'uninterrupted')
    await train(resolveConfig(sft(full), 'uninterrupted'))
    const split = join(dir, 'split')
    const abort = new AbortController()
    // Stopped in step 3, after the samples of step 2 and before those of step 4.
    const first = new Trainer(resolveConfig(sft(split), 'split'), {
      signal: abort.signal,
      onEvent: (e) => e.type === 'checkpoint' && e.step === 2 && abort.abort()
    })
    await expect(first.run()).rejects.toBeInstanceOf(CancelledError)
    expect(readJsonl<SampleGeneration>(join(split, 'samples.jsonl')).map((l) => l.step)).toEqual([2, 2, 2])
    await train(resolveConfig(sft(split, { resume_from_checkpoint: 'last' }), 'split'))
    expect(readJsonl(join(split, 'samples.jsonl'))).toEqual(readJsonl(join(full, 'samples.jsonl')))
  })

  it('full fine-tuning: the base answers come from the weights before the first update; with no eval split, the training prompts are answered at the end', async () => {
    const out = join(dir, 'full')
    await train(resolveConfig(sft(out, { finetuning_type: 'full', val_size: 0, learning_rate: 5e-2, sample_prompts: 2 }), 'full'))
    const lines = readJsonl<SampleGeneration>(join(out, 'samples.jsonl'))
    expect(lines.map((l) => [l.step, l.index])).toEqual([[5, 0], [5, 1]])
    const records = readJsonl<{ messages: { role: string; content: string }[] }>(data.sft_messages)
    expect(lines.map((l) => l.prompt)).toEqual(records.slice(0, 2).map((r) => r.messages.slice(0, r.messages.map((m) => m.role).lastIndexOf('assistant'))))
    expect(lines.map((l) => l.base)).toEqual(await greedy(lines.map((l) => l.prompt), null))
    // The weights did move: answers generated after an update would differ.
    expect(lines.some((l) => l.adapter !== l.base)).toBe(true)
  })
})
