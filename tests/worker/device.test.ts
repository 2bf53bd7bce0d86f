// The worker's device report: the engine's `device` command states its backend's TF.js heap ceiling (wasm:
// 4294901760 bytes), the worker reads it and reports it with the rest of the device; the API plans against it
// (tests/api/models.test.ts).
import { describe, it, expect } from 'vitest';
import { probeDevice, workerDevice, type ProbedDevice } from '../../apps/worker/src/device.js';

const config = { deviceMemoryBytes: 2 ** 31, deviceThreads: null, deviceGflops: null };

describe('device report', () => {
  it("probes the engine's backend and its heap ceiling", async () => {
    const p = await probeDevice();
    expect(p.matmulGflops).toBeGreaterThan(0);
    if (p.backend === 'wasm') expect(p.tensorHeapCeilingBytes).toBe(4294901760);
    else expect(p.tensorHeapCeilingBytes).toBeUndefined();
    expect(workerDevice(config, p).tensorHeapCeilingBytes).toBe(p.tensorHeapCeilingBytes ?? null);
  }, 60_000);

  it('reports the ceiling of a wasm worker and none for cpu', () => {
    const probed = (backend: string, ceiling?: number): ProbedDevice => ({
      threads: 2,
      backend,
      matmul: 'openblas(2 threads)',
      matmulGflops: 100,
      stepTimeFactor: 1,
      ...(ceiling === undefined ? {} : { tensorHeapCeilingBytes: ceiling }),
    });
    expect(workerDevice(config, probed('wasm', 4294901760))).toMatchObject({
      backend: 'wasm',
      tensorHeapCeilingBytes: 4294901760,
      memoryBudgetBytes: 2 ** 31,
    });
    expect(workerDevice(config, probed('cpu')).tensorHeapCeilingBytes).toBeNull();
  });
});
