/** What the CUDA runtime the build was compiled against says about this machine. */
export interface CudaInfo {
  /** The build found a CUDA toolkit (and compiled its probe with it). */
  toolkit: boolean
  /** CUDA version of the runtime linked in ("13.2"); null without a toolkit. */
  runtime: string | null
  /** CUDA version the installed driver supports; null when no NVIDIA driver is installed. */
  driver: string | null
  gpus: { name: string; memoryBytes: number; computeCapability: string }[]
  /** Why no GPU is listed, when none is. */
  note: string | null
}

/** Build and runtime facts of the native engine, and the limits of what it accepts. */
export interface EngineFacts {
  version: string
  cpuFeatures: string[]
  threads: number
  blas: string
  /** The CUDA backend is compiled in (not in this version: models load on the CPU only). */
  cudaCompiled: boolean
  cuda: CudaInfo
  /** config.json `architectures[0]` values the engine implements. */
  architectures: string[]
  /** safetensors tensor dtypes its checkpoint loader reads. */
  dtypes: string[]
  /** LoRA dropout p must satisfy min <= p < maxExclusive. */
  loraDropout: { min: number; maxExclusive: number }
  /** Devices a model can be loaded on ('cpu', and 'cuda' when the CUDA backend is compiled). */
  devices: string[]
}

/** The facts that decide what the app offers and accepts (config schema, model checks). */
export type EngineLimits = Pick<EngineFacts, 'architectures' | 'dtypes' | 'loraDropout' | 'devices'>
