/** `npm run start:worker`: runs a worker until SIGTERM/SIGINT (then checkpoints and re-queues its job). */
import { ConfigError } from '@edgetune/core';
import { startWorker } from './worker.js';

const w = await startWorker().catch((e: Error) => {
  // A malformed environment is the operator's to fix: one line, no stack trace (docs/configuration.md).
  if (!(e instanceof ConfigError)) throw e;
  console.error(`edgetune-worker: ${e.message}`);
  process.exit(2);
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
