// Kernel override bookkeeping on top of the public tf.registerKernel / tf.unregisterKernel API.
// The stock config is remembered once, so overrides can be swapped (native <-> fastmm) or undone.
import * as tf from '@tensorflow/tfjs-core';
import type { KernelConfig, KernelFunc } from '@tensorflow/tfjs-core';

const stock = new Map<string, KernelConfig | null>();
const key = (kernelName: string, backendName: string) => `${backendName}/${kernelName}`;

/** The stock kernel config (before any override of ours), or undefined when there was none. */
export function stockKernel(kernelName: string, backendName: string): KernelConfig | undefined {
  const k = key(kernelName, backendName);
  return stock.has(k) ? (stock.get(k) ?? undefined) : tf.getKernel(kernelName, backendName);
}

/**
 * Registers `kernelFunc` as `kernelName` for `backendName`, replacing whatever is registered. The
 * stock setupFunc/disposeFunc are kept: stock kernels we delegate to rely on them (they cwrap the
 * C entry points when the backend initializes).
 */
export function overrideKernel(kernelName: string, backendName: string, kernelFunc: KernelFunc): void {
  const k = key(kernelName, backendName);
  const current = tf.getKernel(kernelName, backendName);
  if (!stock.has(k)) stock.set(k, current ?? null);
  const orig = stock.get(k);
  if (current) tf.unregisterKernel(kernelName, backendName);
  tf.registerKernel({ kernelName, backendName, kernelFunc, setupFunc: orig?.setupFunc, disposeFunc: orig?.disposeFunc });
}

/** Puts back the stock kernel (or removes ours when there was none). */
export function restoreKernel(kernelName: string, backendName: string): void {
  const k = key(kernelName, backendName);
  if (!stock.has(k)) return;
  const orig = stock.get(k);
  stock.delete(k);
  if (tf.getKernel(kernelName, backendName)) tf.unregisterKernel(kernelName, backendName);
  if (orig) tf.registerKernel(orig);
}

/** Kernel names (for `backendName`) currently overridden through `overrideKernel`. */
export function overriddenKernels(backendName: string): string[] {
  const prefix = `${backendName}/`;
  return [...stock.keys()].filter((k) => k.startsWith(prefix)).map((k) => k.slice(prefix.length));
}

/** Restores every kernel overridden for `backendName`. */
export function restoreAll(backendName: string): void {
  for (const name of overriddenKernels(backendName)) restoreKernel(name, backendName);
}
