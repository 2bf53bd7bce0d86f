#!/usr/bin/env node
// `npm run docs:config`: writes docs/configuration.md from the environment schema (packages/core/src/service/env-vars.ts),
// through the built core: run `npx tsc -b` first. tests/core/config.test.ts fails while the committed file differs.
import { writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { configurationMarkdown } from '../packages/core/dist/service/env-doc.js';

const out = join(dirname(fileURLToPath(import.meta.url)), '..', 'docs', 'configuration.md');
writeFileSync(out, configurationMarkdown());
console.log(`wrote ${out}`);
