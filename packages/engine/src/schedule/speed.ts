/**
 * How fast this machine runs the planner's own kind of work, against the machine the planner was calibrated
 * on. The SGEMM reading alone does not say it: the non-matmul work (norms, RoPE, LoRA branches, kernel
 * dispatch, small matmuls) can be slower on a machine than its SGEMM ratio predicts, and its step-time
 * forecasts then too short.
 */
import * as tf from '@tensorflow/tfjs-core';
import { LlamaModel } from '../model/llama.js';
import { parseLlamaConfig, IGNORE_INDEX } from '@edgetune/core';
import { DEFAULT_LORA } from '../model/lora.js';
import { initLlamaWeights } from '../model/init.js';
import { AdaptiveTrainer, DEFAULT_TUNE } from '../tune/trainer.js';
import { Rng } from '../util/rng.js';
import { plan, type DeviceProfile, type PlanInput } from '@edgetune/core';
import { CALIBRATION, type CostCoefficients } from '@edgetune/core';
import { backendInfo, recentReadings } from '../backend/index.js';
import { cpus, hostname } from 'node:os';
import { createHash } from 'node:crypto';

/** The reference workload: vanilla LoRA (r 8, all 7 linears) through 2 layers of the calibration model's
 *  shape (edgetune-tiny-llama: hidden 192, MLP 512, 4 heads / 2 KV heads, vocab 4096), micro-batch 4 x 128 tokens. */
const REF = { layers: 2, microBatch: 4, seqLen: 128 } as const;

/** Result of {@link measureStepFactor}. Times in ms. */
export interface StepFactor {
  /** the lowest of this machine's readings of the last 15 minutes (this one included; backend/peak.ts
   *  recentReadings), as the SGEMM reading takes the highest: other work (tests, a worker starting a job)
   *  only slows the reference down, and one process's reading is noisy on a shared machine */
  factor: number;
  /** this measurement: the reference workload's measured step time less its forecast matmul time, over
   *  the forecast's non-matmul time, clamped to [0.25, 4] */
  reading: number;
  /** median measured step of the reference workload, ms */
  measuredMs: number;
  /** the planner's forecast for it on `device` with factor 1, ms */
  forecastMs: number;
  /** the matmul part of that forecast (what the factor does not scale), ms */
  matmulMs: number;
  /** timed steps (after 2 warm-up steps) */
  steps: number;
  /** readings the factor is the lowest of */
  readings: number;
}

/**
 * Times a small reference training workload on this machine and compares it with the planner's forecast
 * for it on `device` (its `matmulGflops` included): the measured time less the forecast's matmul time, over
 * the forecast's non-matmul time, as the lowest of the machine's recent readings, is
 * DeviceProfile.stepTimeFactor, which scales the non-matmul part of every step-time forecast (the matmul part
 * follows the SGEMM reading). The workload has the calibration model's shape, so on the calibration machine
 * the factor is ~1 by construction. Runs about `seconds` (at least 3 timed steps) on the active
 * TF.js backend; its tensors and variables are freed afterwards (the wasm heap keeps its high-water mark,
 * ~20 MB, below a job's own).
 * @param device the device the forecast assumes (memory fields are not used).
 * @param seconds time budget for the timed steps, seconds (default 2).
 * @param coeffs the cost model the factor corrects (default: the fitted one); readings are remembered per
 *   cost model, since a recalibration changes the forecast they were taken against.
 * @throws Error when the reference plan does not fit (a device with almost no memory budget).
 */
export async function measureStepFactor(device: DeviceProfile, seconds = 2, coeffs: CostCoefficients = CALIBRATION): Promise<StepFactor> {
  const config = parseLlamaConfig({
    model_type: 'llama',
    vocab_size: 4096,
    hidden_size: 192,
    intermediate_size: 512,
    num_hidden_layers: REF.layers,
    num_attention_heads: 4,
    num_key_value_heads: 2,
    head_dim: 48,
    max_position_embeddings: 1024,
    rms_norm_eps: 1e-5,
    rope_theta: 10000,
    tie_word_embeddings: true,
  });
  const input: PlanInput = {
    model: config,
    mode: 'vanilla',
    loraR: DEFAULT_LORA.r,
    batchSize: REF.microBatch,
    seqLen: REF.seqLen,
    steps: 100,
    trainExamples: 16,
    microBatch: REF.microBatch,
    prefixCache: false,
  };
  const unlimited = { ...device, memoryBudgetBytes: Number.MAX_SAFE_INTEGER, tensorBudgetBytes: undefined };
  const forecast = plan(input, { ...unlimited, stepTimeFactor: 1 }, coeffs);
  if (!forecast.fits) throw new Error(`reference workload does not fit: ${forecast.reason}`);
  // The factor scales only the non-matmul part of a forecast (planner estimate): that part is the
  // difference between the forecasts at factor 2 and 1.
  const otherMs = plan(input, { ...unlimited, stepTimeFactor: 2 }, coeffs).forecast.stepMs - forecast.forecast.stepMs;
  const matmulMs = forecast.forecast.stepMs - otherMs;
  const engine = tf.engine();
  const varsBefore = new Set(Object.keys(engine.registeredVariables));
  const rng = new Rng(7);
  engine.startScope();
  let model: LlamaModel | null = null;
  const ms: number[] = [];
  try {
    model = new LlamaModel(config, initLlamaWeights(config, rng) as Map<string, tf.Tensor>);
    const examples = Array.from({ length: 16 }, () => {
      const ids = Array.from({ length: REF.seqLen }, () => 4 + rng.int(config.vocabSize - 4));
      return { inputIds: ids, labels: ids.map((x, t) => (t >= REF.seqLen - 2 ? x : IGNORE_INDEX)) };
    });
    const t = new AdaptiveTrainer(
      model,
      examples,
      { ...DEFAULT_TUNE, mode: 'vanilla', steps: 10_000, microBatch: REF.microBatch, lora: { ...DEFAULT_LORA } },
      0,
    );
    for (let i = 0; i < 2; i++) await t.step(); // warm-up: kernels, heap growth
    const start = performance.now();
    while (ms.length < 3 || (performance.now() - start < seconds * 1000 && ms.length < 200)) ms.push((await t.step()).stepMs);
  } finally {
    engine.endScope();
    for (const [name, v] of Object.entries(engine.registeredVariables)) if (!varsBefore.has(name)) v.dispose();
    model?.dispose();
  }
  const sorted = [...ms].sort((a, b) => a - b),
    measuredMs = sorted[Math.floor(sorted.length / 2)];
  const forecastMs = forecast.forecast.stepMs,
    reading = otherMs > 0 ? Math.min(4, Math.max(0.25, (measuredMs - matmulMs) / otherMs)) : 1;
  // Keyed by the SGEMM reading's bucket and the cost model too: the factor is relative to the forecast.
  const info = backendInfo();
  const costModel = createHash('sha256').update(JSON.stringify(coeffs)).digest('hex').slice(0, 12);
  const key = `step-factor:${info?.backend ?? tf.getBackend()}:${info?.matmul ?? '?'}:${device.threads}:${Math.round(device.matmulGflops / 10)}:${costModel}:${cpus()[0]?.model ?? '?'}:${hostname()}`;
  const recent = recentReadings(key, reading).sort((a, b) => a - b);
  return { factor: recent[0], reading, measuredMs, forecastMs, matmulMs, steps: ms.length, readings: recent.length };
}
