// The job list: status, model, method, progress and age of the newest jobs, refreshed every 2 s.
import { html } from 'htm/preact';
import { usePoll } from '../hooks.js';
import { age } from '../format.js';
import { ErrorBox, Progress, Status } from '../ui.js';

/** Jobs, newest first. */
export function JobsPage() {
  const { data, error } = usePoll('/v1/jobs?limit=50', 2000);
  return html`<section>
    <div class="title-row"><h1>Jobs</h1><a class="button" href="#/new">New job</a></div>
    <${ErrorBox} error=${error} />
    ${
      data &&
      (data.data.length === 0
        ? html`<p class="muted">No jobs yet: upload a file, then create a job.</p>`
        : html`<table class="jobs">
            <thead><tr><th>Job</th><th>Status</th><th>Model</th><th>Method</th><th>Progress</th><th>Created</th></tr></thead>
            <tbody>
              ${data.data.map(
                (j) => html`<tr data-job=${j.id}>
                  <td><a href=${`#/jobs/${j.id}`}>${j.id}</a>${j.suffix ? html` <span class="muted">${j.suffix}</span>` : ''}</td>
                  <td><${Status} status=${j.status} /></td>
                  <td>${j.model}</td>
                  <td>${j.method.type}</td>
                  <td><${Progress} progress=${j.progress} /></td>
                  <td title=${new Date(j.created_at * 1000).toLocaleString()}>${age(j.created_at)}</td>
                </tr>`,
              )}
            </tbody>
          </table>`)
    }
  </section>`;
}
