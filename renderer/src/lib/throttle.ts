// Live charts redraw at most every `ms`: training events can arrive faster than a redraw is
// worth, and the last call always lands (trailing edge) so the chart ends on the newest data.
export function throttle(fn: () => void, ms: number): { (): void; cancel(): void; flush(): void } {
  let timer: ReturnType<typeof setTimeout> | null = null
  let pending = false
  let last = -Infinity
  const run = () => {
    timer = null
    pending = false
    last = Date.now()
    fn()
  }
  const call = () => {
    const wait = last + ms - Date.now()
    if (wait <= 0 && !timer) return run()
    pending = true
    timer ??= setTimeout(run, Math.max(0, wait))
  }
  call.cancel = () => {
    if (timer) clearTimeout(timer)
    timer = null
    pending = false
  }
  call.flush = () => {
    if (pending) {
      call.cancel()
      run()
    }
  }
  return call
}
