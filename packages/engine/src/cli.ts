#!/usr/bin/env node
/**
 * `edgetune-engine`: the engine's command line. Results go to stdout (JSON where a program reads them),
 * progress and logs to stderr.
 */
import { parseArgs } from 'node:util';
import { readFileSync, existsSync } from 'node:fs';
import { join } from 'node:path';
import * as tf from '@tensorflow/tfjs';
import { initBackend } from './backend/index.js';
import { LlamaModel } from './model/llama.js';
import { applyPeftAdapter } from './model/lora.js';
import { loadTokenizer } from './tokenizer/index.js';
import { runTuning, loadExamples } from './tune/run.js';
import { loadEdgeAdapter, plainPath } from './tune/artifacts.js';
import { evaluatePaths, chooseRule, type EvalReport } from './infer/evaluate.js';
import { classify, generate } from './infer/generate.js';
import { VOTING_RULES, type VotingRule, type ExitPath } from './infer/voting.js';
import { buildSpamAssassin, spamPromptFromEmail, SPAM_COMPLETION } from './data/spam-assassin.js';
import { buildCorpusContinuation } from './data/corpus-continuation.js';
import { encodePrompt } from './data/encode.js';
import { pretrain, DEFAULT_PRETRAIN } from './pretrain/pretrain.js';
import { ProgressBar } from './util/progress.js';

const USAGE = `usage: edgetune-engine <command> [options]

commands:
  pretrain --out DIR [--steps N --time-budget-min M --hidden 192 --layers 8 --heads 4 --kv-heads 2 --ffn 512 --vocab 4096 --seq 256 --batch 8 --lr 3e-3 --seed 1234 --dtype F32|F16|BF16
            --tokenizer-chars 20000000 --eval-tokens 65536]
  data spam-assassin --out DIR [--body-chars 400]
  data corpus-continuation --out DIR               (text continuation from the pretraining corpus: recovery tuning)
  tune --model DIR --train FILE --out DIR [--val FILE --steps 200 --lr 1e-3 --batch 8 --grad-accum 1 --max-length 256
       --mode edge_llm|vanilla --schedule sequential|round_robin|random --prefix backbone|adapted --exit-layers 1,3,5,7 --lora-r 8
       --lora-alpha 16 --lora-dropout 0.05 --head-rank 0 --warmup 10 --lr-schedule cosine|linear|constant --weight-decay 0 --max-grad-norm 1 --seed 42
       --checkpoint-every N --resume]
       LUC: [--sparsity 0.5 --avg-bits 6 --prune wanda|sparsegpt --sparsity-rule owl|inverse|uniform
       --bits-rule budgeted|mean|uniform --group-size 0 --activation-bits 8]
       planner: [--memory-budget-mb M --tensor-budget-mb M --threads N]  (fit micro-batch, windows and prefix caching
       to the device: RSS within the memory budget, TF.js tensors within the tensor budget)
  plan --model DIR [--memory-budget-mb M --tensor-budget-mb M --threads N --batch 8 --max-length 256 --steps 200
       --examples N --mode edge_llm|vanilla --schedule S --prefix backbone|adapted --lora-r 8 --head-rank 0 --avg-bits 16]   (prints the execution plan and its forecast)
  eval --model DIR --data FILE [--adapter DIR] [--json]
  infer --model DIR [--adapter DIR] (--prompt TEXT | --prompt-file FILE | --email RFC822-FILE) [--labels " spam, ham"]
        [--rule max|mean|confidence|weighted]   (--email builds the spam-task prompt and scores " spam"/" ham")
        [--max-new-tokens 32 --temperature 0]
  logits --model DIR --ids FILE [--adapter DIR]     (FILE: {"input_ids": [[...]]}; prints {"logits": [...]})
  bench [--out FILE] [--steps N] [--quick] [--model DIR] [--skip-luc]
  backend                                          (prints the backend in use)
  device [--memory-budget-mb M --threads N]        (prints this machine's device profile as the planner sees it:
                                                    memory budget, threads, backend, measured SGEMM GFLOP/s)

environment: EDGETUNE_BACKEND=wasm|cpu|tensorflow, EDGETUNE_NATIVE=0 (disable the OpenBLAS addon)`;

class UsageError extends Error {}

function need(v: Record<string, unknown>, k: string): string {
  const x = v[k];
  if (typeof x !== 'string' || !x) throw new UsageError(`--${k} is required`);
  return x;
}
function numOpt(v: Record<string, unknown>, k: string, d: number): number {
  const x = v[k];
  if (x === undefined) return d;
  const n = Number(x);
  if (!Number.isFinite(n)) throw new UsageError(`--${k} must be a number, got ${JSON.stringify(x)}`);
  return n;
}
function pick<T extends string>(v: Record<string, unknown>, k: string, allowed: readonly T[], d: T): T {
  const x = v[k] ?? d;
  if (!allowed.includes(x as T)) throw new UsageError(`--${k} must be one of ${allowed.join(', ')}, got ${JSON.stringify(x)}`);
  return x as T;
}

/** The device budgets given on the command line (--memory-budget-mb, --tensor-budget-mb, --threads); MiB -> bytes. */
function deviceFlags(v: Record<string, unknown>): { memoryBudgetBytes?: number; tensorBudgetBytes?: number; threads?: number } {
  return {
    ...(v['memory-budget-mb'] !== undefined ? { memoryBudgetBytes: numOpt(v, 'memory-budget-mb', 0) * 2 ** 20 } : {}),
    ...(v['tensor-budget-mb'] !== undefined ? { tensorBudgetBytes: numOpt(v, 'tensor-budget-mb', 0) * 2 ** 20 } : {}),
    ...(v.threads !== undefined ? { threads: numOpt(v, 'threads', 2) } : {}),
  };
}

/** Loads a model and, optionally, an adapter folder: an edgetune tuning output (voted) or a PEFT folder. */
function loadWithAdapter(modelDir: string, adapter?: string): { model: LlamaModel; paths: ExitPath[]; rule: VotingRule | null } {
  const model = LlamaModel.load(modelDir);
  if (!adapter) return { model, paths: [plainPath(model)], rule: null };
  if (existsSync(join(adapter, 'edge_llm.json'))) {
    const { paths, manifest } = loadEdgeAdapter(model, adapter);
    return { model, paths, rule: manifest.voting_rule };
  }
  applyPeftAdapter(model, adapter);
  return { model, paths: [plainPath(model)], rule: null };
}

function printEval(r: EvalReport, rule: VotingRule | null): void {
  const pct = (x: number | null) => (x === null ? '   n/a' : `${(x * 100).toFixed(2).padStart(6)}%`);
  const lines = [`examples ${r.examples}, completion tokens ${r.tokens}`, 'path            accuracy  perplexity'];
  for (const e of r.perExit) lines.push(`exit ${String(e.layer).padEnd(10)} ${pct(e.accuracy)}  ${e.perplexity.toFixed(3).padStart(10)}`);
  if (r.perExit.length > 1) for (const k of VOTING_RULES) lines.push(`vote ${k.padEnd(10)} ${pct(r.voted[k].accuracy)}  ${r.voted[k].perplexity.toFixed(3).padStart(10)}${k === rule ? '  <- chosen' : ''}`);
  if (r.perExit.length > 1) lines.push(`weighted vote's exit weights: ${r.exitWeights.map((w, k) => `exit ${r.perExit[k].layer} ${w.toFixed(3)}`).join(', ')}`);
  process.stdout.write(lines.join('\n') + '\n');
}

async function main(argv: string[]): Promise<void> {
  const [cmd, ...rest] = argv;
  if (!cmd || cmd === '--help' || cmd === '-h' || cmd === 'help') { process.stdout.write(USAGE + '\n'); return; }
  const { values: v, positionals } = parseArgs({
    args: rest, allowPositionals: true, strict: true,
    options: {
      out: { type: 'string' }, model: { type: 'string' }, train: { type: 'string' }, val: { type: 'string' }, data: { type: 'string' },
      adapter: { type: 'string' }, ids: { type: 'string' }, prompt: { type: 'string' }, 'prompt-file': { type: 'string' }, email: { type: 'string' },
      labels: { type: 'string' }, rule: { type: 'string' }, 'max-new-tokens': { type: 'string' }, temperature: { type: 'string' },
      steps: { type: 'string' }, lr: { type: 'string' }, batch: { type: 'string' }, 'grad-accum': { type: 'string' },
      'max-length': { type: 'string' }, mode: { type: 'string' }, schedule: { type: 'string' }, prefix: { type: 'string' }, 'exit-layers': { type: 'string' },
      'lora-r': { type: 'string' }, 'lora-alpha': { type: 'string' }, 'lora-dropout': { type: 'string' }, warmup: { type: 'string' }, 'head-rank': { type: 'string' },
      'lr-schedule': { type: 'string' }, 'weight-decay': { type: 'string' }, 'max-grad-norm': { type: 'string' }, seed: { type: 'string' },
      'checkpoint-every': { type: 'string' }, resume: { type: 'boolean' }, json: { type: 'boolean' }, quick: { type: 'boolean' },
      'body-chars': { type: 'string' }, hidden: { type: 'string' }, layers: { type: 'string' }, heads: { type: 'string' },
      'kv-heads': { type: 'string' }, ffn: { type: 'string' }, vocab: { type: 'string' }, seq: { type: 'string' },
      'time-budget-min': { type: 'string' }, dtype: { type: 'string' }, sparsity: { type: 'string' }, 'avg-bits': { type: 'string' },
      prune: { type: 'string' }, 'sparsity-rule': { type: 'string' }, 'bits-rule': { type: 'string' }, 'group-size': { type: 'string' }, 'activation-bits': { type: 'string' },
      'memory-budget-mb': { type: 'string' }, 'tensor-budget-mb': { type: 'string' }, spec: { type: 'string' }, 'skip-luc': { type: 'boolean' }, threads: { type: 'string' }, examples: { type: 'string' }, 'tokenizer-chars': { type: 'string' }, 'eval-tokens': { type: 'string' },
    },
  });
  const quiet = cmd === 'logits';
  const info = await initBackend({ quiet });
  switch (cmd) {
    case 'backend':
      process.stdout.write(JSON.stringify(info, null, 2) + '\n');
      return;
    case 'data': {
      const which = positionals[0];
      if (which !== 'spam-assassin' && which !== 'corpus-continuation') throw new UsageError('data: the datasets are spam-assassin and corpus-continuation');
      const r = which === 'spam-assassin' ? await buildSpamAssassin({ outDir: need(v, 'out'), bodyChars: numOpt(v, 'body-chars', 400) })
        : await buildCorpusContinuation({ outDir: need(v, 'out') });
      process.stdout.write(JSON.stringify(r, null, 2) + '\n');
      return;
    }
    case 'pretrain': {
      const out = need(v, 'out');
      const steps = numOpt(v, 'steps', DEFAULT_PRETRAIN.steps);
      const bar = new ProgressBar('pretrain', steps);
      const r = await pretrain({
        ...DEFAULT_PRETRAIN, outDir: out, steps,
        hiddenSize: numOpt(v, 'hidden', DEFAULT_PRETRAIN.hiddenSize), layers: numOpt(v, 'layers', DEFAULT_PRETRAIN.layers),
        heads: numOpt(v, 'heads', DEFAULT_PRETRAIN.heads), kvHeads: numOpt(v, 'kv-heads', DEFAULT_PRETRAIN.kvHeads),
        intermediateSize: numOpt(v, 'ffn', DEFAULT_PRETRAIN.intermediateSize), vocabSize: numOpt(v, 'vocab', DEFAULT_PRETRAIN.vocabSize),
        seq: numOpt(v, 'seq', DEFAULT_PRETRAIN.seq), batch: numOpt(v, 'batch', DEFAULT_PRETRAIN.batch), lr: numOpt(v, 'lr', DEFAULT_PRETRAIN.lr),
        seed: numOpt(v, 'seed', DEFAULT_PRETRAIN.seed), timeBudgetMs: numOpt(v, 'time-budget-min', 0) * 60000,
        tokenizerChars: numOpt(v, 'tokenizer-chars', DEFAULT_PRETRAIN.tokenizerChars), evalTokens: numOpt(v, 'eval-tokens', DEFAULT_PRETRAIN.evalTokens),
        saveDtype: pick(v, 'dtype', ['F32', 'F16', 'BF16'] as const, DEFAULT_PRETRAIN.saveDtype),
        command: `npx edgetune-engine ${argv.join(' ')}`,
        onStep: (s) => bar.update(s.step, { loss: s.loss, tps: s.tokensPerSec, etaMs: s.etaMs }),
        log: (s) => { bar.clear(); process.stderr.write(s + '\n'); },
      });
      bar.done();
      process.stdout.write(JSON.stringify(r, null, 2) + '\n');
      return;
    }
    case 'tune': {
      const steps = numOpt(v, 'steps', 200);
      const bar = new ProgressBar('tune', steps);
      const exitLayers = typeof v['exit-layers'] === 'string' ? v['exit-layers'].split(',').map((x) => Number(x.trim())) : undefined;
      const r = await runTuning({
        modelDir: need(v, 'model'), trainFile: need(v, 'train'), validationFile: v.val as string | undefined, outDir: need(v, 'out'),
        maxLength: numOpt(v, 'max-length', 256), checkpointEvery: numOpt(v, 'checkpoint-every', 0), resume: v.resume === true,
        device: v['memory-budget-mb'] !== undefined || v['tensor-budget-mb'] !== undefined ? deviceFlags(v) : undefined,
        compression: v.sparsity !== undefined || v['avg-bits'] !== undefined ? {
          targetSparsity: numOpt(v, 'sparsity', 0), avgBits: numOpt(v, 'avg-bits', 16),
          method: pick(v, 'prune', ['wanda', 'sparsegpt'] as const, 'wanda'),
          sparsityRule: pick(v, 'sparsity-rule', ['inverse', 'owl', 'uniform'] as const, 'owl'),
          bitsRule: pick(v, 'bits-rule', ['budgeted', 'mean', 'uniform'] as const, 'budgeted'),
          groupSize: numOpt(v, 'group-size', 0),
          activationBits: v['activation-bits'] !== undefined ? numOpt(v, 'activation-bits', 16) : undefined,
        } : undefined,
        tune: {
          mode: pick(v, 'mode', ['edge_llm', 'vanilla'] as const, 'edge_llm'),
          schedule: pick(v, 'schedule', ['sequential', 'round_robin', 'random'] as const, 'sequential'),
          exitLayers, steps, lr: numOpt(v, 'lr', 1e-3), microBatch: numOpt(v, 'batch', 8), gradAccum: numOpt(v, 'grad-accum', 1),
          warmupSteps: numOpt(v, 'warmup', 10), lrSchedule: pick(v, 'lr-schedule', ['cosine', 'linear', 'constant'] as const, 'cosine'),
          weightDecay: numOpt(v, 'weight-decay', 0), maxGradNorm: numOpt(v, 'max-grad-norm', 1), seed: numOpt(v, 'seed', 42),
          lora: { r: numOpt(v, 'lora-r', 8), alpha: numOpt(v, 'lora-alpha', 16), dropout: numOpt(v, 'lora-dropout', 0.05) },
          headRank: numOpt(v, 'head-rank', 0),
          prefix: pick(v, 'prefix', ['backbone', 'adapted'] as const, 'backbone'),
        },
        onStep: (s) => bar.update(s.step, { loss: s.loss, tps: s.tokensPerSec, etaMs: s.etaMs, extra: `exit ${s.exitLayer}` }),
        log: (s) => { bar.clear(); process.stderr.write(s + '\n'); },
      });
      bar.done();
      if (r.validation) printEval(r.validation, r.votingRule);
      if (r.plan) process.stderr.write(`plan forecast vs measured: TF.js peak ${(r.plan.plan.forecast.peakTfBytes / 2 ** 20).toFixed(0)} vs ${(r.plan.measured.peakTfBytes / 2 ** 20).toFixed(0)} MiB, step ${r.plan.plan.forecast.stepMs.toFixed(0)} vs ${r.plan.measured.stepMs.toFixed(0)} ms\n`);
      process.stderr.write(`wrote ${r.outDir} (${r.steps} steps, ${(r.trainMs / 1000).toFixed(1)} s training, ${Math.round(r.tokensPerSec)} tokens/s, peak RSS ${(r.peakRssBytes / 2 ** 20).toFixed(0)} MiB)\n`);
      return;
    }
    case 'eval': {
      const modelDir = need(v, 'model');
      const { model, paths, rule } = loadWithAdapter(modelDir, v.adapter as string | undefined);
      const tok = await loadTokenizer(modelDir);
      const meta = v.adapter && existsSync(join(v.adapter as string, 'edge_llm.json')) ? JSON.parse(readFileSync(join(v.adapter as string, 'edge_llm.json'), 'utf8')) : {};
      const { examples } = await loadExamples(need(v, 'data'), tok, Number(meta.max_length ?? 256));
      const r = evaluatePaths(model, paths, examples, { padId: tok.padId ?? 0 });
      const chosen = rule ?? (paths.length > 1 ? chooseRule(r) : null);
      if (v.json) process.stdout.write(JSON.stringify({ ...r, votingRule: chosen }, null, 2) + '\n');
      else printEval(r, chosen);
      return;
    }
    case 'infer': {
      const modelDir = need(v, 'model');
      const { model, paths, rule: saved } = loadWithAdapter(modelDir, v.adapter as string | undefined);
      const rule = v.rule ? pick(v, 'rule', VOTING_RULES, 'max') : saved ?? 'max';
      const tok = await loadTokenizer(modelDir);
      const email = typeof v.email === 'string' ? readFileSync(v.email, 'utf8') : null;
      const text = typeof v.prompt === 'string' ? v.prompt : typeof v['prompt-file'] === 'string' ? readFileSync(v['prompt-file'], 'utf8') : email !== null ? spamPromptFromEmail(email) : null;
      if (text === null) throw new UsageError('--prompt, --prompt-file or --email is required');
      const ids = encodePrompt(tok, text);
      const labelList = typeof v.labels === 'string' ? v.labels : email !== null ? `${SPAM_COMPLETION.spam},${SPAM_COMPLETION.ham}` : null;
      if (labelList !== null) {
        const labels = labelList.split(',');
        const first = labels.map((l) => tok.encode(l, { addSpecialTokens: false })[0]);
        const [res] = classify(model, paths, [ids], first, rule);
        process.stdout.write(JSON.stringify({ label: labels[res.label].trim(), probabilities: Object.fromEntries(labels.map((l, i) => [l.trim(), res.probs[i]])), per_exit: res.perExit.map((i, k) => ({ layer: paths[k].layer, label: labels[i].trim() })), rule }, null, 2) + '\n');
      } else {
        const outIds = generate(model, paths, ids, { maxNewTokens: numOpt(v, 'max-new-tokens', 32), rule, temperature: numOpt(v, 'temperature', 0), stopIds: tok.eosId !== null ? [tok.eosId] : [] });
        process.stdout.write(JSON.stringify({ text: tok.decode(outIds, { skipSpecialTokens: true }), tokens: outIds.length, rule }) + '\n');
      }
      return;
    }
    case 'logits': {
      const { model } = loadWithAdapter(need(v, 'model'), v.adapter as string | undefined);
      const input = JSON.parse(readFileSync(need(v, 'ids'), 'utf8')) as { input_ids?: number[][] };
      const ids = input.input_ids;
      if (!Array.isArray(ids) || !ids.length || !ids.every((r) => Array.isArray(r) && r.length === ids[0].length && r.every((x) => Number.isInteger(x) && x >= 0 && x < model.config.vocabSize))) {
        throw new UsageError(`--ids: input_ids must be a non-empty [batch][seq] array of integers in [0, ${model.config.vocabSize})`);
      }
      const { logits } = model.forward(ids, { lora: true });
      process.stdout.write(JSON.stringify({ logits: logits.arraySync() }) + '\n');
      return;
    }
    case 'device': {
      const { plannerSgemmPeak } = await import('./backend/index.js');
      const { localDevice } = await import('./tune/run.js');
      const { measureStepFactor } = await import('./schedule/speed.js');
      const peak = plannerSgemmPeak(1);
      const dev = localDevice({ ...deviceFlags(v), matmulGflops: peak.gflops });
      const reference = await measureStepFactor(dev);
      process.stdout.write(JSON.stringify({ ...dev, stepTimeFactor: reference.factor, matmul: `${info.matmul}(${info.blasThreads} threads)`, sgemm: peak, reference }, null, 2) + '\n');
      return;
    }
    case 'plan': {
      const { plan } = await import('./schedule/planner.js');
      const { loadLlamaConfig } = await import('./model/config.js');
      const { measuredDevice } = await import('./tune/run.js');
      const cfg = loadLlamaConfig(need(v, 'model'));
      const bits = numOpt(v, 'avg-bits', 16);
      const dev = await measuredDevice(deviceFlags(v));
      const p = plan({
        model: cfg, mode: pick(v, 'mode', ['edge_llm', 'vanilla'] as const, 'edge_llm'), loraR: numOpt(v, 'lora-r', 8), headRank: numOpt(v, 'head-rank', 0),
        schedule: pick(v, 'schedule', ['sequential', 'round_robin', 'random'] as const, 'sequential'), prefix: pick(v, 'prefix', ['backbone', 'adapted'] as const, 'backbone'),
        batchSize: numOpt(v, 'batch', 8), seqLen: numOpt(v, 'max-length', 256), steps: numOpt(v, 'steps', 200),
        trainExamples: numOpt(v, 'examples', 1000), policy: bits < 16 ? { bits: new Array(cfg.numHiddenLayers).fill(bits), sparsity: new Array(cfg.numHiddenLayers).fill(numOpt(v, 'sparsity', 0)) } : null,
      }, dev);
      process.stdout.write(JSON.stringify(p, null, 2) + '\n');
      return;
    }
    case 'bench': {
      const { runBench } = await import('./bench/bench.js');
      await runBench({ out: v.out as string | undefined, steps: v.steps ? Number(v.steps) : undefined, quick: v.quick === true, model: v.model as string | undefined, skipLuc: v['skip-luc'] === true });
      return;
    }
    case 'bench-run': {
      // Internal: one benchmark run in a fresh process (see bench/bench.ts).
      const { benchRun } = await import('./bench/bench.js');
      const r = await benchRun(JSON.parse(readFileSync(need(v, 'spec'), 'utf8')));
      process.stdout.write(JSON.stringify(r) + '\n');
      return;
    }
    default:
      throw new UsageError(`unknown command ${JSON.stringify(cmd)}`);
  }
}

main(process.argv.slice(2)).then(
  () => { tf.disposeVariables(); },
  (e: Error) => {
    if (e instanceof UsageError || (e as { code?: string }).code === 'ERR_PARSE_ARGS_UNKNOWN_OPTION') {
      process.stderr.write(`edgetune-engine: ${e.message}\n\n${USAGE}\n`);
      process.exit(2);
    }
    process.stderr.write(`edgetune-engine: ${e.name === 'Error' ? '' : e.name + ': '}${e.message}\n`);
    if (process.env.EDGETUNE_DEBUG) process.stderr.write(`${e.stack}\n`);
    process.exit(1);
  },
);
