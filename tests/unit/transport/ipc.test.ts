import type { IpcMain, IpcMainInvokeEvent } from 'electron'
import { describe, expect, it } from 'vitest'
import { invokeChannels, type Handlers } from '../../../preload/contract'
import { bindIpc, isFromAppFrame } from '../../../main/transport/ipc'

type Listener = (event: IpcMainInvokeEvent, ...args: unknown[]) => Promise<unknown>

function fakeIpcMain() {
  const handlers = new Map<string, Listener>()
  const ipcMain = {
    handle: (channel: string, listener: Listener) => {
      if (handlers.has(channel)) throw new Error(`second handler for ${channel}`)
      handlers.set(channel, listener)
    },
    removeHandler: (channel: string) => handlers.delete(channel)
  } as unknown as IpcMain
  return { ipcMain, handlers }
}

// Only the channels a test calls are implemented; the others would throw if reached.
const services = {
  'models.inspect': async (dir: string) => {
    if (dir === '/bad') throw new Error('config.json is missing in /bad')
    return { dir } as never
  }
} as unknown as Handlers

const trusted = { sender: { id: 1 } } as unknown as IpcMainInvokeEvent
const stranger = { sender: { id: 2 } } as unknown as IpcMainInvokeEvent

describe('bindIpc', () => {
  it('registers every contract channel once and removes them all on unbind', () => {
    const { ipcMain, handlers } = fakeIpcMain()
    const unbind = bindIpc(ipcMain, services, () => true)
    expect([...handlers.keys()].sort()).toEqual([...invokeChannels].sort())
    unbind()
    expect(handlers.size).toBe(0)
  })

  it('answers the trusted window with results and errors as data, and refuses others', async () => {
    const { ipcMain, handlers } = fakeIpcMain()
    bindIpc(ipcMain, services, (event) => event.sender.id === 1)
    const inspect = handlers.get('models.inspect')!
    expect(await inspect(trusted, '/good')).toEqual({ ok: true, result: { dir: '/good' } })
    expect(await inspect(trusted, '/bad')).toEqual({ ok: false, error: { name: 'Error', message: 'config.json is missing in /bad' } })
    expect(await inspect(stranger, '/good')).toEqual({
      ok: false,
      error: { name: 'SecurityError', message: 'models.inspect: refused, the call did not come from the Tunebench window' }
    })
  })
})

describe('isFromAppFrame', () => {
  const appUrl = 'file:///opt/tunebench/out/renderer/index.html'
  const isAppUrl = (url: string) => url.split('#')[0] === appUrl
  const eventFrom = (senderId: number, top: boolean, url: string) => {
    const mainFrame = { url }
    return { sender: { id: senderId, mainFrame }, senderFrame: top ? mainFrame : { url } } as unknown as IpcMainInvokeEvent
  }

  it('accepts the window top frame on the app page, hash routes included', () => {
    expect(isFromAppFrame(eventFrom(7, true, `${appUrl}#/train`), 7, isAppUrl)).toBe(true)
  })
  it('refuses another window, a subframe, a page elsewhere, and calls after the window closed', () => {
    expect(isFromAppFrame(eventFrom(8, true, appUrl), 7, isAppUrl)).toBe(false)
    expect(isFromAppFrame(eventFrom(7, false, appUrl), 7, isAppUrl)).toBe(false)
    expect(isFromAppFrame(eventFrom(7, true, 'https://example.com/'), 7, isAppUrl)).toBe(false)
    expect(isFromAppFrame(eventFrom(7, true, appUrl), null, isAppUrl)).toBe(false)
  })
})
