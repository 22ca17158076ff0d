import { describe, expect, it } from 'vitest'
import { escapeHtml, renderMarkdown } from './markdown'

// Every tag in the output must be one the renderer writes itself.
const allowedTags = /^<\/?(p|br|strong|em|code|pre|ul|ol|li|h[1-6])( class="language-[\w+#.-]+")?>$/
function tagsOf(html: string): string[] {
  return html.match(/<[^>]*>/g) ?? []
}

describe('renderMarkdown', () => {
  it('escapes HTML in text so that no input can open a tag', () => {
    const html = renderMarkdown('<script>alert(1)</script> and <img src=x onerror="x()">')
    expect(html).toBe('<p>&lt;script&gt;alert(1)&lt;/script&gt; and &lt;img src=x onerror=&quot;x()&quot;&gt;</p>')
    for (const tag of tagsOf(html)) expect(tag).toMatch(allowedTags)
  })

  it('escapes HTML inside code fences and inline code', () => {
    const html = renderMarkdown('```html\n<b onclick="x">hi</b>\n```\nuse `<div>` here')
    expect(html).toContain('<pre><code class="language-html">&lt;b onclick=&quot;x&quot;&gt;hi&lt;/b&gt;</code></pre>')
    expect(html).toContain('<code>&lt;div&gt;</code>')
    for (const tag of tagsOf(html)) expect(tag).toMatch(allowedTags)
  })

  it('keeps a fence language that tries to break out of the attribute as plain text', () => {
    const html = renderMarkdown('```js" onmouseover="x\ncode\n```')
    for (const tag of tagsOf(html)) expect(tag).toMatch(allowedTags)
    expect(html).not.toContain('onmouseover="')
  })

  it('renders code fences verbatim, without emphasis inside', () => {
    const html = renderMarkdown('```python\ndef f(*args, **kw):\n    return a*b\n```')
    expect(html).toBe('<pre><code class="language-python">def f(*args, **kw):\n    return a*b</code></pre>')
  })

  it('renders emphasis outside code spans only', () => {
    expect(renderMarkdown('**bold** and *it* and `a*b*c`')).toBe(
      '<p><strong>bold</strong> and <em>it</em> and <code>a*b*c</code></p>'
    )
    expect(renderMarkdown('2 * 3 * 4')).toBe('<p>2 * 3 * 4</p>')
    expect(renderMarkdown('snake_case_name')).toBe('<p>snake_case_name</p>')
  })

  it('renders bullet and numbered lists and paragraphs', () => {
    expect(renderMarkdown('Steps:\n\n1. one\n2. two\n\n- a\n- b\n\nend')).toBe(
      '<p>Steps:</p>\n<ol><li>one</li><li>two</li></ol>\n<ul><li>a</li><li>b</li></ul>\n<p>end</p>'
    )
  })

  it('joins lines of a paragraph with line breaks and splits paragraphs on blank lines', () => {
    expect(renderMarkdown('a\nb\n\nc')).toBe('<p>a<br>b</p>\n<p>c</p>')
  })

  it('renders headings', () => {
    expect(renderMarkdown('## Title *x*')).toBe('<h2>Title <em>x</em></h2>')
  })

  it('keeps an unclosed fence to the end of the text', () => {
    expect(renderMarkdown('```\nx < y')).toBe('<pre><code>x &lt; y</code></pre>')
  })

  it('escapes the five HTML-significant characters', () => {
    expect(escapeHtml(`&<>"'`)).toBe('&amp;&lt;&gt;&quot;&#39;')
  })
})
