// Accessibility checks shared by the e2e flows.
import type { Page } from 'playwright-core'

/** Buttons, inputs, selects and links on the page without an accessible name (a label,
 *  aria-label/labelledby, or for buttons and links their text). */
export async function unnamedControls(page: Page): Promise<string[]> {
  return page.evaluate(() => {
    const unnamed: string[] = []
    for (const el of document.querySelectorAll<HTMLElement>('button, input, select, textarea, a[href]')) {
      const labelled =
        (el as HTMLInputElement).labels?.length ||
        el.getAttribute('aria-label')?.trim() ||
        el.getAttribute('aria-labelledby') ||
        ((el.tagName === 'BUTTON' || el.tagName === 'A') && el.textContent?.trim())
      if (!labelled) unnamed.push(el.outerHTML.slice(0, 120))
    }
    return unnamed
  })
}
