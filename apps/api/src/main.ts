/** `npm run start:api`: runs the API until SIGTERM/SIGINT. Configuration: docs/configuration.md. */
import { ConfigError } from '@edgetune/core';
import { startApi } from './server.js';

const { stop } = await startApi().catch((e: Error) => {
  // A malformed environment is the operator's to fix: one line, no stack trace (docs/configuration.md).
  if (!(e instanceof ConfigError)) throw e;
  console.error(`edgetune-api: ${e.message}`);
  process.exit(2);
});
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
