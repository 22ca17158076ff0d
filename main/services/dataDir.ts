import { homedir } from 'node:os'
import { join } from 'node:path'

/** The app data dir outside Electron (serve mode, CLI): the same folder Electron's
 *  app.getPath('userData') gives for this app, so desktop and serve share recent models and
 *  downloads. TUNEBENCH_HOME overrides it (tests, portable installs). */
export function defaultDataDir(env: NodeJS.ProcessEnv = process.env): string {
  if (env.TUNEBENCH_HOME) return env.TUNEBENCH_HOME
  if (process.platform === 'win32') return join(env.APPDATA ?? join(homedir(), 'AppData', 'Roaming'), 'tunebench')
  if (process.platform === 'darwin') return join(homedir(), 'Library', 'Application Support', 'tunebench')
  return join(env.XDG_CONFIG_HOME ?? join(homedir(), '.config'), 'tunebench')
}
