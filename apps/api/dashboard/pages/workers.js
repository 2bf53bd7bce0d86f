// Workers: each process's device profile and whether it is alive, refreshed every 5 s.
import { html } from 'htm/preact';
import { age, bytes, num } from '../format.js';
import { usePoll } from '../hooks.js';
import { ErrorBox } from '../ui.js';

/** The workers page. */
export function WorkersPage() {
  const { data, error } = usePoll('/v1/workers', 5000);
  return html`<section>
    <h1>Workers</h1>
    <${ErrorBox} error=${error} />
    ${
      data &&
      (data.data.length === 0
        ? html`<p class="muted">No worker has reported yet: start one with <code>npm run start:worker</code>.</p>`
        : html`<table class="workers">
            <thead><tr><th>Worker</th><th>Liveness</th><th>Backend</th><th>Matmul</th><th>Throughput</th><th>Step-time factor</th><th>Memory budget</th><th>Threads</th><th>Jobs at once</th></tr></thead>
            <tbody>
              ${data.data.map(
                (w) => html`<tr data-worker=${w.id}>
                  <td><strong>${w.id}</strong></td>
                  <td><span class=${`status ${w.online ? 'status-succeeded' : 'status-failed'}`} data-online=${String(w.online)}>${w.online ? 'online' : 'offline'}</span> <span class="muted">heartbeat ${age(w.heartbeat_at)}</span></td>
                  <td>${w.device.backend}</td>
                  <td>${w.device.matmul}</td>
                  <td>${num(w.device.matmul_gflops, 1)} GFLOP/s</td>
                  <td>${num(w.device.step_time_factor, 2)}</td>
                  <td>${bytes(w.device.memory_budget_bytes)} of ${bytes(w.device.total_memory_bytes)}</td>
                  <td>${w.device.threads}</td>
                  <td>${w.concurrency}</td>
                </tr>`,
              )}
            </tbody>
          </table>`)
    }
  </section>`;
}
