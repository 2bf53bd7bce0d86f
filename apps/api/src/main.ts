/** `npm run start:api`: runs the API until SIGTERM/SIGINT. Configuration: docs/configuration.md. */
import { ConfigError } from '@edgetune/core';
import { isDatabaseUnavailable, StoreConfigError } from '@edgetune/store';
import { startApi } from './server.js';

const line = (l: string) => console.error(`edgetune-api: ${l}`);
// waits for PostgreSQL (a line per attempt); Redis and later outages: a line when a store goes and one when it is back
const { stop } = await startApi(process.env, { log: line }).catch((e: Error) => {
  // A malformed environment or a store that refuses us is the operator's to fix: one line, no stack trace
  // (docs/configuration.md).
  if (e instanceof ConfigError) {
    line(e.message);
    process.exit(2);
  }
  if (!(e instanceof StoreConfigError || isDatabaseUnavailable(e))) throw e;
  line(e instanceof StoreConfigError ? e.message : `PostgreSQL became unreachable while starting: ${e.message.trim().split('\n').at(-1)}`);
  process.exit(1);
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
