#!/usr/bin/env node
// Fits the planner's cost-model coefficients (@edgetune/core schedule/calibration.ts) to measurements of
// real training steps of the engine on this machine, one fresh process per configuration (so RSS is
// per-configuration). Writes the coefficients to packages/core/src/schedule/calibration.json (the data
// calibration.ts reads; `npx tsc -b` copies it to packages/core/dist, so rebuild after) and every measured
// point and its forecast error to bench/results/planner-calibration.json. From the repository root after a
// build:
//   node packages/lab/scripts/calibrate-planner.mjs [--model models/edgetune-tiny-llama] [--refit [--pool FILE ...]] [--growth]
// --growth alone measures only the RSS terms the grid's short runs cannot show (rssAtStart, rssLongRun,
// rssPerDataToken; a few minutes) and keeps every other coefficient.
// --scale FILE --models-dir DIR --scale-train FILE (with --refit): the scale bench's runs (random models of real
// configurations in DIR, their training file) join the memory and step-time fits (--scale-time FILE: the step
// times of another run of the bench), whose per-element
// coefficients one small model cannot separate (its features are nearly collinear). Run the grid and the scale
// bench on the same machine: the step-time fit takes the two as one machine's.
import { spawnSync } from 'node:child_process';
import { readFileSync, writeFileSync, mkdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { basename, dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));
const root = resolve(here, '..', '..', '..');
// The fitted coefficients, as data: {fitted, model, sgemmGflops, command, coefficients}.
const calibrationFile = join(root, 'packages', 'core', 'src', 'schedule', 'calibration.json');
const args = process.argv.slice(2);
// the command as run, options included (written with the coefficients)
const COMMAND = ['node packages/lab/scripts/calibrate-planner.mjs', ...args].join(' ');
const modelDir = resolve(
  args[args.indexOf('--model') + 1] && args.includes('--model')
    ? args[args.indexOf('--model') + 1]
    : join(root, 'models', 'edgetune-tiny-llama'),
);

/** n random sequences of T tokens, the last two labelled (a classification-like loss at the end). */
function randomExamples(rng, n, T, V) {
  return Array.from({ length: n }, () => {
    const ids = Array.from({ length: T }, () => 4 + rng.int(V - 4));
    return { inputIds: ids, labels: ids.map((x, t) => (t >= T - 2 ? x : -100)) };
  });
}

async function one(cfg) {
  const tf = await import('@tensorflow/tfjs-core');
  const { initBackend, LlamaModel, AdaptiveTrainer, DEFAULT_TUNE, DEFAULT_LORA, compressModel, Rng } = await import('@edgetune/engine');
  await initBackend({ quiet: true });
  const rssAtStart = process.memoryUsage.rss(); // a bare engine process (planner rssAtStart)
  const model = LlamaModel.load(modelDir);
  const L = model.config.numHiddenLayers,
    V = model.config.vocabSize;
  const rng = new Rng(1);
  const ex = randomExamples(rng, 64, cfg.T, V);
  if (cfg.bits < 16) {
    const calib = { ids: ex.slice(0, 4).map((e) => e.inputIds.slice(0, 64)), description: 'random' };
    compressModel(model, calib, {
      sparsity: new Array(L).fill(0.5),
      bits: new Array(L).fill(cfg.bits),
      targetSparsity: 0.5,
      avgBits: cfg.bits,
      sparsityRule: 'uniform',
      bitsRule: 'uniform',
      pruneSensitivity: [],
      quantSensitivity: [],
    });
  }
  const t = new AdaptiveTrainer(
    model,
    ex,
    {
      ...DEFAULT_TUNE,
      mode: cfg.mode,
      schedule: 'round_robin',
      steps: 1000,
      microBatch: cfg.mb,
      lora: { ...DEFAULT_LORA, r: cfg.r ?? 8 },
      ...(cfg.exits ? { exitLayers: cfg.exits } : {}),
      headRank: cfg.headRank ?? 0,
      prefix: cfg.prefix ?? 'backbone',
    },
    0,
  );
  const K = Math.max(1, t.exits.length);
  for (let i = 0; i < K; i++) await t.step(); // warm-up: one step per window
  // Whole window cycles (windows differ in prefix depth), at least 8 steps; the median cycle, since a
  // shared machine has bursts of other load that a mean would fold in.
  const cycles = [];
  const nCycles = Math.max(4, Math.ceil(8 / K));
  for (let c = 0; c < nCycles; c++) {
    const cyc = { stepMs: 0, prefixMs: 0, tapeMs: 0 };
    for (let i = 0; i < K; i++) {
      const r = await t.step();
      cyc.stepMs += r.stepMs / K;
      cyc.prefixMs += r.phases.prefixMs / K;
      cyc.tapeMs += r.phases.tapeMs / K;
    }
    cycles.push(cyc);
  }
  cycles.sort((a, b) => a.stepMs - b.stepMs);
  const med = cycles[Math.floor(cycles.length / 2)];
  // Peak memory: profile one step of every window.
  let peak = 0;
  for (let i = 0; i < K; i++) {
    const info = await tf.profile(async () => {
      await t.step();
    });
    peak = Math.max(peak, info.peakBytes);
  }
  return {
    ...cfg,
    stepMs: med.stepMs,
    prefixMs: med.prefixMs,
    tapeMs: med.tapeMs,
    cycleStepMs: cycles.map((c) => Math.round(c.stepMs)),
    peakTfBytes: peak,
    peakRssBytes: t.peakRss,
    rssAtStart,
    L,
  };
}

/** The engine modules the measurements use, its backend initialised. */
async function engineModules() {
  const { initBackend, LlamaModel, AdaptiveTrainer, DEFAULT_TUNE, DEFAULT_LORA, Rng } = await import('@edgetune/engine');
  await initBackend({ quiet: true });
  return { LlamaModel, AdaptiveTrainer, DEFAULT_TUNE, DEFAULT_LORA, Rng };
}

// RSS that the grid's short runs on 64 examples cannot show (planner rssLongRun, rssPerDataToken): the bench's
// Edge-LLM configuration (micro-batch 8, 192 tokens, rank-16 heads, adapted prefix) for GROWTH_STEPS steps;
// peak RSS after as many steps as a grid point runs, and at the end. `n` > 64 loads the examples as a job
// does (a JSONL file of random-word records through the model's tokenizer, records kept as runTuning keeps
// them), each truncated to GROWTH_T tokens so that only the amount of data differs.
const GROWTH_STEPS = 200,
  GROWTH_T = 192;
async function growth(n) {
  const { LlamaModel, AdaptiveTrainer, DEFAULT_TUNE, DEFAULT_LORA, Rng } = await engineModules();
  const rssAtStart = process.memoryUsage.rss();
  const model = LlamaModel.load(modelDir);
  const rng = new Rng(3);
  let ex,
    data = null;
  if (n <= 64) ex = randomExamples(rng, n, GROWTH_T, model.config.vocabSize);
  else {
    const { loadTokenizer, loadExamples } = await import('@edgetune/engine');
    const word = () => Array.from({ length: 3 + rng.int(6) }, () => String.fromCharCode(97 + rng.int(26))).join('');
    const file = join(tmpdir(), `calibrate-growth-${process.pid}.jsonl`);
    writeFileSync(
      file,
      `${Array.from({ length: n }, () =>
        JSON.stringify({ prompt: Array.from({ length: 2 * GROWTH_T }, word).join(' '), completion: ' ok' }),
      ).join('\n')}\n`,
    );
    data = await loadExamples(file, await loadTokenizer(modelDir), GROWTH_T);
    rmSync(file, { force: true });
    ex = data.examples;
  }
  const t = new AdaptiveTrainer(
    model,
    ex,
    {
      ...DEFAULT_TUNE,
      mode: 'edge_llm',
      schedule: 'round_robin',
      steps: 100000,
      microBatch: 8,
      lora: { ...DEFAULT_LORA, r: 8 },
      headRank: 16,
      prefix: 'adapted',
    },
    0,
  );
  let shortRss = 0;
  for (let i = 0; i < GROWTH_STEPS; i++) {
    await t.step();
    if (i + 1 === 20) shortRss = t.peakRss;
  }
  const tokens = ex.reduce((a, e) => a + e.inputIds.length, 0);
  return { n, tokens, records: data ? data.records.length : 0, steps: GROWTH_STEPS, rssAtStart, shortRss, longRss: t.peakRss };
}

// Per-layer-pass overhead, measured rather than fitted (the NNLS confuses it with the per-token and FLOP
// terms when timings are noisy): vanilla LoRA (8 layers on the tape, no prefix) at micro-batches 1, 2, 4, 8 of
// T = 128 in ONE process, their steps interleaved so that bursts of other load hit all sizes alike; the
// intercept of ms per layer-pass against tokens per micro-batch is the fixed cost of a layer pass.
async function overhead() {
  const { LlamaModel, AdaptiveTrainer, DEFAULT_TUNE, DEFAULT_LORA, Rng } = await engineModules();
  const T = 128,
    rng = new Rng(2);
  const sizes = [1, 2, 4, 8];
  const runs = sizes.map((mb) => {
    const model = LlamaModel.load(modelDir);
    const V = model.config.vocabSize,
      L = model.config.numHiddenLayers;
    const ex = randomExamples(rng, 32, T, V);
    return {
      mb,
      L,
      t: new AdaptiveTrainer(model, ex, { ...DEFAULT_TUNE, mode: 'vanilla', steps: 1000, microBatch: mb, lora: { ...DEFAULT_LORA } }, 0),
      ms: [],
    };
  });
  for (const r of runs) for (let i = 0; i < 2; i++) await r.t.step();
  for (let rep = 0; rep < 8; rep++) for (const r of runs) r.ms.push((await r.t.step()).stepMs);
  const pts = runs.map((r) => {
    const s = [...r.ms].sort((a, b) => a - b);
    return { N: r.mb * T, msPerPass: s[Math.floor(s.length / 2)] / r.L };
  });
  const n = pts.length,
    mx = pts.reduce((a, p) => a + p.N, 0) / n,
    my = pts.reduce((a, p) => a + p.msPerPass, 0) / n;
  const slope = pts.reduce((a, p) => a + (p.N - mx) * (p.msPerPass - my), 0) / pts.reduce((a, p) => a + (p.N - mx) ** 2, 0);
  return { points: pts, msPerLayerPass: Math.max(0, my - slope * mx), msPerToken: slope };
}

if (args[0] === '--overhead') {
  process.stdout.write(`${JSON.stringify(await overhead())}\n`);
  process.exit(0);
}

if (args[0] === '--growth-run') {
  process.stdout.write(`${JSON.stringify(await growth(Number(args[1])))}\n`);
  process.exit(0);
}

/** The growth terms from two fresh processes: 64 examples (as the grid) and 4000. */
function measureGrowth() {
  const run = (n) => {
    const r = spawnSync(process.execPath, [fileURLToPath(import.meta.url), '--growth-run', String(n), '--model', modelDir], {
      encoding: 'utf8',
      maxBuffer: 1 << 24,
    });
    if (r.status !== 0) {
      process.stderr.write(r.stderr);
      process.exit(1);
    }
    return JSON.parse(r.stdout.trim().split('\n').pop());
  };
  const few = run(64),
    many = run(4000);
  const g = {
    few,
    many,
    rssLongRun: Math.max(0, few.longRss - few.shortRss),
    rssPerDataToken: Math.max(0, (many.longRss - few.longRss) / (many.tokens - few.tokens)),
  };
  process.stderr.write(
    `RSS growth: ${(g.rssLongRun / 2 ** 20).toFixed(1)} MiB from step 20 to ${few.steps}; ${g.rssPerDataToken.toFixed(1)} bytes per data token (${many.n} vs ${few.n} examples)\n`,
  );
  return g;
}
const median = (xs) => {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)];
};

if (args.includes('--growth')) {
  // Only the growth terms: the other coefficients stay as fitted (calibration.json, the results' points).
  const fitted = JSON.parse(readFileSync(calibrationFile, 'utf8'));
  const g = measureGrowth();
  const coeffs = {
    ...fitted.coefficients,
    rssAtStart: median([g.few.rssAtStart, g.many.rssAtStart]),
    rssLongRun: g.rssLongRun,
    rssPerDataToken: g.rssPerDataToken,
  };
  const file = join(root, 'bench', 'results', 'planner-calibration.json');
  const prev = JSON.parse(readFileSync(file, 'utf8'));
  writeCalibration(coeffs, prev.date, prev.sgemmGflops);
  writeFileSync(file, `${JSON.stringify({ ...prev, coefficients: coeffs, growth: { date: new Date().toISOString(), ...g } }, null, 2)}\n`);
  process.stderr.write(
    `wrote ${relative(root, calibrationFile)} and bench/results/planner-calibration.json; npx tsc -b copies the JSON to packages/core/dist: rebuild\n`,
  );
  process.exit(0);
}

/** Writes calibration.json: the coefficients, when they were fitted (ISO date), on which model and at which
 *  SGEMM peak (GFLOP/s). */
function writeCalibration(coeffs, date, G) {
  const fmt = (v) => (Math.abs(v) >= 1e5 ? Math.round(v) : Number(v.toPrecision(6)));
  const coefficients = Object.fromEntries(Object.entries(coeffs).map(([k, v]) => [k, fmt(v)]));
  const data = { fitted: date, model: basename(modelDir), sgemmGflops: Math.round(G), command: COMMAND, coefficients };
  writeFileSync(calibrationFile, `${JSON.stringify(data, null, 2)}\n`);
}

if (args[0] === '--one') {
  const r = await one(JSON.parse(args[1]));
  process.stdout.write(`${JSON.stringify(r)}\n`);
  process.exit(0);
}

const { costFeatures, plan, loadLlamaConfig, readWeightIndex, storedDtype, uniformPolicy } = await import('@edgetune/core');
const { measureSgemmPeak, initBackend, loadExamples, loadTokenizer, planInputOf, resolveTuneOptions } = await import('@edgetune/engine');
await initBackend({ quiet: true });
const G = args.includes('--refit')
  ? JSON.parse(readFileSync(join(root, 'bench', 'results', 'planner-calibration.json'), 'utf8')).sgemmGflops
  : measureSgemmPeak({}).gflops;
const model = loadLlamaConfig(modelDir);
const grid = [
  { mode: 'edge_llm', mb: 8, T: 256, bits: 16 },
  { mode: 'edge_llm', mb: 4, T: 256, bits: 16 },
  { mode: 'edge_llm', mb: 8, T: 128, bits: 16 },
  { mode: 'edge_llm', mb: 16, T: 64, bits: 16 },
  { mode: 'vanilla', mb: 8, T: 256, bits: 16 },
  { mode: 'vanilla', mb: 4, T: 128, bits: 16 },
  { mode: 'vanilla', mb: 16, T: 64, bits: 16 },
  { mode: 'edge_llm', mb: 8, T: 256, bits: 4 },
  { mode: 'edge_llm', mb: 8, T: 128, bits: 8 },
  { mode: 'vanilla', mb: 8, T: 128, bits: 8 },
  // other window depths (the planner adds exits to fit memory): 1-layer and 4-layer windows
  { mode: 'edge_llm', mb: 8, T: 128, bits: 16, exits: [0, 1, 2, 3, 4, 5, 6, 7] },
  { mode: 'edge_llm', mb: 8, T: 256, bits: 16, exits: [3, 7] },
  // low-rank exit heads
  { mode: 'edge_llm', mb: 8, T: 192, bits: 16, headRank: 16 },
  // other LoRA ranks (the LoRA activation term is otherwise collinear with the per-token ones)
  { mode: 'edge_llm', mb: 8, T: 256, bits: 16, r: 32, exits: [1, 7] },
  { mode: 'vanilla', mb: 8, T: 128, bits: 16, r: 2 },
  // the adapted prefix (round-robin cycles hand outputs on: no prefix layers), and small micro-batches
  // (gradient accumulation, which the planner tries first to fit a tight budget)
  { mode: 'edge_llm', mb: 8, T: 192, bits: 16, headRank: 16, prefix: 'adapted' },
  { mode: 'edge_llm', mb: 2, T: 192, bits: 16, headRank: 16, prefix: 'adapted' },
  { mode: 'edge_llm', mb: 1, T: 128, bits: 16 },
];
// --refit: fit again to the points measured by the last full run (bench/results/planner-calibration.json)
// without measuring, e.g. after a change to the cost model's features.
const previous = join(root, 'bench', 'results', 'planner-calibration.json');
const refit = args.includes('--refit') ? JSON.parse(readFileSync(previous, 'utf8')) : null;
// --pool FILE (repeatable, with --refit): earlier runs' points too; per configuration the fastest step time
// is kept (timing noise on a shared machine only ever adds time), memory from the newest run.
const pooled = args.flatMap((a, i) => (a === '--pool' ? [JSON.parse(readFileSync(args[i + 1], 'utf8'))] : []));
const sameCfg = (p, cfg) =>
  p.mode === cfg.mode &&
  p.mb === cfg.mb &&
  p.T === cfg.T &&
  p.bits === cfg.bits &&
  String(p.exits) === String(cfg.exits) &&
  (p.headRank ?? 0) === (cfg.headRank ?? 0) &&
  (p.r ?? 8) === (cfg.r ?? 8) &&
  (p.prefix ?? 'backbone') === (cfg.prefix ?? 'backbone');
const points = [];
for (const cfg of refit
  ? refit.points.map(({ mode, mb, T, bits, exits, headRank, r, prefix }) => ({
      mode,
      mb,
      T,
      bits,
      ...(exits ? { exits } : {}),
      ...(headRank ? { headRank } : {}),
      ...(r ? { r } : {}),
      ...(prefix ? { prefix } : {}),
    }))
  : grid) {
  let m;
  if (refit) {
    m = { ...refit.points.find((p) => sameCfg(p, cfg)).measured, L: model.numHiddenLayers };
    for (const other of pooled) {
      const q = other.points.find((p) => sameCfg(p, cfg))?.measured;
      if (q?.tapeMs !== undefined && q.stepMs < m.stepMs) Object.assign(m, { stepMs: q.stepMs, prefixMs: q.prefixMs, tapeMs: q.tapeMs });
    }
  } else {
    const r = spawnSync(process.execPath, [fileURLToPath(import.meta.url), '--one', JSON.stringify(cfg), '--model', modelDir], {
      encoding: 'utf8',
      maxBuffer: 1 << 24,
    });
    if (r.status !== 0) {
      process.stderr.write(r.stderr);
      process.exit(1);
    }
    m = JSON.parse(r.stdout.trim().split('\n').pop());
  }
  const input = {
    model,
    mode: cfg.mode,
    loraR: cfg.r ?? 8,
    batchSize: cfg.mb,
    seqLen: cfg.T,
    steps: 1000,
    trainExamples: 64,
    microBatch: cfg.mb,
    headRank: cfg.headRank ?? 0,
    schedule: 'round_robin',
    prefix: cfg.prefix ?? 'backbone',
    policy: cfg.bits < 16 ? { bits: new Array(m.L).fill(cfg.bits), sparsity: new Array(m.L).fill(0.5) } : null,
  };
  const exits = cfg.mode === 'vanilla' ? [m.L - 1] : (cfg.exits ?? [1, 3, 5, 7].filter((e) => e < m.L));
  points.push({ cfg, measured: m, x: costFeatures(input, exits, cfg.mb, false) });
  process.stderr.write(
    `${JSON.stringify(cfg)}: ${m.stepMs.toFixed(0)} ms/step, TF.js peak ${(m.peakTfBytes / 2 ** 20).toFixed(0)} MiB, RSS ${(m.peakRssBytes / 2 ** 20).toFixed(0)} MiB\n`,
  );
}

// --scale: one memory point per run of the scale bench, with the plan input its job had (bench/scale.ts settings).
const flag = (name) => (args.includes(name) ? args[args.indexOf(name) + 1] : undefined);
/** One point per run of a scale-bench result file, with the plan input its job had. */
async function scalePointsOf(file) {
  const points = [];
  const scale = JSON.parse(readFileSync(file, 'utf8'));
  for (const row of scale.results) {
    const dir = join(flag('--models-dir'), row.model);
    const cfg = loadLlamaConfig(dir);
    const { examples } = await loadExamples(flag('--scale-train'), await loadTokenizer(dir), scale.settings.maxLength);
    for (const [variant, run] of Object.entries(row)) {
      if (!run?.plan?.measured) continue;
      const p = run.plan.plan;
      const opts = resolveTuneOptions({
        mode: run.mode,
        steps: run.steps,
        microBatch: p.microBatch,
        gradAccum: p.gradAccum,
        lora: { r: scale.settings.loraR, alpha: 2 * scale.settings.loraR },
        schedule: scale.settings.schedule,
        headRank: scale.settings.headRank,
        prefix: scale.settings.prefix,
      });
      const policy = run.bits ? uniformPolicy(cfg.numHiddenLayers, run.bits) : null;
      const input = planInputOf(cfg, storedDtype(readWeightIndex(dir)), opts, examples, scale.settings.maxLength, policy);
      points.push({
        model: row.model,
        variant,
        input,
        exits: p.exitLayers,
        mb: p.microBatch,
        cache: p.prefixCache,
        G: p.device.matmulGflops,
        measured: run.plan.measured,
        x: costFeatures(input, p.exitLayers, p.microBatch, p.prefixCache),
      });
    }
  }
  return points;
}
// --scale-time FILE: the step times from another run of the bench (default: --scale's), e.g. a run on an otherwise
// idle machine when the memory run was not.
let scalePoints = [],
  scaleTimePoints = [];
if (flag('--scale')) {
  if (!refit || !flag('--models-dir') || !flag('--scale-train')) {
    process.stderr.write('calibrate-planner: --scale needs --refit, --models-dir DIR and --scale-train FILE\n');
    process.exit(2);
  }
  scalePoints = await scalePointsOf(flag('--scale'));
  scaleTimePoints = flag('--scale-time') ? await scalePointsOf(flag('--scale-time')) : scalePoints;
  process.stderr.write(`${scalePoints.length} scale-bench runs join the memory fit, ${scaleTimePoints.length} the step-time fit\n`);
}

const timePoints = [...points, ...scaleTimePoints];

// The fixed cost of a layer pass (see overhead()): measured now, or with --refit taken from the last run.
let passOverhead;
if (refit?.passOverhead) passOverhead = refit.passOverhead;
else if (!refit) {
  const r = spawnSync(process.execPath, [fileURLToPath(import.meta.url), '--overhead', '--model', modelDir], {
    encoding: 'utf8',
    maxBuffer: 1 << 24,
  });
  if (r.status !== 0) {
    process.stderr.write(r.stderr);
    process.exit(1);
  }
  passOverhead = JSON.parse(r.stdout.trim().split('\n').pop());
  process.stderr.write(
    `layer-pass overhead: ${passOverhead.msPerLayerPass.toFixed(2)} ms (+ ${(passOverhead.msPerToken * 1000).toFixed(2)} us per token), from ${passOverhead.points.map((p) => `${p.N} tokens: ${p.msPerPass.toFixed(2)} ms`).join(', ')}\n`,
  );
}

// Least squares via normal equations (small systems), with a ridge term for stability.
function lstsq(X, y, ridge = 1e-9) {
  const n = X[0].length,
    A = Array.from({ length: n }, () => new Array(n).fill(0)),
    b = new Array(n).fill(0);
  X.forEach((row, i) => {
    for (let a = 0; a < n; a++) {
      b[a] += row[a] * y[i];
      for (let c = 0; c < n; c++) A[a][c] += row[a] * row[c];
    }
  });
  for (let a = 0; a < n; a++) A[a][a] += ridge * (A[a][a] || 1);
  for (let c = 0; c < n; c++) {
    let p = c;
    for (let r = c + 1; r < n; r++) if (Math.abs(A[r][c]) > Math.abs(A[p][c])) p = r;
    [A[c], A[p]] = [A[p], A[c]];
    [b[c], b[p]] = [b[p], b[c]];
    for (let r = 0; r < n; r++)
      if (r !== c) {
        const f = A[r][c] / A[c][c];
        for (let k = c; k < n; k++) A[r][k] -= f * A[c][k];
        b[r] -= f * b[c];
      }
  }
  return b.map((v, i) => v / A[i][i]);
}
// Memory: peakTf - weights - trainable - prefixOut = tfFixed + 4 (actD d + actF f + actAtt att + actLora lora).
// Relative weighting (divide each row by its target) so small and large configurations count alike.
// Non-negative (a negative bytes-per-element would forecast less memory for more work outside the grid).
// RSS = rssBase + rssPerTfByte x TF.js peak + bytes outside the heap.
function fitMemory(pts) {
  const rows = pts.map((p) => [1, 4 * p.x.act.d, 4 * p.x.act.f, 4 * p.x.act.att, 4 * p.x.act.lora]);
  const y = pts.map((p) => p.measured.peakTfBytes - p.x.weightTf - p.x.trainable - p.x.prefixOut - p.x.headRowBytes);
  const wt = pts.map((p) => 1 / p.measured.peakTfBytes);
  const [tfFixed, actD, actF, actAtt, actLora] = nnls(
    rows.map((r, i) => r.map((v) => v * wt[i])),
    y.map((v, i) => v * wt[i]),
  );
  const rssRows = pts.map((p) => [1, p.measured.peakTfBytes].map((v) => v / p.measured.peakRssBytes));
  const rssY = pts.map((p) => (p.measured.peakRssBytes - (p.x.weightAll - p.x.weightTf)) / p.measured.peakRssBytes);
  const [rssBase, rssPerTfByte] = lstsq(rssRows, rssY);
  return { tfFixed, actD, actF, actAtt, actLora, rssBase, rssPerTfByte };
}
const memPoints = [...points, ...scalePoints];
const { tfFixed, actD, actF, actAtt, actLora, rssBase, rssPerTfByte } = fitMemory(memPoints);
// What the short grid runs cannot show: measured (--refit: the last run's measurement when it has one).
const growthMeasured = refit?.growth ?? measureGrowth();
const rssAtStart = median(
  points
    .map((p) => p.measured.rssAtStart)
    .filter((v) => v > 0)
    .concat(refit && !points.some((p) => p.measured.rssAtStart) ? [growthMeasured.few.rssAtStart] : []),
);
// Time: stepMs = msPerStep + accum * (flops / (G * eff) + passes * (msPerLayerPass + msPerLayerToken * N)) + ..., all
// coefficients non-negative: exact non-negative least squares by trying every subset of features (at most 7
// features, 127 subsets) and keeping the best fit whose coefficients are all >= 0. Also used for memory above.
function nnls(rows, y) {
  const n = rows[0].length;
  let best = null;
  for (let mask = 1; mask < 1 << n; mask++) {
    const active = [...Array(n).keys()].filter((i) => mask & (1 << i));
    const sol = lstsq(
      rows.map((r) => active.map((i) => r[i])),
      y,
    );
    if (sol.some((v) => !(v >= 0))) continue;
    const full = new Array(n).fill(0);
    active.forEach((i, j) => (full[i] = sol[j]));
    const err = rows.reduce((a, r, k) => a + (r.reduce((b, v, i) => b + v * full[i], 0) - y[k]) ** 2, 0);
    if (!best || err < best.err) best = { err, full };
  }
  return best.full;
}
// Layer-equivalents E = window layers + rho x prefix layers: rho measured (below), the rest by NNLS on
// relative errors (each row divided by its measured step time).
// Scale-bench points join with their own run's SGEMM reading: on one small model FLOPs are nearly collinear
// with the per-token term, and only real shapes separate matmul time from the rest.
function timeRowsFor(rho, pts = timePoints) {
  return pts.map((p) => {
    const t = p.x.time,
      E = t.tapeLayers + rho * t.prefixLayers,
      a = p.x.accum;
    return [
      (p.x.trainFlops / ((p.G ?? G) * 1e9)) * 1000 * a,
      E * a,
      E * p.x.N * a,
      E * t.attScores * a,
      p.x.updParams,
      p.x.dequantElems * a,
      1,
    ].map((v) => v / p.measured.stepMs);
  });
}
// rho measured, not fitted (it is nearly collinear with the per-layer terms): per Edge-LLM point with a
// prefix, (prefix ms per prefix layer) / (window ms per window layer) from the step reports' phase times;
// the median over points.
const ratios = points
  .filter((p) => p.x.time.prefixLayers > 0 && p.measured.tapeMs > 0)
  .map((p) => p.measured.prefixMs / p.x.time.prefixLayers / (p.measured.tapeMs / p.x.time.tapeLayers))
  .sort((a, b) => a - b);
const rho = ratios.length ? ratios[Math.floor(ratios.length / 2)] : 0.35;
// With the pass overhead measured, its column's contribution is subtracted and the column fixed.
const pass0 = passOverhead?.msPerLayerPass;
function fitTime(pts) {
  const rowsT = timeRowsFor(rho, pts);
  const yT = pts.map((_p, i) => (pass0 === undefined ? 1 : 1 - pass0 * rowsT[i][1]));
  const solT = nnls(pass0 === undefined ? rowsT : rowsT.map((r) => r.filter((_, j) => j !== 1)), yT);
  return pass0 === undefined ? solT : [solT[0], pass0, ...solT.slice(1)];
}
/** The time coefficients of a solution vector of fitTime (the rest of the cost model is filled by the caller). */
const timeCoeffs = ([invEff, pass, tok, att, upd, deq, step]) => ({
  mmEfficiency: 1 / (invEff || 1e-9),
  prefixPassCost: rho,
  msPerLayerPass: pass,
  msPerLayerToken: tok,
  msPerAttScore: att,
  msPerStep: step,
  msPerUpdatedParam: upd,
  msPerDequantElem: deq,
});
const fit = { rho, sol: fitTime(timePoints) };
const coeffs = {
  actD,
  actF,
  actAtt,
  actLora,
  tfFixed,
  rssBase,
  rssPerTfByte,
  rssAtStart,
  rssLongRun: growthMeasured.rssLongRun,
  rssPerDataToken: growthMeasured.rssPerDataToken,
  ...timeCoeffs(fit.sol),
};
const report = points.map((p) => {
  const input = {
    model,
    mode: p.cfg.mode,
    loraR: p.cfg.r ?? 8,
    batchSize: p.cfg.mb,
    seqLen: p.cfg.T,
    steps: 1000,
    trainExamples: 64,
    microBatch: p.cfg.mb,
    prefixCache: false,
    headRank: p.cfg.headRank ?? 0,
    schedule: 'round_robin',
    prefix: p.cfg.prefix ?? 'backbone',
    ...(p.cfg.exits ? { exitLayers: p.cfg.exits } : {}),
    policy: p.cfg.bits < 16 ? { bits: new Array(p.measured.L).fill(p.cfg.bits), sparsity: new Array(p.measured.L).fill(0.5) } : null,
  };
  const f = plan(input, { memoryBudgetBytes: 1e12, threads: 2, backend: 'wasm', matmulGflops: G }, coeffs).forecast;
  return {
    ...p.cfg,
    measured: {
      stepMs: p.measured.stepMs,
      prefixMs: p.measured.prefixMs,
      tapeMs: p.measured.tapeMs,
      peakTfBytes: p.measured.peakTfBytes,
      peakRssBytes: p.measured.peakRssBytes,
      ...(p.measured.rssAtStart ? { rssAtStart: p.measured.rssAtStart } : {}),
    },
    forecast: { stepMs: f.stepMs, peakTfBytes: f.peakTfBytes, peakRssBytes: f.peakRssBytes },
    error: {
      stepMs: f.stepMs / p.measured.stepMs - 1,
      peakTfBytes: f.peakTfBytes / p.measured.peakTfBytes - 1,
      peakRssBytes: f.peakRssBytes / p.measured.peakRssBytes - 1,
    },
  };
});
for (const r of report)
  process.stderr.write(
    `${r.mode}${r.prefix ? ` ${r.prefix} prefix` : ''}${r.exits ? ` exits ${r.exits}` : ''}${r.headRank ? ` head rank ${r.headRank}` : ''}${r.r ? ` LoRA r ${r.r}` : ''} mb ${r.mb} T ${r.T} bits ${r.bits}: step ${(r.error.stepMs * 100).toFixed(1)}%, TF peak ${(r.error.peakTfBytes * 100).toFixed(1)}%, RSS ${(r.error.peakRssBytes * 100).toFixed(1)}%\n`,
  );
// The scale runs as forecast with the new coefficients (on a device as large as their memory budget): memory
// for --scale's runs, step time for --scale-time's (the same runs without it), also held out: fitted without
// that model's runs (leave one model out), then forecast.
const heldOutCoeffs = new Map(
  [...new Set(scaleTimePoints.map((p) => p.model))].map((m) => [
    m,
    { ...coeffs, ...timeCoeffs(fitTime(timePoints.filter((p) => p.model !== m))) },
  ]),
);
const heldOutMemory = new Map(
  [...new Set(scalePoints.map((p) => p.model))].map((m) => [m, { ...coeffs, ...fitMemory(memPoints.filter((p) => p.model !== m)) }]),
);
const forecastOf = (p, c) =>
  plan(
    { ...p.input, microBatch: p.mb, exitLayers: p.exits, prefixCache: p.cache },
    { memoryBudgetBytes: 1e12, threads: 2, backend: 'wasm', matmulGflops: p.G },
    c,
  ).forecast;
const pct = (v) => `${(v * 100).toFixed(1)}%`;
const scaleReport = scalePoints.map((p) => {
  const f = forecastOf(p, coeffs),
    held = forecastOf(p, heldOutMemory.get(p.model));
  const e = {
    peakTfBytes: f.peakTfBytes / p.measured.peakTfBytes - 1,
    peakRssBytes: f.peakRssBytes / p.measured.peakRssBytes - 1,
    peakTfBytesHeldOut: held.peakTfBytes / p.measured.peakTfBytes - 1,
    peakRssBytesHeldOut: held.peakRssBytes / p.measured.peakRssBytes - 1,
  };
  process.stderr.write(
    `scale ${p.model} ${p.variant} mb ${p.mb}: TF peak ${pct(e.peakTfBytes)}, RSS ${pct(e.peakRssBytes)} (model held out: ${pct(e.peakTfBytesHeldOut)}, ${pct(e.peakRssBytesHeldOut)})\n`,
  );
  return {
    model: p.model,
    variant: p.variant,
    mb: p.mb,
    measured: { peakTfBytes: p.measured.peakTfBytes, peakRssBytes: p.measured.peakRssBytes },
    forecast: {
      peakTfBytes: f.peakTfBytes,
      peakRssBytes: f.peakRssBytes,
      peakTfBytesHeldOut: held.peakTfBytes,
      peakRssBytesHeldOut: held.peakRssBytes,
    },
    error: e,
  };
});
const scaleTimeReport = scaleTimePoints.map((p) => {
  const f = forecastOf(p, coeffs).stepMs,
    held = forecastOf(p, heldOutCoeffs.get(p.model)).stepMs;
  const e = { stepMs: f / p.measured.stepMs - 1, stepMsHeldOut: held / p.measured.stepMs - 1 };
  process.stderr.write(`scale ${p.model} ${p.variant} mb ${p.mb}: step ${pct(e.stepMs)} (model held out: ${pct(e.stepMsHeldOut)})\n`);
  return {
    model: p.model,
    variant: p.variant,
    mb: p.mb,
    measured: { stepMs: p.measured.stepMs },
    forecast: { stepMs: f, stepMsHeldOut: held },
    error: e,
  };
});
const date = new Date().toISOString();
writeCalibration(coeffs, date, G);
mkdirSync(join(root, 'bench', 'results'), { recursive: true });
writeFileSync(
  join(root, 'bench', 'results', 'planner-calibration.json'),
  `${JSON.stringify(
    {
      date,
      command: COMMAND,
      model: modelDir,
      sgemmGflops: G,
      coefficients: coeffs,
      passOverhead,
      growth: { date: refit?.growth?.date ?? date, ...growthMeasured },
      points: report,
      ...(flag('--scale')
        ? {
            scale: {
              file: relative(root, resolve(flag('--scale'))),
              points: scaleReport,
              timeFile: relative(root, resolve(flag('--scale-time') ?? flag('--scale'))),
              timePoints: scaleTimeReport,
            },
          }
        : {}),
    },
    null,
    2,
  )}\n`,
);
process.stderr.write(
  `wrote ${relative(root, calibrationFile)} and bench/results/planner-calibration.json; npx tsc -b copies the JSON to packages/core/dist: rebuild\n`,
);
