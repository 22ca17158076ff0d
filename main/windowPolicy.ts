// The Electron window's security decisions as plain data and pure functions: main/index.ts
// applies them, and tests/unit/window-security.test.ts checks them (and index.ts's wiring of
// them) without Electron. The page's Content-Security-Policy is a meta tag of renderer/index.html.
import type { WebPreferences } from 'electron'

/** The renderer's preferences: isolated, sandboxed, no Node. */
export function secureWebPreferences(preload: string): WebPreferences {
  return {
    preload,
    contextIsolation: true,
    sandbox: true,
    nodeIntegration: false,
    webSecurity: true,
    spellcheck: false
  }
}

/** Whether a URL is the app's own page: the built index.html (any hash route or query), or in
 *  development any page of the dev server's origin. It decides navigation and IPC trust. */
export function appUrlMatcher(appUrl: string, devUrl: string | undefined): (url: string) => boolean {
  return (url) => {
    if (devUrl) return new URL(url).origin === new URL(devUrl).origin
    return url.split(/[?#]/)[0] === appUrl
  }
}

/** will-navigate: true when the navigation must be prevented (anything but the app's page). */
export function blocksNavigation(url: string, isAppUrl: (url: string) => boolean): boolean {
  return !isAppUrl(url)
}

/** setWindowOpenHandler: no new window ever; an https link goes to the user's browser. */
export function handleWindowOpen(url: string, openExternal: (url: string) => void): { action: 'deny' } {
  if (/^https:\/\//.test(url)) openExternal(url)
  return { action: 'deny' }
}

/** setPermissionRequestHandler: no web permission (camera, notifications, ...) is ever granted. */
export function refusePermission(_webContents: unknown, _permission: string, callback: (granted: boolean) => void): void {
  callback(false)
}
