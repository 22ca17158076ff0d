/** Build and runtime facts of the native engine, and the limits of what it accepts. */
export interface EngineFacts {
  version: string
  cpuFeatures: string[]
  threads: number
  blas: string
  cudaCompiled: boolean
  cudaDevice: string | null
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
