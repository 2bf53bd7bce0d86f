// Base models: family, size and where they are.
import { html } from 'htm/preact';
import { bytes } from '../format.js';
import { usePoll } from '../hooks.js';
import { ErrorBox } from '../ui.js';

const params = (n) => (n >= 1e9 ? `${(n / 1e9).toFixed(2)} B` : n >= 1e6 ? `${(n / 1e6).toFixed(1)} M` : `${(n / 1e3).toFixed(1)} K`);

/** The models page. */
export function ModelsPage() {
  const { data, error } = usePoll('/v1/models', 0);
  return html`<section>
    <h1>Models</h1>
    <${ErrorBox} error=${error} />
    ${
      data &&
      html`<table class="models">
        <thead><tr><th>Model</th><th>Family</th><th>Parameters</th><th>Weights</th><th>Layers</th><th>Hidden</th><th>Vocabulary</th><th>Default exits</th><th>Hosts</th></tr></thead>
        <tbody>
          ${data.data.map(
            (m) => html`<tr data-model=${m.id}>
              <td><strong>${m.id}</strong></td>
              <td>${m.family}</td>
              <td>${params(m.n_params)}</td>
              <td>${m.weight_bytes === null ? '–' : `${bytes(m.weight_bytes)} ${m.stored_dtype}`}</td>
              <td>${m.limits.n_layers}</td>
              <td>${m.hidden_size}</td>
              <td>${m.vocab_size}</td>
              <td>${m.limits.default_exit_layers.join(', ')}</td>
              <td>${m.hosts.join(', ')}</td>
            </tr>`,
          )}
        </tbody>
      </table>`
    }
  </section>`;
}
