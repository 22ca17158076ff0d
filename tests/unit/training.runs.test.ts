// The runs service the app uses: start streams events (log, eval on the val_size split,
// checkpoint, finished), runs are listed and read back from disk, stop keeps checkpoints,
// resume continues to the end; importAdapter adds a PEFT adapter trained elsewhere as a
// finished run that the engine (the Playground) loads, and refuses folders it could not.
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join, resolve } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { Model } from '../../native/index'
import { readWeights } from '../../main/services/models/inspect'
import { RunsService, createRunHandlers } from '../../main/services/training/runs'
import { resolveConfig } from '../../main/services/training/config'
import { Trainer } from '../../main/services/training/trainer'
import type { RunEvent, RunStatus, TrainingConfig } from '../../preload/types/training'
import { encodeSafetensors, type Tensor } from './engine-fixture'
import { writeByteLevelModel } from './generation-fixture'
import { writeDatasets } from './training.fixtures'
import { engineBuilt, runPython, torchAvailable } from './trainingPython'

const demoModel = join(import.meta.dirname, '..', '..', 'resources', 'demo-model')

/** The first event that satisfies `pred`, polled every 5 ms; fails after `limitMs` naming what came. */
function waitFor(events: RunEvent[], pred: (e: RunEvent) => boolean, limitMs = 50_000): Promise<RunEvent> {
  const end = Date.now() + limitMs
  return new Promise((resolve, reject) => {
    const tick = () => {
      const hit = events.find(pred)
      if (hit) resolve(hit)
      else if (Date.now() > end) reject(new Error(`no such event within ${limitMs} ms; got: ${events.map((e) => e.type).join(', ')}`))
      else setTimeout(tick, 5)
    }
    tick()
  })
}

describe.runIf(engineBuilt())('runs service', () => {
  let root: string
  let data: Record<string, string>
  beforeAll(() => {
    root = mkdtempSync(join(tmpdir(), 'tb-runs-'))
    data = writeDatasets(join(root, 'data'))
  })
  afterAll(() => rmSync(root, { recursive: true, force: true }))

  it('start → events → list/get from disk → import its adapter back', async () => {
    const events: RunEvent[] = []
    const runs = new RunsService({ runsRoot: join(root, 'runs'), emit: (channel, payload) => channel === 'runs.event' && events.push(payload as RunEvent) })
    const summary = await runs.start({
      config: {
        model_name_or_path: demoModel, stage: 'kto', dataset: data.unpaired, per_device_train_batch_size: 2,
        val_size: 2, max_steps: 4, logging_steps: 2, eval_steps: 2, save_steps: 2, threads: 1, lora_rank: 4, learning_rate: 1e-3
      }
    })
    expect(summary.state).toBe('running')
    expect(summary.dir.startsWith(join(root, 'runs'))).toBe(true)
    const finished = await waitFor(events, (e) => e.type === 'finished' || e.type === 'failed')
    expect(finished.type, JSON.stringify(finished)).toBe('finished')
    const kinds = events.map((e) => e.type)
    expect(kinds[0]).toBe('started')
    expect(kinds.filter((k) => k === 'log')).toHaveLength(2)
    expect(kinds.filter((k) => k === 'checkpoint')).toHaveLength(1) // step 2 (none at the last step)
    const evals = events.filter((e): e is Extract<RunEvent, { type: 'eval' }> => e.type === 'eval')
    expect(evals.map((e) => e.entry.current_steps)).toEqual([2, 4])
    expect(typeof evals[0]!.entry.eval_loss).toBe('number')
    expect(evals[0]!.entry).toHaveProperty('eval_kl')
    const log = events.find((e): e is Extract<RunEvent, { type: 'log' }> => e.type === 'log')!.entry
    for (const key of ['current_steps', 'total_steps', 'loss', 'lr', 'grad_norm', 'epoch', 'percentage', 'elapsed_time', 'remaining_time', 'kl'])
      expect(log, key).toHaveProperty(key)

    const listed = await runs.list()
    expect(listed.map((r) => r.id)).toEqual([summary.id])
    expect(listed[0]).toMatchObject({ state: 'finished', stage: 'kto', step: 4, totalSteps: 4, hasAdapter: true, checkpoints: ['checkpoint-2'] })
    const detail = await runs.get(summary.id)
    expect(detail.log).toHaveLength(4) // 2 train lines + 2 eval lines
    expect(detail.config?.stage).toBe('kto')

    // The adapter the run wrote, imported as a PEFT folder from elsewhere: its base is found
    // through the adapter's own base_model_name_or_path.
    const again = await runs.importAdapter({ dir: summary.dir })
    expect(again).toMatchObject({ state: 'finished', stage: 'sft', hasAdapter: true, model: demoModel, importedFrom: summary.dir })
    expect(readFileSync(join(again.dir, 'adapter_model.safetensors')).equals(readFileSync(join(summary.dir, 'adapter_model.safetensors')))).toBe(true)
    expect((await runs.get(again.id)).config).toMatchObject({ lora_rank: 4, lora_alpha: 8, lora_target: ['all'] })
  })

  it('stop keeps the checkpoints; resume continues to the end', async () => {
    const events: RunEvent[] = []
    let stopping: Promise<boolean> | null = null
    // Stop from inside the first checkpoint event: the abort lands before the next step.
    const runs: RunsService = new RunsService({
      runsRoot: join(root, 'runs2'),
      emit: (_c, p) => {
        events.push(p as RunEvent)
        if ((p as RunEvent).type === 'checkpoint' && !stopping) stopping = runs.stop((p as RunEvent).runDir)
      }
    })
    const summary = await runs.start({
      config: {
        model_name_or_path: demoModel, stage: 'dpo', dataset: data.pairs_plain, per_device_train_batch_size: 1,
        max_steps: 400, logging_steps: 1, save_steps: 2, threads: 1, lora_rank: 4, output_dir: join(root, 'runs2', 'stop-me')
      }
    })
    await waitFor(events, (e) => e.type === 'cancelled')
    expect(await stopping).toBe(true)
    expect(events.at(-1)?.type).toBe('cancelled')
    const stopped = await runs.get(summary.id)
    expect(stopped.summary.state).toBe('cancelled')
    expect(stopped.summary.checkpoints.length).toBeGreaterThan(0)
    expect(existsSync(join(summary.dir, 'adapter_model.safetensors'))).toBe(false)
    expect(await runs.stop(summary.id)).toBe(false)

    // shorten the rest of the run: resume reads run.json
    const cfgFile = join(summary.dir, 'run.json')
    writeFileSync(cfgFile, JSON.stringify({ ...JSON.parse(readFileSync(cfgFile, 'utf8')), max_steps: 12 }))
    expect(stopped.summary.checkpoints).toEqual(['checkpoint-2'])
    expect(stopped.log.map((e) => e.current_steps)).toEqual([1, 2])
    events.length = 0
    const resumed = await runs.resume(summary.id)
    expect(resumed.id).toBe(summary.id)
    const end = await waitFor(events, (e) => e.type === 'finished' || e.type === 'failed')
    expect(end.type).toBe('finished')
    const started = events.find((e) => e.type === 'started') as Extract<RunEvent, { type: 'started' }>
    expect(started.resumedFrom).toContain('checkpoint-')
    const detail = await runs.get(summary.id)
    expect(detail.log.map((e) => e.current_steps)).toEqual(Array.from({ length: 12 }, (_, i) => i + 1))
  })

  it('a relative output_dir lives in the runs root; runs elsewhere are remembered in the index after a restart', async () => {
    const runsRoot = join(root, 'runs4')
    const indexFile = join(root, 'data-dir', 'runs-index.json')
    const events: RunEvent[] = []
    const runs = new RunsService({ runsRoot, indexFile, emit: (_c, p) => events.push(p as RunEvent) })
    expect(runs.validate({ model_name_or_path: demoModel, dataset: 'x', output_dir: 'named' }).output_dir).toBe(join(runsRoot, 'named'))
    const base = { model_name_or_path: demoModel, stage: 'sft', dataset: data.sft_messages, max_steps: 1, logging_steps: 1, threads: 1, lora_rank: 4 }
    const ended = (dir: string) => waitFor(events, (e) => (e.type === 'finished' || e.type === 'failed') && e.runDir === dir)

    const elsewhere = join(root, 'elsewhere', 'sft-a')
    const outside = await runs.start({ config: { ...base, output_dir: elsewhere } })
    expect(outside.dir).toBe(elsewhere)
    expect((await ended(elsewhere)).type).toBe('finished')
    const inside = await runs.start({ config: { ...base, output_dir: 'inside' } })
    expect(inside.dir).toBe(join(runsRoot, 'inside'))
    expect((await ended(inside.dir)).type).toBe('finished')
    // Every event names its run by the absolute folder the summary gave.
    expect(new Set(events.map((e) => e.runDir))).toEqual(new Set([elsewhere, inside.dir]))
    // Only the run outside the root needs remembering; the root is listed.
    expect(JSON.parse(readFileSync(indexFile, 'utf8'))).toEqual({ version: 1, runs: [elsewhere] })

    const restarted = new RunsService({ runsRoot, indexFile })
    expect((await restarted.list()).map((r) => r.dir).sort()).toEqual([elsewhere, inside.dir].sort())
    expect((await restarted.get(elsewhere)).summary).toMatchObject({ state: 'finished', dir: elsewhere, hasAdapter: true })
    rmSync(elsewhere, { recursive: true })
    expect((await restarted.list()).map((r) => r.dir)).toEqual([inside.dir])
    writeFileSync(indexFile, '{"runs": [')
    await expect(restarted.list()).rejects.toThrow(`${indexFile}: the runs index is not valid JSON`)
  })

  it('validate names the key of a bad value', async () => {
    const handlers = createRunHandlers({ runsRoot: join(root, 'runs3') })
    const bad = await handlers['runs.validate']({ model_name_or_path: demoModel, dataset: 'x', lora_rank: 0 })
    expect(bad).toMatchObject({ ok: false, key: 'lora_rank' })
    const good = await handlers['runs.validate']({ model_name_or_path: demoModel, dataset: 'x' })
    expect(good.ok).toBe(true)
    expect(good.config?.output_dir.startsWith(join(root, 'runs3'))).toBe(true)
  })
})

describe('trainer', () => {
  it('names its run by the absolute folder, also for a config built with a relative output_dir', () => {
    const cfg = resolveConfig({ model_name_or_path: demoModel, dataset: 'x', output_dir: 'o' }, 'config')
    const trainer = new Trainer({ ...cfg, output_dir: 'saves/relative-run' })
    expect(trainer.runDir).toBe(resolve('saves/relative-run'))
    expect(trainer.cfg.output_dir).toBe(resolve('saves/relative-run'))
  })
})

/** A PEFT LoRA folder for `base`: A and B for `targets` of the given layers (every layer by
 *  default), shaped from the base's weights unless `shapeOf` says otherwise. */
function writeAdapter(
  dir: string,
  base: { dir: string; tensors: Map<string, { shape: number[] }>; layers: number },
  o: { targets?: string[]; rank?: number; layers?: number[]; config?: Record<string, unknown>; shapeOf?: (name: string, shape: number[]) => number[] } = {}
): string {
  const targets = o.targets ?? ['q_proj', 'v_proj']
  const r = o.rank ?? 2
  const tensors = new Map<string, Tensor>()
  let k = 0
  const t = (shape: number[]): Tensor => ({ shape, data: Float32Array.from({ length: shape.reduce((a, b) => a * b, 1) }, () => ((k++ % 7) - 3) * 0.01) })
  for (const l of o.layers ?? Array.from({ length: base.layers }, (_, i) => i))
    for (const m of targets) {
      const name = `model.layers.${l}.${m.endsWith('proj') && ['q_proj', 'k_proj', 'v_proj', 'o_proj'].includes(m) ? 'self_attn' : 'mlp'}.${m}`
      const shape = o.shapeOf?.(name, base.tensors.get(`${name}.weight`)!.shape) ?? base.tensors.get(`${name}.weight`)!.shape
      tensors.set(`base_model.model.${name}.lora_A.weight`, t([r, shape[1]!]))
      tensors.set(`base_model.model.${name}.lora_B.weight`, t([shape[0]!, r]))
      // a DoRA adapter has its magnitudes too
      if (o.config?.use_dora === true) tensors.set(`base_model.model.${name}.lora_magnitude_vector`, t([shape[0]!]))
    }
  mkdirSync(dir, { recursive: true })
  writeFileSync(join(dir, 'adapter_model.safetensors'), encodeSafetensors(tensors))
  writeFileSync(join(dir, 'adapter_config.json'), JSON.stringify({
    peft_type: 'LORA', task_type: 'CAUSAL_LM', r, lora_alpha: 2 * r, lora_dropout: 0.05, target_modules: targets,
    bias: 'none', use_rslora: false, use_dora: false, modules_to_save: null, layers_to_transform: null,
    base_model_name_or_path: base.dir, ...o.config
  }, null, 2))
  return dir
}

describe.runIf(engineBuilt('adapter import tests'))('importAdapter', () => {
  let root: string
  let runsRoot: string
  let base: { dir: string; tensors: Map<string, { shape: number[] }>; layers: number }
  let runs: RunsService
  beforeAll(async () => {
    root = mkdtempSync(join(tmpdir(), 'tb-import-'))
    runsRoot = join(root, 'runs')
    const w = await readWeights(demoModel)
    base = { dir: demoModel, tensors: w.tensors, layers: (JSON.parse(readFileSync(join(demoModel, 'config.json'), 'utf8')) as { num_hidden_layers: number }).num_hidden_layers }
    runs = new RunsService({ runsRoot })
  })
  afterAll(() => rmSync(root, { recursive: true, force: true }))
  /** The runs root holds exactly these run folders, and no half-written import. */
  const runFolders = () => (existsSync(runsRoot) ? readdirSync(runsRoot).sort() : [])

  it('adds a finished run with the adapter, its LoRA config and where it came from; the engine loads it', async () => {
    const src = writeAdapter(join(root, 'trained-elsewhere', 'my-lora'), base, { targets: ['q_proj', 'v_proj', 'down_proj'], rank: 2 })
    const summary = await runs.importAdapter({ dir: src })
    expect(summary).toMatchObject({
      id: 'my-lora', dir: join(runsRoot, 'my-lora'), state: 'finished', stage: 'sft', model: demoModel, hasAdapter: true,
      importedFrom: src, step: 0, checkpoints: [], error: null
    })
    for (const f of ['adapter_config.json', 'adapter_model.safetensors'])
      expect(readFileSync(join(summary.dir, f)).equals(readFileSync(join(src, f))), f).toBe(true)
    const config = JSON.parse(readFileSync(join(summary.dir, 'run.json'), 'utf8')) as TrainingConfig
    expect(config).toMatchObject({
      model_name_or_path: demoModel, stage: 'sft', finetuning_type: 'lora', lora_rank: 2, lora_alpha: 4, lora_dropout: 0.05,
      lora_target: ['q_proj', 'v_proj', 'down_proj'], use_rslora: false, dataset: [], output_dir: summary.dir
    })
    const status = JSON.parse(readFileSync(join(summary.dir, 'status.json'), 'utf8')) as RunStatus
    expect(status).toMatchObject({ state: 'finished', imported: { from: src } })
    // Listed like any run, after a restart too, and read back with its config.
    expect((await new RunsService({ runsRoot }).list()).map((r) => r.id)).toEqual(['my-lora'])
    expect((await runs.get('my-lora')).config?.lora_target).toEqual(['q_proj', 'v_proj', 'down_proj'])
    expect(runFolders()).toEqual(['my-lora'])
    // What the Playground does with a run that has an adapter: load the base, then the run's folder.
    const model = await Model.load(summary.model, { threads: 1 })
    try {
      expect(await model.loadAdapter(summary.dir)).toMatchObject({ rank: 2, alpha: 4, targets: ['q', 'v', 'down'] })
    } finally {
      model.dispose()
    }

    // The same folder again is a second run; a generic folder name takes its parent's.
    expect((await runs.importAdapter({ dir: src })).id).toBe('my-lora-2')
    const generic = writeAdapter(join(root, 'job-7', 'checkpoint-500'), base, { targets: ['q_proj', 'k_proj', 'v_proj', 'o_proj', 'gate_proj', 'up_proj', 'down_proj'] })
    const named = await createRunHandlers({ runsRoot })['runs.importAdapter']({ dir: generic })
    expect(named.id).toBe('job-7-checkpoint-500')
    expect((await runs.get(named.id)).config?.lora_target).toEqual(['all'])
    expect(runFolders()).toEqual(['job-7-checkpoint-500', 'my-lora', 'my-lora-2'])
  })

  it('imports a DoRA adapter: its run says use_dora and the engine loads the magnitudes', async () => {
    const src = writeAdapter(join(root, 'dora-lora'), base, { targets: ['q_proj', 'down_proj'], config: { use_dora: true } })
    const summary = await runs.importAdapter({ dir: src })
    expect((await runs.get(summary.id)).config).toMatchObject({ use_dora: true, lora_target: ['q_proj', 'down_proj'] })
    const model = await Model.load(summary.model, { threads: 1 })
    try {
      expect(await model.loadAdapter(summary.dir)).toMatchObject({ rank: 2, dora: true, targets: ['q', 'down'] })
      // Without its magnitudes the same folder is refused by name.
      const noMagnitude = writeAdapter(join(root, 'dora-missing'), base, { targets: ['q_proj', 'down_proj'] })
      writeFileSync(join(noMagnitude, 'adapter_config.json'), readFileSync(join(src, 'adapter_config.json')))
      await expect(model.loadAdapter(noMagnitude)).rejects.toThrow(/missing tensor 'base_model\.model\.model\.layers\.0\.self_attn\.q_proj\.lora_magnitude_vector'/)
    } finally {
      model.dispose()
    }
  })

  it('takes the base model folder given when the adapter names a Hub model', async () => {
    const src = writeAdapter(join(root, 'hub-named'), base, { config: { base_model_name_or_path: 'Qwen/Qwen3-0.6B' } })
    await expect(runs.importAdapter({ dir: src })).rejects.toThrow(
      'The adapter\'s base model "Qwen/Qwen3-0.6B" is not a local model folder: give the base model folder'
    )
    const summary = await runs.importAdapter({ dir: `  ${src}  `, model: demoModel })
    expect(summary).toMatchObject({ id: 'hub-named', model: demoModel, hasAdapter: true })
  })

  it('refuses folders without the PEFT files, or that are not there', async () => {
    const before = runFolders()
    const noWeights = writeAdapter(join(root, 'no-weights'), base)
    rmSync(join(noWeights, 'adapter_model.safetensors'))
    await expect(runs.importAdapter({ dir: noWeights })).rejects.toThrow(`${noWeights} is not a PEFT adapter folder: adapter_model.safetensors is missing`)
    const noConfig = writeAdapter(join(root, 'no-config'), base)
    rmSync(join(noConfig, 'adapter_config.json'))
    await expect(runs.importAdapter({ dir: noConfig })).rejects.toThrow(`${noConfig} is not a PEFT adapter folder: adapter_config.json is missing`)
    await expect(runs.importAdapter({ dir: join(root, 'nowhere') })).rejects.toThrow(`Adapter folder not found: ${join(root, 'nowhere')}`)
    await expect(runs.importAdapter({ dir: join(noWeights, 'adapter_config.json') })).rejects.toThrow(/^Not a folder: /)
    await expect(runs.importAdapter({ dir: '  ' })).rejects.toThrow('No adapter folder given')
    expect(runFolders()).toEqual(before)
  })

  it('refuses configs the engine cannot load, naming the file and the field', async () => {
    const before = runFolders()
    const cases: [Record<string, unknown>, string | RegExp][] = [
      [{ peft_type: 'IA3' }, 'peft_type "IA3" is not LORA'],
      [{ r: 0 }, 'field "r" must be a positive integer'],
      [{ bias: 'all' }, 'bias "all" is not supported (none only)'],
      [{ modules_to_save: ['lm_head'] }, 'modules_to_save (lm_head) is not supported'],
      [{ layers_to_transform: [0, 1] }, 'layers_to_transform is not supported'],
      [{ target_modules: ['q_proj', 'embed_tokens'] }, 'target module embed_tokens is not supported'],
      [{ target_modules: '.*proj' }, 'target_modules must be a list of module names or "all-linear"'],
      [{ target_modules: ['q_proj'] }, 'adapts model.layers.0.self_attn.v_proj, which is not one of its target_modules (q_proj)']
    ]
    for (const [i, [config, message]] of cases.entries()) {
      const src = writeAdapter(join(root, `bad-${i}`), base, { config })
      await expect(runs.importAdapter({ dir: src }), JSON.stringify(config)).rejects.toThrow(message)
      await expect(runs.importAdapter({ dir: src })).rejects.toThrow(join(src, typeof message === 'string' && message.startsWith('adapts') ? 'adapter_model.safetensors' : 'adapter_config.json'))
    }
    const broken = writeAdapter(join(root, 'bad-json'), base)
    writeFileSync(join(broken, 'adapter_config.json'), '{"peft_type": "LORA",')
    await expect(runs.importAdapter({ dir: broken })).rejects.toThrow(join(broken, 'adapter_config.json'))
    expect(runFolders()).toEqual(before)
  })

  it('refuses a base that is missing or is not the model the adapter was trained on', async () => {
    const before = runFolders()
    const src = writeAdapter(join(root, 'for-demo'), base)
    await expect(runs.importAdapter({ dir: src, model: join(root, 'no-model') })).rejects.toThrow(`Base model ${join(root, 'no-model')}: Folder not found`)
    const unnamed = writeAdapter(join(root, 'unnamed'), base, { config: { base_model_name_or_path: null } })
    await expect(runs.importAdapter({ dir: unnamed })).rejects.toThrow('names no base_model_name_or_path: give the base model folder')
    // Another model (hidden 32, 2 layers): the adapter's shapes do not fit it.
    const other = writeByteLevelModel(join(root, 'other-model'))
    await expect(runs.importAdapter({ dir: src, model: other })).rejects.toThrow(/is \[32, 32\] in the base model .* but the adapter is for \[128, 128\] \(is it the model the adapter was trained on\?\)/)
    const partial = writeAdapter(join(root, 'partial'), base, { layers: [0, 1, 2] })
    await expect(runs.importAdapter({ dir: partial })).rejects.toThrow(`q_proj is adapted in 3 of the base model's ${base.layers} layers`)
    expect(runFolders()).toEqual(before)
  })

  it.runIf(torchAvailable('PEFT-made adapter import test'))('imports an adapter written by PEFT itself', async () => {
    const src = join(root, 'peft-made')
    await runPython([join(import.meta.dirname, '..', 'python', 'train_make_adapter.py'), demoModel, src, '--rank', '3', '--alpha', '6', '--targets', 'q_proj,k_proj,gate_proj'])
    const summary = await runs.importAdapter({ dir: src })
    expect(summary).toMatchObject({ id: 'peft-made', model: demoModel, hasAdapter: true, importedFrom: src })
    const model = await Model.load(demoModel, { threads: 1 })
    try {
      expect(await model.loadAdapter(summary.dir)).toMatchObject({ rank: 3, alpha: 6, targets: ['q', 'k', 'gate'] })
    } finally {
      model.dispose()
    }
  })
})
