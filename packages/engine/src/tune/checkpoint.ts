/**
 * Resumable trainer checkpoints on disk, apart from the training loop (torchtune's checkpointer
 * component). A checkpoint is a folder with two files:
 * - `trainer.safetensors`: every tensor of the trainer's state dict by stable name (float32);
 * - `trainer_state.json`: step counters, data cursor, RNG state and optimizer step counts.
 * Run-level components that must survive a resume (the validation monitor: curve, patience counter, best
 * weights) ride in the same two files: their JSON under `stateful_callbacks.<name>` (Hugging Face's
 * `TrainerState.stateful_callbacks`) and their tensors as `stateful_callbacks.<name>.<tensor>`.
 * The worker stores and restores these two files as they are.
 */
import { existsSync, mkdirSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { readSafetensors, writeSafetensors } from '../io/safetensors.js';
import type { HostTensor, TrainerState, TrainerStateDict } from './trainer.js';

/** File names inside a checkpoint folder. */
export const CHECKPOINT_FILES = { tensors: 'trainer.safetensors', state: 'trainer_state.json' } as const;

/** What a checkpoint saves and restores (PyTorch's `state_dict` / `load_state_dict` pair). */
export interface Stateful {
  stateDict(): TrainerStateDict;
  loadStateDict(sd: TrainerStateDict): void;
}

/** A run-level component's checkpoint state: JSON-serializable counters and float32 tensors by name. */
export interface CallbackStateDict {
  state: unknown;
  tensors: Map<string, HostTensor>;
}

const CALLBACKS = 'stateful_callbacks';

/** True when `dir` holds a trainer checkpoint (its state file). */
export function hasTrainerCheckpoint(dir: string): boolean {
  return existsSync(join(dir, CHECKPOINT_FILES.state));
}

/**
 * Writes `trainer`'s state dict, and the state of the run-level `callbacks` by name, to `dir` atomically:
 * a temporary folder renamed over the old one, so a crash mid-write keeps the previous checkpoint.
 */
export function saveTrainerCheckpoint(
  trainer: Pick<Stateful, 'stateDict'>,
  dir: string,
  callbacks: Record<string, CallbackStateDict> = {},
): void {
  const sd = trainer.stateDict();
  const tensors = new Map(sd.tensors);
  const callbackStates: Record<string, unknown> = {};
  for (const [name, c] of Object.entries(callbacks)) {
    callbackStates[name] = c.state;
    for (const [t, v] of c.tensors) tensors.set(`${CALLBACKS}.${name}.${t}`, v);
  }
  const state = Object.keys(callbacks).length ? { ...sd.state, [CALLBACKS]: callbackStates } : sd.state;
  const tmp = `${dir}.tmp-${process.pid}`;
  rmSync(tmp, { recursive: true, force: true });
  mkdirSync(tmp, { recursive: true });
  writeSafetensors(join(tmp, CHECKPOINT_FILES.tensors), tensors);
  writeFileSync(join(tmp, CHECKPOINT_FILES.state), JSON.stringify(state, null, 2));
  rmSync(dir, { recursive: true, force: true });
  renameSync(tmp, dir);
}

/**
 * Restores a checkpoint written by {@link saveTrainerCheckpoint} into `trainer` (same model, data and
 * options).
 * @returns the run-level callbacks' states by name (empty when it holds none)
 * @throws Error when the folder is missing or does not match the trainer's variables.
 */
export function loadTrainerCheckpoint(trainer: Pick<Stateful, 'loadStateDict'>, dir: string): Record<string, CallbackStateDict> {
  const sf = join(dir, CHECKPOINT_FILES.tensors),
    st = join(dir, CHECKPOINT_FILES.state);
  if (!existsSync(sf) || !existsSync(st)) throw new Error(`no trainer checkpoint in ${dir}`);
  const { [CALLBACKS]: callbackStates = {}, ...state } = JSON.parse(readFileSync(st, 'utf8')) as TrainerState & {
    [CALLBACKS]?: Record<string, unknown>;
  };
  const callbacks: Record<string, CallbackStateDict> = {};
  for (const [name, s] of Object.entries(callbackStates)) callbacks[name] = { state: s, tensors: new Map() };
  const tensors = new Map<string, HostTensor>();
  for (const [name, t] of readSafetensors(sf).tensors) {
    const host = { shape: t.shape, data: t.data as Float32Array };
    const m = name.startsWith(`${CALLBACKS}.`) ? /^[^.]+\.([^.]+)\.(.+)$/.exec(name) : null;
    if (m && callbacks[m[1]]) callbacks[m[1]].tensors.set(m[2], host);
    else tensors.set(name, host);
  }
  try {
    trainer.loadStateDict({ state, tensors });
  } catch (e) {
    throw new Error(`checkpoint ${dir}: ${(e as Error).message}`, { cause: e });
  }
  return callbacks;
}
