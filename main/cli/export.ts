// `tunebench export`: a run or a PEFT adapter in the formats people run models with (PEFT,
// merged Hugging Face folder, GGUF model, GGUF LoRA, Ollama, LLaMA-Factory hand-off), with
// progress and ETA on stderr and the written files on stdout.
import { exportModel } from '../services/export/index'
import { EXPORT_DTYPES, EXPORT_FORMATS, type ExportDtype, type ExportFormat } from '../../preload/types/export'
import { parseFlags, UsageError, wholeFlag } from './flags'
import { ProgressBar, progressLine } from './progress'

const usage = `usage: tunebench export (--run DIR | --adapter DIR | --model DIR) --format FORMAT --out DIR [--model DIR]
                        [--dtype f32|f16|bf16|q8_0] [--ollama-adapter] [--max-shard-mb N]

formats:
  peft          the PEFT adapter as trained (adapter_config.json + adapter_model.safetensors),
                checked against what vLLM accepts
  merged        base + adapter folded into the weights, a Hugging Face folder (base dtype unless --dtype)
  gguf          the merged (or base) model as one GGUF file for llama.cpp (default f16)
  gguf-lora     the adapter alone as a llama.cpp GGUF LoRA (default f32)
  ollama        GGUF model (or base GGUF + GGUF LoRA with --ollama-adapter) and a Modelfile
  llamafactory  the run's config as LLaMA-Factory YAML with its data and dataset_info.json

--model is the base model folder (default: the run's model_name_or_path or the adapter's
base_model_name_or_path); given alone, the base model itself is exported (merged, gguf, ollama).
Files already in --out are never replaced.
`

export async function run(argv: string[]): Promise<number> {
  let values
  try {
    values = parseFlags(argv, {
      run: { type: 'string' }, adapter: { type: 'string' }, model: { type: 'string' }, format: { type: 'string' },
      out: { type: 'string' }, dtype: { type: 'string' }, 'ollama-adapter': { type: 'boolean' },
      'max-shard-mb': { type: 'string' }, help: { type: 'boolean', short: 'h' }
    })
    if (values.help) {
      process.stdout.write(usage)
      return 0
    }
    const format = values.format as string | undefined
    if (!format) throw new UsageError('--format is required')
    if (!EXPORT_FORMATS.includes(format as ExportFormat)) throw new UsageError(`--format: expected one of ${EXPORT_FORMATS.join(', ')}, got "${format}"`)
    const dtype = values.dtype as string | undefined
    if (dtype !== undefined && !EXPORT_DTYPES.includes(dtype as ExportDtype)) throw new UsageError(`--dtype: expected one of ${EXPORT_DTYPES.join(', ')}, got "${dtype}"`)
    if (!values.out) throw new UsageError('--out is required')
    if (values.run && values.adapter) throw new UsageError('give one of --run DIR or --adapter DIR, not both')
    if (!values.run && !values.adapter && !values.model) throw new UsageError('give --run DIR, --adapter DIR, or --model DIR alone to export the base model')
    const shardMb = wholeFlag(values, 'max-shard-mb', 1)
    const bar = new ProgressBar()
    const t0 = Date.now()
    // MiB for real models, KiB for tiny ones (so the bar does not read 0/0)
    const unit = (total: number) => (total >= 10 << 20 ? { div: 1 << 20, name: 'MiB' } : { div: 1 << 10, name: 'KiB' })
    try {
      const res = await exportModel({
        format: format as ExportFormat, out: values.out as string, run: values.run as string | undefined,
        adapter: values.adapter as string | undefined, model: values.model as string | undefined,
        dtype: dtype as ExportDtype | undefined, ollamaAdapter: values['ollama-adapter'] === true,
        maxShardBytes: shardMb === undefined ? undefined : shardMb * 1000 * 1000
      }, {
        onProgress: (p) => {
          const u = unit(p.totalBytes)
          bar.update(progressLine('export', Math.round(p.bytes / u.div), Math.round(p.totalBytes / u.div), (Date.now() - t0) / 1000, `${u.name} ${p.file}`), p.bytes === p.totalBytes)
        }
      })
      bar.done()
      for (const w of res.warnings) process.stderr.write(`warning: ${w}\n`)
      for (const f of res.files) process.stdout.write(`${res.dir}/${f.name}\t${f.bytes}\n`)
      for (const u of res.usage) process.stderr.write(`load it: ${u}\n`)
      return 0
    } catch (err) {
      bar.done()
      throw err
    }
  } catch (err) {
    if (err instanceof UsageError) {
      process.stderr.write(`tunebench export: ${err.message}\n${usage}`)
      return 2
    }
    process.stderr.write(`tunebench export: ${(err as Error).message}\n`)
    return 1
  }
}
