// The text of one completion as its tokens arrive: decoded whole each time (so a token's text
// may depend on its neighbours, as byte-level and SentencePiece decoders do) and emitted only
// as a growing prefix of the final text: nothing while the text ends in U+FFFD (half a UTF-8
// character whose other bytes are still to come) and nothing that could be the start of a stop
// string. Special tokens (eos, ...) are skipped in the text, as decode(skip_special_tokens).
import type { ChatTokenizer } from '../training/sequences'

export type Decode = Pick<ChatTokenizer, 'decode'>

export class CompletionText {
  readonly ids: number[] = []
  /** The text handed out so far (a prefix of `text` once finished). */
  emitted = ''
  /** Tokens kept once a stop string completed (the last one completed it); null: no stop. */
  stoppedAt: number | null = null
  private cut = ''

  constructor(private readonly tok: Decode, private readonly stops: readonly string[]) {}

  /** Adds a token; returns the text that is now safe to show (often ''). Ignored after a stop. */
  push(id: number): string {
    if (this.stoppedAt !== null) return ''
    this.ids.push(id)
    const full = this.tok.decode(this.ids, true)
    const at = this.firstStop(full)
    if (at >= 0) {
      this.stoppedAt = this.ids.length
      this.cut = full.slice(0, at)
      return this.advance(this.cut, this.cut.length)
    }
    if (full.endsWith('\uFFFD')) return ''
    return this.advance(full, full.length - this.heldForStop(full))
  }

  get stopped(): boolean {
    return this.stoppedAt !== null
  }

  /** The final text (cut before the stop string when one was found); emits what was held back. */
  finish(): { text: string; delta: string } {
    const text = this.stoppedAt !== null ? this.cut : this.tok.decode(this.ids, true)
    const delta = this.advance(text, text.length)
    return { text, delta }
  }

  private advance(text: string, upTo: number): string {
    // A decoder that rewrote earlier text (none of the usual ones do) gets no more streaming;
    // the final text is still exact.
    if (upTo <= this.emitted.length || !text.startsWith(this.emitted)) return ''
    const delta = text.slice(this.emitted.length, upTo)
    this.emitted += delta
    return delta
  }

  private firstStop(text: string): number {
    let best = -1
    for (const s of this.stops) {
      const i = text.indexOf(s)
      if (i >= 0 && (best < 0 || i < best)) best = i
    }
    return best
  }

  /** Length of the longest end of `text` that begins some stop string. */
  private heldForStop(text: string): number {
    let held = 0
    for (const s of this.stops)
      for (let k = Math.min(s.length - 1, text.length); k > held; k--)
        if (text.endsWith(s.slice(0, k))) {
          held = k
          break
        }
    return held
  }
}
