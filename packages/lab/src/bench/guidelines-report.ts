/**
 * Tables (Markdown) and plots (SVG, rendered headless by Vega-Lite) of the guidelines bench's rows, written
 * beside its JSON: `<out>.md` and `<out without .json>/*.svg`.
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { basename, dirname, join } from 'node:path';
import * as vega from 'vega';
import { compile, type TopLevelSpec } from 'vega-lite';
import type { GuidelinesRun } from '@edgetune/core';
import type { AdvisorCheck } from './guidelines-advisor.js';

type Row = GuidelinesRun & { label: string; failed?: boolean; zero_shot?: boolean; per_exit?: number[] };

/** Mean and sample standard deviation; sd is 0 for one value. */
export function meanSd(xs: number[]): { mean: number; sd: number; n: number } {
  const n = xs.length;
  const mean = n ? xs.reduce((a, b) => a + b, 0) / n : Number.NaN;
  const sd = n > 1 ? Math.sqrt(xs.reduce((a, b) => a + (b - mean) ** 2, 0) / (n - 1)) : 0;
  return { mean, sd, n };
}

const pct = (x: number) => (100 * x).toFixed(1);
const cell = (xs: number[]) => {
  const s = meanSd(xs);
  return s.n ? `${pct(s.mean)} ± ${pct(s.sd)}` : 'n/a';
};

function groupBy<T>(xs: T[], key: (x: T) => string): Map<string, T[]> {
  const m = new Map<string, T[]>();
  for (const x of xs) {
    const k = key(x);
    m.set(k, [...(m.get(k) ?? []), x]);
  }
  return m;
}

/** Renders a Vega-Lite spec to an SVG string (no browser, no canvas). */
export async function renderSvg(spec: TopLevelSpec): Promise<string> {
  const view = new vega.View(vega.parse(compile(spec).spec), { renderer: 'none' });
  return view.toSVG();
}

/** What training past the validation peak cost a run: seconds after the best evaluation, and the metric lost by the last one. */
export function pastPeak(r: GuidelinesRun): { peakStep: number; peakValue: number; lastValue: number; secondsPast: number } | null {
  const c = r.validation_curve;
  if (!c.length) return null;
  const lowerIsBetter = r.task_kind === 'generation'; // its validation metric is the loss
  let best = 0;
  for (let i = 1; i < c.length; i++) if (lowerIsBetter ? c[i].value < c[best].value : c[i].value > c[best].value) best = i;
  return {
    peakStep: c[best].step,
    peakValue: c[best].value,
    lastValue: c[c.length - 1].value,
    secondsPast: c[c.length - 1].elapsed_s - c[best].elapsed_s,
  };
}

/**
 * The two layers of a "mean over seeds, with the standard deviation" plot: the mean of `metric` at each `x` (a line
 * with points, or points alone), and an error bar of one sd, coloured by `color`.
 */
function meanWithSd(
  x: { field: string; title: string; log?: boolean },
  color: string,
  mark: 'line' | 'point',
  yScale?: { domain: [number, number] },
): object[] {
  const scale = x.log ? { scale: { type: 'log', base: 2 } } : {};
  return [
    {
      mark: mark === 'line' ? { type: 'line', point: true } : { type: 'point', filled: true, size: 80 },
      encoding: {
        x: { field: x.field, type: 'quantitative', ...scale, title: x.title },
        y: { aggregate: 'mean', field: 'metric', type: 'quantitative', title: 'test metric', ...(yScale ? { scale: yScale } : {}) },
        color: { field: color, type: 'nominal' },
      },
    },
    {
      mark: { type: 'errorbar', extent: 'stdev' },
      encoding: {
        x: { field: x.field, type: 'quantitative', ...scale },
        y: { field: 'metric', type: 'quantitative' },
        color: { field: color, type: 'nominal' },
      },
    },
  ];
}

/** Writes the tables and plots of `rows` beside `outJson`. */
export async function writeGuidelinesReport(
  outJson: string,
  all: Row[],
  o: {
    heldOut: string | null;
    /** the commands whose rows the file holds, in order */
    commands: string[];
    check?: AdvisorCheck[];
    checkSettings?: { memoryBudgetBytes: number; timeBudgetS: number; probes: number };
  },
): Promise<void> {
  const rows = all.filter((r) => !r.failed && !r.zero_shot);
  const zero = all.filter((r) => r.zero_shot && !r.failed);
  const base = outJson.replace(/\.json$/, '');
  const plotDir = base;
  mkdirSync(plotDir, { recursive: true });
  const rel = (f: string) => `${basename(plotDir)}/${f}`;
  const md: string[] = [`# Guidelines bench (${basename(outJson)})`, '', 'Made by:', '', ...o.commands.map((c) => `    ${c}`), ''];
  const failed = all.filter((r) => r.failed);
  if (failed.length) md.push(`Failed runs: ${failed.length} (${failed.map((r) => r.label).join(', ')})`, '');

  // Baselines
  md.push('## Baselines (test split)', '', '| task | kind | majority class | zero-shot (untuned) |', '|---|---|---|---|');
  for (const [task, zs] of groupBy(zero, (r) => r.task))
    md.push(
      `| ${task} | ${zs[0].task_kind} | ${zs[0].task_kind === 'classification' ? pct(zs[0].baseline) : '-'} | ${zs.map((z) => `${z.model} ${pct(z.test_metric)}`).join(', ')} |`,
    );
  md.push('');

  // Methods x data x task
  const methods = rows.filter((r) => r.study === 'methods');
  if (methods.length) {
    md.push(
      '## Method x amount of data x task',
      '',
      `Test metric in % (mean ± sd over seeds); ${o.heldOut ? `\`${o.heldOut}\` is held out of the advisor's fit.` : ''}`,
      '',
    );
    for (const [task, rs] of groupBy(methods, (r) => r.task)) {
      const ms = [...new Set(rs.map((r) => r.method))];
      md.push(
        `### ${task} (${rs[0].metric}, baseline ${pct(rs[0].baseline)})`,
        '',
        `| n_train | ${ms.join(' | ')} |`,
        `|---|${ms.map(() => '---').join('|')}|`,
      );
      for (const [n, rn] of [...groupBy(rs, (r) => String(r.n_train))].sort((a, b) => Number(a[0]) - Number(b[0])))
        md.push(`| ${n} | ${ms.map((m) => cell(rn.filter((r) => r.method === m).map((r) => r.test_metric))).join(' | ')} |`);
      md.push('');
    }
    writeFileSync(
      join(plotDir, 'methods.svg'),
      await renderSvg({
        $schema: 'https://vega.github.io/schema/vega-lite/v6.json',
        title: 'Test metric by method and amount of training data (mean and sd over seeds)',
        data: {
          values: methods.map((r) => ({ task: r.task, method: r.method, n: r.n_train, metric: r.test_metric, baseline: r.baseline })),
        },
        facet: { column: { field: 'task', type: 'nominal' } },
        spec: {
          width: 220,
          height: 200,
          layer: [
            ...meanWithSd({ field: 'n', title: 'training examples', log: true }, 'method', 'line', { domain: [0, 1] }),
            {
              mark: { type: 'rule', strokeDash: [4, 4], color: 'gray' },
              encoding: { y: { aggregate: 'mean', field: 'baseline', type: 'quantitative' } },
            },
          ],
        },
      } as TopLevelSpec),
    );
    md.push(`![methods](${rel('methods.svg')})`, '');

    // Metric against tuning time
    const trained = methods.filter((r) => r.validation_curve.length);
    md.push(
      '## Validation against tuning time',
      '',
      'Per run: the step where validation peaked, the peak, the last evaluation, and the tuning time spent after the peak (median over seeds). Validation is voted accuracy in %, or the voted loss in nats per token (lower is better) for generation.',
      '',
      '| task | method | n_train | peak step (of max) | peak | last | seconds past peak | share of tuning time |',
      '|---|---|---|---|---|---|---|---|',
    );
    const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor((xs.length - 1) / 2)];
    for (const [, rs] of [...groupBy(trained, (r) => `${r.task}|${r.method}|${String(r.n_train).padStart(6)}`)].sort((a, b) =>
      a[0].localeCompare(b[0]),
    )) {
      const val = (x: number) => (rs[0].task_kind === 'generation' ? `${x.toFixed(3)} nats` : `${pct(x)}%`);
      const p = rs.map(pastPeak).filter((x): x is NonNullable<typeof x> => x !== null);
      const total = rs.map((r) => r.validation_curve[r.validation_curve.length - 1].elapsed_s);
      md.push(
        `| ${rs[0].task} | ${rs[0].method} | ${rs[0].n_train} | ${median(p.map((x) => x.peakStep))} (${rs[0].max_steps}) | ${val(median(p.map((x) => x.peakValue)))} | ${val(median(p.map((x) => x.lastValue)))} | ${median(p.map((x) => x.secondsPast)).toFixed(1)} | ${pct(median(p.map((x, i) => x.secondsPast / Math.max(1e-9, total[i]))))}% |`,
      );
    }
    md.push('');
    const curvePoints = trained
      .filter((r) => r.n_train === Math.min(...trained.map((x) => x.n_train)) || r.n_train === Math.max(...trained.map((x) => x.n_train)))
      .flatMap((r) =>
        r.validation_curve.map((p) => ({
          task: r.task,
          method: r.method,
          n: `n=${r.n_train}`,
          seed: r.seed,
          t: p.elapsed_s,
          value: p.value,
        })),
      );
    writeFileSync(
      join(plotDir, 'time.svg'),
      await renderSvg({
        $schema: 'https://vega.github.io/schema/vega-lite/v6.json',
        title: 'Validation metric against tuning time (fewest and most training examples; one line per seed)',
        data: { values: curvePoints },
        facet: { row: { field: 'n', type: 'nominal' }, column: { field: 'task', type: 'nominal' } },
        spec: {
          width: 220,
          height: 160,
          mark: { type: 'line', strokeWidth: 1 },
          encoding: {
            x: { field: 't', type: 'quantitative', title: 'tuning time (s)' },
            y: { field: 'value', type: 'quantitative', title: 'validation metric' },
            color: { field: 'method', type: 'nominal' },
            detail: { field: 'seed', type: 'nominal' },
          },
        },
        resolve: { scale: { x: 'independent' } },
      } as TopLevelSpec),
    );
    md.push(`![time](${rel('time.svg')})`, '');
  }

  // Compressed larger vs uncompressed smaller
  const comp = rows.filter((r) => r.study === 'compressed_vs_smaller');
  if (comp.length) {
    const variant = (r: GuidelinesRun) => `${r.model}${r.compression ? ` ${r.compression.avg_bits}-bit LUC` : ''}`;
    md.push(
      '## Compressed larger vs uncompressed smaller (Edge-LLM)',
      '',
      '| task | n_train | variant | weight MiB | test % (mean ± sd) | peak RSS MiB |',
      '|---|---|---|---|---|---|',
    );
    for (const [, rs] of [...groupBy(comp, (r) => `${r.task}|${String(r.n_train).padStart(6)}|${variant(r)}`)].sort((a, b) =>
      a[0].localeCompare(b[0]),
    ))
      md.push(
        `| ${rs[0].task} | ${rs[0].n_train} | ${variant(rs[0])} | ${(rs[0].stored_weight_bytes / 2 ** 20).toFixed(1)} | ${cell(rs.map((r) => r.test_metric))} | ${(meanSd(rs.map((r) => r.peak_rss_bytes)).mean / 2 ** 20).toFixed(0)} |`,
      );
    md.push('');
    writeFileSync(
      join(plotDir, 'compressed-vs-smaller.svg'),
      await renderSvg({
        $schema: 'https://vega.github.io/schema/vega-lite/v6.json',
        title: 'Test metric against weight memory (mean and sd over seeds)',
        data: {
          values: comp.map((r) => ({
            task: r.task,
            n: `n=${r.n_train}`,
            variant: variant(r),
            mib: r.stored_weight_bytes / 2 ** 20,
            metric: r.test_metric,
          })),
        },
        facet: { row: { field: 'n', type: 'nominal' }, column: { field: 'task', type: 'nominal' } },
        spec: {
          width: 220,
          height: 160,
          layer: [...meanWithSd({ field: 'mib', title: 'weight memory (MiB)' }, 'variant', 'point')],
        },
      } as TopLevelSpec),
    );
    md.push(`![compressed vs smaller](${rel('compressed-vs-smaller.svg')})`, '');
  }

  // LoRA rank
  const rank = rows.filter((r) => r.study === 'lora_rank');
  if (rank.length) {
    md.push('## LoRA rank', '', '| task | method | r | test % (mean ± sd) | peak RSS MiB | tuning s |', '|---|---|---|---|---|---|');
    for (const [, rs] of [...groupBy(rank, (r) => `${r.task}|${r.method}|${String(r.lora_r).padStart(3)}`)].sort((a, b) =>
      a[0].localeCompare(b[0]),
    ))
      md.push(
        `| ${rs[0].task} | ${rs[0].method} | ${rs[0].lora_r} | ${cell(rs.map((r) => r.test_metric))} | ${(meanSd(rs.map((r) => r.peak_rss_bytes)).mean / 2 ** 20).toFixed(0)} | ${meanSd(rs.map((r) => r.tune_s)).mean.toFixed(1)} |`,
      );
    md.push('');
    writeFileSync(
      join(plotDir, 'lora-rank.svg'),
      await renderSvg({
        $schema: 'https://vega.github.io/schema/vega-lite/v6.json',
        title: 'Test metric against LoRA rank (mean and sd over seeds)',
        data: { values: rank.map((r) => ({ task: r.task, method: r.method, r: r.lora_r, metric: r.test_metric })) },
        facet: { column: { field: 'task', type: 'nominal' } },
        spec: {
          width: 220,
          height: 180,
          layer: [...meanWithSd({ field: 'r', title: 'LoRA rank', log: true }, 'method', 'line')],
        },
      } as TopLevelSpec),
    );
    md.push(`![lora rank](${rel('lora-rank.svg')})`, '');
  }
  if (o.check?.length) {
    const cs = o.checkSettings;
    const mean = (xs: number[]) => (xs.length ? (xs.reduce((a, b) => a + b, 0) / xs.length).toFixed(2) : 'n/a');
    md.push(
      `## The advisor on the held-out task (${o.check[0].task})`,
      '',
      `Rules fitted on the other tasks only. Device: ${cs ? `${(cs.memoryBudgetBytes / 2 ** 30).toFixed(0)} GiB` : '?'} budget, ${cs?.timeBudgetS ?? '?'} s afforded; \`measure\` probes the top ${cs?.probes ?? '?'} measured candidates of the estimate, each for an equal share of the time (the measured run cut at its share). Regret: points of test metric below the best candidate measured at the same size and seed.`,
      '',
      `Mean regret: **estimate ${mean(o.check.map((c) => c.estimate.regret_points))}**, **measure ${mean(o.check.map((c) => c.measure.regret_points))}**, default Edge-LLM ${mean(o.check.flatMap((c) => (c.default ? [c.default.regret_points] : [])))} points (${o.check.length} checks).`,
      '',
      '| n_train | seed | best measured | estimate pick (regret) | measure pick (regret) | default (regret) |',
      '|---|---|---|---|---|---|',
    );
    for (const c of o.check)
      md.push(
        `| ${c.n_train} | ${c.seed} | ${c.best.candidate} ${pct(c.best.test_metric)} | ${c.estimate.candidate} ${pct(c.estimate.test_metric)} (${c.estimate.regret_points}) | ${c.measure.candidate} ${pct(c.measure.test_metric)} (${c.measure.regret_points}) | ${c.default ? `${pct(c.default.test_metric)} (${c.default.regret_points})` : 'n/a'} |`,
      );
    md.push('');
  }
  mkdirSync(dirname(base), { recursive: true });
  writeFileSync(`${base}.md`, `${md.join('\n')}\n`);
}
