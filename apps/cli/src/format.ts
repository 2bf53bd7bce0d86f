/** Plain-text output for people: aligned tables, byte sizes, times. */
import { formatDuration } from '@edgetune/core';

/** Columns padded to their widest cell, two spaces apart; `(none)` for no rows. */
export function table(header: string[], rows: (string | number | null | undefined)[][]): string {
  if (!rows.length) return '(none)';
  const cells = [header, ...rows.map((r) => r.map((c) => (c === null || c === undefined ? '-' : String(c))))];
  const widths = header.map((_, i) => Math.max(...cells.map((r) => r[i]!.length)));
  return cells.map((r) => r.map((c, i) => (i === r.length - 1 ? c : c.padEnd(widths[i]!))).join('  ')).join('\n');
}

/** `key: value` lines with the keys aligned; null values are left out. */
export function summary(pairs: [string, string | number | null | undefined][]): string {
  const kept = pairs.filter(([, v]) => v !== null && v !== undefined && v !== '');
  const w = Math.max(...kept.map(([k]) => k.length));
  return kept.map(([k, v]) => `${`${k}:`.padEnd(w + 2)}${v}`).join('\n');
}

/** 1536 -> "1.5 KiB" (binary units). */
export function bytes(n: number | null | undefined): string {
  if (n === null || n === undefined) return '-';
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let i = 0;
  let x = n;
  while (Math.abs(x) >= 1024 && i < units.length - 1) {
    x /= 1024;
    i++;
  }
  return i === 0 ? `${x} B` : `${x.toFixed(1)} ${units[i]}`;
}

/** Unix seconds -> "2026-01-31 14:05:09" (UTC). */
export function time(s: number | null | undefined): string {
  if (s === null || s === undefined) return '-';
  return new Date(s * 1000).toISOString().replace('T', ' ').slice(0, 19);
}

/** Milliseconds -> "1m15s". */
export const duration = (ms: number): string => formatDuration(ms);

/** 0.8125 -> "81.3%". */
export const percent = (x: number | null | undefined): string => (x === null || x === undefined ? '-' : `${(100 * x).toFixed(1)}%`);
