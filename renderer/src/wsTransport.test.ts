import { describe, expect, it } from 'vitest'
import { pageFromHash } from './stores/nav'
import { takeAccessToken } from './wsTransport'

class MemoryStorage {
  private values = new Map<string, string>()
  getItem(key: string) {
    return this.values.get(key) ?? null
  }
  setItem(key: string, value: string) {
    this.values.set(key, value)
  }
}

function fakeWindow(href: string) {
  const location = { href } as Location
  const history = {
    state: null,
    replaceState: (_state: unknown, _title: string, url: string) => {
      location.href = new URL(url, location.href).href
    }
  } as unknown as History
  return { location, history }
}

describe('takeAccessToken', () => {
  it('moves the token from the URL into session storage, keeping path and hash', () => {
    const storage = new MemoryStorage() as unknown as Storage
    const { location, history } = fakeWindow('http://127.0.0.1:9000/?token=abc&x=1#/train')
    expect(takeAccessToken(location, storage, history)).toBe('abc')
    expect(location.href).toBe('http://127.0.0.1:9000/?x=1#/train')
  })

  it('finds the stored token after a reload without one in the URL', () => {
    const storage = new MemoryStorage() as unknown as Storage
    takeAccessToken(fakeWindow('http://h/?token=abc').location, storage, fakeWindow('http://h/').history)
    const { location, history } = fakeWindow('http://h/#/runs')
    expect(takeAccessToken(location, storage, history)).toBe('abc')
    expect(location.href).toBe('http://h/#/runs')
  })

  it('has no token when neither the URL nor the storage has one', () => {
    const { location, history } = fakeWindow('http://h/')
    expect(takeAccessToken(location, new MemoryStorage() as unknown as Storage, history)).toBeNull()
  })
})

describe('pageFromHash', () => {
  it('maps hashes to pages and anything else to Models', () => {
    expect(pageFromHash('#/train')).toBe('train')
    expect(pageFromHash('#/runs/abc')).toBe('runs')
    expect(pageFromHash('#data')).toBe('data')
    expect(pageFromHash('')).toBe('models')
    expect(pageFromHash('#/nope')).toBe('models')
  })
})
