// Types of scripts/electron-sqlite.mjs for the TypeScript that imports it (its tests).
export declare const ELECTRON_HEADERS_URL: string
export declare function betterSqlite3Dir(): string
export declare function installedElectronVersion(): string | null
export declare function electronBindingPath(version: string): string
export declare function findNodeGyp(): string
export declare function buildBetterSqlite3(options: {
  outFile: string
  target: string
  runtime?: string
  distUrl?: string
  nodedir?: string
  jobs?: number
  quiet?: boolean
}): Promise<string>
