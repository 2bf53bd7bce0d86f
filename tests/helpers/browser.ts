// Debian chromium for the browser tests, driven by playwright-core (`apt-get install -y chromium`; .ci/run installs
// it; never `npx playwright install`, which downloads).
import { existsSync } from 'node:fs';

/** The chromium binary (EDGETUNE_CHROMIUM overrides). */
export const CHROMIUM = process.env.EDGETUNE_CHROMIUM ?? '/usr/bin/chromium';
/** Whether it is installed: browser tests are skipped, with this reason in their name, where it is not. */
export const HAVE_CHROMIUM = existsSync(CHROMIUM);
/** Why a browser suite is skipped (empty when chromium is there), for its describe() name. */
export const SKIP_REASON = HAVE_CHROMIUM ? '' : ` (skipped: ${CHROMIUM} is missing; apt-get install -y chromium)`;
/** Flags for headless chromium in a container: no sandbox, no GPU, nothing that reaches the network on its own. */
export const CHROMIUM_ARGS = [
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
  '--disable-dev-shm-usage',
];
