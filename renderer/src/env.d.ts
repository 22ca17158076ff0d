/// <reference types="vite/client" />
import type { Api } from '../../preload/contract'

declare module '*.vue' {
  import type { DefineComponent } from 'vue'
  const component: DefineComponent<object, object, unknown>
  export default component
}

declare global {
  interface Window {
    /** Set by the Electron preload; absent in a browser (serve mode). */
    api?: Api
  }
}
