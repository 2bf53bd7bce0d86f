#!/usr/bin/env node
/**
 * `edgetune-lab`: what makes and measures, not what serves. Builds the datasets, pretrains the default
 * base model and runs the benchmarks. Results go to stdout (JSON), progress and logs to stderr.
 */
import { parseArgs } from 'node:util';
import { readFileSync } from 'node:fs';
import * as tf from '@tensorflow/tfjs-core';
import { favourMemoryOverSpeed, initBackend, need, numOpt, pick, ProgressBar, runCli, UsageError } from '@edgetune/engine';
import { buildSpamAssassin, spamPromptFromEmail } from './data/spam-assassin.js';
import { buildCorpusContinuation } from './data/corpus-continuation.js';
import { pretrain, DEFAULT_PRETRAIN } from './pretrain/pretrain.js';

const USAGE = `usage: edgetune-lab <command> [options]

commands:
  data spam-assassin --out DIR [--body-chars 400]  (SpamAssassin -> train/validation/test JSONL)
  data corpus-continuation --out DIR               (text continuation from the pretraining corpus: recovery tuning)
  data spam-prompt --email RFC822-FILE             (prints the spam task's prompt for one mail: save it and run
                                                    edgetune-engine infer --prompt-file FILE --labels " spam, ham")
  pretrain --out DIR [--steps N --time-budget-min M --hidden 192 --layers 8 --heads 4 --kv-heads 2 --ffn 512 --vocab 4096 --seq 256 --batch 8 --lr 3e-3 --seed 1234 --dtype F32|F16|BF16
            --tokenizer-chars 20000000 --eval-tokens 65536]
  bench [--out FILE] [--steps N] [--quick] [--model DIR] [--skip-luc]
  bench --scale [--models smollm2-135m,...] [--models-dir DIR] [--steps 10] [--out FILE]
                                                   (random models of real configurations: load, generation, Edge-LLM
                                                    + 4-bit LUC vs Edge-LLM and vanilla LoRA on BF16; see bench/scale.ts)

environment: EDGETUNE_BACKEND=wasm|cpu|tensorflow, EDGETUNE_NATIVE=0 (disable the OpenBLAS addon)`;

async function main(argv: string[]): Promise<void> {
  const [cmd, ...rest] = argv;
  if (!cmd || cmd === '--help' || cmd === '-h' || cmd === 'help') {
    process.stdout.write(`${USAGE}\n`);
    return;
  }
  const { values: v, positionals } = parseArgs({
    args: rest,
    allowPositionals: true,
    strict: true,
    options: {
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
      models: { type: 'string' },
      'models-dir': { type: 'string' },
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
    },
  });
  switch (cmd) {
    case 'data': {
      const which = positionals[0];
      if (which === 'spam-prompt') {
        process.stdout.write(await spamPromptFromEmail(readFileSync(need(v, 'email'))));
        return;
      }
      if (which !== 'spam-assassin' && which !== 'corpus-continuation')
        throw new UsageError('data: the datasets are spam-assassin, corpus-continuation and spam-prompt');
      const r =
        which === 'spam-assassin'
          ? await buildSpamAssassin({ outDir: need(v, 'out'), bodyChars: numOpt(v, 'body-chars', 400) })
          : await buildCorpusContinuation({ outDir: need(v, 'out') });
      process.stdout.write(`${JSON.stringify(r, null, 2)}\n`);
      return;
    }
    case 'pretrain': {
      favourMemoryOverSpeed();
      await initBackend();
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
      await initBackend();
      if (v.scale) {
        const { runScaleBench, SCALE_MODELS } = await import('./bench/scale.js');
        const models = v.models?.split(',').map((m) => m.trim());
        for (const m of models ?? [])
          if (!(SCALE_MODELS as readonly string[]).includes(m))
            throw new UsageError(`--models: unknown ${m} (one of ${SCALE_MODELS.join(', ')})`);
        await runScaleBench({ out: v.out, models, modelsDir: v['models-dir'], steps: v.steps ? Number(v.steps) : undefined });
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
      await initBackend();
      const { scaleRun } = await import('./bench/scale.js');
      const r = await scaleRun(JSON.parse(readFileSync(need(v, 'task'), 'utf8')));
      process.stdout.write(`${JSON.stringify(r)}
`);
      return;
    }
    case 'bench-run': {
      // Internal: one benchmark run in a fresh process (see bench/bench.ts), with the heap policy tuning jobs run under.
      favourMemoryOverSpeed();
      await initBackend();
      const { benchRun } = await import('./bench/bench.js');
      const r = await benchRun(JSON.parse(readFileSync(need(v, 'spec'), 'utf8')));
      process.stdout.write(`${JSON.stringify(r)}\n`);
      return;
    }
    default:
      throw new UsageError(`unknown command ${JSON.stringify(cmd)}`);
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
