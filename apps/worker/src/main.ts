/** `npm run start:worker`: runs a worker until SIGTERM/SIGINT (then checkpoints and re-queues its job). */
import { ConfigError } from '@edgetune/core';
import { isStoreUnavailable, StoreConfigError } from '@edgetune/store';
import { startWorker } from './worker.js';

// waits for PostgreSQL and Redis (a line per attempt); later outages: a line when a store goes and one when it is back
const w = await startWorker().catch((e: Error) => {
  // A malformed environment or a store that refuses us is the operator's to fix: one line, no stack trace
  // (docs/configuration.md).
  if (e instanceof ConfigError) {
    console.error(`edgetune-worker: ${e.message}`);
    process.exit(2);
  }
  if (!(e instanceof StoreConfigError || isStoreUnavailable(e))) throw e;
  console.error(
    `edgetune-worker: ${e instanceof StoreConfigError ? e.message : `a store became unreachable while starting: ${e.message.trim().split('\n').at(-1)}`}`,
  );
  process.exit(1);
});
for (const sig of ['SIGTERM', 'SIGINT'] as const) {
  process.once(sig, () => {
    w.stop().then(
      () => process.exit(0),
      (e) => {
        console.error(e);
        process.exit(1);
      },
    );
  });
}
