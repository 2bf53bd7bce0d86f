// New job: a form whose "Plan" asks the API for a dry run (POST /v1/jobs?dry_run=true) and shows the plan;
// "Start job" then creates the same job. Method types come from the OpenAPI document.
import { html } from 'htm/preact';
import { useEffect, useState } from 'preact/hooks';
import { api } from '../api.js';
import { bytes, ms } from '../format.js';
import { usePoll } from '../hooks.js';
import { ErrorBox, KeyValues } from '../ui.js';

/** Form fields that are numbers in the request, with where they go. */
const NUMBERS = {
  max_steps: 'hyperparameters',
  n_epochs: 'hyperparameters',
  batch_size: 'hyperparameters',
  learning_rate: 'hyperparameters',
  lora_r: 'hyperparameters',
  eval_steps: 'hyperparameters',
  every_n_steps: 'checkpointing',
};

/** The request body from the form's values (blank fields are left to the API's defaults). */
function requestOf(v) {
  const body = { model: v.model, training_file: v.training_file, method: { type: v.method }, hyperparameters: {}, checkpointing: {} };
  if (v.validation_file) body.validation_file = v.validation_file;
  if (v.suffix) body.suffix = v.suffix;
  for (const [k, where] of Object.entries(NUMBERS)) if (v[k] !== '' && v[k] !== undefined) body[where][k] = Number(v[k]);
  if (v.keep_after_finish) body.checkpointing.keep_after_finish = true;
  return body;
}

function useMethodTypes() {
  const [types, setTypes] = useState(['edge_llm']);
  useEffect(() => {
    fetch('/openapi.json')
      .then((r) => r.json())
      .then((doc) => setTypes(doc.components.schemas.MethodInput.properties.type.enum))
      .catch(() => {});
  }, []);
  return types;
}

function PlanView({ dry }) {
  const p = dry.plan;
  const f = p.forecast;
  return html`<div class=${`plan-box ${p.fits ? 'fits' : 'no-fit'}`} data-plan-fits=${String(p.fits)}>
    <h2>Plan ${p.fits ? '(fits)' : '(does not fit)'}</h2>
    ${!p.fits && html`<p class="error">${p.reason}</p>`}
    <${KeyValues}
      rows=${[
        ['Training records', dry.training_records],
        ['Total steps', dry.total_steps],
        ['Peak memory (RSS)', `${bytes(f.peak_rss_bytes)} of ${bytes(p.device.memory_budget_bytes)} budget`],
        ['TF.js tensor peak', bytes(f.peak_tf_bytes)],
        ['Weights / trainable / activations', `${bytes(f.weight_bytes)} / ${bytes(f.trainable_bytes)} / ${bytes(f.activation_bytes)}`],
        ['Step time', ms(f.step_ms)],
        ['Total time', ms(f.total_ms)],
        ['Exit layers', p.exit_layers.join(', ')],
        ['Micro-batch × accumulation', `${p.micro_batch} × ${p.gradient_accumulation_steps}`],
        [
          'Device',
          `${p.device.backend}, ${p.device.threads} threads (${p.device.source}${p.device.worker_id ? `: ${p.device.worker_id}` : ''})`,
        ],
        ['Compression policy', dry.policy_id ?? 'none stored: the job profiles the model'],
      ]}
    />
  </div>`;
}

/** The new-job page. */
export function NewJobPage() {
  const models = usePoll('/v1/models', 0);
  const files = usePoll('/v1/files?limit=100', 0);
  const methods = useMethodTypes();
  const [values, setValues] = useState({
    model: '',
    training_file: '',
    validation_file: '',
    method: 'edge_llm',
    suffix: '',
    max_steps: '',
    n_epochs: '',
    batch_size: '',
    learning_rate: '',
    lora_r: '',
    eval_steps: '',
    every_n_steps: '',
    keep_after_finish: false,
  });
  const [dry, setDry] = useState(null);
  const [error, setError] = useState(null);
  const [busy, setBusy] = useState(false);
  const fileList = files.data?.data ?? [];
  const modelList = models.data?.data ?? [];
  // default the selects to the first model and the newest file
  const v = { ...values, model: values.model || modelList[0]?.id || '', training_file: values.training_file || fileList[0]?.id || '' };
  const set = (k) => (e) => {
    setValues({ ...v, [k]: e.currentTarget.value });
    setDry(null); // a changed form needs a new plan
  };
  const run = (fn) => async (e) => {
    e?.preventDefault();
    setBusy(true);
    setError(null);
    try {
      await fn();
    } catch (err) {
      setError(err);
    } finally {
      setBusy(false);
    }
  };
  const plan = run(async () => setDry(await api('/v1/jobs?dry_run=true', { method: 'POST', json: requestOf(v) })));
  const start = run(async () => {
    const job = await api('/v1/jobs', { method: 'POST', json: requestOf(v) });
    location.hash = `#/jobs/${job.id}`;
  });
  const field = (k, label, attrs = {}) =>
    html`<label>${label}<input name=${k} type="number" step="any" min="0" value=${v[k]} onInput=${set(k)} placeholder="auto" ...${attrs} /></label>`;
  return html`<section>
    <h1>New job</h1>
    <form class="new-job" onSubmit=${plan}>
      <fieldset>
        <legend>Data and model</legend>
        <label>Model<select name="model" value=${v.model} onChange=${set('model')}>${modelList.map((m) => html`<option value=${m.id}>${m.id} (${m.family})</option>`)}</select></label>
        <label>Training file<select name="training_file" value=${v.training_file} onChange=${set('training_file')}>${fileList.map((f) => html`<option value=${f.id}>${f.filename} · ${f.id}</option>`)}</select></label>
        <label>Validation file<select name="validation_file" value=${v.validation_file} onChange=${set('validation_file')}><option value="">none</option>${fileList.map((f) => html`<option value=${f.id}>${f.filename} · ${f.id}</option>`)}</select></label>
        <label>Method<select name="method" value=${v.method} onChange=${set('method')}>${methods.map((m) => html`<option value=${m}>${m}</option>`)}</select></label>
        <label>Suffix<input name="suffix" value=${v.suffix} onInput=${set('suffix')} pattern="[A-Za-z0-9_.\\-]*" maxlength="64" /></label>
      </fieldset>
      <fieldset>
        <legend>Hyperparameters (blank: auto)</legend>
        ${field('max_steps', 'Max steps', { step: 1, min: 1 })}
        ${field('n_epochs', 'Epochs', { step: 1, min: 1 })}
        ${field('batch_size', 'Batch size', { step: 1, min: 1 })}
        ${field('learning_rate', 'Learning rate')}
        ${field('lora_r', 'LoRA rank', { step: 1, min: 1 })}
        ${field('eval_steps', 'Validate every n steps', { step: 1, min: 1 })}
        ${field('every_n_steps', 'Checkpoint every n steps', { step: 1, min: 1 })}
        <label><input name="keep_after_finish" type="checkbox" checked=${v.keep_after_finish} onChange=${(e) => {
          setValues({ ...v, keep_after_finish: e.currentTarget.checked });
          setDry(null);
        }} /> Keep checkpoints after the job ends</label>
      </fieldset>
      <div class="buttons">
        <button type="submit" disabled=${busy || !v.model || !v.training_file}>Plan</button>
        <button type="button" class="primary" disabled=${busy || !dry || !dry.plan.fits} onClick=${start}>Start job</button>
      </div>
    </form>
    <${ErrorBox} error=${error ?? models.error ?? files.error} />
    ${dry && html`<${PlanView} dry=${dry} />`}
  </section>`;
}
