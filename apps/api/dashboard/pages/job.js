// One job: status and progress, loss per exit and the validation metric over steps (stored events, then
// live over SSE while the job runs), the plan's forecast against what the worker measured, per-exit and
// voted accuracy, checkpoints, downloads, cancel, and the event log.
import { html } from 'htm/preact';
import { useEffect, useMemo, useState } from 'preact/hooks';
// the statuses' one definition: core's status module imports nothing, so it bundles for the browser
import { isTerminal } from '../../../../packages/core/src/service/status.ts';
import { allEvents, api, download, followEvents } from '../api.js';
import { Chart, columns } from '../chart.js';
import { bytes, ms, num, pct, rel, when } from '../format.js';
import { usePoll } from '../hooks.js';
import { ErrorBox, KeyValues, Progress, Status } from '../ui.js';

/** The job's events: stored ones first, then (while it is not finished) the SSE stream from the last of them. */
function useJobEvents(id, onChange) {
  const [events, setEvents] = useState([]);
  const [live, setLive] = useState(false);
  useEffect(() => {
    let stop = () => {};
    let gone = false;
    const seen = new Set();
    const add = (list) => {
      const fresh = list.filter((e) => !seen.has(e.id));
      for (const e of fresh) seen.add(e.id);
      if (fresh.length) setEvents((prev) => [...prev, ...fresh]);
      if (fresh.some((e) => e.type === 'status' || e.data?.validation || e.data?.plan)) onChange();
    };
    (async () => {
      const stored = await allEvents(id);
      if (gone) return;
      add(stored);
      const job = await api(`/v1/jobs/${id}`);
      if (gone || isTerminal(job.status)) return;
      setLive(true);
      stop = followEvents(
        id,
        stored.at(-1)?.id,
        (e) => add([e]),
        () => {
          setLive(false);
          onChange();
        },
      );
    })().catch(() => {});
    return () => {
      gone = true;
      stop();
    };
  }, [id]);
  return { events, live };
}

/** Loss per exit layer and the in-loop validation metric, as chart columns. */
function curves(events, job) {
  const loss = [];
  const val = [];
  for (const e of events) {
    const d = e.data;
    if (e.type !== 'metrics' || !d) continue;
    if (typeof d.step === 'number' && typeof d.train_loss === 'number')
      loss.push({ x: d.step, series: `exit ${d.exit_layer}`, y: d.train_loss });
    const v = d.validation_point;
    if (v) val.push(...valuePoints(v));
  }
  if (!val.length) for (const v of job?.result?.validation_curve ?? []) val.push(...valuePoints(v));
  loss.sort((a, b) => Number(a.series.slice(5)) - Number(b.series.slice(5)));
  return { loss: columns(loss), val: columns(val) };
}

const valuePoints = (v) => [
  { x: v.step, series: 'voted loss', y: v.loss },
  ...(v.accuracy === null || v.accuracy === undefined ? [] : [{ x: v.step, series: 'voted accuracy', y: v.accuracy }]),
];

function PlanTable({ plan, latest }) {
  if (!plan) return html`<p class="muted">No plan yet.</p>`;
  const f = plan.forecast;
  const m = plan.measured;
  const err = plan.error ?? {};
  const row = (label, fc, me, e, fmt) =>
    html`<tr><th>${label}</th><td>${fmt(fc)}</td><td>${me === undefined ? '–' : fmt(me)}</td><td>${rel(e)}</td></tr>`;
  return html`<table class="plan" data-plan-source=${plan.source}>
      <thead><tr><th></th><th>Forecast</th><th>Measured</th><th title="forecast / measured − 1">Error</th></tr></thead>
      <tbody>
        ${row('Peak memory (RSS)', f.peak_rss_bytes, m?.peak_rss_bytes, err.peak_rss_bytes, bytes)}
        ${row('TF.js tensor peak', f.peak_tf_bytes, m?.peak_tf_bytes, err.peak_tf_bytes, bytes)}
        ${row('Step time', f.step_ms, m?.step_ms ?? latest?.step_ms, err.step_ms, ms)}
        ${row('Total time', f.total_ms, undefined, null, ms)}
      </tbody>
    </table>
    <${KeyValues}
      rows=${[
        ['Fits', plan.fits ? 'yes' : `no: ${plan.reason}`],
        [
          'Memory budget',
          `${bytes(plan.device.memory_budget_bytes)} (${plan.device.source}${plan.device.worker_id ? `: ${plan.device.worker_id}` : ''})`,
        ],
        ['Device', `${plan.device.backend}, ${plan.device.threads} threads, ${num(plan.device.matmul_gflops, 1)} GFLOP/s`],
        ['Exit layers', plan.exit_layers.join(', ')],
        ['Micro-batch × accumulation', `${plan.micro_batch} × ${plan.gradient_accumulation_steps}`],
        ['Window depth', plan.window_depth],
        ['Prefix cache', plan.prefix_cache ? 'yes' : 'no'],
        ...(plan.admission
          ? [
              [
                'At creation (API)',
                `${bytes(plan.admission.peak_rss_bytes)}, ${ms(plan.admission.step_ms)} per step, ${ms(plan.admission.total_ms)} in all`,
              ],
            ]
          : []),
      ]}
    />`;
}

function Results({ result }) {
  if (!result) return html`<p class="muted">Per-exit and voted accuracy appear when the job succeeds.</p>`;
  return html`<div class="cols">
    <table class="exits">
      <thead><tr><th>Exit layer</th><th>Accuracy</th><th>Loss</th><th>Perplexity</th></tr></thead>
      <tbody>${result.exits.map((e) => html`<tr><td>${e.layer}</td><td>${pct(e.accuracy)}</td><td>${num(e.loss)}</td><td>${num(e.perplexity, 2)}</td></tr>`)}</tbody>
    </table>
    <table class="voted">
      <thead><tr><th>Voting rule</th><th>Accuracy</th><th>Loss</th></tr></thead>
      <tbody>
        ${Object.entries(result.voted).map(
          ([rule, v]) =>
            html`<tr class=${rule === result.voting_rule ? 'chosen' : ''}><td>${rule}${rule === result.voting_rule ? ' (chosen)' : ''}</td><td>${pct(v.accuracy)}</td><td>${num(v.loss)}</td></tr>`,
        )}
      </tbody>
    </table>
    <${KeyValues}
      rows=${[
        ['Voted accuracy', html`<strong data-voted-accuracy>${pct(result.voted_accuracy)}</strong>`],
        ['Validation examples', result.validation_examples],
        ['Steps', `${result.steps}${result.stopped_by ? ` (${result.stopped_by.replace('_', ' ')})` : ''}`],
        ['Throughput', `${num(result.tokens_per_sec, 1)} tokens/s`],
        ['Training time', ms(result.train_seconds * 1000)],
      ]}
    />
  </div>`;
}

/** The job page. */
export function JobPage({ id }) {
  const job = usePoll(`/v1/jobs/${id}`, 2000);
  const checkpoints = usePoll(`/v1/jobs/${id}/checkpoints?limit=100`, 0);
  const j = job.data;
  const refresh = () => {
    job.reload();
    checkpoints.reload();
  };
  const { events, live } = useJobEvents(id, refresh);
  const count = j?.checkpoints.count;
  useEffect(() => {
    if (count) checkpoints.reload();
  }, [count]);
  const { loss, val } = useMemo(() => curves(events, j), [events, j?.result]);
  const [actionError, setActionError] = useState(null);
  const act = (fn) => () => fn().then(() => setActionError(null), setActionError);
  if (!j) return html`<${ErrorBox} error=${job.error} />${!job.error && html`<p class="muted">Loading…</p>`}`;
  const running = !isTerminal(j.status) && j.status !== 'cancelling';
  return html`<section class="job" data-job=${j.id}>
    <div class="title-row">
      <h1>${j.id}</h1>
      <${Status} status=${j.status} />
      ${live && html`<span class="live" title="following the event stream">live</span>`}
      <span class="spacer"></span>
      ${running && html`<button class="danger" onClick=${act(() => api(`/v1/jobs/${id}/cancel`, { method: 'POST' }).then(refresh))}>Cancel job</button>`}
    </div>
    <${ErrorBox} error=${actionError ?? job.error} />
    ${j.error && html`<div class="error" role="alert"><strong>${j.error.code}</strong>: ${j.error.message}</div>`}
    <div class="cols">
      <${KeyValues}
        rows=${[
          ['Model', j.model],
          ['Method', j.method.type],
          ['Progress', html`<${Progress} progress=${j.progress} />`],
          ['ETA', j.progress.eta_seconds === null ? '–' : ms(j.progress.eta_seconds * 1000)],
          ['Created', when(j.created_at)],
          ['Finished', when(j.finished_at)],
          ['Fine-tuned model', j.fine_tuned_model ?? '–'],
        ]}
      />
      <${KeyValues}
        rows=${[
          ['Training file', j.training_file],
          ['Validation file', j.validation_file ?? '–'],
          ['Steps', j.hyperparameters.max_steps ?? `${j.hyperparameters.n_epochs} epochs`],
          ['Batch size', j.hyperparameters.batch_size],
          ['Learning rate', j.hyperparameters.learning_rate],
          ['LoRA rank', j.hyperparameters.lora_r],
          ['Attempt', j.attempt],
        ]}
      />
    </div>
    <h2>Training</h2>
    <div class="cols charts">
      <${Chart} title="Training loss per exit" series=${loss.series} data=${loss.data} y="loss" />
      <${Chart} title="Validation (voted)" series=${val.series} data=${val.data} y="loss" right=${['voted accuracy']} y2="accuracy" />
    </div>
    <h2>Plan: forecast against measured</h2>
    <${PlanTable} plan=${j.plan} latest=${j.latest_metrics} />
    <h2>Accuracy</h2>
    <${Results} result=${j.result} />
    <h2>Adapter</h2>
    ${
      j.result_files.length
        ? html`<div class="buttons">
            ${j.result_files.map(
              (f) =>
                html`<button data-download=${f} onClick=${act(() => download(`/v1/jobs/${id}/adapter?format=${f}`))}>
                  Download ${f === 'peft' ? 'PEFT adapter' : f === 'bundle' ? 'edge bundle' : f} (.tar)
                </button>`,
            )}
          </div>`
        : html`<p class="muted">Downloads appear when the job succeeds.</p>`
    }
    <h2>Checkpoints</h2>
    ${
      checkpoints.data?.data.length
        ? html`<table class="checkpoints">
            <thead><tr><th>Step</th><th>Created</th><th>Size</th><th>Train loss</th><th>sha256</th></tr></thead>
            <tbody>
              ${checkpoints.data.data.map(
                (c) =>
                  html`<tr><td>${c.step_number}</td><td>${when(c.created_at)}</td><td>${bytes(c.bytes)}</td><td>${num(c.metrics.train_loss)}</td><td class="mono">${c.sha256.slice(0, 12)}</td></tr>`,
              )}
            </tbody>
          </table>`
        : html`<p class="muted">No checkpoints.</p>`
    }
    <h2>Events</h2>
    <ol class="events">
      ${[...events]
        .reverse()
        .map(
          (e) =>
            html`<li class=${`event event-${e.type} level-${e.level}`}><time>${new Date(e.created_at * 1000).toLocaleTimeString()}</time><span class="type">${e.type}</span>${e.message}</li>`,
        )}
    </ol>
  </section>`;
}
