// The LLaMA-Factory export of a run: train.yaml with LLaMA-Factory's keys only (Tunebench's own
// dropped with a warning naming each), the run's data as LLaMA-Factory files with their
// dataset_info.json (TRL files converted, LLaMA-Factory files copied as they are), for SFT, DPO
// and KTO runs; the refusals (no run, GRPO, a loss LLaMA-Factory lacks, an imported adapter).
// Then the proof with LLaMA-Factory itself (the llamafactory package, tests/python/
// llamafactory_parse.py): its parser takes the YAML, its loader reads every example, its
// tokenisation for the stage runs, and one real training step writes an adapter, which
// Tunebench imports back and its engine loads.
import { spawn, spawnSync } from 'node:child_process'
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { parse as parseYaml } from 'yaml'
import type { ExportInputs } from '../../main/services/export/index'
import { planLlamaFactory } from '../../main/services/export/llamafactory'
import { withStagedFolder } from '../../main/services/export/staged'
import { parseTrlRecord, type TrainingRecord } from '../../main/services/data/formats'
import { resolveConfig } from '../../main/services/training/config'
import { resolveDatasets, storeRecordToTrl } from '../../main/services/training/datasets'
import { readRecords, lfEntryMapping, inspectFile } from '../../main/services/data/importers'
import { readRows } from '../../main/services/data/sources'
import type { TrainingConfig } from '../../preload/types/training'
import { writeDatasets } from './training.fixtures'
import { engineBuilt, pythonExe, requireOrSkip } from './trainingPython'

const repo = join(import.meta.dirname, '..', '..')
const demoModel = join(repo, 'resources', 'demo-model')
const run = engineBuilt('LLaMA-Factory export tests') // the config parser reads the engine's limits

let root: string
let data: Record<string, string>
let lfDir: string
beforeAll(() => {
  root = mkdtempSync(join(tmpdir(), 'tb-export-lf-'))
  data = writeDatasets(join(root, 'data'))
  // A LLaMA-Factory dataset folder as the data store exports them: an alpaca SFT set with a
  // system column (JSON array) and a sharegpt KTO set.
  lfDir = join(root, 'lf-data')
  mkdirSync(lfDir)
  writeFileSync(join(lfDir, 'alpaca_sft.json'), JSON.stringify([
    { instruction: 'Translate to French.', input: 'Good morning', output: 'Bonjour', system: 'You translate.' },
    { instruction: 'What is 3 + 4?', input: '', output: '7', system: '' },
    { instruction: 'Name a colour.', input: '', output: 'Blue.', system: '' }
  ], null, 2))
  writeFileSync(join(lfDir, 'feedback.jsonl'), [
    { messages: [{ role: 'user', content: 'Capital of Italy?' }, { role: 'assistant', content: 'Rome.' }], kto_tag: true },
    { messages: [{ role: 'user', content: 'Capital of Spain?' }, { role: 'assistant', content: 'Lisbon.' }], kto_tag: false },
    { messages: [{ role: 'user', content: 'Say hi.' }, { role: 'assistant', content: 'Hi!' }], kto_tag: true },
    { messages: [{ role: 'user', content: 'Two plus two?' }, { role: 'assistant', content: 'Five.' }], kto_tag: false }
  ].map((r) => JSON.stringify(r) + '\n').join(''))
  writeFileSync(join(lfDir, 'dataset_info.json'), JSON.stringify({
    lf_alpaca: { file_name: 'alpaca_sft.json', columns: { prompt: 'instruction', query: 'input', response: 'output', system: 'system' } },
    lf_feedback: {
      file_name: 'feedback.jsonl', formatting: 'sharegpt', columns: { messages: 'messages', kto_tag: 'kto_tag' },
      tags: { role_tag: 'role', content_tag: 'content', user_tag: 'user', assistant_tag: 'assistant', system_tag: 'system' }
    }
  }, null, 2))
})
afterAll(() => rmSync(root, { recursive: true, force: true }))

let runCount = 0
/** A run folder as the trainer leaves it: run.json (the resolved config, intervals resolved)
 *  and status.json. */
function makeRun(raw: Record<string, unknown>, status: Record<string, unknown> = {}): { dir: string; config: TrainingConfig } {
  const dir = join(root, 'runs', `run-${raw.stage as string}-${++runCount}`)
  mkdirSync(dir, { recursive: true })
  const config = resolveConfig(
    { model_name_or_path: demoModel, output_dir: dir, logging_steps: 1, save_steps: 2, threads: 1, lora_rank: 4, per_device_train_batch_size: 2, ...raw },
    join(dir, 'run.json')
  )
  writeFileSync(join(dir, 'run.json'), JSON.stringify(config, null, 2))
  writeFileSync(join(dir, 'status.json'), JSON.stringify({ state: 'finished', error: null, pid: 1, startedAt: '', updatedAt: '', step: 4, totalSteps: 4, lastCheckpoint: null, ...status }))
  return { dir, config }
}

/** What exportModel gives a format: only the run and the base folder matter here. */
const inputsOf = (r: { dir: string; config: TrainingConfig } | null) => ({ modelDir: demoModel, run: r })

async function exportRun(r: { dir: string; config: TrainingConfig }) {
  const plan = await planLlamaFactory(inputsOf(r))
  const out = join(root, 'exports', `${r.config.stage}-${runCount}-${Math.random().toString(36).slice(2, 6)}`)
  await withStagedFolder(out, plan.files, { totalBytes: plan.bytes }, (folder) => plan.write(folder))
  const yaml = parseYaml(readFileSync(join(out, 'train.yaml'), 'utf8')) as Record<string, unknown>
  const info = JSON.parse(readFileSync(join(out, 'dataset_info.json'), 'utf8')) as Record<string, Record<string, unknown>>
  const lines = (f: string) => readFileSync(join(out, f), 'utf8').trim().split('\n').map((l) => JSON.parse(l) as Record<string, unknown>)
  return { plan, out, yaml, info, lines }
}

/** Keys every export writes for a LoRA run (with their values from the run). */
function commonKeys(cfg: TrainingConfig, datasets: string[]): Record<string, unknown> {
  return {
    model_name_or_path: demoModel, disable_gradient_checkpointing: false,
    stage: cfg.stage, finetuning_type: 'lora', do_train: true,
    lora_rank: cfg.lora_rank, lora_alpha: cfg.lora_alpha, lora_dropout: cfg.lora_dropout, lora_target: cfg.lora_target.join(','), use_rslora: false, use_dora: false,
    dataset: datasets.join(','), dataset_dir: '.', cutoff_len: cfg.cutoff_len, disable_shuffling: false,
    output_dir: `saves/${cfg.output_dir.split('/').pop()}`, logging_steps: 1, save_steps: 2,
    per_device_train_batch_size: cfg.per_device_train_batch_size, gradient_accumulation_steps: 1,
    learning_rate: cfg.learning_rate, weight_decay: 0, adam_beta1: 0.9, adam_beta2: 0.999, adam_epsilon: 1e-8, max_grad_norm: 1,
    num_train_epochs: cfg.num_train_epochs, lr_scheduler_type: cfg.lr_scheduler_type, seed: 42
  }
}

const DROPPED = 'Left out of train.yaml, LLaMA-Factory has no such keys: sample_prompts (the dashboard\'s sample answers), sample_max_new_tokens (the dashboard\'s sample answers), threads (Tunebench\'s engine), device (Tunebench\'s engine)'

/** Tunebench's own reading of a dataset file: the records it trains on. */
async function tunebenchRecords(cfg: Pick<TrainingConfig, 'dataset' | 'dataset_dir'>): Promise<TrainingRecord[][]> {
  const out: TrainingRecord[][] = []
  for (const source of await resolveDatasets(cfg)) {
    const recs: TrainingRecord[] = []
    if (!source.llamaFactory) for await (const row of readRows(source.file)) recs.push(parseTrlRecord(row.value))
    else {
      const { format, mapping } = lfEntryMapping(source.llamaFactory.entry, source.name, (await inspectFile(source.file)).columns, source.llamaFactory.infoFile)
      for await (const row of readRecords(source.file, { format, mapping })) recs.push(storeRecordToTrl(row.record))
    }
    out.push(recs)
  }
  return out
}

describe.runIf(run)('llamafactory export', () => {
  it('SFT: TRL messages converted to sharegpt, a LLaMA-Factory alpaca file copied with its entry, the config in its keys', async () => {
    const r = makeRun({ stage: 'sft', dataset: ['lf_alpaca', data.sft_messages!], dataset_dir: lfDir, learning_rate: 2e-4, lr_scheduler_type: 'cosine', warmup_ratio: 0.1, val_size: 0.2, max_samples: 100 })
    const { plan, out, yaml, info, lines } = await exportRun(r)
    expect(plan.files).toEqual(['train.yaml', 'dataset_info.json', 'lf_alpaca.json', 'sft_messages.jsonl'])
    expect(readdirSync(out).sort()).toEqual([...plan.files].sort())
    expect(yaml).toEqual({
      ...commonKeys(r.config, ['lf_alpaca', 'sft_messages']),
      max_samples: 100, warmup_ratio: 0.1, val_size: 0.2, per_device_eval_batch_size: 8, eval_strategy: 'steps'
    })
    // Floats keep a decimal point for PyYAML (1e-8 would read as a string there).
    const text = readFileSync(join(out, 'train.yaml'), 'utf8')
    expect(text).toMatch(/^adam_epsilon: 1\.0e-8$/m)
    expect(text).toMatch(/^num_train_epochs: 3\.0$/m)
    expect(text).toContain('# Run it from this folder: llamafactory-cli train train.yaml')
    expect(plan.usage(out)).toEqual([`cd ${out} && llamafactory-cli train train.yaml`])
    expect(plan.warnings).toEqual([DROPPED])
    expect(plan.bytes).toBe(plan.files.reduce((n, f) => n + readFileSync(join(out, f)).length, 0))

    // The copied file is the run's, byte for byte, under its entry with the new file name.
    expect(readFileSync(join(out, 'lf_alpaca.json')).equals(readFileSync(join(lfDir, 'alpaca_sft.json')))).toBe(true)
    expect(info.lf_alpaca).toEqual({ file_name: 'lf_alpaca.json', columns: { prompt: 'instruction', query: 'input', response: 'output', system: 'system' } })
    expect(info.sft_messages).toEqual({
      file_name: 'sft_messages.jsonl', formatting: 'sharegpt', columns: { messages: 'messages' },
      tags: { role_tag: 'role', content_tag: 'content', user_tag: 'user', assistant_tag: 'assistant', system_tag: 'system', observation_tag: 'tool', function_tag: 'function_call' }
    })
    expect(lines('sft_messages.jsonl')).toHaveLength(6)
    // Tunebench reads the exported data as the records it trained on.
    expect(await tunebenchRecords({ dataset: ['lf_alpaca', 'sft_messages'], dataset_dir: out })).toEqual(await tunebenchRecords(r.config))
  })

  it('precision bf16 (or LLaMA-Factory\'s bf16: true) is written as bf16: true; auto and f32 write nothing', async () => {
    for (const [raw, bf16] of [[{ precision: 'bf16' }, true], [{ bf16: true }, true], [{ precision: 'auto' }, undefined], [{ precision: 'f32' }, undefined]] as const) {
      const r = makeRun({ stage: 'sft', dataset: [data.sft_messages!], ...raw })
      const { plan, yaml } = await exportRun(r)
      expect(yaml.bf16, JSON.stringify(raw)).toBe(bf16)
      expect(plan.warnings).toEqual([DROPPED])
    }
  })

  it('DPO: plain pairs as alpaca ranking (template: empty), chat pairs as sharegpt ranking; ORPO and SimPO keep their keys', async () => {
    const plain = makeRun({ stage: 'dpo', dataset: data.pairs_plain, pref_beta: 0.2, pref_ftx: 0.5, dpo_label_smoothing: 0.1 })
    const p = await exportRun(plain)
    expect(p.yaml).toEqual({
      ...commonKeys(plain.config, ['pairs_plain']),
      pref_beta: 0.2, pref_loss: 'sigmoid', pref_ftx: 0.5, dpo_label_smoothing: 0.1, template: 'empty'
    })
    expect(p.info.pairs_plain).toEqual({ file_name: 'pairs_plain.jsonl', ranking: true, columns: { prompt: 'instruction', query: 'input', chosen: 'chosen', rejected: 'rejected' } })
    expect(p.lines('pairs_plain.jsonl')[0]).toEqual({ instruction: 'What is the capital of France?', input: '', chosen: ' The capital of France is Paris.', rejected: ' I do not know.' })
    expect(p.plan.warnings).toEqual([
      'pairs_plain is plain text, which Tunebench trains without a chat template; train.yaml sets template: empty, LLaMA-Factory\'s plain-text template (it adds no eos token after the answer)',
      DROPPED
    ])

    const chat = makeRun({ stage: 'dpo', dataset: data.pairs_chat, pref_loss: 'simpo', simpo_gamma: 0.8, pref_beta: 2 })
    const c = await exportRun(chat)
    expect(c.yaml).toMatchObject({ stage: 'dpo', pref_loss: 'simpo', simpo_gamma: 0.8, pref_beta: 2, dataset: 'pairs_chat' })
    expect(c.yaml).not.toHaveProperty('template')
    expect(c.info.pairs_chat).toMatchObject({ formatting: 'sharegpt', ranking: true, columns: { messages: 'messages', chosen: 'chosen', rejected: 'rejected' } })
    expect(c.lines('pairs_chat.jsonl')[0]).toEqual({
      messages: [{ role: 'user', content: 'What colour is the sky?' }], chosen: { role: 'assistant', content: 'The sky is blue.' }, rejected: { role: 'assistant', content: 'Green.' }
    })
    expect(await tunebenchRecords({ dataset: ['pairs_chat'], dataset_dir: c.out })).toEqual(await tunebenchRecords(chat.config))

    const orpo = await exportRun(makeRun({ stage: 'dpo', dataset: data.pairs_chat, pref_loss: 'orpo' }))
    expect(orpo.yaml).toMatchObject({ pref_loss: 'orpo' })
    expect(orpo.yaml).not.toHaveProperty('simpo_gamma')
  })

  it('KTO: labelled answers with kto_tag; pairs given to KTO become a desirable and an undesirable example; sharegpt KTO copied', async () => {
    const r = makeRun({ stage: 'kto', dataset: [data.unpaired!, data.pairs_chat!, 'lf_feedback'], dataset_dir: lfDir, kto_chosen_weight: 1.5, kto_rejected_weight: 0.5, pref_beta: 0.3 })
    const { yaml, info, lines, plan, out } = await exportRun(r)
    expect(yaml).toEqual({
      ...commonKeys(r.config, ['unpaired', 'pairs_chat', 'lf_feedback']),
      pref_beta: 0.3, kto_chosen_weight: 1.5, kto_rejected_weight: 0.5
    })
    expect(plan.warnings).toEqual([
      'unpaired is plain text, which Tunebench trains without a chat template, but LLaMA-Factory formats every dataset of a run with one template (the tokenizer\'s chat template here)',
      DROPPED
    ])
    expect(info.unpaired).toEqual({ file_name: 'unpaired.jsonl', columns: { prompt: 'instruction', query: 'input', response: 'output', kto_tag: 'kto_tag' } })
    expect(lines('unpaired.jsonl')[1]).toEqual({ instruction: 'What is the capital of Spain?', input: '', output: ' Paris, surely.', kto_tag: false })
    expect(info.pairs_chat).toMatchObject({ formatting: 'sharegpt', columns: { messages: 'messages', kto_tag: 'kto_tag' } })
    expect(info.pairs_chat).not.toHaveProperty('ranking')
    const unpaired = lines('pairs_chat.jsonl')
    expect(unpaired).toHaveLength(8)
    expect(unpaired.slice(0, 2)).toEqual([
      { messages: [{ role: 'user', content: 'What colour is the sky?' }, { role: 'assistant', content: 'The sky is blue.' }], kto_tag: true },
      { messages: [{ role: 'user', content: 'What colour is the sky?' }, { role: 'assistant', content: 'Green.' }], kto_tag: false }
    ])
    expect(readFileSync(join(out, 'lf_feedback.jsonl')).equals(readFileSync(join(lfDir, 'feedback.jsonl')))).toBe(true)
    expect(info.lf_feedback).toMatchObject({ file_name: 'lf_feedback.jsonl', formatting: 'sharegpt', columns: { kto_tag: 'kto_tag' } })
  })

  it('refuses what LLaMA-Factory cannot train, and data it cannot hold', async () => {
    await expect(planLlamaFactory(inputsOf(null))).rejects.toThrow('llamafactory export needs a run (--run): its config and data are what LLaMA-Factory trains; an adapter folder alone has neither')
    const grpo = makeRun({ stage: 'grpo', dataset: data.pairs_plain, per_device_train_batch_size: 8, max_completion_length: 16, cutoff_len: 64 })
    await expect(planLlamaFactory(inputsOf(grpo))).rejects.toThrow(/^LLaMA-Factory does not train GRPO/)
    const norm = makeRun({ stage: 'dpo', dataset: data.pairs_plain, pref_loss: 'sigmoid_norm' })
    await expect(planLlamaFactory(inputsOf(norm))).rejects.toThrow('pref_loss sigmoid_norm has no LLaMA-Factory equivalent (it has sigmoid, hinge, ipo, orpo, simpo)')
    const imported = makeRun({ stage: 'sft', dataset: data.sft_messages }, { imported: { from: '/somewhere/my-lora', at: '' } })
    await expect(planLlamaFactory(inputsOf(imported))).rejects.toThrow(`${imported.dir} is an adapter imported from /somewhere/my-lora: it has no training config or data to hand to LLaMA-Factory`)
    const gone = makeRun({ stage: 'sft', dataset: join(root, 'data', 'deleted.jsonl') })
    await expect(planLlamaFactory(inputsOf(gone))).rejects.toThrow(/^The run's datasets cannot be read: .*deleted\.jsonl/)

    const multi = join(root, 'data', 'multi-turn-answer.jsonl')
    writeFileSync(multi, JSON.stringify({ prompt: [{ role: 'user', content: 'a' }], chosen: [{ role: 'assistant', content: 'b' }, { role: 'user', content: 'c' }], rejected: [{ role: 'assistant', content: 'd' }] }) + '\n')
    await expect(planLlamaFactory(inputsOf(makeRun({ stage: 'dpo', dataset: multi })))).rejects.toThrow(`${multi}: line 1: field 'chosen': LLaMA-Factory takes one assistant message here, got 2 messages`)
    const mixed = join(root, 'data', 'mixed.jsonl')
    writeFileSync(mixed, [{ prompt: 'plain', completion: 'text' }, { prompt: [{ role: 'user', content: 'chat' }], completion: [{ role: 'assistant', content: 'turn' }] }].map((l) => JSON.stringify(l) + '\n').join(''))
    await expect(planLlamaFactory(inputsOf(makeRun({ stage: 'sft', dataset: mixed })))).rejects.toThrow(`${mixed}: line 2: is conversational but the records before it are plain text; a LLaMA-Factory dataset has one formatting`)
  })

  it('warns where LLaMA-Factory reads the data otherwise', async () => {
    // A conversation LLaMA-Factory would skip is written, with a warning that counts them.
    const odd = join(root, 'data', 'two-users.jsonl')
    writeFileSync(odd, [
      { messages: [{ role: 'user', content: 'a' }, { role: 'user', content: 'b' }, { role: 'assistant', content: 'c' }] },
      { messages: [{ role: 'user', content: 'a' }, { role: 'assistant', content: 'c' }] }
    ].map((l) => JSON.stringify(l) + '\n').join(''))
    const oddPlan = await planLlamaFactory(inputsOf(makeRun({ stage: 'sft', dataset: odd })))
    expect(oddPlan.warnings[0]).toBe('two-users: 1 of 2 examples are conversations LLaMA-Factory skips as abnormal (it reads an optional system turn, then user and assistant turns alternating, ending on the answer)')
    // History in an SFT prompt: Tunebench trains the completion only.
    const history = join(root, 'data', 'history.jsonl')
    writeFileSync(history, JSON.stringify({
      prompt: [{ role: 'user', content: 'a' }, { role: 'assistant', content: 'b' }, { role: 'user', content: 'c' }], completion: [{ role: 'assistant', content: 'd' }]
    }) + '\n')
    const historyPlan = await planLlamaFactory(inputsOf(makeRun({ stage: 'sft', dataset: history })))
    expect(historyPlan.warnings[0]).toBe('history: 1 of 1 records have assistant turns in the prompt, which Tunebench does not train on and LLaMA-Factory does (mask_history: true trains the last turn only)')
    // Pairs given to KTO with max_samples: records there, examples here.
    const ktoPlan = await planLlamaFactory(inputsOf(makeRun({ stage: 'kto', dataset: data.pairs_chat, max_samples: 3 })))
    expect(ktoPlan.warnings[0]).toBe('pairs_chat: 4 pairs are each written as a desirable and an undesirable example, so max_samples (3), which counts records in Tunebench, counts examples in LLaMA-Factory')
  })

  it('moe_aux_loss_coef is passed through to the model section when set, and absent when unset', async () => {
    const r = makeRun({ stage: 'dpo', dataset: data.pairs_chat, moe_aux_loss_coef: 0.001 })
    const { plan, out, yaml } = await exportRun(r)
    expect(yaml.moe_aux_loss_coef).toBe(0.001)
    const text = readFileSync(join(out, 'train.yaml'), 'utf8')
    const model = text.slice(text.indexOf('### model'), text.indexOf('### method'))
    expect(model).toMatch(/^moe_aux_loss_coef: 0\.001$/m)
    expect(plan.warnings).toEqual([DROPPED])
    const kto = await exportRun(makeRun({ stage: 'kto', dataset: data.unpaired, moe_aux_loss_coef: 0 }))
    expect(readFileSync(join(kto.out, 'train.yaml'), 'utf8')).toMatch(/^moe_aux_loss_coef: 0\.0$/m)
    expect(await exportRun(makeRun({ stage: 'sft', dataset: data.sft_messages }))).not.toHaveProperty('yaml.moe_aux_loss_coef')
  })

  it('full fine-tuning has no LoRA keys; an adapter to continue from is kept with a warning', async () => {
    const full = await exportRun(makeRun({ stage: 'sft', dataset: data.sft_messages, finetuning_type: 'full' }))
    expect(full.yaml).toMatchObject({ stage: 'sft', finetuning_type: 'full', do_train: true })
    expect(Object.keys(full.yaml).filter((k) => k.startsWith('lora_') || k === 'use_rslora' || k === 'use_dora')).toEqual([])
    const adapterDir = join(root, 'some-adapter')
    const cont = await exportRun(makeRun({ stage: 'dpo', dataset: data.pairs_chat, adapter_name_or_path: adapterDir }))
    expect(cont.yaml).toMatchObject({ adapter_name_or_path: adapterDir })
    expect(cont.plan.warnings[0]).toBe(`adapter_name_or_path is the local folder ${adapterDir}: copy it to the machine that trains and change the path in train.yaml`)
  })

  it('never replaces files in the destination', async () => {
    const r = makeRun({ stage: 'sft', dataset: data.sft_messages })
    const plan = await planLlamaFactory(inputsOf(r))
    const out = join(root, 'taken')
    mkdirSync(out)
    writeFileSync(join(out, 'train.yaml'), 'mine')
    await expect(withStagedFolder(out, plan.files, { totalBytes: plan.bytes }, (f) => plan.write(f))).rejects.toThrow(/train\.yaml already exists/)
    expect(readdirSync(out)).toEqual(['train.yaml'])
    expect(readFileSync(join(out, 'train.yaml'), 'utf8')).toBe('mine')
  })
})

// ---- LLaMA-Factory's own code on the export ----

/** The Python with the llamafactory package: TUNEBENCH_LLAMAFACTORY_PYTHON, else the repo's
 *  .venv-llamafactory (see the CI step), else the reference Python (TUNEBENCH_PYTHON). */
const lfPython =
  process.env.TUNEBENCH_LLAMAFACTORY_PYTHON ??
  (existsSync(join(repo, '.venv-llamafactory', 'bin', 'python')) ? join(repo, '.venv-llamafactory', 'bin', 'python') : pythonExe)

function llamafactoryAvailable(): boolean {
  const r = spawnSync(lfPython, ['-c', 'import llamafactory.hparams, llamafactory.data; print(llamafactory.__version__)'], { encoding: 'utf8', env: { ...process.env, LLAMAFACTORY_VERBOSITY: 'WARN' } })
  if (r.status === 0) return true
  const why = (r.stderr || r.error?.message || '').trim().split('\n').pop()
  return requireOrSkip('LLaMA-Factory parser tests', `${lfPython} cannot import llamafactory (${why}); install llamafactory==0.9.5 into .venv-llamafactory (as .ci/run does) or set TUNEBENCH_LLAMAFACTORY_PYTHON to a Python that has it`)
}

interface LfReading {
  llamafactory: string
  args: Record<string, unknown>
  datasets: { name: string; file: string; load_from: string; formatting: string; ranking: boolean; kto_tag: string | null; rows: number; broken: number; first: { prompt: unknown; response: unknown; system: string } }[]
  tokenized: { train: number; eval: number; columns: string[] }
  trained?: { current_steps: number; loss?: number }[]
  adapter?: string[]
}

function readWithLlamaFactory(dir: string, trainSteps = 0): Promise<LfReading> {
  return new Promise((resolve, reject) => {
    const child = spawn(lfPython, [join(repo, 'tests', 'python', 'llamafactory_parse.py'), dir, ...(trainSteps ? ['--train', String(trainSteps)] : [])], {
      env: { ...process.env, OMP_NUM_THREADS: '1', MKL_NUM_THREADS: '1', CUDA_VISIBLE_DEVICES: '' }
    })
    let out = ''
    let err = ''
    child.stdout.on('data', (d: Buffer) => (out += d.toString()))
    child.stderr.on('data', (d: Buffer) => (err += d.toString()))
    child.on('error', reject)
    child.on('close', (code) => (code === 0 ? resolve(JSON.parse(out) as LfReading) : reject(new Error(`llamafactory_parse.py ${dir} failed (${code}): ${err.slice(-4000)}`))))
  })
}

/** The run's values as LLaMA-Factory's argument classes hold them (lists as it splits them). */
function expectArgs(lf: Record<string, unknown>, yaml: Record<string, unknown>): void {
  for (const [k, v] of Object.entries(yaml)) {
    if (k === 'lora_target' || k === 'dataset') expect(lf[k], k).toEqual(String(v).split(','))
    else expect(lf[k], k).toEqual(v)
  }
}

describe.runIf(run && llamafactoryAvailable())('llamafactory export read by LLaMA-Factory', () => {
  it('SFT: the parser takes train.yaml, the loader reads every example, and one real step trains', async () => {
    const r = makeRun({ stage: 'sft', dataset: ['lf_alpaca', data.sft_messages!], dataset_dir: lfDir, val_size: 2, learning_rate: 1e-4, warmup_steps: 1, max_samples: 50 })
    const { out, yaml } = await exportRun(r)
    const lf = await readWithLlamaFactory(out, 1)
    expectArgs(lf.args, yaml)
    expect(lf.datasets.map((d) => [d.name, d.formatting, d.ranking, d.rows, d.broken])).toEqual([['lf_alpaca', 'alpaca', false, 3, 0], ['sft_messages', 'sharegpt', false, 6, 0]])
    expect(lf.datasets[0]!.first).toEqual({ prompt: [{ role: 'user', content: 'Translate to French.\nGood morning' }], response: [{ role: 'assistant', content: 'Bonjour' }], system: 'You translate.' })
    expect(lf.tokenized).toMatchObject({ train: 7, eval: 2 })
    expect(lf.tokenized.columns).toEqual(expect.arrayContaining(['input_ids', 'labels']))
    expect(typeof lf.trained?.[0]?.loss).toBe('number')
    expect(lf.adapter).toEqual(expect.arrayContaining(['adapter_config.json', 'adapter_model.safetensors']))
  }, 240_000)

  it('DPO (plain and chat pairs, SimPO): read as ranking data for its pairwise workflow; one step trains; its adapter imports back', async () => {
    const r = makeRun({ stage: 'dpo', dataset: [data.pairs_chat!], pref_loss: 'simpo', simpo_gamma: 0.7, pref_beta: 2, lora_target: 'q_proj,v_proj' })
    const { out, yaml } = await exportRun(r)
    const lf = await readWithLlamaFactory(out, 1)
    expectArgs(lf.args, yaml)
    expect(lf.datasets).toMatchObject([{ name: 'pairs_chat', formatting: 'sharegpt', ranking: true, rows: 4, broken: 0 }])
    expect(lf.datasets[0]!.first.response).toEqual([{ role: 'assistant', content: 'The sky is blue.' }, { role: 'assistant', content: 'Green.' }])
    expect(lf.tokenized.train).toBe(4)
    expect(lf.tokenized.columns).toEqual(expect.arrayContaining(['chosen_input_ids', 'rejected_input_ids']))
    expect(typeof lf.trained?.[0]?.loss).toBe('number')

    // The way back: the adapter LLaMA-Factory trained, imported as a run; the engine loads it.
    const { RunsService } = await import('../../main/services/training/runs')
    const { Model } = await import('../../native/index')
    const runs = new RunsService({ runsRoot: join(root, 'imported-runs') })
    const summary = await runs.importAdapter({ dir: join(out, yaml.output_dir as string) })
    expect(summary).toMatchObject({ state: 'finished', hasAdapter: true, model: demoModel })
    const model = await Model.load(demoModel, { threads: 1 })
    try {
      expect(await model.loadAdapter(summary.dir)).toMatchObject({ rank: 4, alpha: 8, targets: ['q', 'v'] })
    } finally {
      model.dispose()
    }

    const plain = await exportRun(makeRun({ stage: 'dpo', dataset: data.pairs_plain }))
    const lfPlain = await readWithLlamaFactory(plain.out)
    expectArgs(lfPlain.args, plain.yaml)
    expect(lfPlain.args.template).toBe('empty')
    expect(lfPlain.datasets).toMatchObject([{ formatting: 'alpaca', ranking: true, rows: 4, broken: 0 }])
    expect(lfPlain.tokenized.train).toBe(4)
  }, 240_000)

  it('KTO (labelled answers, pairs made unpaired, a copied sharegpt set): read with kto_tag; one step trains', async () => {
    const r = makeRun({ stage: 'kto', dataset: [data.pairs_chat!, 'lf_feedback'], dataset_dir: lfDir, kto_chosen_weight: 1.5, pref_beta: 0.3 })
    const { out, yaml } = await exportRun(r)
    const lf = await readWithLlamaFactory(out, 1)
    expectArgs(lf.args, yaml)
    expect(lf.datasets.map((d) => [d.name, d.formatting, d.ranking, d.kto_tag, d.rows, d.broken])).toEqual([
      ['pairs_chat', 'sharegpt', false, 'kto_tag', 8, 0], ['lf_feedback', 'sharegpt', false, 'kto_tag', 4, 0]
    ])
    // LLaMA-Factory's KTO layout: a desirable answer first, then an empty one.
    expect(lf.datasets[0]!.first.response).toEqual([{ role: 'assistant', content: 'The sky is blue.' }, { role: 'assistant', content: '' }])
    expect(lf.tokenized.train).toBe(12)
    expect(lf.tokenized.columns).toEqual(expect.arrayContaining(['kto_tags']))
    expect(typeof lf.trained?.[0]?.loss).toBe('number')

    const plain = await exportRun(makeRun({ stage: 'kto', dataset: data.unpaired }))
    const lfPlain = await readWithLlamaFactory(plain.out)
    expectArgs(lfPlain.args, plain.yaml)
    expect(lfPlain.datasets).toMatchObject([{ formatting: 'alpaca', kto_tag: 'kto_tag', rows: 6, broken: 0 }])
  }, 240_000)
})
