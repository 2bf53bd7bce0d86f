#!/usr/bin/env node
/**
 * `edgetune-engine`: the engine's command line. Results go to stdout (JSON where a program reads them),
 * progress and logs to stderr.
 */
import { readFileSync, existsSync } from 'node:fs';
import { join } from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import { initBackend, matmulPath } from './backend/index.js';
import { loadTokenizer } from './tokenizer/index.js';
import { runTuning, loadExamples, type TuneJobOptions } from './tune/run.js';
import { evaluatePaths, chooseRule, type EvalReport } from './infer/evaluate.js';
import { loadWithAdapter } from './infer/load.js';
import { classify, generate } from './infer/generate.js';
import { VOTING_RULES, type VotingRule } from './infer/voting.js';
import { encodePrompt } from './data/encode.js';
import { augmentPrompt, DEFAULT_RAG } from './retrieve/index.js';
import { ProgressBar } from '@edgetune/core';
import { favourMemoryOverSpeed } from './util/v8-heap.js';
import { need, numOpt, parseFlags, pick, runCli, UsageError, unknownCommand } from '@edgetune/core';

const USAGE = `usage: edgetune-engine <command> [options]

commands:
  tune --model DIR --train FILE --out DIR [--val FILE --steps 200 --lr 1e-3 --batch 8 --grad-accum 1 --max-length 256
       --mode edge_llm|vanilla|none --schedule sequential|round_robin|random --prefix backbone|adapted --exit-layers 1,3,5,7 --lora-r 8
       --lora-alpha 16 --lora-dropout 0.05 --head-rank 0 --warmup 10 --lr-schedule cosine|linear|constant --weight-decay 0 --max-grad-norm 1 --seed 42
       --checkpoint-every N --resume]
       RAG: [--rag-k 2 --rag-context-share 0.6]  (BM25 over the training prompts: each prompt gets its k best training
       examples before it, its own excluded, within share x max-length tokens; --mode none trains nothing: base model + RAG)
       validation: [--eval-every N --early-stopping-patience N --early-stopping-min-delta 0 --time-budget-s S]
       (evaluate on --val every N steps and keep the best point's weights; stop after N evaluations without an
       improvement of the voted accuracy (loss for free-form data) of at least D, or once tuning has taken S seconds)
       LUC: [--sparsity 0.5 --avg-bits 6 --prune wanda|sparsegpt --sparsity-rule owl|inverse|uniform
       --bits-rule budgeted|mean|uniform --group-size 0 --activation-bits 8]
       planner: [--memory-budget-mb M --tensor-budget-mb M --threads N]  (fit micro-batch, windows and prefix caching
       to the device: RSS within the memory budget, TF.js tensors within the tensor budget)
  plan --model DIR [--memory-budget-mb M --tensor-budget-mb M --threads N --batch 8 --max-length 256 --steps 200
       --examples N --mode edge_llm|vanilla --schedule S --prefix backbone|adapted --exit-layers 1,3,5,7 --lora-r 8 --head-rank 0
       --avg-bits 16 --stored-dtype F32|F16|BF16 --time-budget-s S --json]
       (prints the execution plan for this machine: memory forecast against the budget, time, exits and windows,
       per-layer storage, and what does not fit and why; --json: the API's plan object, snake_case. The stored dtype
       defaults to the model's safetensors headers', F32 without weights; the wasm backend's heap ceiling applies)
  eval --model DIR --data FILE [--adapter DIR] [--json]     (an adapter with rag_index.json augments the prompts)
       [--generate]  (also exact match of the greedy voted generation, per exit and voted: generation tasks)
  infer --model DIR [--adapter DIR] (--prompt TEXT | --prompt-file FILE) [--labels " spam, ham"]  (RAG as eval)
        [--rule max|mean|confidence|weighted]
        [--max-new-tokens 32 --temperature 0]
  logits --model DIR --ids FILE [--adapter DIR]     (FILE: {"input_ids": [[...]]}; prints {"logits": [...]})
  backend                                          (prints the backend in use)
  synth-model --like NAME --out DIR [--seed 0 --layers N]   (random-weight model folder with the real config, shards
                                                    and tokenizer format of NAME: smollm2-135m, smollm2-360m, qwen2.5-0.5b,
                                                    tinyllama-1.1b, llama-3.2-1b, llama-3.2-3b; prints one JSON line)
  device [--memory-budget-mb M --threads N]        (prints this machine's device profile as the planner sees it:
                                                    memory budget, threads, backend, measured SGEMM GFLOP/s)
  advise --train FILE [--val FILE --memory-budget-mb M --threads N --time-budget-s 600 --models DIR,... --rules FILE --json]
       [--mode estimate|measure --out DIR --seed 42]
       (what to run on this machine for this data: every model folder (default: those under models/) x compression x
       method x LoRA rank, planned for this device and ranked by the metric the guidelines bench's fitted rules expect;
       candidates left out are listed with the reason. Rules: packages/core/src/advisor/rules.json, from
       \`npm run bench -- --guidelines\`. --mode measure (needs --val and --out) also tunes the top 3 candidates here
       as probes, each on a third of --time-budget-s with early stopping, in --out/probe-<i>, ranks them by their
       measured validation metric and writes --out/recommendation.json)

every command: [--verbose]  (also prints the backend line on stderr: backend, matmul path, kernels)
datasets, pretraining and benchmarks: edgetune-lab --help
environment: EDGETUNE_BACKEND=wasm|cpu|tensorflow, EDGETUNE_NATIVE=0 (disable the OpenBLAS addon)`;

/** The device budgets given on the command line (--memory-budget-mb, --tensor-budget-mb, --threads); MiB -> bytes. */
function deviceFlags(v: Record<string, unknown>): { memoryBudgetBytes?: number; tensorBudgetBytes?: number; threads?: number } {
  return {
    ...(v['memory-budget-mb'] !== undefined ? { memoryBudgetBytes: numOpt(v, 'memory-budget-mb', 0) * 2 ** 20 } : {}),
    ...(v['tensor-budget-mb'] !== undefined ? { tensorBudgetBytes: numOpt(v, 'tensor-budget-mb', 0) * 2 ** 20 } : {}),
    ...(v.threads !== undefined ? { threads: numOpt(v, 'threads', 2) } : {}),
  };
}

/** In-loop validation and stopping (--eval-every, --early-stopping-patience/-min-delta, --time-budget-s; seconds -> ms). */
function validationFlags(v: Record<string, unknown>): Pick<TuneJobOptions, 'evalEvery' | 'earlyStopping' | 'timeBudgetMs'> {
  if (v['early-stopping-min-delta'] !== undefined && v['early-stopping-patience'] === undefined)
    throw new UsageError('--early-stopping-min-delta needs --early-stopping-patience');
  return {
    ...(v['eval-every'] !== undefined ? { evalEvery: numOpt(v, 'eval-every', 0) } : {}),
    ...(v['early-stopping-patience'] !== undefined
      ? { earlyStopping: { patience: numOpt(v, 'early-stopping-patience', 0), minDelta: numOpt(v, 'early-stopping-min-delta', 0) } }
      : {}),
    ...(v['time-budget-s'] !== undefined ? { timeBudgetMs: numOpt(v, 'time-budget-s', 0) * 1000 } : {}),
  };
}

function printEval(r: EvalReport, rule: VotingRule | null): void {
  const pct = (x: number | null) => (x === null ? '   n/a' : `${(x * 100).toFixed(2).padStart(6)}%`);
  const lines = [`examples ${r.examples}, completion tokens ${r.tokens}`, 'path            accuracy  perplexity'];
  for (const e of r.perExit) lines.push(`exit ${String(e.layer).padEnd(10)} ${pct(e.accuracy)}  ${e.perplexity.toFixed(3).padStart(10)}`);
  if (r.perExit.length > 1)
    for (const k of VOTING_RULES)
      lines.push(
        `vote ${k.padEnd(10)} ${pct(r.voted[k].accuracy)}  ${r.voted[k].perplexity.toFixed(3).padStart(10)}${k === rule ? '  <- chosen' : ''}`,
      );
  if (r.exactMatch) {
    const em = r.exactMatch;
    const exits = em.perExit.map((x, k) => `exit ${r.perExit[k].layer} ${pct(x).trim()}`).join(', ');
    lines.push(
      `exact match (greedy, ${em.examples} examples): ${exits}${em.perExit.length > 1 ? `, vote ${em.rule} ${pct(em.voted).trim()}` : ''}`,
    );
  }
  if (r.perExit.length > 1)
    lines.push(`weighted vote's exit weights: ${r.exitWeights.map((w, k) => `exit ${r.perExit[k].layer} ${w.toFixed(3)}`).join(', ')}`);
  process.stdout.write(`${lines.join('\n')}\n`);
}

/** The JSON in `file`, given as option `flag`. @throws Error naming the option and the file when it cannot be read or parsed. */
function readJson(file: string, flag: string): unknown {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (e) {
    throw new Error(`${flag} ${file}: ${(e as NodeJS.ErrnoException).code === 'ENOENT' ? 'no such file' : (e as Error).message}`);
  }
  try {
    return JSON.parse(text);
  } catch (e) {
    throw new Error(`${flag} ${file}: not JSON (${(e as Error).message.replace(/\s+/g, ' ')})`);
  }
}

/**
 * Warnings for an `infer --labels` list, which classify() compares by first token: labels without the
 * leading space that a task's completions carry (" spam" is another token than "spam"), and labels that
 * share their first token. `first[i]` is labels[i]'s first token id; `firstToken` tokenizes another string.
 */
function labelWarnings(labels: string[], first: number[], firstToken: (s: string) => number | undefined): string[] {
  const out: string[] = [];
  const bare = labels.filter((l, i) => !/^\s/.test(l) && firstToken(` ${l}`) !== first[i]);
  if (bare.length) {
    const spaced = labels.map((l) => (/^\s/.test(l) ? l : ` ${l}`)).join(',');
    out.push(
      `--labels: ${bare.map((l) => JSON.stringify(l)).join(', ')} ${bare.length === 1 ? 'has' : 'have'} no leading space, ` +
        `but completions usually start with one and " ${bare[0]}" tokenizes differently: did you mean --labels ${JSON.stringify(spaced)}?`,
    );
  }
  for (let i = 0; i < labels.length; i++)
    for (let j = i + 1; j < labels.length; j++)
      if (first[i] === first[j])
        out.push(
          `--labels: ${JSON.stringify(labels[i])} and ${JSON.stringify(labels[j])} start with the same token: they cannot be told apart`,
        );
  return out;
}

/** The commands `main` runs (checked before the backend starts). */
const COMMANDS = ['backend', 'tune', 'eval', 'infer', 'logits', 'device', 'plan', 'synth-model', 'advise'];
/** `edgetune-lab`'s commands, which a user may look for here. */
const LAB_COMMANDS = ['data', 'pretrain', 'bench'];

async function main(argv: string[]): Promise<void> {
  const [cmd, ...rest] = argv;
  if (!cmd || cmd === '--help' || cmd === '-h' || cmd === 'help') {
    process.stdout.write(`${USAGE}\n`);
    return;
  }
  if (LAB_COMMANDS.includes(cmd))
    throw new UsageError(
      `unknown command ${JSON.stringify(cmd)}: datasets, pretraining and benchmarks are edgetune-lab's (edgetune-lab --help)`,
    );
  if (!COMMANDS.includes(cmd)) throw unknownCommand(cmd, COMMANDS);
  const { values: v } = parseFlags({
    args: rest,
    allowPositionals: false,
    strict: true,
    options: {
      help: { type: 'boolean', short: 'h' },
      verbose: { type: 'boolean' },
      out: { type: 'string' },
      model: { type: 'string' },
      train: { type: 'string' },
      val: { type: 'string' },
      data: { type: 'string' },
      adapter: { type: 'string' },
      ids: { type: 'string' },
      prompt: { type: 'string' },
      'prompt-file': { type: 'string' },
      labels: { type: 'string' },
      rule: { type: 'string' },
      'max-new-tokens': { type: 'string' },
      temperature: { type: 'string' },
      steps: { type: 'string' },
      lr: { type: 'string' },
      batch: { type: 'string' },
      'grad-accum': { type: 'string' },
      'max-length': { type: 'string' },
      mode: { type: 'string' },
      schedule: { type: 'string' },
      prefix: { type: 'string' },
      'exit-layers': { type: 'string' },
      'lora-r': { type: 'string' },
      'lora-alpha': { type: 'string' },
      'lora-dropout': { type: 'string' },
      warmup: { type: 'string' },
      'head-rank': { type: 'string' },
      'lr-schedule': { type: 'string' },
      'weight-decay': { type: 'string' },
      'max-grad-norm': { type: 'string' },
      seed: { type: 'string' },
      'checkpoint-every': { type: 'string' },
      'rag-k': { type: 'string' },
      'rag-context-share': { type: 'string' },
      'eval-every': { type: 'string' },
      'early-stopping-patience': { type: 'string' },
      'early-stopping-min-delta': { type: 'string' },
      'time-budget-s': { type: 'string' },
      resume: { type: 'boolean' },
      json: { type: 'boolean' },
      generate: { type: 'boolean' },
      sparsity: { type: 'string' },
      'avg-bits': { type: 'string' },
      prune: { type: 'string' },
      'sparsity-rule': { type: 'string' },
      'bits-rule': { type: 'string' },
      'group-size': { type: 'string' },
      'activation-bits': { type: 'string' },
      'memory-budget-mb': { type: 'string' },
      'tensor-budget-mb': { type: 'string' },
      'stored-dtype': { type: 'string' },
      threads: { type: 'string' },
      examples: { type: 'string' },
      like: { type: 'string' },
      layers: { type: 'string' },
      models: { type: 'string' },
      rules: { type: 'string' },
    },
  });
  if (v.help) {
    process.stdout.write(`${USAGE}\n`);
    return;
  }
  // the backend line (backend, matmul path, kernels) is a diagnostic: only with --verbose
  const info = await initBackend({ quiet: v.verbose !== true });
  switch (cmd) {
    case 'backend':
      process.stdout.write(`${JSON.stringify(info, null, 2)}\n`);
      return;
    case 'tune': {
      favourMemoryOverSpeed();
      const steps = numOpt(v, 'steps', 200);
      const bar = new ProgressBar('tune', steps);
      const exitLayers = typeof v['exit-layers'] === 'string' ? v['exit-layers'].split(',').map((x) => Number(x.trim())) : undefined;
      const r = await runTuning({
        modelDir: need(v, 'model'),
        trainFile: need(v, 'train'),
        validationFile: v.val as string | undefined,
        outDir: need(v, 'out'),
        maxLength: numOpt(v, 'max-length', 256),
        checkpointEvery: numOpt(v, 'checkpoint-every', 0),
        ...validationFlags(v),
        resume: v.resume === true,
        rag:
          v['rag-k'] !== undefined || v['rag-context-share'] !== undefined
            ? { k: numOpt(v, 'rag-k', DEFAULT_RAG.k), contextShare: numOpt(v, 'rag-context-share', DEFAULT_RAG.contextShare) }
            : undefined,
        device: v['memory-budget-mb'] !== undefined || v['tensor-budget-mb'] !== undefined ? deviceFlags(v) : undefined,
        compression:
          v.sparsity !== undefined || v['avg-bits'] !== undefined
            ? {
                targetSparsity: numOpt(v, 'sparsity', 0),
                avgBits: numOpt(v, 'avg-bits', 16),
                method: pick(v, 'prune', ['wanda', 'sparsegpt'] as const, 'wanda'),
                sparsityRule: pick(v, 'sparsity-rule', ['inverse', 'owl', 'uniform'] as const, 'owl'),
                bitsRule: pick(v, 'bits-rule', ['budgeted', 'mean', 'uniform'] as const, 'budgeted'),
                groupSize: numOpt(v, 'group-size', 0),
                activationBits: v['activation-bits'] !== undefined ? numOpt(v, 'activation-bits', 16) : undefined,
              }
            : undefined,
        tune: {
          mode: pick(v, 'mode', ['edge_llm', 'vanilla', 'none'] as const, 'edge_llm'),
          schedule: pick(v, 'schedule', ['sequential', 'round_robin', 'random'] as const, 'sequential'),
          exitLayers,
          steps,
          lr: numOpt(v, 'lr', 1e-3),
          microBatch: numOpt(v, 'batch', 8),
          gradAccum: numOpt(v, 'grad-accum', 1),
          warmupSteps: numOpt(v, 'warmup', 10),
          lrSchedule: pick(v, 'lr-schedule', ['cosine', 'linear', 'constant'] as const, 'cosine'),
          weightDecay: numOpt(v, 'weight-decay', 0),
          maxGradNorm: numOpt(v, 'max-grad-norm', 1),
          seed: numOpt(v, 'seed', 42),
          lora: { r: numOpt(v, 'lora-r', 8), alpha: numOpt(v, 'lora-alpha', 16), dropout: numOpt(v, 'lora-dropout', 0.05) },
          headRank: numOpt(v, 'head-rank', 0),
          prefix: pick(v, 'prefix', ['backbone', 'adapted'] as const, 'backbone'),
        },
        onStep: (s) => bar.update(s.step, { loss: s.loss, tps: s.tokensPerSec, etaMs: s.etaMs, extra: `exit ${s.exitLayer}` }),
        onEval: (p) => {
          bar.clear();
          const acc = p.accuracy === null ? '' : `accuracy ${(p.accuracy * 100).toFixed(2)}%, `;
          process.stderr.write(`validation step ${p.step}: ${acc}loss ${p.loss.toFixed(4)} (${(p.elapsedMs / 1000).toFixed(1)} s)\n`);
        },
        log: (s) => {
          bar.clear();
          process.stderr.write(`${s}\n`);
        },
      });
      bar.done();
      if (r.mode !== 'none')
        process.stderr.write(
          `stopped by ${r.stoppedBy.replace('_', ' ')} after ${r.steps} steps${r.bestStep === null ? '' : `; saved the best validation point's weights (step ${r.bestStep})`}\n`,
        );
      if (r.validation) printEval(r.validation, r.votingRule);
      if (r.plan)
        process.stderr.write(
          `plan forecast vs measured: TF.js peak ${(r.plan.plan.forecast.peakTfBytes / 2 ** 20).toFixed(0)} vs ${(r.plan.measured.peakTfBytes / 2 ** 20).toFixed(0)} MiB, step ${r.plan.plan.forecast.stepMs.toFixed(0)} vs ${r.plan.measured.stepMs.toFixed(0)} ms\n`,
        );
      process.stderr.write(
        `wrote ${r.outDir} (${r.steps} steps, ${(r.trainMs / 1000).toFixed(1)} s training, ${Math.round(r.tokensPerSec)} tokens/s, peak RSS ${(r.peakRssBytes / 2 ** 20).toFixed(0)} MiB)\n`,
      );
      return;
    }
    case 'eval': {
      const modelDir = need(v, 'model');
      const { model, paths, rule, rag } = loadWithAdapter(modelDir, v.adapter as string | undefined);
      const tok = await loadTokenizer(modelDir);
      const meta =
        v.adapter && existsSync(join(v.adapter as string, 'edge_llm.json'))
          ? JSON.parse(readFileSync(join(v.adapter as string, 'edge_llm.json'), 'utf8'))
          : {};
      const { examples } = await loadExamples(need(v, 'data'), tok, Number(meta.max_length ?? 256), { rag });
      const r = evaluatePaths(model, paths, examples, {
        padId: tok.padId ?? 0,
        generate: v.generate ? { tokenizer: tok, rule: rule ?? undefined } : undefined,
      });
      const chosen = rule ?? (paths.length > 1 ? chooseRule(r) : null);
      if (v.json) process.stdout.write(`${JSON.stringify({ ...r, votingRule: chosen }, null, 2)}\n`);
      else printEval(r, chosen);
      return;
    }
    case 'infer': {
      const modelDir = need(v, 'model');
      const { model, paths, rule: saved, rag } = loadWithAdapter(modelDir, v.adapter as string | undefined);
      const rule = v.rule ? pick(v, 'rule', VOTING_RULES, 'max') : (saved ?? 'max');
      const tok = await loadTokenizer(modelDir);
      const text =
        typeof v.prompt === 'string' ? v.prompt : typeof v['prompt-file'] === 'string' ? readFileSync(v['prompt-file'], 'utf8') : null;
      if (text === null) throw new UsageError('--prompt or --prompt-file is required');
      const ids = encodePrompt(tok, rag ? augmentPrompt(tok, rag, text) : text);
      const labelList = typeof v.labels === 'string' ? v.labels : null;
      if (labelList !== null) {
        const labels = labelList.split(',');
        const firstToken = (l: string) => tok.encode(l, { addSpecialTokens: false })[0];
        if (labels.some((l) => !l.trim())) throw new UsageError(`--labels: empty label in ${JSON.stringify(labelList)}`);
        const first = labels.map(firstToken);
        for (const w of labelWarnings(labels, first, firstToken)) process.stderr.write(`edgetune-engine: warning: ${w}\n`);
        const [res] = classify(model, paths, [ids], first, rule);
        process.stdout.write(
          `${JSON.stringify(
            {
              label: labels[res.label].trim(),
              probabilities: Object.fromEntries(labels.map((l, i) => [l.trim(), res.probs[i]])),
              per_exit: res.perExit.map((i, k) => ({ layer: paths[k].layer, label: labels[i].trim() })),
              rule,
            },
            null,
            2,
          )}\n`,
        );
      } else {
        const outIds = generate(model, paths, ids, {
          maxNewTokens: numOpt(v, 'max-new-tokens', 32),
          rule,
          temperature: numOpt(v, 'temperature', 0),
          stopIds: tok.eosId !== null ? [tok.eosId] : [],
        });
        process.stdout.write(`${JSON.stringify({ text: tok.decode(outIds, { skipSpecialTokens: true }), tokens: outIds.length, rule })}\n`);
      }
      return;
    }
    case 'logits': {
      const { model } = loadWithAdapter(need(v, 'model'), v.adapter as string | undefined);
      const input = readJson(need(v, 'ids'), '--ids') as { input_ids?: number[][] };
      const ids = input.input_ids;
      if (
        !Array.isArray(ids) ||
        !ids.length ||
        !ids.every(
          (r) =>
            Array.isArray(r) && r.length === ids[0].length && r.every((x) => Number.isInteger(x) && x >= 0 && x < model.config.vocabSize),
        )
      ) {
        throw new UsageError(`--ids: input_ids must be a non-empty [batch][seq] array of integers in [0, ${model.config.vocabSize})`);
      }
      const { logits } = model.forward(ids, { lora: true });
      process.stdout.write(`${JSON.stringify({ logits: logits.arraySync() })}\n`);
      return;
    }
    case 'device': {
      const { plannerSgemmPeak } = await import('./backend/index.js');
      const { localDevice } = await import('./tune/run.js');
      const { measureStepFactor } = await import('./schedule/speed.js');
      const peak = plannerSgemmPeak(1);
      const { tensorHeapCeilingOf } = await import('@edgetune/core');
      const dev = localDevice({ ...deviceFlags(v), matmulGflops: peak.gflops });
      const reference = await measureStepFactor(dev);
      // the backend's hard limit on TF.js tensors (wasm: 4294901760 bytes), which the worker reports
      const ceiling = tensorHeapCeilingOf(dev.backend);
      process.stdout.write(
        `${JSON.stringify(
          {
            ...dev,
            ...(ceiling !== undefined ? { tensorHeapCeilingBytes: ceiling } : {}),
            stepTimeFactor: reference.factor,
            matmul: matmulPath(info),
            sgemm: peak,
            reference,
          },
          null,
          2,
        )}\n`,
      );
      return;
    }
    case 'plan': {
      const core = await import('@edgetune/core');
      const { measuredDevice } = await import('./tune/run.js');
      const dir = need(v, 'model');
      const cfg = core.loadLlamaConfig(dir);
      const bits = numOpt(v, 'avg-bits', 16);
      // the weights' dtype as stored: --stored-dtype, else the safetensors headers (F32 without weights)
      const hasWeights = existsSync(join(dir, 'model.safetensors')) || existsSync(join(dir, 'model.safetensors.index.json'));
      const storedDtype =
        v['stored-dtype'] !== undefined
          ? pick(v, 'stored-dtype', ['F32', 'F16', 'BF16'] as const, 'F32')
          : core.plannerStoredDtype(hasWeights ? core.storedDtype(core.readWeightIndex(dir)) : null);
      const measured = await measuredDevice(deviceFlags(v));
      const ceiling = core.tensorHeapCeilingOf(measured.backend);
      const dev = ceiling === undefined ? measured : { ...measured, tensorHeapCeilingBytes: ceiling };
      const steps = numOpt(v, 'steps', 200);
      const p = core.plan(
        {
          model: cfg,
          storedDtype,
          mode: pick(v, 'mode', ['edge_llm', 'vanilla'] as const, 'edge_llm'),
          ...(typeof v['exit-layers'] === 'string' ? { exitLayers: v['exit-layers'].split(',').map((x) => Number(x.trim())) } : {}),
          loraR: numOpt(v, 'lora-r', 8),
          headRank: numOpt(v, 'head-rank', 0),
          schedule: pick(v, 'schedule', ['sequential', 'round_robin', 'random'] as const, 'sequential'),
          prefix: pick(v, 'prefix', ['backbone', 'adapted'] as const, 'backbone'),
          batchSize: numOpt(v, 'batch', 8),
          seqLen: numOpt(v, 'max-length', 256),
          steps,
          trainExamples: numOpt(v, 'examples', 1000),
          policy:
            bits < 16
              ? { bits: new Array(cfg.numHiddenLayers).fill(bits), sparsity: new Array(cfg.numHiddenLayers).fill(numOpt(v, 'sparsity', 0)) }
              : null,
        },
        dev,
      );
      // the API's plan object (snake_case), for the device measured here: what a worker on this machine would follow
      const jp = core.withTimeBudget(
        core.jobPlanOf(p, 'worker', {
          policy: bits < 16 ? { id: null, source: 'estimated' } : null,
          deviceSource: { source: 'worker', workerId: null },
        }),
        v['time-budget-s'] !== undefined ? numOpt(v, 'time-budget-s', 0) : null,
        steps,
      );
      if (v.json) process.stdout.write(`${JSON.stringify(jp, null, 2)}\n`);
      else
        process.stdout.write(
          `plan for ${dir}: ${cfg.numHiddenLayers} layers, ${steps} steps of batch ${numOpt(v, 'batch', 8)} x ${numOpt(v, 'max-length', 256)} tokens\n${core.formatPlan(jp)}\n`,
        );
      return;
    }
    case 'advise': {
      const { adviseLocally, formatMeasurement, formatRecommendation, measureLocally, modelFolders } = await import('./schedule/advise.js');
      const { localDevice } = await import('./tune/run.js');
      const mode = pick(v, 'mode', ['estimate', 'measure'] as const, 'estimate');
      if (mode === 'measure' && !v.val) throw new UsageError('--mode measure ranks probes by their validation metric: give --val');
      const models = v.models === undefined ? null : String(v.models).split(',').filter(Boolean);
      const o = {
        train: need(v, 'train'),
        val: v.val as string | undefined,
        modelDirs: modelFolders(models, process.env.EDGETUNE_MODELS_DIR || 'models'),
        device: localDevice(deviceFlags(v)),
        timeBudgetS: numOpt(v, 'time-budget-s', 600),
        rulesPath: v.rules as string | undefined,
      };
      if (mode === 'measure') {
        const m = await measureLocally({
          ...o,
          val: need(v, 'val'),
          outDir: need(v, 'out'),
          seed: numOpt(v, 'seed', 42),
          log: (l) => process.stderr.write(`${l}\n`),
        });
        process.stdout.write(`${v.json ? JSON.stringify(m, null, 2) : formatMeasurement(m)}\n`);
        return;
      }
      const rec = await adviseLocally(o);
      process.stdout.write(`${v.json ? JSON.stringify(rec, null, 2) : formatRecommendation(rec)}\n`);
      return;
    }
    case 'synth-model': {
      const { synthModel } = await import('./synth/index.js');
      const r = synthModel({
        like: need(v, 'like'),
        outDir: need(v, 'out'),
        seed: numOpt(v, 'seed', 0),
        layers: v.layers !== undefined ? numOpt(v, 'layers', 0) : undefined,
        log: (s) => process.stderr.write(`${s}\n`),
      });
      process.stdout.write(
        `${JSON.stringify({ dir: r.dir, like: r.like, params: r.params, bytes: r.bytes, shards: r.shards, seconds: Number(r.seconds.toFixed(2)) })}\n`,
      );
      return;
    }
    default:
      throw new UsageError(`unknown command ${JSON.stringify(cmd)}`);
  }
}

runCli(
  'edgetune-engine',
  USAGE,
  () => main(process.argv.slice(2)),
  () => {
    tf.disposeVariables();
  },
);
