#!/usr/bin/env node
// Committed launcher: npm links a workspace's bin at install time, before `prepare` has compiled
// dist/, and skips targets that do not exist yet; this file always exists.
await import('../dist/main.js');
