/** Build and runtime facts of the native engine. */
export interface EngineFacts {
  version: string
  cpuFeatures: string[]
  threads: number
  blas: string
  cudaCompiled: boolean
  cudaDevice: string | null
}
