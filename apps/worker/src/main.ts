/** `npm run start:worker`: runs a worker until SIGTERM/SIGINT (then checkpoints and re-queues its job). */
import { startWorker } from './worker.js';

const w = await startWorker();
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
