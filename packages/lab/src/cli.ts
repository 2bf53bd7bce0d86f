#!/usr/bin/env node
/**
 * `edgetune-lab`: what makes and measures, not what serves. Builds the datasets, pretrains the default
 * base model and runs the benchmarks. Results go to stdout (JSON), progress and logs to stderr.
 */
import { existsSync, readFileSync } from 'node:fs';
import { basename, dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import * as tf from '@tensorflow/tfjs-core';
import { favourMemoryOverSpeed, initBackend, loadTokenizer, need, numOpt, pick, ProgressBar, runCli, UsageError } from '@edgetune/engine';
import { nearest, parseFlags, unknownCommand } from '@edgetune/core';
import { buildSpamAssassin, spamPromptFromEmail } from './data/spam-assassin.js';
import { buildCorpusContinuation } from './data/corpus-continuation.js';
import { buildSpamAssassin3 } from './data/spam-assassin-3.js';
import { buildFirstNames } from './data/first-names.js';
import { buildCmudict, CMUDICT_SIZES } from './data/cmudict.js';
import { pretrain, DEFAULT_PRETRAIN } from './pretrain/pretrain.js';

/** The commands `main` runs; `bench-*-run` are internal (one benchmark run in a fresh process). */
const COMMANDS = ['data', 'pretrain', 'bench'];
/** `edgetune-engine`'s commands, which a user may look for here. */
const ENGINE_COMMANDS = ['tune', 'eval', 'infer', 'plan', 'advise', 'device', 'backend', 'logits', 'synth-model'];

/** The datasets `data` builds. */
const DATASETS = ['spam-assassin', 'spam-assassin-3', 'first-names', 'cmudict', 'corpus-continuation'];
const REPO = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..', '..');

const USAGE = `usage: edgetune-lab <command> [options]

commands:
  data spam-assassin --out DIR [--body-chars 400]  (SpamAssassin spam/ham -> train/validation/test JSONL + task.json)
  data spam-assassin-3 --out DIR [--body-chars 400]
                                                   (easy ham / hard ham / spam, same messages and splits)
  data first-names --out DIR                       (first name -> " female" | " male"; names in both lists dropped)
  data cmudict --out DIR [--train 3000 --validation 300 --test 500 --stress --tokenizer-model DIR]
                                                   (word -> ARPAbet pronunciation, a generation task; stress digits
                                                    dropped unless --stress; task.json's mean completion tokens use
                                                    the tokenizer of --tokenizer-model, default models/edgetune-tiny-llama)
  data corpus-continuation --out DIR               (text continuation from the pretraining corpus: recovery tuning)
  data spam-prompt --email RFC822-FILE             (prints the spam task's prompt for one mail: save it and run
                                                    edgetune-engine infer --prompt-file FILE --labels " spam, ham")
  pretrain --out DIR [--steps N --time-budget-min M --hidden 192 --layers 8 --heads 4 --kv-heads 2 --ffn 512 --vocab 4096 --seq 256 --batch 8 --lr 3e-3 --seed 1234 --dtype F32|F16|BF16
            --tokenizer-chars 20000000 --eval-tokens 65536]
  bench [--out FILE] [--steps N] [--quick] [--model DIR] [--skip-luc]
  bench --scale [--models smollm2-135m,...] [--models-dir DIR] [--steps 10] [--profile-luc tinyllama-1.1b|none] [--out FILE]
                                                   (random models of real configurations: load, generation, Edge-LLM
                                                    + 4-bit LUC vs Edge-LLM and vanilla LoRA on BF16; see bench/scale.ts)
  bench --guidelines [--studies methods,compressed_vs_smaller,lora_rank] [--seeds 1,2,3] [--sizes 16,64,256,1024]
            [--tasks spam-assassin,first-names,cmudict] [--held-out spam-assassin-3|none] [--parallel 2] [--max-steps 120] [--time-budget-s S] [--out FILE] [--rules-out FILE] [--merge FILE,...] [--report-only]
                                                   (Qin et al.'s study on this project's models and tasks: RAG, LoRA, Edge-LLM,
                                                    RAG + Edge-LLM x data x task, validation against time, compressed larger vs
                                                    smaller model, LoRA rank; tables, SVG plots and the advisor's rules; see
                                                    bench/guidelines.ts)

  bench --serving [--reps 5 --steps 16 --out FILE]   (latency of a 32-token completion of a tuned tiny model through the
                                                    API and a worker: first token and total, plain and streamed; needs
                                                    PostgreSQL and Redis (DATABASE_URL, REDIS_URL) and the built apps; see
                                                    bench/serving.ts)

every command: [--verbose]  (also prints the backend line on stderr: backend, matmul path, kernels)
environment: EDGETUNE_BACKEND=wasm|cpu|tensorflow, EDGETUNE_NATIVE=0 (disable the OpenBLAS addon)`;

async function main(argv: string[]): Promise<void> {
  const [cmd, ...rest] = argv;
  if (!cmd || cmd === '--help' || cmd === '-h' || cmd === 'help') {
    process.stdout.write(`${USAGE}\n`);
    return;
  }
  if (ENGINE_COMMANDS.includes(cmd))
    throw new UsageError(
      `unknown command ${JSON.stringify(cmd)}: tuning, evaluation and inference are edgetune-engine's (edgetune-engine --help)`,
    );
  if (!COMMANDS.includes(cmd) && !/^bench(-[a-z]+)?-run$/.test(cmd)) throw unknownCommand(cmd, COMMANDS);
  const { values: v, positionals } = parseFlags({
    args: rest,
    allowPositionals: true,
    strict: true,
    options: {
      help: { type: 'boolean', short: 'h' },
      verbose: { type: 'boolean' },
      out: { type: 'string' },
      email: { type: 'string' },
      'body-chars': { type: 'string' },
      model: { type: 'string' },
      steps: { type: 'string' },
      quick: { type: 'boolean' },
      'skip-luc': { type: 'boolean' },
      spec: { type: 'string' },
      task: { type: 'string' },
      scale: { type: 'boolean' },
      guidelines: { type: 'boolean' },
      serving: { type: 'boolean' },
      reps: { type: 'string' },
      studies: { type: 'string' },
      seeds: { type: 'string' },
      sizes: { type: 'string' },
      tasks: { type: 'string' },
      'held-out': { type: 'string' },
      parallel: { type: 'string' },
      'max-steps': { type: 'string' },
      'time-budget-s': { type: 'string' },
      'rules-out': { type: 'string' },
      merge: { type: 'string' },
      'report-only': { type: 'boolean' },
      models: { type: 'string' },
      'models-dir': { type: 'string' },
      'profile-luc': { type: 'string' },
      hidden: { type: 'string' },
      layers: { type: 'string' },
      heads: { type: 'string' },
      'kv-heads': { type: 'string' },
      ffn: { type: 'string' },
      vocab: { type: 'string' },
      seq: { type: 'string' },
      batch: { type: 'string' },
      lr: { type: 'string' },
      seed: { type: 'string' },
      'time-budget-min': { type: 'string' },
      dtype: { type: 'string' },
      'tokenizer-chars': { type: 'string' },
      'eval-tokens': { type: 'string' },
      train: { type: 'string' },
      validation: { type: 'string' },
      test: { type: 'string' },
      stress: { type: 'boolean' },
      'tokenizer-model': { type: 'string' },
    },
  });
  if (v.help) {
    process.stdout.write(`${USAGE}\n`);
    return;
  }
  // the backend line (backend, matmul path, kernels) is a diagnostic: only with --verbose
  const quiet = v.verbose !== true;
  switch (cmd) {
    case 'data': {
      const which = positionals[0];
      if (which === 'spam-prompt') {
        process.stdout.write(await spamPromptFromEmail(readFileSync(need(v, 'email'))));
        return;
      }
      const r = await buildData(which, v);
      process.stdout.write(`${JSON.stringify(r, null, 2)}\n`);
      return;
    }
    case 'pretrain': {
      favourMemoryOverSpeed();
      await initBackend({ quiet });
      const out = need(v, 'out');
      const steps = numOpt(v, 'steps', DEFAULT_PRETRAIN.steps);
      const bar = new ProgressBar('pretrain', steps);
      const r = await pretrain({
        ...DEFAULT_PRETRAIN,
        outDir: out,
        steps,
        hiddenSize: numOpt(v, 'hidden', DEFAULT_PRETRAIN.hiddenSize),
        layers: numOpt(v, 'layers', DEFAULT_PRETRAIN.layers),
        heads: numOpt(v, 'heads', DEFAULT_PRETRAIN.heads),
        kvHeads: numOpt(v, 'kv-heads', DEFAULT_PRETRAIN.kvHeads),
        intermediateSize: numOpt(v, 'ffn', DEFAULT_PRETRAIN.intermediateSize),
        vocabSize: numOpt(v, 'vocab', DEFAULT_PRETRAIN.vocabSize),
        seq: numOpt(v, 'seq', DEFAULT_PRETRAIN.seq),
        batch: numOpt(v, 'batch', DEFAULT_PRETRAIN.batch),
        lr: numOpt(v, 'lr', DEFAULT_PRETRAIN.lr),
        seed: numOpt(v, 'seed', DEFAULT_PRETRAIN.seed),
        timeBudgetMs: numOpt(v, 'time-budget-min', 0) * 60000,
        tokenizerChars: numOpt(v, 'tokenizer-chars', DEFAULT_PRETRAIN.tokenizerChars),
        evalTokens: numOpt(v, 'eval-tokens', DEFAULT_PRETRAIN.evalTokens),
        saveDtype: pick(v, 'dtype', ['F32', 'F16', 'BF16'] as const, DEFAULT_PRETRAIN.saveDtype),
        command: `npx edgetune-lab ${argv.join(' ')}`,
        onStep: (s) => bar.update(s.step, { loss: s.loss, tps: s.tokensPerSec, etaMs: s.etaMs }),
        log: (s) => {
          bar.clear();
          process.stderr.write(`${s}\n`);
        },
      });
      bar.done();
      process.stdout.write(`${JSON.stringify(r, null, 2)}\n`);
      return;
    }
    case 'bench': {
      await initBackend({ quiet });
      if (v.serving) {
        const { runServingBench } = await import('./bench/serving.js');
        await runServingBench({
          out: v.out,
          command: `npm run bench -- ${argv.slice(1).join(' ')}`,
          ...(v.reps ? { reps: numOpt(v, 'reps', 5) } : {}),
          ...(v.steps ? { steps: numOpt(v, 'steps', 16) } : {}),
        });
        return;
      }
      if (v.scale) {
        const { runScaleBench, SCALE_MODELS } = await import('./bench/scale.js');
        const models = v.models?.split(',').map((m) => m.trim());
        for (const m of models ?? [])
          if (!(SCALE_MODELS as readonly string[]).includes(m))
            throw new UsageError(`--models: unknown ${m} (one of ${SCALE_MODELS.join(', ')})`);
        const profile = v['profile-luc'];
        if (profile !== undefined && profile !== 'none' && !(SCALE_MODELS as readonly string[]).includes(profile))
          throw new UsageError(`--profile-luc: unknown ${profile} (none or one of ${SCALE_MODELS.join(', ')})`);
        await runScaleBench({
          out: v.out,
          models,
          modelsDir: v['models-dir'],
          steps: v.steps ? Number(v.steps) : undefined,
          ...(profile === undefined ? {} : { profileLuc: profile === 'none' ? null : profile }),
        });
        return;
      }
      if (v.guidelines) {
        const { runGuidelinesBench, GUIDELINES_STUDIES } = await import('./bench/guidelines.js');
        const list = (name: 'studies' | 'seeds' | 'sizes' | 'tasks') => v[name]?.split(',').map((x) => x.trim());
        const ints = (name: 'seeds' | 'sizes') =>
          list(name)?.map((x) => {
            const n = Number(x);
            if (!Number.isInteger(n) || n < 1) throw new UsageError(`--${name}: ${JSON.stringify(x)} is not a positive integer`);
            return n;
          });
        if (v['time-budget-s'] !== undefined && !(numOpt(v, 'time-budget-s', 0) > 0))
          throw new UsageError(`--time-budget-s must be a positive number of seconds, got ${JSON.stringify(v['time-budget-s'])}`);
        const studies = list('studies');
        for (const s of studies ?? [])
          if (!(GUIDELINES_STUDIES as readonly string[]).includes(s))
            throw new UsageError(`--studies: unknown ${s} (one of ${GUIDELINES_STUDIES.join(', ')})`);
        await runGuidelinesBench({
          out: v.out,
          command: `npm run bench -- ${argv.slice(1).join(' ')}`,
          ...(studies ? { studies: studies as never } : {}),
          ...(ints('seeds') ? { seeds: ints('seeds') } : {}),
          ...(ints('sizes') ? { sizes: ints('sizes') } : {}),
          ...(list('tasks') ? { tasks: list('tasks') } : {}),
          ...(typeof v['held-out'] === 'string' ? { heldOut: v['held-out'] === 'none' ? null : v['held-out'] } : {}),
          ...(v.parallel ? { parallel: numOpt(v, 'parallel', 2) } : {}),
          ...(v['max-steps'] ? { maxSteps: numOpt(v, 'max-steps', 120) } : {}),
          ...(v['time-budget-s'] ? { timeBudgetS: numOpt(v, 'time-budget-s', 0) } : {}),
          ...(v['rules-out'] ? { rulesOut: v['rules-out'] } : {}),
          ...(v.merge ? { merge: v.merge.split(',').map((x) => x.trim()) } : {}),
          reportOnly: v['report-only'] === true,
        });
        return;
      }
      const { runBench } = await import('./bench/bench.js');
      await runBench({
        out: v.out,
        steps: v.steps ? Number(v.steps) : undefined,
        quick: v.quick === true,
        model: v.model,
        skipLuc: v['skip-luc'] === true,
      });
      return;
    }
    case 'bench-scale-run': {
      // Internal: one scale-bench task in a fresh process (see bench/scale.ts).
      favourMemoryOverSpeed();
      await initBackend({ quiet });
      const { scaleRun } = await import('./bench/scale.js');
      const r = await scaleRun(JSON.parse(readFileSync(need(v, 'task'), 'utf8')));
      process.stdout.write(`${JSON.stringify(r)}
`);
      return;
    }
    case 'bench-guidelines-run': {
      // Internal: one guidelines-bench run in a fresh process (see bench/guidelines.ts).
      favourMemoryOverSpeed();
      await initBackend({ quiet });
      const { guidelinesRun } = await import('./bench/guidelines.js');
      const r = await guidelinesRun(JSON.parse(readFileSync(need(v, 'task'), 'utf8')));
      process.stdout.write(`${JSON.stringify(r)}\n`);
      return;
    }
    case 'bench-run': {
      // Internal: one benchmark run in a fresh process (see bench/bench.ts), with the heap policy tuning jobs run under.
      favourMemoryOverSpeed();
      await initBackend({ quiet });
      const { benchRun } = await import('./bench/bench.js');
      const r = await benchRun(JSON.parse(readFileSync(need(v, 'spec'), 'utf8')));
      process.stdout.write(`${JSON.stringify(r)}\n`);
      return;
    }
    default:
      throw new UsageError(`unknown command ${JSON.stringify(cmd)}`);
  }
}

/** Runs `data <which>` (but spam-prompt) and returns what the builder reports. */
async function buildData(which: string | undefined, v: Record<string, string | boolean | undefined>): Promise<unknown> {
  if (which === undefined || !DATASETS.includes(which)) {
    const guess = which === undefined ? null : nearest(which, [...DATASETS, 'spam-prompt']);
    const what =
      which === undefined ? 'which dataset?' : `unknown dataset ${JSON.stringify(which)}${guess ? ` (did you mean ${guess}?)` : ''};`;
    throw new UsageError(`data: ${what} the datasets are ${DATASETS.join(', ')} and spam-prompt`);
  }
  const outDir = need(v, 'out');
  switch (which) {
    case 'spam-assassin':
      return buildSpamAssassin({ outDir, bodyChars: numOpt(v, 'body-chars', 400) });
    case 'spam-assassin-3':
      return buildSpamAssassin3({ outDir, bodyChars: numOpt(v, 'body-chars', 400) });
    case 'first-names':
      return buildFirstNames({ outDir });
    case 'cmudict': {
      const modelDir = typeof v['tokenizer-model'] === 'string' ? v['tokenizer-model'] : join(REPO, 'models', 'edgetune-tiny-llama');
      const tokenizer = existsSync(join(modelDir, 'tokenizer.json')) ? await loadTokenizer(modelDir) : undefined;
      return buildCmudict({
        outDir,
        sizes: {
          train: numOpt(v, 'train', CMUDICT_SIZES.train),
          validation: numOpt(v, 'validation', CMUDICT_SIZES.validation),
          test: numOpt(v, 'test', CMUDICT_SIZES.test),
        },
        stress: v.stress === true,
        tokenizer,
        tokenizerName: tokenizer ? basename(resolve(modelDir)) : undefined,
      });
    }
    case 'corpus-continuation':
      return buildCorpusContinuation({ outDir });
    default:
      throw new UsageError(`data: the datasets are ${DATASETS.join(', ')} and spam-prompt`);
  }
}

runCli(
  'edgetune-lab',
  USAGE,
  () => main(process.argv.slice(2)),
  () => {
    tf.disposeVariables();
  },
);
