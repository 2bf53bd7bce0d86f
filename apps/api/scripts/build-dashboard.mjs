// Bundles the dashboard (apps/api/dashboard: preact + htm, uPlot, fetch-event-source) with esbuild into
// apps/api/dist/dashboard: index.html, app.js and app.css, served by the API at /dashboard/ with no CDN.
// Run by the root `prepare` script (so `npm ci` and the Docker build produce it); `--watch` rebuilds on change.
import { copyFileSync, mkdirSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import * as esbuild from 'esbuild';

const api = join(dirname(fileURLToPath(import.meta.url)), '..');
const src = join(api, 'dashboard');
const out = join(api, 'dist', 'dashboard');

/** esbuild options: one ES module (and the CSS it imports) for current browsers. */
const options = {
  entryPoints: { app: join(src, 'main.js') },
  outdir: out,
  bundle: true,
  format: 'esm',
  target: ['chrome110', 'firefox115', 'safari16'],
  minify: true,
  sourcemap: 'linked',
  legalComments: 'linked',
  logLevel: 'warning',
};

mkdirSync(out, { recursive: true });
copyFileSync(join(src, 'index.html'), join(out, 'index.html'));
if (process.argv.includes('--watch')) {
  const ctx = await esbuild.context(options);
  await ctx.watch();
} else {
  await esbuild.build(options);
}
