#!/usr/bin/env node
// `npm run demo`: the main job end to end against the local PostgreSQL and Redis, through the REST API.
// Migrates the database, starts the API and one worker (child processes), builds the SpamAssassin task,
// uploads train + validation JSONL, creates an Edge-LLM job on the default base model, streams its progress
// (SSE) as one progress line, downloads the voted adapter bundle, evaluates it on the TEST split with the
// engine CLI, prints per-exit and voted accuracy and the wall time, and stops what it started (also on
// Ctrl-C or failure; a running job is cancelled first). Exit code 0 on success.
//
// Environment (besides the service's own, see docs/configuration.md):
//   DATABASE_URL             default postgresql://postgres@127.0.0.1:5432/edgetune (created and migrated when missing)
//   REDIS_URL                default redis://127.0.0.1:6379
//   EDGETUNE_MODELS_DIR      default models/ ; EDGETUNE_DEMO_MODEL: base model id (default edgetune-tiny-llama)
//   EDGETUNE_DEMO_STEPS      optimizer steps (default 3600); EDGETUNE_DEMO_BATCH (8), EDGETUNE_DEMO_MAX_LENGTH (320),
//   EDGETUNE_DEMO_LR         (1e-3), EDGETUNE_DEMO_SEED (42), EDGETUNE_DEMO_LORA_R (16, alpha 2r),
//   EDGETUNE_DEMO_EXITS      exit layers, comma-separated, or auto (default 1,7); EDGETUNE_DEMO_SCHEDULE (round_robin)
//   EDGETUNE_BOOTSTRAP_API_KEY  admin key the API creates on an empty database (default: a demo key); when the
//                            database already has other keys, the demo adds an admin key of its own
//   EDGETUNE_QUEUE_PREFIX    default: a fresh prefix per run (removed afterwards), so no other job is picked up
//   PORT                     API port (default: a free port); EDGETUNE_DEMO_DIR: keep data, logs and the
//                            adapter there (default: a temporary folder, removed at the end)
import { spawn } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, mkdtempSync, openAsBlob, openSync, closeSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { setTimeout as sleep } from 'node:timers/promises';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const t0 = performance.now();
const env = process.env;
const tty = process.stdout.isTTY;
const c = (code) => (s) => (tty ? `\x1b[${code}m${s}\x1b[0m` : s);
const bold = c('1'),
  dim = c('2'),
  red = c('31'),
  green = c('32');

function intEnv(name, dflt) {
  const v = env[name];
  if (v === undefined || v === '') return dflt;
  const n = Number(v);
  if (!Number.isInteger(n) || n < 1) die(`${name} must be a positive integer, got ${JSON.stringify(v)}`);
  return n;
}
function die(msg) {
  console.error(red(`demo: ${msg}`));
  process.exit(2);
}

const DATABASE_URL = env.DATABASE_URL || 'postgresql://postgres@127.0.0.1:5432/edgetune';
const REDIS_URL = env.REDIS_URL || 'redis://127.0.0.1:6379';
const MODELS_DIR = resolve(env.EDGETUNE_MODELS_DIR || join(root, 'models'));
const MODEL = env.EDGETUNE_DEMO_MODEL || 'edgetune-tiny-llama';
// Defaults: the settings of the recorded real result (bench/results/spam-tuning-*.json): two exits (a
// 2-layer and a 6-layer window), round-robin windows, LoRA r 16.
const STEPS = intEnv('EDGETUNE_DEMO_STEPS', 3600);
const BATCH = intEnv('EDGETUNE_DEMO_BATCH', 8);
const MAX_LENGTH = intEnv('EDGETUNE_DEMO_MAX_LENGTH', 320); // 9 of 545 TEST prompts longer (256: 54, which lose their subject line to truncation)
const SEED = intEnv('EDGETUNE_DEMO_SEED', 42);
const LR = env.EDGETUNE_DEMO_LR ? Number(env.EDGETUNE_DEMO_LR) : 1e-3;
const LORA_R = intEnv('EDGETUNE_DEMO_LORA_R', 16);
const EXITS = env.EDGETUNE_DEMO_EXITS === 'auto' ? 'auto' : (env.EDGETUNE_DEMO_EXITS ?? '1,7').split(',').map(Number);
const SCHEDULE = env.EDGETUNE_DEMO_SCHEDULE ?? 'round_robin';
if (!(LR > 0 && LR <= 1)) die(`EDGETUNE_DEMO_LR must be in (0, 1], got ${JSON.stringify(env.EDGETUNE_DEMO_LR)}`);
const ownPrefix = !env.EDGETUNE_QUEUE_PREFIX;
const PREFIX = env.EDGETUNE_QUEUE_PREFIX || `edgetune-demo-${randomBytes(4).toString('hex')}`;
const KEY = env.EDGETUNE_BOOTSTRAP_API_KEY || 'et-demo-local-bootstrap-key-0123456789abcdefghij';
const keepDir = !!env.EDGETUNE_DEMO_DIR;
const DIR = keepDir ? resolve(env.EDGETUNE_DEMO_DIR) : mkdtempSync(join(tmpdir(), 'edgetune-demo-'));
mkdirSync(DIR, { recursive: true });
const CLI = join(root, 'packages', 'engine', 'dist', 'cli.js');
const LAB = join(root, 'packages', 'lab', 'dist', 'cli.js');
const modelDir = join(MODELS_DIR, MODEL);

// ---------------------------------------------------------------------------------------------- helpers

const fmtDur = (ms) => {
  const s = Math.max(0, Math.round(ms / 1000));
  return s >= 3600
    ? `${Math.floor(s / 3600)}h${String(Math.floor((s % 3600) / 60)).padStart(2, '0')}m`
    : s >= 60
      ? `${Math.floor(s / 60)}m${String(s % 60).padStart(2, '0')}s`
      : `${s}s`;
};
const pct = (x) => (x === null || x === undefined ? '   n/a' : `${(100 * x).toFixed(2).padStart(6)}%`);
/** The tuning progress bar (ProgressBar, loaded from the built @edgetune/core once the build is checked). */
let ProgressBar;
let bar = null;
/** Prints a full line (clearing the progress bar first on a terminal). */
function say(line = '') {
  bar?.clear();
  process.stdout.write(`${line}\n`);
}
const phases = {};
let phaseStart = performance.now();
function phase(name) {
  const now = performance.now();
  phases[name] = now - phaseStart;
  phaseStart = now;
}

const children = [];
let stopping = false;
let failChild;
const childDied = new Promise((_, reject) => {
  failChild = reject;
});
childDied.catch(() => {});

/** Starts a service process in its own process group (Ctrl-C reaches only the demo, which stops it in order). */
function startChild(name, script, extraEnv) {
  const logFile = join(DIR, `${name}.log`);
  const fd = openSync(logFile, 'a');
  const proc = spawn(process.execPath, [script], {
    cwd: root,
    env: { ...childEnv, ...extraEnv },
    stdio: ['ignore', fd, fd],
    detached: true,
  });
  closeSync(fd);
  const child = { name, proc, logFile, exited: new Promise((res) => proc.once('exit', (code, sig) => res(code ?? sig))) };
  child.exited.then((how) => {
    if (!stopping) failChild(new Error(`the ${name} exited unexpectedly (${how}); the end of its log ${logFile}:\n${tail(logFile)}`));
  });
  children.push(child);
  return child;
}
function tail(file, n = 25) {
  try {
    return readFileSync(file, 'utf8')
      .trimEnd()
      .split('\n')
      .slice(-n)
      .map((l) => `    ${l}`)
      .join('\n');
  } catch {
    return '    (no log)';
  }
}
async function stopChild(child, ms) {
  const { proc } = child;
  if (proc.exitCode !== null || proc.signalCode !== null) return;
  try {
    proc.kill('SIGTERM');
  } catch {
    /* gone */
  }
  const killed = await Promise.race([child.exited.then(() => false), sleep(ms).then(() => true)]);
  // the worker's sandboxed processors share its group
  try {
    process.kill(-proc.pid, 'SIGKILL');
  } catch {
    /* gone */
  }
  if (killed) await child.exited;
}

/** Runs a command to completion; resolves with its stdout, rejects with its stderr. */
function run(args, { label, quietErr = true } = {}) {
  return new Promise((res, rej) => {
    const p = spawn(process.execPath, args, { cwd: root, env, stdio: ['ignore', 'pipe', 'pipe'] });
    children.push({ name: label, proc: p, exited: new Promise((r) => p.once('exit', r)), transient: true });
    let out = '',
      err = '';
    p.stdout.on('data', (d) => {
      out += d;
    });
    p.stderr.on('data', (d) => {
      err += d;
      if (!quietErr) process.stderr.write(d);
    });
    p.once('error', rej);
    p.once('exit', (code, sig) => (code === 0 ? res(out) : rej(new Error(`${label} failed (${code ?? sig}):\n${(err || out).trimEnd()}`))));
  });
}

function freePort() {
  return new Promise((res, rej) => {
    const s = createServer();
    s.once('error', rej);
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address();
      s.close(() => res(port));
    });
  });
}

let base = '';
let key = KEY;
async function api(method, path, { json, body, headers = {}, ok = [200, 201] } = {}) {
  const h = { authorization: `Bearer ${key}`, ...headers };
  if (json !== undefined) {
    h['content-type'] = 'application/json';
    body = JSON.stringify(json);
  }
  const r = await fetch(base + path, { method, headers: h, body });
  const text = await r.text();
  const data = /json/.test(r.headers.get('content-type') ?? '') && text ? JSON.parse(text) : text;
  if (!ok.includes(r.status)) {
    const detail =
      typeof data === 'object'
        ? `${data.code}: ${data.detail}${data.errors ? ` ${JSON.stringify(data.errors.slice(0, 5))}` : ''}`
        : text.slice(0, 300);
    const e = new Error(`${method} ${path} -> ${r.status} ${detail}`);
    e.status = r.status;
    throw e;
  }
  return data;
}
async function waitFor(what, fn, ms) {
  const end = Date.now() + ms;
  for (;;) {
    const v = await Promise.race([fn().catch(() => null), childDied]);
    if (v) return v;
    if (Date.now() > end) throw new Error(`timed out after ${fmtDur(ms)} waiting for ${what}`);
    await sleep(250);
  }
}

// ------------------------------------------------------------------------------------------- progress

/** The job's progress on the shared progress bar (@edgetune/core ProgressBar, stderr), from a metrics event. */
function showProgress(m, totalSteps) {
  bar ??= new ProgressBar('tuning', m.total_steps ?? totalSteps);
  bar.update(m.step ?? 0, {
    loss: m.train_loss ?? undefined,
    tps: m.tokens_per_sec ?? undefined,
    etaMs: m.eta_seconds === undefined || m.eta_seconds === null ? undefined : m.eta_seconds * 1000,
    extra: `exit ${m.exit_layer}  elapsed ${fmtDur(performance.now() - t0)}`,
  });
}

/** Follows the job's SSE stream until its `end` event (reconnecting with Last-Event-ID); returns the final status. */
async function streamJob(jobId, totalSteps, signal) {
  let lastId = null;
  for (let attempt = 0; ; attempt++) {
    const r = await fetch(`${base}/v1/jobs/${jobId}/events/stream`, {
      headers: { authorization: `Bearer ${key}`, accept: 'text/event-stream', ...(lastId ? { 'last-event-id': lastId } : {}) },
      signal,
    });
    if (r.status !== 200 || !r.body) throw new Error(`event stream: HTTP ${r.status} ${await r.text()}`);
    const decoder = new TextDecoder();
    let buf = '';
    for await (const chunk of r.body) {
      buf += decoder.decode(chunk, { stream: true }).replace(/\r\n/g, '\n');
      let i;
      while ((i = buf.indexOf('\n\n')) >= 0) {
        const block = buf.slice(0, i);
        buf = buf.slice(i + 2);
        let id = null,
          event = 'message',
          data = '';
        for (const line of block.split('\n')) {
          if (!line || line.startsWith(':')) continue;
          const k = line.indexOf(':');
          const field = k < 0 ? line : line.slice(0, k),
            value = k < 0 ? '' : line.slice(k + 1).replace(/^ /, '');
          if (field === 'id') id = value;
          else if (field === 'event') event = value;
          else if (field === 'data') data += (data ? '\n' : '') + value;
        }
        if (!data) continue;
        if (id) lastId = id;
        const obj = JSON.parse(data);
        if (event === 'end') return obj.status;
        if (event === 'metrics' && obj.data && obj.data.step !== undefined) showProgress(obj.data, totalSteps);
        else if (/^Checkpoint saved/.test(obj.message)) {
          /* every checkpointing.every_n_steps: too chatty for the terminal */
        } else
          say(
            `  ${dim(new Date(obj.created_at * 1000).toISOString().slice(11, 19))} ${obj.level === 'error' ? red(obj.message) : obj.message}`,
          );
      }
    }
    if (attempt > 20) throw new Error('event stream keeps closing before the job ends');
    await sleep(1000);
  }
}

// ----------------------------------------------------------------------------------------------- steps

const childEnv = {
  ...env,
  DATABASE_URL,
  REDIS_URL,
  EDGETUNE_MODELS_DIR: MODELS_DIR,
  EDGETUNE_BOOTSTRAP_API_KEY: KEY,
  EDGETUNE_QUEUE_PREFIX: PREFIX,
  EDGETUNE_WORK_DIR: env.EDGETUNE_WORK_DIR || join(DIR, 'work'),
  HOST: '127.0.0.1',
};
let jobId = null;
let jobDone = false;
const ac = new AbortController();

async function main() {
  if (!existsSync(join(modelDir, 'config.json'))) {
    throw new Error(
      `base model ${MODEL} not found: ${modelDir}/config.json is missing (set EDGETUNE_MODELS_DIR / EDGETUNE_DEMO_MODEL, ` +
        `or pretrain it: npx edgetune-lab pretrain --out ${join('models', MODEL)})`,
    );
  }
  for (const f of [
    CLI,
    join(root, 'packages', 'core', 'dist', 'index.js'),
    join(root, 'apps', 'api', 'dist', 'main.js'),
    join(root, 'apps', 'worker', 'dist', 'main.js'),
  ]) {
    if (!existsSync(f)) throw new Error(`${f} is missing: build first (npm ci, or npm run build)`);
  }
  ({ ProgressBar } = await import('@edgetune/core'));
  const port = env.PORT ? Number(env.PORT) : await freePort();
  base = `http://127.0.0.1:${port}`;
  say(bold(`edgetune demo: Edge-LLM tuning of ${MODEL} on SpamAssassin, ${STEPS} steps`));
  say(dim(`  database ${DATABASE_URL.replace(/\/\/[^@/]*@/, '//…@')}, redis ${REDIS_URL}, queue prefix ${PREFIX}, folder ${DIR}`));

  // 1. migrate
  await run([join(root, 'scripts', 'db-migrate.mjs'), 'deploy'], { label: 'db:migrate' }).catch((e) => {
    throw new Error(
      /ECONNREFUSED|ENOTFOUND|connect/i.test(e.message) ? `${e.message}\n(is PostgreSQL running at ${DATABASE_URL}?)` : e.message,
    );
  });
  say(`${green('✓')} database migrated`);

  // 2. API + worker, while the task data is built
  const apiProc = startChild('api', join(root, 'apps', 'api', 'dist', 'main.js'), { PORT: String(port) });
  startChild('worker', join(root, 'apps', 'worker', 'dist', 'main.js'), {});
  const dataDir = join(DIR, 'data');
  const dataP = run([LAB, 'data', 'spam-assassin', '--out', dataDir], { label: 'data spam-assassin' }).then((out) => JSON.parse(out));
  dataP.catch(() => {}); // awaited below; a failure meanwhile must not be an unhandled rejection
  await waitFor('the API (GET /readyz)', async () => (await fetch(`${base}/readyz`)).ok, 60_000).catch((e) => {
    throw new Error(`${e.message}; API log ${apiProc.logFile}:\n${tail(apiProc.logFile)}`);
  });
  try {
    await api('GET', '/v1/models');
  } catch (e) {
    if (e.status !== 401) throw e;
    key = await addDemoKey();
  }
  await waitFor(
    `base model ${MODEL} in GET /v1/models`,
    async () => (await api('GET', '/v1/models')).data.some((m) => m.id === MODEL),
    60_000,
  );
  // The worker's device report (it measures SGEMM and the step-time factor first, a few seconds): the API
  // plans the job's admission for that device rather than for its own host's defaults.
  const worker = await waitFor(
    "the worker's device report in GET /v1/workers",
    async () => (await api('GET', '/v1/workers')).data.find((w) => w.online),
    90_000,
  ).catch(() => null);
  say(
    `${green('✓')} API on ${base} (Swagger UI ${base}/docs) and one worker started` +
      (worker
        ? dim(
            ` (kernels ${worker.device.matmul}, SGEMM ${Math.round(worker.device.matmul_gflops)} GFLOP/s, step-time factor ${worker.device.step_time_factor ?? 'n/a'})`,
          )
        : dim(' (no device report yet: the API plans admission with its defaults)')),
  );
  const data = await Promise.race([dataP, childDied]);
  say(`${green('✓')} SpamAssassin task: ${data.train} train, ${data.validation} validation, ${data.test} test examples`);
  phase('setup');

  // 3. upload
  const upload = async (name) => {
    const form = new FormData();
    form.append('purpose', 'fine-tune');
    form.append('file', await openAsBlob(join(dataDir, `${name}.jsonl`)), `spam-${name}.jsonl`);
    return api('POST', '/v1/files', { body: form });
  };
  const train = await upload('train');
  const val = await upload('validation');
  say(`${green('✓')} uploaded ${train.id} (${train.records} records) and ${val.id} (${val.records} records)`);

  // 4. create the job
  const job = await api('POST', '/v1/jobs', {
    json: {
      model: MODEL,
      training_file: train.id,
      validation_file: val.id,
      method: { type: 'edge_llm', edge_llm: { exit_layers: EXITS, schedule: SCHEDULE } },
      hyperparameters: {
        max_steps: STEPS,
        batch_size: BATCH,
        max_length: MAX_LENGTH,
        learning_rate: LR,
        lora_r: LORA_R,
        lora_alpha: 2 * LORA_R,
      },
      seed: SEED,
      suffix: 'spam-demo',
      metadata: { source: 'npm run demo' },
    },
  });
  jobId = job.id;
  const hp = job.hyperparameters;
  say(
    `${green('✓')} job ${job.id}: exits ${job.method.edge_llm.exit_layers.join(',')}, ${job.progress.total_steps} steps, batch ${hp.batch_size}, ` +
      `max length ${hp.max_length}, lr ${hp.learning_rate}, LoRA r ${hp.lora_r}, checkpoint every ${job.checkpointing.every_n_steps}`,
  );
  phase('upload');

  // 5. follow it
  const status = await Promise.race([streamJob(job.id, job.progress.total_steps, ac.signal), childDied]);
  jobDone = true;
  bar?.done();
  const final = await api('GET', `/v1/jobs/${job.id}`);
  if (status !== 'succeeded' || final.status !== 'succeeded') {
    const err = final.error ? `${final.error.code}: ${final.error.message}` : 'no error reported';
    throw new Error(`job ${job.id} ended ${final.status} (${err})`);
  }
  say(
    `${green('✓')} job succeeded: ${final.result.steps} steps in ${fmtDur(final.result.train_seconds * 1000)}, ${Math.round(final.result.tokens_per_sec)} tokens/s`,
  );
  phase('tuning');

  // 6. download and unpack the voted adapter bundle
  const r = await fetch(`${base}/v1/jobs/${job.id}/adapter?format=bundle`, { headers: { authorization: `Bearer ${key}` } });
  if (!r.ok) throw new Error(`GET /v1/jobs/${job.id}/adapter?format=bundle -> ${r.status} ${await r.text()}`);
  const tarBytes = Buffer.from(await r.arrayBuffer());
  const sha = createHash('sha256').update(tarBytes).digest('hex');
  const want = r.headers.get('x-content-sha256');
  if (want && want !== sha) throw new Error(`bundle sha256 ${sha} does not match X-Content-SHA256 ${want}`);
  const tarFile = join(DIR, 'bundle.tar');
  writeFileSync(tarFile, tarBytes);
  const adapterDir = join(DIR, 'adapter');
  rmSync(adapterDir, { recursive: true, force: true });
  mkdirSync(adapterDir, { recursive: true });
  const tar = await import('tar');
  await tar.extract({ file: tarFile, cwd: adapterDir, strict: true });
  const manifest = JSON.parse(readFileSync(join(adapterDir, 'manifest.json'), 'utf8'));
  for (const [f, { sha256 }] of Object.entries(manifest.files)) {
    if (
      createHash('sha256')
        .update(readFileSync(join(adapterDir, f)))
        .digest('hex') !== sha256
    )
      throw new Error(`bundle file ${f}: sha256 mismatch`);
  }
  say(
    `${green('✓')} downloaded the bundle (${(tarBytes.length / 2 ** 20).toFixed(2)} MiB, sha256 ${sha.slice(0, 12)}…, ${Object.keys(manifest.files).length} files verified): ` +
      `exits ${manifest.exit_layers.join(',')}, voting rule ${manifest.voting_rule}`,
  );
  phase('download');

  // 7. evaluate on the TEST split
  say(`  evaluating on ${data.test} TEST examples with the engine CLI …`);
  const testFile = join(dataDir, 'test.jsonl');
  const ev = JSON.parse(
    await run([CLI, 'eval', '--model', modelDir, '--adapter', adapterDir, '--data', testFile, '--json'], { label: 'engine eval' }),
  );
  phase('eval');
  const rule = manifest.voting_rule ?? ev.votingRule;
  const counts = data.labelCounts?.test;
  const majority = counts ? Math.max(counts.ham, counts.spam) / (counts.ham + counts.spam) : null;
  const valExit = new Map((final.result.exits ?? []).map((e) => [e.layer, e.accuracy]));

  say();
  say(
    bold(`TEST accuracy (${ev.examples} SpamAssassin test examples${majority !== null ? `; majority class ${pct(majority).trim()}` : ''})`),
  );
  say(dim('  path                     test   validation'));
  for (const e of ev.perExit) say(`  exit ${String(e.layer).padEnd(16)} ${pct(e.accuracy)}   ${pct(valExit.get(e.layer))}`);
  if (ev.perExit.length > 1) {
    for (const [k, m] of Object.entries(ev.voted)) {
      const chosen = k === rule;
      const line = `  vote ${k.padEnd(16)} ${pct(m.accuracy)}   ${pct(final.result.voted?.[k]?.accuracy)}${chosen ? '   <- chosen on validation' : ''}`;
      say(chosen ? bold(line) : line);
    }
  }
  const voted = ev.perExit.length > 1 ? ev.voted[rule]?.accuracy : ev.perExit[0]?.accuracy;
  say();
  say(
    bold(`voted (${rule}) TEST accuracy ${pct(voted).trim()}; wall time ${fmtDur(performance.now() - t0)}`) +
      dim(
        ` (setup ${fmtDur(phases.setup)}, upload ${fmtDur(phases.upload)}, tuning ${fmtDur(phases.tuning)}, download ${fmtDur(phases.download)}, eval ${fmtDur(phases.eval)})`,
      ),
  );
  writeFileSync(
    join(DIR, 'demo-result.json'),
    JSON.stringify({ job: final, test: ev, voting_rule: rule, wall_seconds: (performance.now() - t0) / 1000, phases_ms: phases }, null, 2) +
      '\n',
  );
  if (keepDir) say(dim(`  data, adapter (${adapterDir}), logs and demo-result.json kept in ${DIR}`));
}

let addedKey = null;
/** The database already has keys (the bootstrap key applies only to an empty one): add an admin key for the demo. */
async function addDemoKey() {
  const shared = await import(join(root, 'apps', 'api', 'dist', 'shared', 'index.js'));
  const db = shared.createPrisma(DATABASE_URL, { max: 1 });
  try {
    const project =
      (await db.project.findFirst({ where: { name: 'default' } })) ??
      (await db.project.create({ data: { id: shared.newId('project'), name: 'default' } }));
    const { row, secret } = await shared.createApiKey(db, project.id, { name: 'demo', admin: true });
    addedKey = { projectId: project.id, keyId: row.id };
    say(dim(`  the database already had API keys: added admin key "demo" to project ${project.id} for this run`));
    return secret;
  } finally {
    await db.$disconnect();
  }
}

let cleaned = null;
/** Stops everything the demo started, in order: the job (cancelled), the worker, the API; then its queue keys and folder. */
function cleanup() {
  cleaned ??= (async () => {
    stopping = true;
    ac.abort();
    if (jobId && !jobDone && base) {
      try {
        const j = await api('POST', `/v1/jobs/${jobId}/cancel`, { ok: [200, 409] });
        say(dim(`  cancelled job ${jobId}`));
        if (j?.status === 'cancelling')
          await waitFor(
            'the cancel',
            async () => ['cancelled', 'failed', 'succeeded'].includes((await api('GET', `/v1/jobs/${jobId}`)).status),
            20_000,
          ).catch(() => {});
      } catch {
        /* API gone */
      }
    }
    if (addedKey) await api('DELETE', `/v1/projects/${addedKey.projectId}/keys/${addedKey.keyId}`).catch(() => {});
    for (const ch of children.filter((x) => x.transient)) {
      try {
        ch.proc.kill('SIGTERM');
      } catch {
        /* gone */
      }
    }
    const worker = children.find((x) => x.name === 'worker'),
      apiChild = children.find((x) => x.name === 'api');
    if (worker) await stopChild(worker, 20_000);
    if (apiChild) await stopChild(apiChild, 10_000);
    if (ownPrefix) {
      try {
        const { Redis } = await import('ioredis');
        const r = new Redis(REDIS_URL, { lazyConnect: true, maxRetriesPerRequest: 1 });
        await r.connect();
        let cursor = '0';
        do {
          const [next, keys] = await r.scan(cursor, 'MATCH', `${PREFIX}:*`, 'COUNT', 500);
          if (keys.length) await r.del(...keys);
          cursor = next;
        } while (cursor !== '0');
        r.disconnect();
      } catch {
        /* Redis gone: nothing to clean */
      }
    }
    if (!keepDir) rmSync(DIR, { recursive: true, force: true });
  })();
  return cleaned;
}

// `npm run demo` forwards the terminal's Ctrl-C to us, so one Ctrl-C can arrive twice: a second signal forces only
// when it comes more than a second after the first.
let interruptedAt = 0;
for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP']) {
  process.on(sig, () => {
    if (interruptedAt && Date.now() - interruptedAt < 1000) return;
    if (interruptedAt) {
      for (const ch of children) {
        try {
          process.kill(-ch.proc.pid, 'SIGKILL');
        } catch {
          try {
            ch.proc.kill('SIGKILL');
          } catch {
            /* gone */
          }
        }
      }
      process.exit(130);
    }
    interruptedAt = Date.now();
    say(red(`\ndemo: ${sig}: stopping (again to force)`));
    cleanup().finally(() => process.exit(130));
  });
}

try {
  await main();
  await cleanup();
  process.exit(0);
} catch (e) {
  if (!stopping) {
    say(red(`demo failed: ${env.EDGETUNE_DEMO_DEBUG ? e?.stack : (e?.message ?? e)}`));
    // the logs' last lines (the API's warnings and errors only), unless the message already quotes them
    for (const ch of children.filter((x) => !x.transient && x.logFile && !String(e?.message).includes(x.logFile))) {
      const lines = tail(ch.logFile, ch.name === 'api' ? 400 : 15)
        .split('\n')
        .filter((l) => ch.name !== 'api' || /"level":[456]0/.test(l))
        .slice(-15);
      if (lines.length)
        say(dim(`  ${ch.name} log ${ch.logFile}${keepDir ? '' : ' (removed; set EDGETUNE_DEMO_DIR to keep it)'}:\n${lines.join('\n')}`));
    }
    await cleanup();
    process.exit(1);
  }
  await cleanup();
  process.exit(130);
}
