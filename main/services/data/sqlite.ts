// Loads better-sqlite3 when the first project opens, not when the services are created.
// Its native addon is built for one Node ABI: node_modules holds the build for the system Node
// (tests, serve mode, CLI); the desktop app runs Electron's own Node and passes the path of a
// build made for it by scripts/electron-sqlite.mjs (`npm start` runs that script). Loading late
// means a missing or mismatched build stops only the data features, with a message that says
// what is wrong and what to run, and never stops the app from starting.
import type BetterSqlite3 from 'better-sqlite3'
import { existsSync } from 'node:fs'
import { createRequire } from 'node:module'
import { resolve } from 'node:path'
import { DataError } from './errors'

export type SqliteDatabase = BetterSqlite3.Database
type DatabaseConstructor = typeof BetterSqlite3

const requireCjs = createRequire(import.meta.url)
/** Loaded addons by binding path ('' for the default build in node_modules). */
const loaded = new Map<string, DatabaseConstructor>()

function runtime(): string {
  const abi = `Node ABI ${process.versions.modules}`
  return process.versions.electron ? `Electron ${process.versions.electron} (${abi})` : `Node ${process.version} (${abi})`
}

function reason(err: unknown): string {
  return err instanceof Error ? err.message.split('\n')[0] : String(err)
}

/** The message a user sees when the addon cannot be loaded: what failed, and what to run. */
function loadFailure(err: unknown, binding: string | undefined): string {
  const electron = process.versions.electron
  if (binding && electron) {
    return (
      `SQLite (better-sqlite3) could not be loaded from ${binding} in ${runtime()}: ${reason(err)}. ` +
      `Delete that file and run \`node scripts/electron-sqlite.mjs\` in the Tunebench folder (\`npm start\` runs it) ` +
      `to build better-sqlite3 for this Electron again, then open the project again.`
    )
  }
  if (electron) {
    return (
      `SQLite (better-sqlite3) could not be loaded in ${runtime()}: ${reason(err)}. ` +
      `The build in node_modules is for the system Node; start the app with \`npm start\`, which builds ` +
      `better-sqlite3 for Electron into out/electron-native/${electron}/.`
    )
  }
  if (binding) {
    return `SQLite (better-sqlite3) could not be loaded from ${binding} in ${runtime()}: ${reason(err)}. Build it for this runtime or leave the binding out.`
  }
  return (
    `SQLite (better-sqlite3) could not be loaded in ${runtime()}: ${reason(err)}. ` +
    `Run \`npm rebuild better-sqlite3\` in the Tunebench folder to build it for this Node.`
  )
}

function load(binding: string | undefined): DatabaseConstructor {
  const key = binding ?? ''
  const hit = loaded.get(key)
  if (hit) return hit
  let Database: DatabaseConstructor
  try {
    Database = requireCjs('better-sqlite3') as DatabaseConstructor
  } catch (err) {
    throw new DataError(`the better-sqlite3 package cannot be loaded (${reason(err)}); run \`npm install\` in the Tunebench folder`)
  }
  // Load the addon now, apart from opening any file, so a failure here is always a build problem
  // and never a database one. A failed load is not remembered: once the user has built the addon,
  // the next open tries again without restarting the app.
  try {
    if (binding) {
      if (!existsSync(binding)) {
        const electron = process.versions.electron
        throw new DataError(
          electron
            ? `SQLite (better-sqlite3) is not built for Electron ${electron} yet: ${binding} does not exist. ` +
                `Run \`node scripts/electron-sqlite.mjs\` in the Tunebench folder (\`npm start\` runs it; the first build ` +
                `downloads Electron's headers), then open the project again.`
            : `the SQLite (better-sqlite3) binding ${binding} does not exist`
        )
      }
      requireCjs(binding)
    } else {
      new Database(':memory:').close()
    }
  } catch (err) {
    if (err instanceof DataError) throw err
    throw new DataError(loadFailure(err, binding))
  }
  loaded.set(key, Database)
  return Database
}

/**
 * Opens (creating if needed) the SQLite file at path. binding is the path of a better_sqlite3.node
 * built for this runtime; without it the build in node_modules/better-sqlite3 is used.
 */
export function openDatabase(path: string, binding?: string): SqliteDatabase {
  const file = binding ? resolve(binding) : undefined
  const Database = load(file)
  return file ? new Database(path, { nativeBinding: file }) : new Database(path)
}
