// README: data "lives in the app data dir: ~/.config/tunebench on Linux (Electron's userData;
// serve mode uses the same folder), or $TUNEBENCH_HOME when set". defaultDataDir is what serve
// mode and the CLI use; Electron's userData on Linux is $XDG_CONFIG_HOME/tunebench, falling back
// to ~/.config/tunebench, so the function must follow XDG_CONFIG_HOME too.
// (tests/unit/readme-claims.cli.test.ts checks the folder `tunebench serve` reports.)
import { homedir } from 'node:os'
import { join } from 'node:path'
import { afterEach, describe, expect, it } from 'vitest'
import { defaultDataDir } from '../../main/services/dataDir'

const saved = { ...process.env }
afterEach(() => {
  for (const k of ['TUNEBENCH_HOME', 'XDG_CONFIG_HOME', 'HOME', 'APPDATA']) {
    if (saved[k] === undefined) delete process.env[k]
    else process.env[k] = saved[k]
  }
})

describe('defaultDataDir', () => {
  it('is $TUNEBENCH_HOME when set, whatever else is set', () => {
    expect(defaultDataDir({ TUNEBENCH_HOME: '/srv/tb', XDG_CONFIG_HOME: '/x', APPDATA: '/a' })).toBe('/srv/tb')
  })

  it('reads process.env by default', () => {
    process.env.TUNEBENCH_HOME = '/from/process/env'
    expect(defaultDataDir()).toBe('/from/process/env')
    delete process.env.TUNEBENCH_HOME
    process.env.XDG_CONFIG_HOME = '/from/xdg'
    if (process.platform === 'linux') expect(defaultDataDir()).toBe(join('/from/xdg', 'tunebench'))
  })

  it('an empty TUNEBENCH_HOME counts as unset', () => {
    expect(defaultDataDir({ TUNEBENCH_HOME: '' })).toBe(defaultDataDir({}))
  })

  it.runIf(process.platform === 'linux')('on Linux: ~/.config/tunebench, or $XDG_CONFIG_HOME/tunebench as Electron does', () => {
    expect(defaultDataDir({})).toBe(join(homedir(), '.config', 'tunebench'))
    // ~ is $HOME, as for Electron.
    process.env.HOME = '/home/someone-else'
    expect(defaultDataDir({})).toBe('/home/someone-else/.config/tunebench')
    expect(defaultDataDir({ XDG_CONFIG_HOME: '/cfg' })).toBe('/cfg/tunebench')
  })

  it.runIf(process.platform === 'darwin')('on macOS: ~/Library/Application Support/tunebench', () => {
    expect(defaultDataDir({})).toBe(join(homedir(), 'Library', 'Application Support', 'tunebench'))
  })

  it.runIf(process.platform === 'win32')('on Windows: %APPDATA%\\tunebench', () => {
    expect(defaultDataDir({ APPDATA: 'C:\\Users\\me\\AppData\\Roaming' })).toBe(join('C:\\Users\\me\\AppData\\Roaming', 'tunebench'))
  })
})
