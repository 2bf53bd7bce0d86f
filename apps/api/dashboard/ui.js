// Small shared pieces: status badge, progress bar, error box, key/value table.
import { html } from 'htm/preact';

/** A job status as a coloured badge. */
export const Status = ({ status }) =>
  html`<span class=${`status status-${status}`} data-status=${status}>${status.replace('_', ' ')}</span>`;

/** A job's progress: a bar and "step / total". */
export const Progress = ({ progress }) =>
  html`<span class="progress" title=${`${progress.percent}%`}>
    <span class="bar"><span style=${`width:${Math.min(100, progress.percent)}%`}></span></span>
    <span class="muted">${progress.step}/${progress.total_steps}</span>
  </span>`;

/** An error (ApiProblem or Error) as a box with its message and, for a bad upload, its lines. */
export function ErrorBox({ error }) {
  if (!error) return null;
  const items = error.problem?.errors ?? [];
  return html`<div class="error" role="alert">
    <strong>${error.problem?.code ?? 'error'}</strong>: ${error.message}
    ${
      items.length > 0 &&
      html`<table class="problems">
        <thead><tr><th>Line</th><th>Field</th><th>Problem</th></tr></thead>
        <tbody>
          ${items.map((e) => html`<tr><td class="line">${e.line ?? ''}</td><td>${e.param ?? ''}</td><td>${e.message}</td></tr>`)}
        </tbody>
      </table>`
    }
  </div>`;
}

/** Rows of [label, value] as a two-column table. */
export const KeyValues = ({ rows }) =>
  html`<table class="kv"><tbody>${rows.map(([k, v]) => html`<tr><th>${k}</th><td>${v}</td></tr>`)}</tbody></table>`;
