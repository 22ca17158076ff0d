// The Playground: a conversation answered by one source, or by two side by side with the same
// seed and settings, and the answers kept as labeled records in the open project.
import { defineStore } from 'pinia'
import { computed, reactive, ref } from 'vue'
import type { ChatTurn } from '../../../preload/types/generation'
import { DEFAULT_GENERATION_SETTINGS, resolveSettings, type GenerationSettings } from '../../../preload/types/generationSettings'
import type { RecordInput } from '../../../preload/types/data'
import { api } from '../api'
import { errorMessage } from '../lib/guarded'
import { adapterChoice, listSources, type SourceChoice } from '../lib/sources'

export type { SourceChoice }

export interface Answer {
  source: SourceChoice
  text: string
  /** null while it streams. */
  finish: 'eos' | 'length' | 'stop' | 'cancelled' | 'error' | null
  error: string | null
  tokens: number
  seconds: number
  requestId: string
}

/** One user message and the answers to it (one per side). */
export interface Round {
  user: string
  answers: Answer[]
  /** Which answer continues the conversation (the kept or picked one; the first by default). */
  picked: number
  /** What was kept from this round, for the buttons to say so. */
  kept: string | null
}


export const usePlaygroundStore = defineStore('playground', () => {
  const sources = ref<SourceChoice[]>([])
  const left = ref<string>('')
  const right = ref<string>('') // '' = no comparison
  const system = ref('')
  const settings = reactive<GenerationSettings>({ ...DEFAULT_GENERATION_SETTINGS, stop: [] })
  const rounds = ref<Round[]>([])
  const busy = ref(false)
  const error = ref<string | null>(null)
  const message = ref<string | null>(null)
  let counter = 0
  const streaming = new Map<string, Answer>()

  api.on('generation.delta', (d) => {
    const a = streaming.get(d.id)
    if (a && a.finish === null) a.text += d.delta
  })

  const byKey = (k: string): SourceChoice | undefined => sources.value.find((s) => s.key === k)

  /** Base models (recent, last opened first) and every finished run's adapter. */
  async function loadSources(): Promise<void> {
    try {
      const list = await listSources()
      for (const s of sources.value) if (!list.some((x) => x.key === s.key)) list.push(s) // folders added by hand
      sources.value = list
      if (!byKey(left.value)) left.value = list[0]?.key ?? ''
      if (right.value && !byKey(right.value)) right.value = ''
      error.value = null
    } catch (err) {
      error.value = errorMessage(err)
    }
  }

  /** A PEFT adapter folder on top of the left source's model. */
  function addAdapter(dir: string): SourceChoice | null {
    const base = byKey(left.value)
    if (!base || !dir.trim()) return null
    const typed = adapterChoice(base.model, dir.trim())
    let choice = byKey(typed.key)
    if (!choice) {
      choice = typed
      sources.value = [...sources.value, choice]
    }
    return choice
  }

  const sides = computed(() => [byKey(left.value), right.value ? byKey(right.value) : undefined].filter((s): s is SourceChoice => !!s))

  /** The conversation before round r: the user turns and, for each earlier round, its picked answer. */
  function history(r: number): ChatTurn[] {
    const turns: ChatTurn[] = []
    for (let i = 0; i < r; i++) {
      const round = rounds.value[i]!
      turns.push({ role: 'user', content: round.user })
      const a = round.answers[round.picked]
      if (a && a.text) turns.push({ role: 'assistant', content: a.text })
    }
    return turns
  }

  async function send(text: string): Promise<void> {
    const user = text.trim()
    if (!user || busy.value || sides.value.length === 0) return
    // A field left empty or out of range is named here, before anything is sent.
    try {
      resolveSettings(settings)
    } catch (err) {
      error.value = `Sampling settings: ${errorMessage(err).replace(/^generation setting /, '')}`
      return
    }
    busy.value = true
    error.value = null
    message.value = null
    const r = rounds.value.length
    const turns = [...history(r), { role: 'user' as const, content: user }]
    const round = reactive<Round>({ user, answers: [], picked: 0, kept: null })
    for (const s of sides.value) {
      round.answers.push({ source: s, text: '', finish: null, error: null, tokens: 0, seconds: 0, requestId: `chat-${Date.now()}-${counter++}` })
    }
    rounds.value.push(round)
    // One side after the other: both share the machine, and each streams as it is written.
    try {
      for (const a of round.answers) {
        streaming.set(a.requestId, a)
        try {
          const reply = await api.generation.chat({
            id: a.requestId,
            source: { model: a.source.model, adapter: a.source.adapter },
            system: system.value.trim() || null,
            turns,
            settings: { ...settings, stop: settings.stop.filter((x) => x.length > 0) }
          })
          a.text = reply.text
          a.finish = reply.finishReason
          a.tokens = reply.tokens
          a.seconds = reply.seconds
        } catch (err) {
          const msg = errorMessage(err)
          a.finish = /cancel/i.test(msg) ? 'cancelled' : 'error'
          a.error = a.finish === 'cancelled' ? null : msg
          if (a.finish === 'cancelled') break
        } finally {
          streaming.delete(a.requestId)
        }
      }
      for (const a of round.answers) if (a.finish === null) a.finish = 'cancelled'
    } finally {
      busy.value = false
    }
  }

  function stop(): void {
    for (const id of streaming.keys()) void api.generation.cancelChat(id)
  }

  function clear(): void {
    if (busy.value) return
    rounds.value = []
    message.value = null
  }

  function recordBase(r: number): Pick<RecordInput, 'prompt' | 'system' | 'source'> {
    return { prompt: [...history(r), { role: 'user', content: rounds.value[r]!.user }], system: system.value.trim() || null, source: 'playground' }
  }

  async function keep(r: number, input: RecordInput, what: string, picked: number): Promise<void> {
    try {
      const info = await api.data.info()
      if (!info) throw new Error('Open a project on the Data page first: kept answers become its records.')
      await api.data.addRecords([input])
      const round = rounds.value[r]!
      round.kept = what
      round.picked = picked
      message.value = `Kept in ${info.dir.split(/[\\/]/).filter(Boolean).pop()}: ${what}.`
      error.value = null
    } catch (err) {
      error.value = errorMessage(err)
    }
  }

  /** The better of the two answers becomes a labeled preference pair. */
  function keepPair(r: number, chosen: number): Promise<void> {
    const round = rounds.value[r]!
    const candidates = round.answers.map((a) => ({ content: a.text, source: a.source.label }))
    return keep(r, { ...recordBase(r), candidates, pair: { chosen, rejected: 1 - chosen } }, `a pair, ${round.answers[chosen]!.source.label} chosen`, chosen)
  }

  /** One answer as a KTO record (thumbs up or down). */
  function keepKto(r: number, i: number, desirable: boolean): Promise<void> {
    const a = rounds.value[r]!.answers[i]!
    return keep(r, { ...recordBase(r), candidates: [{ content: a.text, source: a.source.label, kto: desirable }] },
      `${a.source.label}'s answer as ${desirable ? 'desirable' : 'undesirable'} (KTO)`, desirable ? i : rounds.value[r]!.picked)
  }

  /** One answer as the gold answer of an SFT record. */
  function keepGold(r: number, i: number): Promise<void> {
    const a = rounds.value[r]!.answers[i]!
    return keep(r, { ...recordBase(r), candidates: [{ content: a.text, source: a.source.label }], gold: a.text },
      `${a.source.label}'s answer as a gold answer (SFT)`, i)
  }

  return { sources, left, right, system, settings, rounds, busy, error, message, sides, loadSources, addAdapter, send, stop, clear, keepPair, keepKto, keepGold }
})
