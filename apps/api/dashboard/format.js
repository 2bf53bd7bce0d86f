// How numbers read on the dashboard: bytes in binary units, durations, ages, percentages.

/** 1536 -> "1.5 KiB". */
export function bytes(n) {
  if (n === null || n === undefined) return '–';
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let i = 0;
  let v = n;
  while (Math.abs(v) >= 1024 && i < units.length - 1) {
    v /= 1024;
    i++;
  }
  return `${i ? v.toFixed(1) : v} ${units[i]}`;
}

/** Milliseconds -> "850 ms", "12.3 s", "4 min 5 s", "2 h 3 min". */
export function ms(n) {
  if (n === null || n === undefined) return '–';
  if (n < 1000) return `${Math.round(n)} ms`;
  const s = n / 1000;
  if (s < 60) return `${s.toFixed(1)} s`;
  if (s < 3600) return `${Math.floor(s / 60)} min ${Math.round(s % 60)} s`;
  return `${Math.floor(s / 3600)} h ${Math.round((s % 3600) / 60)} min`;
}

/** Unix seconds -> "5 s ago", "3 min ago", ... */
export function age(unixSeconds) {
  if (!unixSeconds) return '–';
  const s = Math.max(0, Date.now() / 1000 - unixSeconds);
  if (s < 60) return `${Math.round(s)} s ago`;
  if (s < 3600) return `${Math.round(s / 60)} min ago`;
  if (s < 86400) return `${Math.round(s / 3600)} h ago`;
  return `${Math.round(s / 86400)} d ago`;
}

/** 0.8123 -> "81.2%"; null -> "–". */
export const pct = (x) => (x === null || x === undefined ? '–' : `${(100 * x).toFixed(1)}%`);

/** A number with `d` decimals, or "–". */
export const num = (x, d = 4) => (x === null || x === undefined ? '–' : Number(x).toFixed(d));

/** Signed relative error: 0.12 -> "+12%". */
export const rel = (x) => (x === null || x === undefined ? '–' : `${x >= 0 ? '+' : ''}${Math.round(100 * x)}%`);

/** Unix seconds -> local date and time. */
export const when = (unixSeconds) => (unixSeconds ? new Date(unixSeconds * 1000).toLocaleString() : '–');
