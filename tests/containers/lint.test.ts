// Container files, checked statically (no Docker engine here): `dockerfile-utils lint Dockerfile` and
// `dclint docker-compose.yml` (rules tamed in .dclintrc; errors and warnings both fail), plus checks that the
// files wire up what the service needs: one image for API and worker, the GPU build argument, the models
// volume, healthchecks, and only environment variables that docs/configuration.md lists.
import { describe, it, expect } from 'vitest';
import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { REPO_ROOT } from '../helpers/service.js';

const require = createRequire(import.meta.url);
const binOf = (pkg: string, name: string) => {
  const dir = dirname(require.resolve(`${pkg}/package.json`));
  const bin = JSON.parse(readFileSync(join(dir, 'package.json'), 'utf8')).bin;
  return join(dir, typeof bin === 'string' ? bin : bin[name]);
};
// dclint's own YAML parser (the one it validates with), resolved from dclint's folder.
const YAML = createRequire(require.resolve('dclint/package.json'))('yaml') as typeof import('yaml');

const read = (f: string) => readFileSync(join(REPO_ROOT, f), 'utf8');
const run = (bin: string, args: string[]) =>
  spawnSync(process.execPath, [bin, ...args], {
    cwd: REPO_ROOT,
    encoding: 'utf8',
    env: { ...process.env, NO_COLOR: '1', FORCE_COLOR: '0' },
  });

type Service = {
  image?: string;
  build?: { context: string; args?: Record<string, string> };
  command?: string[];
  volumes?: string[];
  environment?: Record<string, string>;
  healthcheck?: { test: string[] };
  depends_on?: Record<string, { condition: string }>;
  profiles?: string[];
  deploy?: { resources?: { reservations?: { devices?: { capabilities: string[] }[] } } };
};
const compose = () =>
  YAML.parse(read('docker-compose.yml'), { merge: true }) as { services: Record<string, Service>; volumes: Record<string, unknown> };

/** Instructions of the Dockerfile (continuations joined, comments dropped). */
function dockerfile(): { op: string; args: string }[] {
  return read('Dockerfile')
    .replace(/\\\n/g, ' ')
    .split('\n')
    .map((l) => l.trim())
    .filter((l) => l && !l.startsWith('#'))
    .map((l) => {
      const [op, ...rest] = l.split(/\s+/);
      return { op: op.toUpperCase(), args: rest.join(' ') };
    });
}

describe('Dockerfile', () => {
  it('passes dockerfile-utils lint with no problems', () => {
    const r = run(binOf('dockerfile-utils', 'dockerfile-utils'), ['lint', 'Dockerfile']);
    expect(r.stdout + r.stderr).toBe('');
    expect(r.status).toBe(0);
  });

  it('dockerfile-utils reports real errors (the check is live)', () => {
    const r = run(binOf('dockerfile-utils', 'dockerfile-utils'), [
      'lint',
      join(REPO_ROOT, 'tests', 'containers', 'fixtures', 'Dockerfile.bad'),
    ]);
    expect(r.status).not.toBe(0);
    expect(r.stdout).toMatch(/Unknown instruction: RUNN/);
  });

  it('is multi-stage: builds with npm ci + the OpenBLAS addon, runs as a non-root user, GPU=1 adds tfjs-node-gpu', () => {
    const ins = dockerfile();
    const froms = ins.filter((i) => i.op === 'FROM');
    expect(froms.some((f) => / AS build$/i.test(f.args))).toBe(true);
    expect(froms.at(-1)!.args).toMatch(/ AS runtime$/i);
    const text = read('Dockerfile');
    expect(ins.some((i) => i.op === 'ARG' && /^GPU=0$/.test(i.args))).toBe(true);
    expect(text).toMatch(/libopenblas-dev/);
    expect(text).toMatch(/npm ci\b/);
    expect(text).toMatch(/blas_addon\.node/);
    expect(text).toMatch(/if \[ "\$GPU" = "1" \]; then npm install [^;]*@tensorflow\/tfjs-node-gpu/);
    // runtime stage: the shared library, a non-root user, API by default
    const runtime = ins.slice(ins.lastIndexOf(froms.at(-1)!));
    expect(runtime.some((i) => i.op === 'RUN' && /libopenblas0/.test(i.args))).toBe(true);
    const user = runtime.filter((i) => i.op === 'USER').at(-1);
    expect(user?.args).toBeTruthy();
    expect(user!.args).not.toMatch(/^(root|0)(:|$)/);
    expect(runtime.find((i) => i.op === 'CMD')?.args).toContain('apps/api/dist/main.js');
    expect(runtime.some((i) => i.op === 'ENV' && /EDGETUNE_MODELS_DIR=\/models/.test(i.args))).toBe(true);
    expect(runtime.some((i) => i.op === 'HEALTHCHECK' && /\/readyz/.test(i.args))).toBe(true);
  });

  it('copies only what exists or what the build makes', () => {
    const copies = dockerfile().filter((i) => i.op === 'COPY' && /--from=build /.test(i.args));
    expect(copies.length).toBeGreaterThan(5);
    for (const c of copies) {
      const src = c.args.split(/\s+/).filter((a) => !a.startsWith('--'))[0];
      if (!src.startsWith('/app/')) continue;
      const rel = src.slice('/app/'.length);
      if (rel === 'node_modules' || rel === 'models') continue; // installed / made by the build stage
      // dist/ comes from `tsc -b` (a tsconfig.json beside it), native/build from the addon's C sources
      const tsProject = rel.match(/^(.*)\/dist$/)?.[1];
      const nativeSrc = rel.endsWith('native/build') ? rel.replace(/\/build$/, '') : undefined;
      const source = tsProject ? join(tsProject, 'tsconfig.json') : nativeSrc ? join(nativeSrc, 'blas_addon.c') : rel;
      expect(existsSync(join(REPO_ROOT, source)), `${c.args}: ${source}`).toBe(true);
    }
  });

  it('.dockerignore keeps builds and secrets out, sources in', () => {
    const ignore = read('.dockerignore')
      .split('\n')
      .map((l) => l.trim())
      .filter((l) => l && !l.startsWith('#'));
    expect(ignore).toEqual(expect.arrayContaining(['.git', '**/node_modules', '**/dist', '.env']));
    for (const needed of [
      'packages',
      'apps',
      'prisma',
      'scripts',
      'models',
      'package.json',
      'package-lock.json',
      'tsconfig.json',
      'tsconfig.base.json',
      'prisma.config.ts',
    ]) {
      expect(ignore, needed).not.toContain(needed);
      expect(existsSync(join(REPO_ROOT, needed)) || needed === 'models', needed).toBe(true);
    }
  });
});

describe('docker-compose.yml', () => {
  it('passes dclint (.dclintrc) with no errors or warnings', () => {
    const r = run(binOf('dclint', 'dclint'), ['docker-compose.yml', '-c', '.dclintrc', '--max-warnings', '0']);
    expect(r.stdout.trim() + r.stderr.trim(), r.stdout).toBe('');
    expect(r.status).toBe(0);
  });

  it('dclint reports real errors (the check is live)', () => {
    const r = run(binOf('dclint', 'dclint'), [join(REPO_ROOT, 'tests', 'containers', 'fixtures', 'compose.bad.yml'), '-c', '.dclintrc']);
    expect(r.status).not.toBe(0);
    expect(r.stdout).toMatch(/invalid-schema/);
  });

  it('runs postgres, redis, the API and a worker from one image, with healthchecks and the models volume', () => {
    const { services, volumes } = compose();
    expect(Object.keys(services)).toEqual(expect.arrayContaining(['postgres', 'redis', 'api', 'worker']));
    for (const [name, s] of Object.entries(services)) expect(s.healthcheck?.test?.length, name).toBeGreaterThan(0);
    const { api, worker } = services;
    expect(api.image).toBe(worker.image);
    expect(api.build?.context).toBe('.');
    expect(api.command!.join(' ')).toMatch(/scripts\/db-migrate\.mjs deploy && exec node apps\/api\/dist\/main\.js/);
    expect(worker.command).toEqual(['node', 'apps/worker/dist/main.js']);
    expect(worker.volumes).toContain('models:/models');
    expect(api.volumes).toContain('models:/models:ro');
    expect(volumes).toHaveProperty('models');
    expect(api.healthcheck!.test.join(' ')).toContain('/readyz');
    expect(api.depends_on).toEqual({ postgres: { condition: 'service_healthy' }, redis: { condition: 'service_healthy' } });
    expect(worker.depends_on?.api?.condition).toBe('service_healthy');
    for (const s of [api, worker]) {
      expect(s.environment?.DATABASE_URL).toMatch(/^postgresql:\/\/.*@postgres:5432\/edgetune$/);
      expect(s.environment?.REDIS_URL).toBe('redis://redis:6379');
      expect(s.environment?.EDGETUNE_MODELS_DIR).toBe('/models');
      expect(s.environment?.EDGETUNE_BOOTSTRAP_API_KEY).toMatch(/EDGETUNE_BOOTSTRAP_API_KEY/);
    }
  });

  it('has a GPU worker profile built with GPU=1 that reserves NVIDIA devices', () => {
    const gpu = compose().services['worker-gpu'];
    expect(gpu.profiles).toEqual(['gpu']);
    expect(gpu.build?.args?.GPU).toBe('1');
    expect(gpu.volumes).toContain('models:/models');
    expect(gpu.deploy?.resources?.reservations?.devices?.[0]?.capabilities).toContain('gpu');
  });

  it('sets only environment variables the service documents (docs/configuration.md)', () => {
    // the first column of the configuration table
    const documented = [...read('docs/configuration.md').matchAll(/^\| `([A-Z0-9_]+)` \|/gm)].map((m) => m[1]);
    expect(documented).toContain('DATABASE_URL');
    for (const name of ['api', 'worker', 'worker-gpu']) {
      for (const k of Object.keys(compose().services[name].environment ?? {})) expect(documented, `${name}: ${k}`).toContain(k);
    }
    for (const [, k] of read('docker-compose.yml').matchAll(/\$\{([A-Z0-9_]+)/g))
      expect(documented, `docker-compose.yml \${${k}}`).toContain(k);
    for (const i of dockerfile().filter((x) => x.op === 'ENV')) {
      for (const [, k] of i.args.matchAll(/([A-Z_]+)=/g))
        if (k !== 'NODE_ENV' && !k.startsWith('NVIDIA_')) expect(documented, `Dockerfile ENV ${k}`).toContain(k);
    }
  });
});
