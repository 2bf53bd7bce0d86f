// A line chart (uPlot) over training steps: `series` are the y columns' labels, `data` is uPlot's
// [xs, ...ys] with null where a series has no point at that step. The container's data-points attribute
// counts the points drawn (what a test can wait on).
import { html } from 'htm/preact';
import { useEffect, useRef } from 'preact/hooks';
import uPlot from 'uplot';

const COLORS = ['#2563eb', '#dc2626', '#16a34a', '#9333ea', '#ea580c', '#0891b2', '#be185d', '#4d7c0f'];

/**
 * Chart props: `title`, `series` (labels), `data` ([xs, ...ys]), `y` (the left y axis label); series whose
 * label is in `right` use a second scale on the right, labelled `y2` (e.g. accuracy beside loss).
 */
export function Chart({ title, series, data, y, right = [], y2 = '' }) {
  const box = useRef(null);
  const plot = useRef(null);
  const key = series.join('|');
  useEffect(() => {
    const el = box.current;
    const opts = {
      width: Math.max(280, el.clientWidth),
      height: 260,
      scales: { x: { time: false }, y: {}, y2: {} },
      axes: [
        { label: 'step' },
        { label: y, scale: 'y' },
        ...(series.some((s) => right.includes(s)) ? [{ label: y2, scale: 'y2', side: 1, grid: { show: false } }] : []),
      ],
      series: [
        { label: 'step' },
        ...series.map((label, i) => ({
          label,
          scale: right.includes(label) ? 'y2' : 'y',
          stroke: COLORS[i % COLORS.length],
          width: 2,
          spanGaps: true,
          points: { show: true, size: 5 },
        })),
      ],
    };
    plot.current = new uPlot(opts, data, el);
    const ro = new ResizeObserver(() => plot.current?.setSize({ width: Math.max(280, el.clientWidth), height: 260 }));
    ro.observe(el);
    return () => {
      ro.disconnect();
      plot.current?.destroy();
      plot.current = null;
    };
  }, [key]);
  useEffect(() => {
    plot.current?.setData(data);
  }, [data]);
  const points = data.slice(1).reduce((n, ys) => n + ys.filter((v) => v !== null && v !== undefined).length, 0);
  return html`<figure class="chart">
    <figcaption>${title}</figcaption>
    <div ref=${box} data-points=${points}></div>
  </figure>`;
}

/**
 * Aligns points into uPlot's columns: `points` are {x, series, y}; returns {series, data} with one y column
 * per distinct series (in order of first appearance) and the xs sorted.
 */
export function columns(points) {
  const series = [...new Set(points.map((p) => p.series))];
  const xs = [...new Set(points.map((p) => p.x))].sort((a, b) => a - b);
  const at = new Map(xs.map((x, i) => [x, i]));
  const ys = series.map(() => xs.map(() => null));
  for (const p of points) ys[series.indexOf(p.series)][at.get(p.x)] = p.y;
  return { series, data: [xs, ...ys] };
}
