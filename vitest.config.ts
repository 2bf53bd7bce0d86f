import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['tests/**/*.test.ts'],
    testTimeout: 120_000,
    hookTimeout: 120_000,
    // TF.js keeps global state (backend, registered kernels): one fork per file, files in parallel.
    pool: 'forks',
    // The JSON report lets .ci/run print the closing `N passed, N failed` line.
    reporters: ['default', 'json'],
    outputFile: { json: 'vitest.json' },
  },
});
