/** `npm run start:api`: runs the API until SIGTERM/SIGINT. Configuration: docs/configuration.md. */
import { startApi } from './server.js';

const { stop } = await startApi();
for (const sig of ['SIGTERM', 'SIGINT'] as const) {
  process.once(sig, () => {
    stop().then(
      () => process.exit(0),
      (e) => {
        console.error(e);
        process.exit(1);
      },
    );
  });
}
