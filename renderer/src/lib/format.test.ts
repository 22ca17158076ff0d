import { describe, expect, it } from 'vitest'
import { countOf, formatBytes, formatCount } from './format'

describe('formatCount', () => {
  it('keeps three significant digits with the right unit', () => {
    expect(formatCount(1_543_714_304)).toBe('1.54 B')
    expect(formatCount(494_032_768)).toBe('494 M')
    expect(formatCount(2_048)).toBe('2.05 K')
    expect(formatCount(999)).toBe('999')
  })
})

describe('formatBytes', () => {
  it('uses binary units', () => {
    expect(formatBytes(512)).toBe('512 B')
    expect(formatBytes(1536)).toBe('1.50 KiB')
    expect(formatBytes(3 * 1024 ** 3)).toBe('3.00 GiB')
  })
})

describe('countOf', () => {
  it('says one thing in the singular and others in the plural', () => {
    expect(countOf(1, 'labeled pairs')).toBe('1 labeled pair')
    expect(countOf(0, 'labeled pairs')).toBe('0 labeled pairs')
    expect(countOf(12, 'steps')).toBe('12 steps')
  })
})
