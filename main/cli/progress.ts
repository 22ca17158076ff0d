// A progress bar with ETA on stderr (redrawn in place on a terminal, one line per update
// otherwise), so stdout stays machine-readable.
import { formatDuration } from '../services/training/schedule'

export function progressLine(label: string, done: number, total: number, elapsedSeconds: number, extra = ''): string {
  const width = 24
  const frac = total > 0 ? Math.min(1, done / total) : 0
  const filled = Math.round(frac * width)
  const eta = done > 0 ? (elapsedSeconds / done) * (total - done) : 0
  return `${label} [${'#'.repeat(filled)}${'-'.repeat(width - filled)}] ${done}/${total} ${(frac * 100).toFixed(0)}% ` +
    `elapsed ${formatDuration(elapsedSeconds)} eta ${formatDuration(eta)}${extra ? ' ' + extra : ''}`
}

export class ProgressBar {
  private lastDraw = 0
  constructor(private readonly stream: NodeJS.WriteStream = process.stderr) {}

  update(line: string, force = false): void {
    const now = Date.now()
    if (this.stream.isTTY) {
      if (!force && now - this.lastDraw < 100) return
      this.stream.write(`\r\x1b[2K${line}`)
    } else {
      if (!force && now - this.lastDraw < 2000) return
      this.stream.write(line + '\n')
    }
    this.lastDraw = now
  }

  done(): void {
    if (this.stream.isTTY) this.stream.write('\n')
  }
}
