// README "Security", the desktop half: the window's webPreferences, the page's CSP, navigation
// and new windows, permissions, webviews, and IPC answered only from the app's own top frame.
// main/windowPolicy.ts holds the decisions; the second half imports the real main/index.ts with
// a fake 'electron' (Electron itself does not run under vitest) and drives what it wired up.
import { readFileSync } from 'node:fs'
import { dirname, join } from 'node:path'
import { fileURLToPath, pathToFileURL } from 'node:url'
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest'
import { invokeChannels } from '../../preload/contract'
import { appUrlMatcher, blocksNavigation, handleWindowOpen, refusePermission, secureWebPreferences } from '../../main/windowPolicy'

const repo = join(dirname(fileURLToPath(import.meta.url)), '..', '..')

type Listener = (...args: any[]) => any

// The fake Electron: records what main/index.ts asks of it.
const fake = vi.hoisted(() => {
  class Emitter {
    listeners = new Map<string, Listener[]>()
    on(event: string, fn: Listener) {
      this.listeners.set(event, [...(this.listeners.get(event) ?? []), fn])
      return this
    }
    once(event: string, fn: Listener) {
      return this.on(event, fn)
    }
    emit(event: string, ...args: unknown[]) {
      for (const fn of this.listeners.get(event) ?? []) fn(...args)
    }
  }
  let nextId = 1
  class FakeWebContents extends Emitter {
    id = nextId++
    mainFrame = { url: '' }
    openHandler: Listener | null = null
    setWindowOpenHandler(fn: Listener) {
      this.openHandler = fn
    }
    send() {}
  }
  class FakeBrowserWindow extends Emitter {
    static windows: FakeBrowserWindow[] = []
    static getAllWindows() {
      return FakeBrowserWindow.windows.filter((w) => !w.destroyed)
    }
    webContents = new FakeWebContents()
    destroyed = false
    loaded: { file?: string; url?: string } = {}
    constructor(readonly options: Record<string, unknown>) {
      super()
      FakeBrowserWindow.windows.push(this)
    }
    isDestroyed() {
      return this.destroyed
    }
    show() {}
    loadFile(file: string) {
      this.loaded = { file }
      this.webContents.mainFrame.url = pathToFileURL(file).href
      return Promise.resolve()
    }
    loadURL(url: string) {
      this.loaded = { url }
      this.webContents.mainFrame.url = url
      return Promise.resolve()
    }
    close() {
      this.destroyed = true
      this.emit('closed')
    }
  }
  const app = Object.assign(new Emitter(), {
    isPackaged: false,
    enableSandbox: vi.fn(),
    whenReady: () => Promise.resolve(),
    getPath: () => '/nonexistent/userData',
    getAppPath: () => '/nonexistent/app',
    quit: vi.fn()
  })
  const invokeHandlers = new Map<string, Listener>()
  return {
    Emitter,
    FakeBrowserWindow,
    app,
    invokeHandlers,
    ipcMain: {
      handle: (channel: string, fn: Listener) => invokeHandlers.set(channel, fn),
      removeHandler: (channel: string) => invokeHandlers.delete(channel)
    },
    permissionHandler: null as Listener | null,
    openExternal: vi.fn(async (_url: string) => {}),
    engineFacts: vi.fn(async () => 'the facts'),
    servicesDataDir: null as string | null
  }
})

vi.mock('electron', () => ({
  app: fake.app,
  BrowserWindow: fake.FakeBrowserWindow,
  dialog: { showOpenDialog: vi.fn() },
  ipcMain: fake.ipcMain,
  session: {
    defaultSession: {
      setPermissionRequestHandler: (fn: Listener) => {
        fake.permissionHandler = fn
      }
    }
  },
  shell: { openExternal: fake.openExternal }
}))

// The services are not what this file tests; one channel answers so that trust can be seen.
vi.mock('../../main/services', () => ({
  createServices: (options: { dataDir: string }) => {
    fake.servicesDataDir = options.dataDir
    return { handlers: { 'engine.facts': fake.engineFacts }, close: async () => {} }
  }
}))

const appPage = pathToFileURL(join(repo, 'renderer', 'index.html')).href

describe('window policy (main/windowPolicy.ts)', () => {
  it('renderer preferences: context isolation, sandbox, no Node integration, web security', () => {
    expect(secureWebPreferences('/app/preload/index.cjs')).toEqual({
      preload: '/app/preload/index.cjs',
      contextIsolation: true,
      sandbox: true,
      nodeIntegration: false,
      webSecurity: true,
      spellcheck: false
    })
  })

  it('the app page is the built index.html, whatever its hash route or query, and nothing else', () => {
    const isApp = appUrlMatcher(appPage, undefined)
    expect(isApp(appPage)).toBe(true)
    expect(isApp(`${appPage}#/train`)).toBe(true)
    expect(isApp(`${appPage}?x=1#/data`)).toBe(true)
    for (const other of [
      'https://example.com/',
      pathToFileURL(join(repo, 'renderer', 'other.html')).href,
      'file:///etc/passwd',
      `${appPage}.evil.html`,
      `https://example.com/${appPage}`,
      'about:blank',
      'data:text/html,<script>1</script>'
    ])
      expect(isApp(other), other).toBe(false)
  })

  it('in development the app page is the dev server origin only', () => {
    const isApp = appUrlMatcher('http://localhost:5173/', 'http://localhost:5173/')
    expect(isApp('http://localhost:5173/#/train')).toBe(true)
    expect(isApp('http://localhost:5174/')).toBe(false)
    expect(isApp('http://127.0.0.1:5173/')).toBe(false)
    expect(isApp('https://localhost:5173/')).toBe(false)
  })

  it('navigation away from the app page is blocked', () => {
    const isApp = appUrlMatcher(appPage, undefined)
    expect(blocksNavigation('https://example.com/', isApp)).toBe(true)
    expect(blocksNavigation('file:///etc/passwd', isApp)).toBe(true)
    expect(blocksNavigation(`${appPage}#/export`, isApp)).toBe(false)
  })

  it('no new window ever opens; only https links go to the browser', () => {
    const opened: string[] = []
    for (const url of ['https://huggingface.co/', 'http://example.com/', 'file:///etc/passwd', 'javascript:alert(1)', appPage])
      expect(handleWindowOpen(url, (u) => opened.push(u))).toEqual({ action: 'deny' })
    expect(opened).toEqual(['https://huggingface.co/'])
  })

  it('every web permission request is refused', () => {
    const answers: boolean[] = []
    for (const p of ['media', 'notifications', 'geolocation', 'clipboard-read']) refusePermission({}, p, (granted) => answers.push(granted))
    expect(answers).toEqual([false, false, false, false])
  })
})

describe('the renderer page CSP (renderer/index.html)', () => {
  const html = readFileSync(join(repo, 'renderer', 'index.html'), 'utf8')
  const meta = /<meta\s+http-equiv="Content-Security-Policy"\s+content="([^"]*)"\s*\/?>/i.exec(html)
  const directives = new Map(
    (meta?.[1] ?? '')
      .split(';')
      .map((d) => d.trim().split(/\s+/))
      .filter((d) => d[0])
      .map(([name, ...sources]) => [name!, sources])
  )

  it('is a meta tag in <head> before any script', () => {
    expect(meta).not.toBeNull()
    expect(html.indexOf(meta![0])).toBeLessThan(html.indexOf('<script'))
    expect(html.indexOf(meta![0])).toBeLessThan(html.indexOf('</head>'))
  })

  it("allows only the app's own scripts: script-src 'self', no inline or eval, no plugins, no base", () => {
    expect(directives.get('default-src')).toEqual(["'self'"])
    expect(directives.get('script-src')).toEqual(["'self'"])
    expect(directives.get('object-src')).toEqual(["'none'"])
    expect(directives.get('base-uri')).toEqual(["'none'"])
    expect(directives.get('connect-src')).toEqual(["'self'"])
  })

  it('names no remote source anywhere', () => {
    const allowed = new Set(["'self'", "'none'", "'unsafe-inline'", 'data:', 'blob:'])
    for (const [name, sources] of directives) for (const s of sources) expect(allowed.has(s), `${name} ${s}`).toBe(true)
    // 'unsafe-inline' only for styles (Vue and ECharts set element styles).
    for (const [name, sources] of directives) if (sources.includes("'unsafe-inline'")) expect(name).toBe('style-src')
  })
})

describe('main/index.ts wiring (fake electron)', () => {
  let win: InstanceType<typeof fake.FakeBrowserWindow>
  let stubbedVersion = false
  beforeAll(async () => {
    // main/index.ts reads Electron's version (its better-sqlite3 build); plain Node has none.
    if (!process.versions.electron) {
      Object.defineProperty(process.versions, 'electron', { value: '38.0.0', configurable: true })
      stubbedVersion = true
    }
    process.env.TUNEBENCH_HOME = '/nonexistent/tunebench-home'
    await import('../../main/index')
    await new Promise((resolve) => setTimeout(resolve, 0)) // app.whenReady().then(...)
    expect(fake.FakeBrowserWindow.windows).toHaveLength(1)
    win = fake.FakeBrowserWindow.windows[0]!
  })
  afterAll(() => {
    delete process.env.TUNEBENCH_HOME
    if (stubbedVersion) delete (process.versions as Record<string, string | undefined>).electron
  })

  it('keeps its data in $TUNEBENCH_HOME when set, as serve mode and the CLI do', () => {
    expect(fake.servicesDataDir).toBe('/nonexistent/tunebench-home')
  })

  it('enables the sandbox for every renderer', () => {
    expect(fake.app.enableSandbox).toHaveBeenCalled()
  })

  it('opens the window with the secure preferences and the app page', () => {
    const prefs = win.options.webPreferences as Record<string, unknown>
    expect(prefs).toEqual(secureWebPreferences(join(repo, 'preload', 'index.cjs')))
    expect(prefs).toMatchObject({ contextIsolation: true, sandbox: true, nodeIntegration: false, webSecurity: true })
    expect(win.loaded.file).toBe(join(repo, 'renderer', 'index.html'))
  })

  it('prevents navigation away from the app page, not within it', () => {
    const navigate = (url: string) => {
      const event = { preventDefault: vi.fn() }
      win.webContents.emit('will-navigate', event, url)
      return event.preventDefault.mock.calls.length > 0
    }
    expect(win.webContents.listeners.get('will-navigate')).toHaveLength(1)
    expect(navigate('https://example.com/')).toBe(true)
    expect(navigate('file:///etc/passwd')).toBe(true)
    expect(navigate(`${appPage}#/train`)).toBe(false)
  })

  it('denies every new window and sends only https links to the browser', () => {
    fake.openExternal.mockClear()
    const open = win.webContents.openHandler!
    expect(open).toBeTypeOf('function')
    expect(open({ url: 'https://huggingface.co/docs' })).toEqual({ action: 'deny' })
    expect(open({ url: 'http://example.com/' })).toEqual({ action: 'deny' })
    expect(open({ url: 'file:///etc/passwd' })).toEqual({ action: 'deny' })
    expect(fake.openExternal.mock.calls).toEqual([['https://huggingface.co/docs']])
  })

  it('refuses permissions and webviews', () => {
    const answers: boolean[] = []
    fake.permissionHandler!({}, 'media', (granted: boolean) => answers.push(granted))
    expect(answers).toEqual([false])
    const contents = new fake.Emitter()
    fake.app.emit('web-contents-created', {}, contents)
    const event = { preventDefault: vi.fn() }
    contents.emit('will-attach-webview', event, {}, {})
    expect(event.preventDefault).toHaveBeenCalled()
  })

  it("answers IPC only from the window's top frame showing the app page", async () => {
    expect([...fake.invokeHandlers.keys()].sort()).toEqual([...invokeChannels].sort())
    const facts = fake.invokeHandlers.get('engine.facts')!
    const top = win.webContents.mainFrame
    const from = (sender: { id: number; mainFrame: unknown }, senderFrame: unknown) => ({ sender, senderFrame })
    const refused = { ok: false, error: { name: 'SecurityError', message: expect.stringMatching(/refused/) } }

    expect(await facts(from(win.webContents, top))).toEqual({ ok: true, result: 'the facts' })
    top.url = `${appPage}#/train`
    expect(await facts(from(win.webContents, top))).toEqual({ ok: true, result: 'the facts' })
    // a subframe of the window (even on the app's URL), another web contents, a page elsewhere
    expect(await facts(from(win.webContents, { url: appPage }))).toEqual(refused)
    expect(await facts(from({ id: win.webContents.id + 100, mainFrame: top }, top))).toEqual(refused)
    top.url = 'https://example.com/'
    expect(await facts(from(win.webContents, top))).toEqual(refused)
    top.url = appPage
    expect(fake.engineFacts).toHaveBeenCalledTimes(2)
    // after the window closed
    win.close()
    expect(await facts(from(win.webContents, top))).toEqual(refused)
    expect(fake.engineFacts).toHaveBeenCalledTimes(2)
  })
})
