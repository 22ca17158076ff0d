// Which page is shown. The page lives in the URL hash (#/train), so reloads and the browser's
// back button work without a router library.
import { defineStore } from 'pinia'
import { ref } from 'vue'

export const pages = [
  { id: 'models', title: 'Models' },
  { id: 'data', title: 'Data' },
  { id: 'train', title: 'Train' },
  { id: 'runs', title: 'Runs' },
  { id: 'playground', title: 'Playground' },
  { id: 'export', title: 'Export' }
] as const

export type PageId = (typeof pages)[number]['id']

export function pageFromHash(hash: string): PageId {
  const id = hash.replace(/^#\/?/, '').split(/[/?]/)[0]
  return pages.find((p) => p.id === id)?.id ?? 'models'
}

export const useNavStore = defineStore('nav', () => {
  const current = ref<PageId>(pageFromHash(window.location.hash))
  window.addEventListener('hashchange', () => {
    current.value = pageFromHash(window.location.hash)
  })
  function go(page: PageId): void {
    current.value = page
    if (pageFromHash(window.location.hash) !== page || window.location.hash === '') window.location.hash = `#/${page}`
  }
  return { current, go }
})
