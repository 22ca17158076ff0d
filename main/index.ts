// Electron main process: one secure window, the services, and the IPC binding. All behaviour
// lives in main/services (shared with serve mode, the CLI and tests); this file only wires.
import { app, BrowserWindow, dialog, ipcMain, session, shell, type IpcMainInvokeEvent } from 'electron'
import { join } from 'node:path'
import { fileURLToPath, pathToFileURL } from 'node:url'
import type { Emit } from '../preload/contract'
import { createServices, type Services } from './services'
import { bindIpc, isFromAppFrame } from './transport/ipc'
import { appUrlMatcher, blocksNavigation, handleWindowOpen, refusePermission, secureWebPreferences } from './windowPolicy'

const here = fileURLToPath(new URL('.', import.meta.url))
const rendererIndex = join(here, '../renderer/index.html')
// electron-vite dev serves the renderer from a dev server and tells us where.
const devUrl = !app.isPackaged ? process.env.ELECTRON_RENDERER_URL : undefined
const appUrl = devUrl ?? pathToFileURL(rendererIndex).href
const isAppUrl = appUrlMatcher(appUrl, devUrl)

// Every renderer sandboxed, including any a future change forgets to configure.
app.enableSandbox()

let mainWindow: BrowserWindow | null = null
let services: Services | null = null

/** Only the app's own page in its own top frame may call the services. */
function isTrustedSender(event: IpcMainInvokeEvent): boolean {
  return isFromAppFrame(event, mainWindow && !mainWindow.isDestroyed() ? mainWindow.webContents.id : null, isAppUrl)
}

function createWindow(): BrowserWindow {
  const win = new BrowserWindow({
    width: 1280,
    height: 820,
    minWidth: 900,
    minHeight: 600,
    title: 'Tunebench',
    show: false,
    webPreferences: secureWebPreferences(join(here, '../preload/index.cjs'))
  })
  win.once('ready-to-show', () => win.show())
  // The renderer is one page: nothing navigates it away, and links open in the user's browser.
  win.webContents.on('will-navigate', (event, url) => {
    if (blocksNavigation(url, isAppUrl)) event.preventDefault()
  })
  win.webContents.setWindowOpenHandler(({ url }) => handleWindowOpen(url, (external) => void shell.openExternal(external)))
  void (devUrl ? win.loadURL(devUrl) : win.loadFile(rendererIndex))
  return win
}

app.whenReady().then(() => {
  // No web permission (camera, notifications, ...) is ever needed.
  session.defaultSession.setPermissionRequestHandler(refusePermission)
  app.on('web-contents-created', (_event, contents) => {
    contents.on('will-attach-webview', (event) => event.preventDefault())
  })

  const emit: Emit = (channel, payload) => {
    if (mainWindow && !mainWindow.isDestroyed()) mainWindow.webContents.send(channel, payload)
  }
  services = createServices({
    // TUNEBENCH_HOME moves the data folder, as in serve mode and the CLI (services/dataDir.ts).
    dataDir: process.env.TUNEBENCH_HOME || app.getPath('userData'),
    emit,
    // better-sqlite3 in node_modules is built for the system Node (tests, serve mode, CLI); the
    // desktop app loads the build for its own Electron that scripts/electron-sqlite.mjs makes.
    sqliteBinding: join(app.getAppPath(), 'out', 'electron-native', process.versions.electron, 'better_sqlite3.node'),
    pickFolder: async () => {
      const options = { title: 'Open a Hugging Face model folder', properties: ['openDirectory' as const] }
      const result = mainWindow ? await dialog.showOpenDialog(mainWindow, options) : await dialog.showOpenDialog(options)
      return result.canceled ? null : (result.filePaths[0] ?? null)
    }
  })
  bindIpc(ipcMain, services.handlers, isTrustedSender)
  mainWindow = createWindow()
  mainWindow.on('closed', () => (mainWindow = null))

  app.on('activate', () => {
    if (BrowserWindow.getAllWindows().length === 0) {
      mainWindow = createWindow()
      mainWindow.on('closed', () => (mainWindow = null))
    }
  })
})

app.on('window-all-closed', () => {
  if (process.platform !== 'darwin') app.quit()
})

let closing = false
app.on('before-quit', (event) => {
  if (closing || !services) return
  // Give services a moment to stop downloads and runs cleanly before the process exits.
  event.preventDefault()
  closing = true
  void services.close().finally(() => app.quit())
})
