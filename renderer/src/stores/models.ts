// The model library: the open model, recent models, Hub downloads and the engine's facts.
import { defineStore } from 'pinia'
import { ref } from 'vue'
import type { EngineFacts } from '../../../preload/types/engine'
import type { DownloadProgress, ModelFacts, RecentModel } from '../../../preload/types/models'
import { api } from '../api'
import { errorMessage } from '../lib/guarded'

export const useModelsStore = defineStore('models', () => {
  const current = ref<ModelFacts | null>(null)
  const recent = ref<RecentModel[]>([])
  const opening = ref(false)
  const openError = ref<string | null>(null)
  const download = ref<DownloadProgress | null>(null)
  const downloadError = ref<string | null>(null)
  const engine = ref<EngineFacts | null>(null)
  const engineError = ref<string | null>(null)

  api.on('models.downloadProgress', (progress) => {
    download.value = progress
  })

  async function loadRecent(): Promise<void> {
    try {
      recent.value = await api.models.recent()
    } catch (err) {
      openError.value = errorMessage(err)
    }
  }

  let restoring: Promise<void> | null = null
  /** At start and after a reload: the model opened last (the demo model the first time);
   *  asked once per page load. */
  function restore(): Promise<void> {
    restoring ??= api.models
      .last()
      .then((facts) => {
        if (facts && !current.value) current.value = facts
      })
      .catch((err: unknown) => {
        openError.value = `The model opened last cannot be opened again: ${errorMessage(err)}`
      })
    return restoring
  }

  async function open(dir: string): Promise<boolean> {
    opening.value = true
    openError.value = null
    try {
      current.value = await api.models.open(dir)
      await loadRecent()
      return true
    } catch (err) {
      openError.value = errorMessage(err)
      return false
    } finally {
      opening.value = false
    }
  }

  /** Desktop only: the native folder dialog, then open. */
  async function pickAndOpen(): Promise<void> {
    try {
      const dir = await api.models.pickFolder()
      if (dir) await open(dir)
    } catch (err) {
      openError.value = errorMessage(err)
    }
  }

  async function forget(dir: string): Promise<void> {
    recent.value = await api.models.forget(dir)
  }

  async function startDownload(repo: string, revision: string): Promise<void> {
    downloadError.value = null
    download.value = null
    try {
      current.value = await api.models.download({ repo: repo.trim(), revision: revision.trim() || undefined })
      openError.value = null
      await loadRecent()
    } catch (err) {
      downloadError.value = errorMessage(err)
    }
  }

  async function cancelDownload(): Promise<void> {
    if (download.value) await api.models.cancelDownload(download.value.repo)
  }

  async function loadEngine(): Promise<void> {
    try {
      engine.value = await api.engine.facts()
      engineError.value = null
    } catch (err) {
      engineError.value = errorMessage(err)
    }
  }

  return {
    current, recent, opening, openError, download, downloadError, engine, engineError,
    loadRecent, restore, open, pickAndOpen, forget, startDownload, cancelDownload, loadEngine
  }
})
