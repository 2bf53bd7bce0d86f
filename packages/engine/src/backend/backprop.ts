// Eager freeing of gradients and saved tensors during TF.js backprop (first-order gradients only).
import * as tf from '@tensorflow/tfjs-core';

/*
 * Stock TF.js (tfjs-core 4.22, src/engine.ts `Engine.gradients` + src/tape.ts
 * `backpropagateGradients`) walks the tape backward inside one tidy('backward'): every node's
 * incoming gradients (its `dys`, kept in the accumulated-gradient map) and every node's `saved`
 * tensors (the clones `saveTensorsForBackwardMode` / customGrad's save function keep for the
 * gradient function) stay alive until the whole backward pass ends. Peak memory of a training step
 * is then all saved activations plus all intermediate gradients. Once a node has been processed,
 * neither is needed any more (first order: nothing records the backward pass on a tape), so this
 * re-implementation frees them right away. The rest is a line-by-line port of the stock code.
 */

/** tfjs-core's TapeNode (src/tape.ts; not exported from the public API). */
interface TapeNode {
  id: number;
  kernelName: string;
  outputs: tf.Tensor[];
  inputs: Record<string, tf.Tensor>;
  gradient?: (dys: tf.Tensor[]) => Record<string, () => tf.Tensor>;
  saved?: tf.Tensor[];
}

/** Tensor fields the engine keeps (public on tfjs-core's Tensor class, not in all typings we see). */
interface TrackedTensor extends tf.Tensor {
  kept: boolean;
  scopeId: number;
}

type GradientsFn = (
  f: () => tf.Tensor,
  xs: tf.Tensor[],
  dy?: tf.Tensor,
  allowNoGradients?: boolean,
) => { value: tf.Tensor; grads: tf.Tensor[] };

/** The Engine internals `gradients` uses (tfjs-core src/engine.ts). */
interface EngineInternals {
  state: { activeTape: TapeNode[] | null; gradientDepth: number; activeScope: { id: number } | null };
  gradients: GradientsFn;
  scopedRun<R>(start: () => void, end: () => void, f: () => R): R;
  startTape(): void;
  endTape(): void;
  tidy<R>(nameOrFn: string | (() => R), fn?: () => R): R;
  makeTensor(values: ArrayLike<number>, shape: number[], dtype: string): tf.Tensor;
  runKernel(kernelName: string, inputs: Record<string, tf.Tensor>, attrs?: Record<string, unknown>): tf.Tensor;
}

const util = tf.util;

/**
 * Where the stock `gradients` is kept on the engine while patched: a global symbol, so that two
 * copies of this module (bundled and not) agree on whether the patch is in place.
 */
const STOCK = Symbol.for('edgetune.eagerBackprop.stockGradients');
type Patched = EngineInternals & { [STOCK]?: GradientsFn };

const engineInternals = (): EngineInternals => tf.engine() as unknown as EngineInternals;

/**
 * Replaces `tf.engine().gradients` (used by tf.grad/grads/valueAndGrad(s)/variableGrads and
 * optimizer.minimize) with an equivalent that, for first-order gradients (the engine's
 * `gradientDepth` is 0 during the backward pass: the condition tfjs-core itself uses for its
 * end-of-pass cleanup), frees memory while walking the tape backward:
 *
 * 1. once a node's input gradients are computed, its `dys` (the accumulated gradients of its
 *    outputs) are disposed and their map entries deleted, except tensors still referenced by another
 *    entry of the map (a gradient function may return `dy` itself as `dx`), the gradients of the
 *    requested `xs`, the caller's `dy`, and tensors the backward tidy does not own (kept ones, or
 *    forward tensors a custom gradient returned): the stock tidy would not have disposed them either;
 * 2. the node's `saved` tensors (kept clones with their own reference count) are disposed right
 *    after the node, unless a gradient function returned one of them as a gradient still in the map
 *    (the end-of-pass cleanup, kept as in the stock code, disposes those as before).
 *
 * Peak memory of a backward pass drops from (all saved activations + all intermediate gradients) to
 * about (saved activations not yet consumed + the gradient frontier). Gradient values are the same
 * bits as the stock implementation: the same kernels run in the same order. Higher-order gradients
 * (gradientDepth > 0, where the backward pass is itself taped) take the stock path unchanged.
 * Not covered: the forward pass still runs in one tidy('forward') that holds every temporary of `f`
 * until `f` returns; a tf.tidy per layer inside `f` caps that (the tape keeps what backward needs).
 *
 * Source: tfjs-core 4.22 src/engine.ts (`Engine.gradients`) and src/tape.ts
 * (`getFilteredNodesXToY`, `backpropagateGradients`), Apache-2.0.
 * Idempotent; `uninstallEagerBackprop` restores the stock method.
 */
export function installEagerBackprop(): void {
  const engine = engineInternals() as Patched;
  if (engine[STOCK]) return;
  engine[STOCK] = engine.gradients;
  engine.gradients = eagerGradients;
}

/** Restores the stock `tf.engine().gradients` (no-op when not installed). */
export function uninstallEagerBackprop(): void {
  const engine = engineInternals() as Patched;
  const stock = engine[STOCK];
  if (!stock) return;
  // The stock method lives on Engine.prototype: deleting the own property restores it, unless
  // someone else patched the instance before us.
  if (stock === Object.getPrototypeOf(engine).gradients) delete (engine as Partial<EngineInternals>).gradients;
  else engine.gradients = stock;
  delete engine[STOCK];
}

/** Whether `installEagerBackprop` is in effect on the current engine. */
export function eagerBackpropInstalled(): boolean {
  return Boolean((engineInternals() as Patched)[STOCK]);
}

/** tfjs-core src/engine.ts `Engine.gradients`, with the eager freeing of `backpropagateGradients` at depth 0. */
function eagerGradients(
  this: EngineInternals,
  f: () => tf.Tensor,
  xs: tf.Tensor[],
  dy?: tf.Tensor,
  allowNoGradients = false,
): { value: tf.Tensor; grads: tf.Tensor[] } {
  util.assert(xs.length > 0, () => 'gradients() received an empty list of xs.');
  if (dy != null && dy.dtype !== 'float32') {
    throw new Error(`dy must have 'float32' dtype, but has '${dy.dtype}'`);
  }
  const y = this.scopedRun(
    () => this.startTape(),
    () => this.endTape(),
    () => this.tidy('forward', f),
  );
  util.assert(y instanceof tf.Tensor, () => 'The result y returned by f() must be a tensor.');
  // Filter out the nodes that don't connect x => y.
  const filteredTape = getFilteredNodesXToY(this.state.activeTape!, xs, y);
  if (!allowNoGradients && filteredTape.length === 0 && xs.length > 0) {
    throw new Error(
      'Cannot compute gradient of y=f(x) with respect to x. Make sure ' +
        'that the f you passed encloses all operations that lead from x ' +
        'to y.',
    );
  }
  return this.tidy('backward', () => {
    const accumulatedGradientMap: Record<number, tf.Tensor> = {};
    accumulatedGradientMap[y.id] = dy == null ? ones(this, y.shape) : dy;
    // First order: the backward pass is not taped, so processed nodes' tensors can go.
    const eager =
      this.state.gradientDepth === 0
        ? { scopeId: this.state.activeScope!.id, keepIds: new Set(xs.map((x) => x.id)), callerDy: dy ?? null }
        : null;
    backpropagateGradients(
      accumulatedGradientMap,
      filteredTape,
      (fn) => this.tidy(fn),
      (a, b) => this.runKernel('Add', { a, b }),
      eager,
    );
    const grads = xs.map((x) => accumulatedGradientMap[x.id]);
    if (this.state.gradientDepth === 0) {
      // This means that we are not computing higher-order gradients
      // and can clean up the tape.
      this.state.activeTape!.forEach((node) => {
        for (const tensor of node.saved!) tensor.dispose();
      });
      this.state.activeTape = null;
    }
    return { value: y, grads };
  });
}

/** tfjs-core src/engine.ts `ones` (module-private there). */
function ones(engine: EngineInternals, shape: number[]): tf.Tensor {
  const values = util.makeOnesTypedArray(util.sizeFromShape(shape), 'float32');
  return engine.makeTensor(values, shape, 'float32');
}

/** What `backpropagateGradients` may free (first order only). */
interface EagerFree {
  /** id of the backward tidy scope: only tensors it owns are disposed early. */
  scopeId: number;
  /** ids of the requested xs: their gradients are the result. */
  keepIds: Set<number>;
  /** the caller's dy (owned by the caller). */
  callerDy: tf.Tensor | null;
}

/**
 * Port of tfjs-core 4.22 src/tape.ts `getFilteredNodesXToY` (not public API; the dist file is an
 * extensionless ES module that Node cannot import). Computes the TapeNodes that connect x to y,
 * filtering everything else out and preserving the order of the original tape.
 */
function getFilteredNodesXToY(tape: TapeNode[], xs: tf.Tensor[], y: tf.Tensor): TapeNode[] {
  // Forward pass to compute all the nodes and Tensors that are transitively a function of x.
  const tensorsFromX: Record<number, boolean> = {};
  const nodesFromX: Record<number, boolean> = {};
  for (let i = 0; i < xs.length; i++) tensorsFromX[xs[i].id] = true;
  for (let i = 0; i < tape.length; i++) {
    const node = tape[i];
    const nodeInputs = node.inputs;
    for (const inputName in nodeInputs) {
      const input = nodeInputs[inputName];
      let anyInputFromX = false;
      for (let j = 0; j < xs.length; j++) {
        if (tensorsFromX[input.id]) {
          node.outputs.forEach((output) => (tensorsFromX[output.id] = true));
          anyInputFromX = true;
          nodesFromX[node.id] = true;
          break;
        }
      }
      if (anyInputFromX) break;
    }
  }
  // Backward pass to find all of the nodes and Tensors that lead to y.
  const tensorsLeadToY: Record<number, boolean> = {};
  tensorsLeadToY[y.id] = true;
  const nodesToY: Record<number, boolean> = {};
  for (let i = tape.length - 1; i >= 0; i--) {
    const node = tape[i];
    const nodeInputs = node.inputs;
    // If any of the outputs lead to y, mark all of the inputs as leading to y.
    for (let j = 0; j < node.outputs.length; j++) {
      if (tensorsLeadToY[node.outputs[j].id]) {
        for (const inputName in nodeInputs) {
          tensorsLeadToY[nodeInputs[inputName].id] = true;
          nodesToY[node.id] = true;
        }
        break;
      }
    }
  }
  // Return the paths that come from x and lead to y.
  const filteredTape: TapeNode[] = [];
  for (let i = 0; i < tape.length; i++) {
    const node = tape[i];
    if (nodesFromX[node.id] && nodesToY[node.id]) {
      // Prune the inputs from the node that aren't a function of x.
      const prunedInputs: Record<string, tf.Tensor> = {};
      for (const inputName in node.inputs) {
        const nodeInput = node.inputs[inputName];
        if (tensorsFromX[nodeInput.id]) prunedInputs[inputName] = nodeInput;
      }
      // Copy the node and overwrite inputsAndArgs to the pruned version.
      const prunedNode = Object.assign({}, node);
      prunedNode.inputs = prunedInputs;
      prunedNode.outputs = node.outputs;
      filteredTape.push(prunedNode);
    }
  }
  return filteredTape;
}

/**
 * Port of tfjs-core 4.22 src/tape.ts `backpropagateGradients`: walks the filtered tape backward,
 * keeping a map of tensor id to its accumulated gradient (mutated). With `eager` (first order), it
 * also frees each node's dys and saved tensors once the node is done (see installEagerBackprop).
 */
function backpropagateGradients(
  tensorAccumulatedGradientMap: Record<number, tf.Tensor>,
  filteredTape: TapeNode[],
  tidy: (f: () => tf.Tensor) => tf.Tensor,
  add: (a: tf.Tensor, b: tf.Tensor) => tf.Tensor,
  eager: EagerFree | null,
): void {
  // How many map entries hold each tensor (object identity), kept only when freeing eagerly.
  const refs = new Map<tf.Tensor, number>();
  const ref = (t: tf.Tensor, d: number) => {
    const n = (refs.get(t) ?? 0) + d;
    if (n > 0) refs.set(t, n);
    else refs.delete(t);
  };
  if (eager) for (const id in tensorAccumulatedGradientMap) ref(tensorAccumulatedGradientMap[id], 1);

  // Walk the tape backward and keep a map of Tensor to its gradient.
  for (let i = filteredTape.length - 1; i >= 0; i--) {
    const node = filteredTape[i];
    const dys: tf.Tensor[] = [];
    node.outputs.forEach((o) => {
      const gradTensor = tensorAccumulatedGradientMap[o.id];
      if (gradTensor != null) {
        dys.push(gradTensor);
      } else {
        // This particular output is not in the back-propagation subgraph, so it
        // does not affect the final output, thus we put null for its dy.
        dys.push(null as unknown as tf.Tensor);
      }
    });
    if (node.gradient == null) {
      throw new Error(`Cannot compute gradient: gradient function not found for ${node.kernelName}.`);
    }
    // Backprop dy through this node and accumulate gradients over the inputs.
    const inputGradients = node.gradient(dys);
    for (const inputName in node.inputs) {
      if (!(inputName in inputGradients)) {
        throw new Error(`Cannot backprop through input ${inputName}. ` + `Available gradients found: ${Object.keys(inputGradients)}.`);
      }
      // Call the gradient function.
      const dx = tidy(() => inputGradients[inputName]());
      if (dx.dtype !== 'float32') {
        throw new Error(
          `Error in gradient for op ${node.kernelName}. The gradient of input ` +
            `${inputName} must have 'float32' dtype, but has '${dx.dtype}'`,
        );
      }
      const x = node.inputs[inputName];
      if (!util.arraysEqual(dx.shape, x.shape)) {
        throw new Error(
          `Error in gradient for op ${node.kernelName}. The gradient of input ` +
            `'${inputName}' has shape '${dx.shape}', which does not match ` +
            `the shape of the input '${x.shape}'`,
        );
      }
      if (tensorAccumulatedGradientMap[x.id] == null) {
        tensorAccumulatedGradientMap[x.id] = dx;
        if (eager) ref(dx, 1);
      } else {
        const curGradient = tensorAccumulatedGradientMap[x.id];
        tensorAccumulatedGradientMap[x.id] = add(curGradient, dx);
        if (eager) {
          ref(curGradient, -1);
          ref(tensorAccumulatedGradientMap[x.id], 1);
        }
        curGradient.dispose();
      }
    }
    if (eager) freeNode(node, tensorAccumulatedGradientMap, refs, ref, eager);
  }
}

/** Frees a processed node's saved tensors and dys (first order only; see installEagerBackprop). */
function freeNode(
  node: TapeNode,
  map: Record<number, tf.Tensor>,
  refs: Map<tf.Tensor, number>,
  ref: (t: tf.Tensor, d: number) => void,
  eager: EagerFree,
): void {
  // Saved tensors: kept clones, each with its own reference to the data. The end-of-pass cleanup
  // disposes them all again (a no-op for these); one still in the map was returned as a gradient.
  for (const t of node.saved ?? []) if (!refs.has(t)) t.dispose();
  const candidates: tf.Tensor[] = [];
  for (const o of node.outputs) {
    const g = map[o.id];
    if (g == null || eager.keepIds.has(o.id)) continue; // the gradient of a requested x: the result
    delete map[o.id];
    ref(g, -1);
    candidates.push(g);
  }
  for (const g of candidates) {
    const t = g as TrackedTensor;
    // Still the value of another entry (a gradient function returned dy as dx), the caller's dy,
    // or not owned by the backward tidy (kept, or a forward tensor returned by a custom gradient).
    if (refs.has(g) || g === eager.callerDy || t.kept || t.scopeId !== eager.scopeId) continue;
    g.dispose();
  }
}
