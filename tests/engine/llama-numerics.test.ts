// Numerics of the LLaMA decoder and PEFT LoRA against PyTorch references (HF LlamaForCausalLM semantics).
import { describe, it, expect, beforeAll } from 'vitest';
import * as tf from '@tensorflow/tfjs-core';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { LlamaModel, causalLmLoss } from '../../packages/engine/src/model/llama.js';
import { applyPeftAdapter, peftName } from '../../packages/engine/src/model/lora.js';
import { FIXTURE_DIR, useTestBackend, maxAbsDiff, maxAbs } from './helpers.js';

interface Reference {
  input_ids: number[][];
  logits: number[][][];
  hidden_states: number[][][][];
  loss: number;
  lora_logits: number[][][];
  lora_loss: number;
  lora_grads: Record<string, number[][]>;
}

const ref = JSON.parse(readFileSync(join(FIXTURE_DIR, 'reference.json'), 'utf8')) as Reference;
const within = (got: ArrayLike<number>, want: unknown) => {
  const w = Float32Array.from((want as number[]).flat(3) as number[]);
  return { err: maxAbsDiff(got, w), tol: 1e-4 * maxAbs(w) };
};

describe('LlamaModel vs PyTorch reference (llama-tiny-gqa)', () => {
  beforeAll(async () => {
    await useTestBackend();
  });

  it('matches logits, every hidden state and the loss without the adapter', () => {
    const model = LlamaModel.load(FIXTURE_DIR);
    expect(model.config.numKeyValueHeads).toBeLessThan(model.config.numAttentionHeads); // GQA path exercised
    const { logits, hiddenStates } = model.forward(ref.input_ids, { hiddenStates: true });
    const l = within(logits.dataSync(), ref.logits);
    expect(l.err).toBeLessThanOrEqual(l.tol);
    expect(hiddenStates).toHaveLength(ref.hidden_states.length);
    hiddenStates.forEach((h, i) => {
      const r = within(h.dataSync(), ref.hidden_states[i]);
      expect(r.err, `hidden_states[${i}]`).toBeLessThanOrEqual(r.tol);
    });
    const loss = causalLmLoss(logits, ref.input_ids).dataSync()[0];
    expect(Math.abs(loss - ref.loss)).toBeLessThanOrEqual(1e-4 * Math.abs(ref.loss));
    tf.dispose([logits, ...hiddenStates]);
    model.dispose();
  });

  it('matches LoRA logits, loss and the gradient of every LoRA tensor with the PEFT adapter', () => {
    const model = LlamaModel.load(FIXTURE_DIR);
    const { loraModules } = applyPeftAdapter(model, join(FIXTURE_DIR, 'lora'));
    expect(loraModules.length).toBe(Object.keys(ref.lora_grads).length / 2);
    const { logits } = model.forward(ref.input_ids, { lora: true });
    const l = within(logits.dataSync(), ref.lora_logits);
    expect(l.err).toBeLessThanOrEqual(l.tol);
    logits.dispose();

    const lins = [...model.linears().values()].filter((x) => x.lora);
    const vars: tf.Variable[] = lins.flatMap((x) => [x.lora!.A, x.lora!.B]);
    const { value, grads } = tf.variableGrads(() => {
      const out = model.forward(ref.input_ids, { lora: true }).logits;
      return causalLmLoss(out, ref.input_ids);
    }, vars);
    expect(Math.abs(value.dataSync()[0] - ref.lora_loss)).toBeLessThanOrEqual(1e-4 * ref.lora_loss);
    let checked = 0;
    for (const lin of lins) {
      for (const which of ['lora_A', 'lora_B'] as const) {
        const name = peftName(lin.name, which);
        const v = which === 'lora_A' ? lin.lora!.A : lin.lora!.B;
        const g = grads[v.name];
        expect(g, name).toBeDefined();
        const r = within(g.dataSync(), ref.lora_grads[name]);
        expect(r.err, name).toBeLessThanOrEqual(r.tol);
        checked++;
      }
    }
    expect(checked).toBe(Object.keys(ref.lora_grads).length);
    tf.dispose([value, ...Object.values(grads)]);
    model.dispose();
  });
});
