/**
 * What `GET /metrics` reads from PostgreSQL at scrape time: four aggregate queries, so that every API replica
 * reports the same numbers and a scrape costs the same however many jobs ran.
 */
import { isLive, JOB_STATUSES } from '@edgetune/core';
import type { PrismaClient } from '@edgetune/store';

/** Upper bounds of the job duration histogram's buckets, seconds (10 s to a day; jobs run minutes to hours). */
export const JOB_DURATION_BUCKETS_SECONDS = [10, 30, 60, 300, 900, 1800, 3600, 7200, 14_400, 43_200, 86_400];

/** Durations of the finished jobs of one status, as a cumulative histogram. */
export interface DurationHistogram {
  status: string;
  /** jobs with `finished_at - started_at` <= each bound of {@link JOB_DURATION_BUCKETS_SECONDS}, in its order */
  buckets: number[];
  /** finished jobs (the `+Inf` bucket) */
  count: number;
  /** their durations added, seconds */
  sum: number;
}

/** Jobs by status, and the durations of finished ones. */
export interface JobStats {
  /** every status of JOB_STATUSES (0 where none) */
  byStatus: Record<string, number>;
  /** one per status that has finished jobs (a job with both `started_at` and `finished_at`) */
  durations: DurationHistogram[];
}

/**
 * Counts jobs by status and buckets the durations of finished jobs (two queries over `jobs`).
 * Computed from the rows at every scrape, the histogram is cumulative for as long as rows are kept, the
 * same on every API replica, and survives API restarts; deleting a project's jobs lowers it (Prometheus
 * treats the drop as a counter reset).
 */
export async function jobStats(db: PrismaClient): Promise<JobStats> {
  const totals = await db.$queryRaw<{ status: string; jobs: number; finished: number; seconds: number }[]>`
    SELECT status, count(*)::int AS jobs, count(d)::int AS finished, coalesce(sum(d), 0)::float8 AS seconds
    FROM (SELECT status, extract(epoch FROM finished_at - started_at)::float8 AS d FROM jobs) j
    GROUP BY status`;
  const within = await db.$queryRaw<{ status: string; le: number; n: number }[]>`
    SELECT status, le, count(*)::int AS n
    FROM jobs CROSS JOIN unnest(${JOB_DURATION_BUCKETS_SECONDS}::float8[]) AS le
    WHERE finished_at IS NOT NULL AND started_at IS NOT NULL AND extract(epoch FROM finished_at - started_at) <= le
    GROUP BY status, le`;
  const byStatus: Record<string, number> = Object.fromEntries(JOB_STATUSES.map((s) => [s, 0]));
  for (const t of totals) byStatus[t.status] = t.jobs;
  const durations = totals
    .filter((t) => t.finished > 0)
    .map((t) => ({
      status: t.status,
      buckets: JOB_DURATION_BUCKETS_SECONDS.map((le) => within.find((w) => w.status === t.status && w.le === le)?.n ?? 0),
      count: t.finished,
      sum: t.seconds,
    }));
  return { byStatus, durations };
}

/** One registered worker as the metrics report it. Seconds, bytes, tokens/s. */
export interface WorkerStats {
  id: string;
  /** heard from within 3 heartbeats (core isLive) */
  live: boolean;
  heartbeatAt: Date;
  memoryBudgetBytes: number;
  /** jobs `running` on it */
  runningJobs: number;
  /** the latest optimizer step's duration among its running jobs (the longest if several), seconds; null: none reported */
  stepSeconds: number | null;
  /** its running jobs' latest training throughput, added, tokens/s; null: none reported */
  tokensPerSecond: number | null;
  /** its job processes' resident memory at their latest step, added, bytes; null: none reported */
  rssBytes: number | null;
}

/** The step metrics a worker writes into a running job's `latest_metrics` (apps/worker job/progress.ts). */
type StepMetrics = { step_ms?: unknown; tokens_per_sec?: unknown; rss_bytes?: unknown };

/**
 * Every registered worker with its liveness and its running jobs' latest step metrics (two queries:
 * `workers`, and the running jobs' `latest_metrics`, which workers refresh about every 250 ms).
 */
export async function workerStats(db: PrismaClient, heartbeatMs: number, now = Date.now()): Promise<WorkerStats[]> {
  const [workers, running] = await Promise.all([
    db.worker.findMany({ select: { id: true, heartbeatAt: true, memoryBudgetBytes: true }, orderBy: { id: 'asc' } }),
    db.job.findMany({ where: { status: 'running', workerId: { not: null } }, select: { workerId: true, latestMetrics: true } }),
  ]);
  return workers.map((w) => {
    const jobs = running.filter((j) => j.workerId === w.id);
    const metrics = jobs.map((j) => (j.latestMetrics ?? {}) as StepMetrics);
    const numbers = (k: keyof StepMetrics) => metrics.map((m) => m[k]).filter((v): v is number => typeof v === 'number');
    const stepMs = numbers('step_ms');
    const tps = numbers('tokens_per_sec');
    const rss = numbers('rss_bytes');
    const add = (xs: number[]) => xs.reduce((a, b) => a + b, 0);
    return {
      id: w.id,
      live: isLive(w, heartbeatMs, now),
      heartbeatAt: w.heartbeatAt,
      memoryBudgetBytes: Number(w.memoryBudgetBytes),
      runningJobs: jobs.length,
      stepSeconds: stepMs.length ? Math.max(...stepMs) / 1000 : null,
      tokensPerSecond: tps.length ? add(tps) : null,
      rssBytes: rss.length ? add(rss) : null,
    };
  });
}
