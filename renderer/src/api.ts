// The one way the renderer reaches the services: `window.api` from the Electron preload, or the
// same verbs over the serve-mode WebSocket. Stores import `api` from here.
import { buildApi, type Api } from '../../preload/contract'
import { takeAccessToken, WsTransport } from './wsTransport'

/** true in the desktop app (native dialogs exist), false in a browser (serve mode). */
export const isDesktop = typeof window !== 'undefined' && window.api !== undefined

function createBrowserApi(): Api {
  const token = takeAccessToken(window.location, window.sessionStorage, window.history)
  const scheme = window.location.protocol === 'https:' ? 'wss' : 'ws'
  const url = token ? `${scheme}://${window.location.host}/ws?token=${encodeURIComponent(token)}` : null
  const transport = new WsTransport(url)
  return buildApi(transport.invoke, transport.on)
}

export const api: Api = isDesktop ? window.api! : createBrowserApi()

