/**
 * A one-line progress bar on stderr: step/total, loss, tokens/s, ETA. Redraws in place on a TTY (cut to
 * the terminal's width, so that it never wraps) and prints a line every ~5 % otherwise (logs, CI). The one
 * progress display of edgetune's command lines and of `npm run demo`.
 */
export class ProgressBar {
  private lastPct = -1;
  private drawn = false;
  private readonly tty = process.stderr.isTTY === true;

  constructor(
    private readonly label: string,
    private readonly total: number,
  ) {}

  /** Draws step `n` with optional loss, throughput (tokens/s) and remaining time (ms). */
  update(n: number, o: { loss?: number; tps?: number; etaMs?: number; extra?: string } = {}): void {
    const pct = Math.floor((100 * n) / Math.max(1, this.total));
    if (!this.tty && pct < this.lastPct + 5 && n !== this.total) return;
    this.lastPct = pct;
    const width = 24,
      fill = Math.round((width * n) / Math.max(1, this.total));
    const bar = '#'.repeat(fill) + '-'.repeat(width - fill);
    const parts = [`${this.label} [${bar}] ${n}/${this.total}`];
    if (o.loss !== undefined) parts.push(`loss ${o.loss.toFixed(4)}`);
    if (o.tps !== undefined) parts.push(`${Math.round(o.tps)} tok/s`);
    if (o.etaMs !== undefined) parts.push(`ETA ${formatDuration(o.etaMs)}`);
    if (o.extra) parts.push(o.extra);
    const line = parts.join('  ');
    if (this.tty) {
      process.stderr.write(`\r\x1b[2K${line.slice(0, Math.max(20, (process.stderr.columns || 120) - 1))}`);
      this.drawn = true;
    } else process.stderr.write(`${line}\n`);
  }

  /** Erases the bar so a log line can be printed. */
  clear(): void {
    if (this.tty && this.drawn) {
      process.stderr.write('\r\x1b[2K');
      this.drawn = false;
    }
  }

  /** Ends the bar: the last drawn line stays (on a TTY the cursor moves to the next line). */
  done(): void {
    if (this.tty && this.drawn) process.stderr.write('\n');
    this.drawn = false;
  }
}

/** 75000 -> "1m15s". */
export function formatDuration(ms: number): string {
  if (!Number.isFinite(ms)) return '?';
  const s = Math.round(ms / 1000);
  if (s < 60) return `${s}s`;
  if (s < 3600) return `${Math.floor(s / 60)}m${String(s % 60).padStart(2, '0')}s`;
  return `${Math.floor(s / 3600)}h${String(Math.floor((s % 3600) / 60)).padStart(2, '0')}m`;
}
