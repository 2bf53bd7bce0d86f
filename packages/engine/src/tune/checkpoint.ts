/**
 * Resumable trainer checkpoints on disk, apart from the training loop (torchtune's checkpointer
 * component). A checkpoint is a folder with two files:
 * - `trainer.safetensors`: every tensor of the trainer's state dict by stable name (float32);
 * - `trainer_state.json`: step counters, data cursor, RNG state and optimizer step counts.
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

/** True when `dir` holds a trainer checkpoint (its state file). */
export function hasTrainerCheckpoint(dir: string): boolean {
  return existsSync(join(dir, CHECKPOINT_FILES.state));
}

/**
 * Writes `trainer`'s state dict to `dir` atomically: a temporary folder renamed over the old one, so a
 * crash mid-write keeps the previous checkpoint.
 */
export function saveTrainerCheckpoint(trainer: Pick<Stateful, 'stateDict'>, dir: string): void {
  const { state, tensors } = trainer.stateDict();
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
 * options). @throws Error when the folder is missing or does not match the trainer's variables.
 */
export function loadTrainerCheckpoint(trainer: Pick<Stateful, 'loadStateDict'>, dir: string): void {
  const sf = join(dir, CHECKPOINT_FILES.tensors),
    st = join(dir, CHECKPOINT_FILES.state);
  if (!existsSync(sf) || !existsSync(st)) throw new Error(`no trainer checkpoint in ${dir}`);
  const tensors = new Map<string, HostTensor>();
  for (const [name, t] of readSafetensors(sf).tensors) tensors.set(name, { shape: t.shape, data: t.data as Float32Array });
  const state = JSON.parse(readFileSync(st, 'utf8')) as TrainerState;
  try {
    trainer.loadStateDict({ state, tensors });
  } catch (e) {
    throw new Error(`checkpoint ${dir}: ${(e as Error).message}`, { cause: e });
  }
}
