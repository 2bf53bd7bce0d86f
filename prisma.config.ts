// Prisma 7 CLI configuration (generate). Migrations run through scripts/db-migrate.mjs (WASM schema engine).
import { defineConfig } from 'prisma/config';

export default defineConfig({
  schema: 'prisma/schema.prisma',
  migrations: { path: 'prisma/migrations' },
  // process.env, not env(): `prisma generate` must run without a database.
  datasource: { url: process.env.DATABASE_URL ?? 'postgresql://postgres@127.0.0.1:5432/edgetune' },
});
