// Files: upload a JSONL dataset (a bad one shows the validation report with its line numbers) and the list.
import { html } from 'htm/preact';
import { useState } from 'preact/hooks';
import { api } from '../api.js';
import { age, bytes } from '../format.js';
import { usePoll } from '../hooks.js';
import { ErrorBox } from '../ui.js';

/** The files page. */
export function FilesPage() {
  const files = usePoll('/v1/files?limit=100', 0);
  const [result, setResult] = useState(null);
  const [busy, setBusy] = useState(false);
  const upload = async (e) => {
    e.preventDefault();
    const form = new FormData(e.currentTarget);
    setBusy(true);
    try {
      const f = await api('/v1/files', { method: 'POST', form });
      setResult({ file: f });
      e.target.reset();
      files.reload();
    } catch (error) {
      setResult({ error });
    } finally {
      setBusy(false);
    }
  };
  return html`<section>
    <h1>Files</h1>
    <form class="upload" onSubmit=${upload}>
      <label>JSONL file <input type="file" name="file" accept=".jsonl,.json,application/jsonl,application/x-ndjson" required /></label>
      <input type="hidden" name="purpose" value="fine-tune" />
      <button type="submit" disabled=${busy}>Upload</button>
      <p class="muted">One example per line: <code>{"prompt": …, "completion": …}</code> or <code>{"messages": […]}</code>.</p>
    </form>
    ${result?.file && html`<p class="ok" role="status">Uploaded <strong>${result.file.filename}</strong> as ${result.file.id}: ${result.file.records} records.</p>`}
    <${ErrorBox} error=${result?.error ?? files.error} />
    ${
      files.data &&
      html`<table class="files">
        <thead><tr><th>File</th><th>Name</th><th>Records</th><th>Size</th><th>Uploaded</th></tr></thead>
        <tbody>
          ${files.data.data.map(
            (f) =>
              html`<tr data-file=${f.id}><td class="mono">${f.id}</td><td>${f.filename}</td><td>${f.records}</td><td>${bytes(f.bytes)}</td><td>${age(f.created_at)}</td></tr>`,
          )}
        </tbody>
      </table>`
    }
  </section>`;
}
