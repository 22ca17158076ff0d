// A small markdown renderer for model answers. Safety comes from the order of work: the raw
// text is HTML-escaped first, and only then are the few tags below added, so no character of
// the input can open a tag or an attribute. The output is therefore safe for v-html.

const escapes: Record<string, string> = {
  '&': '&amp;',
  '<': '&lt;',
  '>': '&gt;',
  '"': '&quot;',
  "'": '&#39;'
}

export function escapeHtml(text: string): string {
  return text.replace(/[&<>"']/g, (c) => escapes[c] ?? c)
}

// Emphasis on text that is already escaped and holds no code span.
function emphasis(escaped: string): string {
  return escaped
    .replace(/\*\*(?=\S)([^*]*?\S)\*\*/g, '<strong>$1</strong>')
    .replace(/__(?=\S)([^_]*?\S)__/g, '<strong>$1</strong>')
    .replace(/(^|[^*\w])\*(?=\S)([^*]*?\S)\*(?![*\w])/g, '$1<em>$2</em>')
    .replace(/(^|[^_\w])_(?=\S)([^_]*?\S)_(?![_\w])/g, '$1<em>$2</em>')
}

/** Inline markup of one escaped line or paragraph: code spans first, emphasis outside them. */
export function renderInline(escaped: string): string {
  const parts = escaped.split(/(`[^`\n]+`)/g)
  return parts
    .map((part, i) => (i % 2 === 1 ? `<code>${part.slice(1, -1)}</code>` : emphasis(part)))
    .join('')
}

const fenceOpen = /^\s*(```|~~~)\s*([\w+#.-]*)\s*$/
const bullet = /^\s*[-*+]\s+(.*)$/
const ordered = /^\s*\d+[.)]\s+(.*)$/
const heading = /^(#{1,6})\s+(.*)$/

/** Renders markdown text to HTML whose only tags are the ones this module writes. */
export function renderMarkdown(text: string): string {
  const lines = escapeHtml(text.replace(/\r\n?/g, '\n')).split('\n')
  const out: string[] = []
  let paragraph: string[] = []
  let list: { tag: 'ul' | 'ol'; items: string[] } | null = null

  const flushParagraph = () => {
    if (paragraph.length) out.push(`<p>${renderInline(paragraph.join('<br>'))}</p>`)
    paragraph = []
  }
  const flushList = () => {
    if (list) out.push(`<${list.tag}>${list.items.map((i) => `<li>${renderInline(i)}</li>`).join('')}</${list.tag}>`)
    list = null
  }

  for (let i = 0; i < lines.length; i++) {
    const line = lines[i]
    const fence = fenceOpen.exec(line)
    if (fence) {
      flushParagraph()
      flushList()
      const marker = fence[1]
      const body: string[] = []
      i++
      while (i < lines.length && lines[i].trim() !== marker) body.push(lines[i++])
      // The language is already escaped and limited by the regex to word characters.
      const cls = fence[2] ? ` class="language-${fence[2]}"` : ''
      out.push(`<pre><code${cls}>${body.join('\n')}</code></pre>`)
      continue
    }
    if (line.trim() === '') {
      flushParagraph()
      flushList()
      continue
    }
    const h = heading.exec(line)
    if (h) {
      flushParagraph()
      flushList()
      const level = h[1].length
      out.push(`<h${level}>${renderInline(h[2])}</h${level}>`)
      continue
    }
    const b = bullet.exec(line)
    const o = b ? null : ordered.exec(line)
    if (b || o) {
      flushParagraph()
      const tag = b ? 'ul' : 'ol'
      if (list && list.tag !== tag) flushList()
      list ??= { tag, items: [] }
      list.items.push((b ?? o)![1])
      continue
    }
    if (list) {
      // A line indented under a list item continues it.
      if (/^\s+/.test(line)) {
        list.items[list.items.length - 1] += ' ' + line.trim()
        continue
      }
      flushList()
    }
    paragraph.push(line)
  }
  flushParagraph()
  flushList()
  return out.join('\n')
}
