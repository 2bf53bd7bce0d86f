// Model fingerprints and the policies keyed by them: the fingerprint covers config.json and the weights
// (single file or shards), its per-file cache rehashes only what changed (mtime, size, or a rewrite with
// the old mtime restored), the worker's cache reaches its sandboxed processors, scans register it on
// base_models, the same model id with other weights gets its own policy, and the migration that added it
// runs on a database that already holds policies (they are kept, never matched again).
import { describe, it, expect, beforeEach, afterAll } from 'vitest';
import { spawnSync } from 'node:child_process';
import { cpSync, mkdirSync, mkdtempSync, readdirSync, renameSync, rmSync, statSync, utimesSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import pg from 'pg';
import {
  clearFingerprintCache,
  fingerprintCacheSnapshot,
  fingerprintStats,
  modelContentFiles,
  modelFingerprint,
  seedFingerprintCache,
} from '../../packages/core/src/service/fingerprint.js';
import { hostFingerprint, scanModels } from '../../packages/core/src/service/models.js';
import { registerModels } from '../../packages/store/src/models.js';
import { createPrisma } from '../../packages/store/src/db.js';
import { findPolicy, policyObject, storePolicy } from '../../packages/store/src/policies.js';
import { createTestEnv, REPO_ROOT } from '../helpers/service.js';

const PG_ADMIN_URL = process.env.EDGETUNE_TEST_PG_URL ?? 'postgresql://postgres@127.0.0.1:5432/postgres';
const root = mkdtempSync(join(tmpdir(), 'edgetune-fp-'));
afterAll(() => rmSync(root, { recursive: true, force: true }));

const CONFIG = {
  architectures: ['LlamaForCausalLM'],
  model_type: 'llama',
  hidden_size: 32,
  intermediate_size: 64,
  num_hidden_layers: 4,
  num_attention_heads: 4,
  num_key_value_heads: 2,
  vocab_size: 384,
};

/** A model folder with a config and `weights` bytes as model.safetensors (the fingerprint never parses them). */
function model(dir: string, weights: Buffer): string {
  mkdirSync(dir, { recursive: true });
  writeFileSync(join(dir, 'config.json'), JSON.stringify(CONFIG));
  writeFileSync(join(dir, 'model.safetensors'), weights);
  writeFileSync(join(dir, 'tokenizer.json'), '{}');
  return dir;
}

const bytes = (n: number, seed: number) => Buffer.from(Array.from({ length: n }, (_, i) => (i * 31 + seed * 7) & 255));
const hashed = () => fingerprintStats.filesHashed;

beforeEach(() => clearFingerprintCache());

describe('modelFingerprint', () => {
  it('covers config.json and the weights only; same files give the same fingerprint wherever they are', async () => {
    const a = model(join(root, 'a'), bytes(4096, 1));
    const fp = await modelFingerprint(a);
    expect(fp).toMatch(/^[0-9a-f]{64}$/);
    expect(modelContentFiles(a)).toEqual(['config.json', 'model.safetensors']);
    // a copy elsewhere agrees; a tokenizer change does not matter
    const copy = join(root, 'a-copy');
    cpSync(a, copy, { recursive: true });
    writeFileSync(join(copy, 'tokenizer.json'), '{"other": true}');
    expect(await modelFingerprint(copy)).toBe(fp);
    // same shapes (size), other weights; other config
    const b = model(join(root, 'b'), bytes(4096, 2));
    expect(await modelFingerprint(b)).not.toBe(fp);
    writeFileSync(join(copy, 'config.json'), JSON.stringify({ ...CONFIG, rms_norm_eps: 1e-6 }));
    expect(await modelFingerprint(copy)).not.toBe(fp);
  });

  it('sharded weights: the index and every shard it lists; null without complete weights', async () => {
    const dir = join(root, 'sharded');
    mkdirSync(dir, { recursive: true });
    writeFileSync(join(dir, 'config.json'), JSON.stringify(CONFIG));
    expect(await modelFingerprint(dir)).toBeNull(); // config only (an API host without weights)
    writeFileSync(
      join(dir, 'model.safetensors.index.json'),
      JSON.stringify({
        weight_map: {
          'a.weight': 'model-00002-of-00002.safetensors',
          'b.weight': 'model-00001-of-00002.safetensors',
          'c.weight': 'model-00001-of-00002.safetensors',
        },
      }),
    );
    writeFileSync(join(dir, 'model-00001-of-00002.safetensors'), bytes(1000, 1));
    expect(await modelFingerprint(dir)).toBeNull(); // a listed shard is missing
    writeFileSync(join(dir, 'model-00002-of-00002.safetensors'), bytes(1000, 2));
    expect(modelContentFiles(dir)).toEqual([
      'config.json',
      'model.safetensors.index.json',
      'model-00001-of-00002.safetensors',
      'model-00002-of-00002.safetensors',
    ]);
    const fp = await modelFingerprint(dir);
    expect(fp).toMatch(/^[0-9a-f]{64}$/);
    writeFileSync(join(dir, 'model-00002-of-00002.safetensors'), bytes(1000, 3));
    expect(await modelFingerprint(dir)).not.toBe(fp);
  });

  it('caches file hashes: an unchanged folder is not read again; a new mtime, a new size or a rewrite with the old mtime restored is', async () => {
    const dir = model(join(root, 'cached'), bytes(64 * 1024, 1));
    const w = join(dir, 'model.safetensors');
    const h0 = hashed();
    const fp = await modelFingerprint(dir);
    expect(hashed() - h0).toBe(2); // config.json + weights
    for (let i = 0; i < 3; i++) expect(await modelFingerprint(dir)).toBe(fp);
    expect(hashed() - h0).toBe(2);
    // touched: rehashed (same bytes, same fingerprint)
    const later = new Date(statSync(w).mtimeMs + 5000);
    utimesSync(w, later, later);
    expect(await modelFingerprint(dir)).toBe(fp);
    expect(hashed() - h0).toBe(3);
    expect(await modelFingerprint(dir)).toBe(fp);
    expect(hashed() - h0).toBe(3);
    // rewritten in place with other weights of the same size, then its old mtime restored (cp -p, rsync -a)
    const before = statSync(w);
    writeFileSync(w, bytes(64 * 1024, 2));
    utimesSync(w, before.atime, before.mtime);
    expect(statSync(w).mtimeMs).toBe(before.mtimeMs);
    const fp2 = await modelFingerprint(dir);
    expect(fp2).not.toBe(fp);
    expect(hashed() - h0).toBe(4);
    // replaced by another file with the same size and mtime (a new inode), as a folder an operator swaps in
    const tmp = join(dir, 'new.tmp');
    writeFileSync(tmp, bytes(64 * 1024, 1));
    const cur = statSync(w);
    utimesSync(tmp, cur.atime, cur.mtime);
    renameSync(tmp, w);
    expect(statSync(w).mtimeMs).toBe(cur.mtimeMs);
    expect(await modelFingerprint(dir)).toBe(fp);
    expect(hashed() - h0).toBe(5);
  });

  it("a cache snapshot seeds another process's cache (as the worker hands it to its processors); stale entries are rehashed", async () => {
    const dir = model(join(root, 'seeded'), bytes(8192, 4));
    const fp = await modelFingerprint(dir);
    const snap = JSON.stringify(fingerprintCacheSnapshot());
    clearFingerprintCache();
    seedFingerprintCache(snap);
    seedFingerprintCache('not json');
    seedFingerprintCache([{ path: 'x' } as never]);
    const h0 = hashed();
    expect(await modelFingerprint(dir)).toBe(fp);
    expect(hashed()).toBe(h0);
    // an entry whose file changed since is not trusted
    clearFingerprintCache();
    seedFingerprintCache(snap);
    writeFileSync(join(dir, 'model.safetensors'), bytes(8192, 5));
    expect(await modelFingerprint(dir)).not.toBe(fp);
    expect(hashed()).toBe(h0 + 1);
  });
});

describe('policies keyed by model content', () => {
  it('scans register fingerprints; the same model id with other weights gets a new policy, unchanged weights reuse theirs; old policies never match', async () => {
    const t = await createTestEnv();
    const db = createPrisma(t.databaseUrl, { max: 2 });
    try {
      const dir = model(join(t.modelsDir, 'tiny'), bytes(4096, 1));
      mkdirSync(join(root, 'api-models', 'tiny'), { recursive: true });
      writeFileSync(join(root, 'api-models', 'tiny', 'config.json'), JSON.stringify(CONFIG)); // a host without the weights
      const logs: string[] = [];
      const scanned = await scanModels(t.modelsDir);
      const fp1 = await modelFingerprint(dir);
      expect(scanned).toMatchObject([{ id: 'tiny', numLayers: 4, fingerprint: fp1 }]);
      await registerModels(db, scanned, 'worker@a', (m) => logs.push(m));
      // a host without weights keeps the recorded fingerprint, and plans with it
      await registerModels(db, await scanModels(join(root, 'api-models')), 'api@b', (m) => logs.push(m));
      expect(await db.baseModel.findUnique({ where: { id: 'tiny' } })).toMatchObject({ fingerprint: fp1, hosts: ['worker@a', 'api@b'] });
      expect(await hostFingerprint(join(root, 'api-models'), 'tiny', fp1)).toBe(fp1);
      expect(await hostFingerprint(t.modelsDir, 'tiny', null)).toBe(fp1);
      expect(await hostFingerprint(t.modelsDir, '../models/tiny', 'reported')).toBe('reported');
      expect(logs).toEqual([]);

      const budget = {
        target_sparsity: 0.5,
        avg_bits: 4,
        method: 'wanda',
        sparsity_rule: 'owl',
        bits_rule: 'budgeted',
        group_size: 0,
      } as const;
      const policy = (x: number) => ({
        sparsity: [x, x, x, x],
        bits: [4, 4, 4, 4],
        targetSparsity: 0.5,
        avgBits: 4,
        sparsityRule: 'owl' as const,
        bitsRule: 'budgeted' as const,
        pruneSensitivity: [1, 1, 1, 1],
        quantSensitivity: [1, 1, 1, 1],
      });
      const store = (fingerprint: string, x: number) =>
        storePolicy(db, { modelId: 'tiny', fingerprint, compression: budget, policy: policy(x), sensitivity: null, jobId: null });
      const a = await store(fp1!, 0.5);
      expect(a.created).toBe(true);
      expect(policyObject(a.row)).toMatchObject({ model: 'tiny', model_fingerprint: fp1 });
      // unchanged weights: the lookup finds it, and storing again keeps it
      expect((await findPolicy(db, 'tiny', (await scanModels(t.modelsDir))[0].fingerprint, budget))?.id).toBe(a.row.id);
      expect(await store(fp1!, 0.4)).toMatchObject({ created: false, row: { id: a.row.id } });

      // the folder is re-pretrained with the same shapes: a new fingerprint, no stored policy, a new one is created
      writeFileSync(join(dir, 'model.safetensors'), bytes(4096, 2));
      const rescanned = await scanModels(t.modelsDir);
      const fp2 = rescanned[0].fingerprint!;
      expect(fp2).toMatch(/^[0-9a-f]{64}$/);
      expect(fp2).not.toBe(fp1);
      await registerModels(db, rescanned, 'worker@c', (m) => logs.push(m));
      expect(logs).toEqual([expect.stringContaining(`model tiny: this host's weights (fingerprint ${fp2.slice(0, 12)}) differ`)]);
      expect((await db.baseModel.findUnique({ where: { id: 'tiny' } }))?.fingerprint).toBe(fp2);
      expect(await findPolicy(db, 'tiny', fp2, budget)).toBeNull();
      const b = await store(fp2, 0.3);
      expect(b).toMatchObject({ created: true, row: { modelFingerprint: fp2, sparsity: [0.3, 0.3, 0.3, 0.3] } });
      expect(b.row.id).not.toBe(a.row.id);
      expect((await findPolicy(db, 'tiny', fp1!, budget))?.id).toBe(a.row.id);
      // no fingerprint matches nothing (and cannot be stored)
      expect(await findPolicy(db, 'tiny', null, budget)).toBeNull();
      expect(await findPolicy(db, 'tiny', '', budget)).toBeNull();
      await expect(store('', 0.2)).rejects.toThrow(/no fingerprint/);
      expect(await db.policy.count()).toBe(2);
    } finally {
      await db.$disconnect();
      await t.destroy();
    }
  });

  it('the migration adding fingerprints runs on a database that already has policies: they are kept with an empty fingerprint and match no lookup', async () => {
    const dbName = `edgetune_test_fpmig_${randomBytes(4).toString('hex')}`;
    const u = new URL(PG_ADMIN_URL);
    u.pathname = `/${dbName}`;
    const url = u.toString();
    const admin = async (sql: string) => {
      const c = new pg.Client({ connectionString: PG_ADMIN_URL });
      await c.connect();
      try {
        await c.query(sql);
      } finally {
        await c.end();
      }
    };
    const migrations = join(REPO_ROOT, 'prisma', 'migrations');
    const all = readdirSync(migrations)
      .filter((d) => /^\d+_/.test(d))
      .sort();
    const added = all.findIndex((d) => d.endsWith('_model_fingerprints'));
    expect(added).toBeGreaterThan(0);
    // the history up to the migration before it
    const before = join(root, 'migrations-before');
    mkdirSync(before, { recursive: true });
    cpSync(join(migrations, 'migration_lock.toml'), join(before, 'migration_lock.toml'));
    for (const d of all.slice(0, added)) cpSync(join(migrations, d), join(before, d), { recursive: true });
    const deploy = (dir: string) =>
      spawnSync(
        process.execPath,
        [join(REPO_ROOT, 'scripts', 'prisma-wasm-migrate.mjs'), 'deploy', join(REPO_ROOT, 'prisma', 'schema.prisma'), dir],
        { env: { ...process.env, DATABASE_URL: url }, encoding: 'utf8' },
      );
    await admin(`CREATE DATABASE "${dbName}"`);
    try {
      let r = deploy(before);
      expect(r.status, r.stderr).toBe(0);
      const c = new pg.Client({ connectionString: url });
      await c.connect();
      try {
        await c.query(`INSERT INTO base_models (id, config, num_layers, hidden_size, vocab_size, max_position_embeddings, param_count, hosts, updated_at)
          VALUES ('tiny', '{}', 4, 32, 384, 512, 1000, ARRAY['worker@old'], now())`);
        for (const [id, s] of [
          ['pol_old1', 0.5],
          ['pol_old2', 0.3],
        ] as const) {
          await c.query(
            `INSERT INTO policies (id, base_model_id, target_sparsity, avg_bits, method, sparsity_rule, bits_rule, group_size, num_layers, sparsity, bits, prune_sensitivity, quant_sensitivity)
            VALUES ($1, 'tiny', $2, 4, 'wanda', 'owl', 'budgeted', 0, 4, ARRAY[0.5,0.5,0.5,0.5], ARRAY[4,4,4,4], ARRAY[1,1,1,1], ARRAY[1,1,1,1])`,
            [id, s],
          );
        }
      } finally {
        await c.end();
      }
      r = deploy(migrations);
      expect(r.status, r.stderr).toBe(0);
      const db = createPrisma(url, { max: 1 });
      try {
        const rows = await db.policy.findMany({ orderBy: { id: 'asc' } });
        expect(rows.map((p) => [p.id, p.modelFingerprint])).toEqual([
          ['pol_old1', ''],
          ['pol_old2', ''],
        ]);
        expect(policyObject(rows[0]).model_fingerprint).toBeNull();
        expect((await db.baseModel.findUnique({ where: { id: 'tiny' } }))?.fingerprint).toBeNull();
        const budget = {
          target_sparsity: 0.5,
          avg_bits: 4,
          method: 'wanda',
          sparsity_rule: 'owl',
          bits_rule: 'budgeted',
          group_size: 0,
        } as const;
        const fp = 'a'.repeat(64);
        expect(await findPolicy(db, 'tiny', fp, budget)).toBeNull();
        const p = {
          sparsity: [0.4, 0.4, 0.4, 0.4],
          bits: [4, 4, 4, 4],
          targetSparsity: 0.5,
          avgBits: 4,
          sparsityRule: 'owl',
          bitsRule: 'budgeted',
          pruneSensitivity: [1, 1, 1, 1],
          quantSensitivity: [1, 1, 1, 1],
        } as const;
        const s = await storePolicy(db, {
          modelId: 'tiny',
          fingerprint: fp,
          compression: budget,
          policy: {
            ...p,
            sparsity: [...p.sparsity],
            bits: [...p.bits],
            pruneSensitivity: [...p.pruneSensitivity],
            quantSensitivity: [...p.quantSensitivity],
          },
          sensitivity: null,
          jobId: null,
        });
        expect(s.created).toBe(true);
        expect(s.row.id).not.toBe('pol_old1');
        expect(await db.policy.count()).toBe(3);
      } finally {
        await db.$disconnect();
      }
    } finally {
      await admin(`DROP DATABASE IF EXISTS "${dbName}" WITH (FORCE)`).catch(() => {});
    }
  });
});
