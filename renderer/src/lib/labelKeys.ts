// Keyboard mapping of the labeling view. Kept apart from the component so the whole mapping is
// one table with tests, and so that typing into an editor never labels anything.

export type LabelMode = 'pair' | 'kto' | 'sft'

export type LabelAction =
  | 'pick-left'
  | 'pick-right'
  | 'tie'
  | 'skip'
  | 'edit'
  | 'undo'
  | 'next'
  | 'previous'
  | 'desirable'
  | 'undesirable'

export interface KeyPress {
  key: string
  ctrlKey?: boolean
  metaKey?: boolean
  altKey?: boolean
  /** True while the focus is in a text field: keys then belong to the text. */
  inTextField?: boolean
}

const common: Record<string, LabelAction> = {
  s: 'skip',
  z: 'undo',
  j: 'next',
  k: 'previous',
  e: 'edit'
}

const byMode: Record<LabelMode, Record<string, LabelAction>> = {
  pair: { ...common, '1': 'pick-left', arrowleft: 'pick-left', '2': 'pick-right', arrowright: 'pick-right', t: 'tie' },
  kto: { ...common, u: 'desirable', d: 'undesirable' },
  sft: { ...common }
}

/** The action a key press asks for in a mode, or null when the key is not ours. */
export function labelAction(press: KeyPress, mode: LabelMode): LabelAction | null {
  if (press.inTextField || press.ctrlKey || press.metaKey || press.altKey) return null
  return byMode[mode][press.key.toLowerCase()] ?? null
}

/** The keys of a mode, for the on-screen legend. */
export function keyLegend(mode: LabelMode): { keys: string; action: string }[] {
  const rows: { keys: string; action: string }[] = []
  if (mode === 'pair') {
    rows.push({ keys: '1 / ←', action: 'left is better' }, { keys: '2 / →', action: 'right is better' }, { keys: 'T', action: 'tie' })
  }
  if (mode === 'kto') rows.push({ keys: 'U', action: 'desirable' }, { keys: 'D', action: 'undesirable' })
  rows.push(
    { keys: 'S', action: 'skip' },
    { keys: 'E', action: mode === 'sft' ? 'edit the gold answer' : 'edit an answer' },
    { keys: 'Z', action: 'undo last label' },
    { keys: 'J / K', action: 'next / previous' }
  )
  return rows
}

/** Whether a DOM element takes text input (so its keys are not labeling keys). */
export function isTextField(el: { tagName?: string; isContentEditable?: boolean; type?: string } | null): boolean {
  if (!el || !el.tagName) return false
  const tag = el.tagName.toLowerCase()
  if (tag === 'textarea' || tag === 'select' || el.isContentEditable) return true
  if (tag !== 'input') return false
  return !['button', 'checkbox', 'radio', 'submit', 'reset', 'range'].includes((el.type ?? 'text').toLowerCase())
}
