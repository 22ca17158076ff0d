import { describe, expect, it } from 'vitest'
import { isTextField, labelAction } from './labelKeys'

describe('labelAction', () => {
  it('maps the pair keys of the issue, case-insensitively', () => {
    const cases: [string, string][] = [
      ['1', 'pick-left'], ['ArrowLeft', 'pick-left'], ['2', 'pick-right'], ['ArrowRight', 'pick-right'],
      ['t', 'tie'], ['T', 'tie'], ['s', 'skip'], ['S', 'skip'], ['e', 'edit'], ['z', 'undo'], ['Z', 'undo'],
      ['j', 'next'], ['k', 'previous']
    ]
    for (const [key, action] of cases) expect(labelAction({ key }, 'pair'), key).toBe(action)
  })

  it('maps U and D only in KTO mode', () => {
    expect(labelAction({ key: 'u' }, 'kto')).toBe('desirable')
    expect(labelAction({ key: 'D' }, 'kto')).toBe('undesirable')
    expect(labelAction({ key: 'u' }, 'pair')).toBeNull()
    expect(labelAction({ key: '1' }, 'kto')).toBeNull()
  })

  it('has no pick keys in SFT mode', () => {
    expect(labelAction({ key: '1' }, 'sft')).toBeNull()
    expect(labelAction({ key: 'e' }, 'sft')).toBe('edit')
  })

  it('ignores keys typed into a text field and keys with modifiers', () => {
    expect(labelAction({ key: '1', inTextField: true }, 'pair')).toBeNull()
    expect(labelAction({ key: 'z', ctrlKey: true }, 'pair')).toBeNull()
    expect(labelAction({ key: 'z', metaKey: true }, 'pair')).toBeNull()
    expect(labelAction({ key: 'ArrowLeft', altKey: true }, 'pair')).toBeNull()
  })

  it('ignores keys that are not mapped', () => {
    expect(labelAction({ key: 'x' }, 'pair')).toBeNull()
    expect(labelAction({ key: 'Enter' }, 'pair')).toBeNull()
  })
})

describe('isTextField', () => {
  it('treats text inputs, textareas and editable elements as text fields', () => {
    expect(isTextField({ tagName: 'TEXTAREA' })).toBe(true)
    expect(isTextField({ tagName: 'INPUT', type: 'text' })).toBe(true)
    expect(isTextField({ tagName: 'INPUT', type: 'search' })).toBe(true)
    expect(isTextField({ tagName: 'DIV', isContentEditable: true })).toBe(true)
  })
  it('does not treat buttons, checkboxes or plain elements as text fields', () => {
    expect(isTextField({ tagName: 'BUTTON' })).toBe(false)
    expect(isTextField({ tagName: 'INPUT', type: 'checkbox' })).toBe(false)
    expect(isTextField({ tagName: 'DIV' })).toBe(false)
    expect(isTextField(null)).toBe(false)
  })
})
