/**
 * `GET /metrics`: Prometheus text exposition (prom-client), one scrape target for the whole service. The API
 * times its own requests; jobs, job durations and workers are read from PostgreSQL and the queue depth from
 * Redis at each scrape, so workers need no port of their own. A source that fails is skipped (its series
 * vanish and `edgetune_metrics_source_up` says 0): the scrape itself answers 200. Not part of the OpenAPI
 * document; open unless EDGETUNE_METRICS_TOKEN is set, then it needs that bearer token (not an API key).
 */
import { createHash, timingSafeEqual } from 'node:crypto';
import type { FastifyRequest } from 'fastify';
import fp from 'fastify-plugin';
import { type Aggregator, collectDefaultMetrics, Gauge, Histogram, type MetricType, Registry } from 'prom-client';
import { QUEUE_NAME } from '@edgetune/core';
import { within } from '../deadline.js';
import { ApiError } from '../errors.js';
import { JOB_DURATION_BUCKETS_SECONDS, jobStats, workerStats, type DurationHistogram } from '../services/metrics.js';

/** Queue states reported by `edgetune_queue_jobs` (BullMQ `getJobCounts`). */
const QUEUE_STATES = ['waiting', 'prioritized', 'delayed', 'active', 'waiting-children', 'completed', 'failed'] as const;

/** How long a scrape waits for one source (PostgreSQL, Redis) before skipping it, ms. */
const SOURCE_TIMEOUT_MS = 2000;

/** The `route` label of a request no route matched (404s of arbitrary URLs must not each make a series). */
const UNMATCHED_ROUTE = 'unmatched';

/**
 * A histogram whose buckets are computed from database rows at scrape time (prom-client's Histogram only
 * counts what this process observes): {@link RowHistogram.set} replaces every series. `le` is in the label
 * type only for the bucket samples it renders; its configured label names stay `status`.
 */
class RowHistogram extends Histogram<'status' | 'le'> {
  // set by prom-client's Metric constructor
  declare readonly name: string;
  declare readonly help: string;
  declare readonly type: MetricType;
  declare readonly aggregator: Aggregator;
  private rows: DurationHistogram[] = [];

  /** Replaces the series with `rows` (one per status label). */
  set(rows: DurationHistogram[]): void {
    this.rows = rows;
  }

  override async get() {
    const { name } = this;
    const values = this.rows.flatMap((r) => [
      ...JOB_DURATION_BUCKETS_SECONDS.map((le, i) => ({
        metricName: `${name}_bucket`,
        labels: { le, status: r.status },
        value: r.buckets[i],
      })),
      { metricName: `${name}_bucket`, labels: { le: '+Inf', status: r.status }, value: r.count },
      { metricName: `${name}_sum`, labels: { status: r.status }, value: r.sum },
      { metricName: `${name}_count`, labels: { status: r.status }, value: r.count },
    ]);
    // nothing to collect here: the plugin's refresh() reads the rows and calls set()
    return { name, help: this.help, type: this.type, aggregator: this.aggregator, collect: () => {}, values };
  }

  /** What the registry's text output reads (prom-client prefers it to get() where a metric has it). */
  getForPromString() {
    return this.get();
  }
}

/** sha256 of a token, so that comparing two takes the same time whatever they share. */
const digest = (s: string) => createHash('sha256').update(s).digest();

/** Throws 401 unless the request carries `Authorization: Bearer <token>`. */
function checkToken(req: FastifyRequest, token: string): void {
  const headers = { 'www-authenticate': 'Bearer realm="metrics"' };
  const h = req.headers.authorization;
  if (!h)
    throw new ApiError(401, 'missing_metrics_token', 'Missing metrics token: send Authorization: Bearer <EDGETUNE_METRICS_TOKEN>', {
      headers,
    });
  const m = /^Bearer\s+(\S+)\s*$/i.exec(h);
  if (!m || !timingSafeEqual(digest(m[1]), digest(token)))
    throw new ApiError(401, 'invalid_metrics_token', 'Invalid metrics token', { headers });
}

/** Registers the request timer (every route, so before them) and `GET /metrics`. Connects to nothing. */
const metrics = fp(
  async (app) => {
    const register = new Registry();
    collectDefaultMetrics({ register, prefix: 'edgetune_api_' });
    const registers = [register];

    const requests = new Histogram({
      name: 'edgetune_http_request_duration_seconds',
      help: 'API request duration by method, route pattern and status code, seconds',
      labelNames: ['method', 'route', 'status_code'] as const,
      registers,
    });
    app.addHook('onResponse', async (req, reply) => {
      const route = req.routeOptions.url ?? UNMATCHED_ROUTE;
      requests.observe({ method: req.method, route, status_code: reply.statusCode }, reply.elapsedTime / 1000);
    });

    const sourceUp = new Gauge({
      name: 'edgetune_metrics_source_up',
      help: 'whether the last scrape read the source (postgresql, redis): 1 yes, 0 no (its series are missing)',
      labelNames: ['source'] as const,
      registers,
    });
    const jobs = new Gauge({ name: 'edgetune_jobs', help: 'jobs by status', labelNames: ['status'] as const, registers });
    const jobDuration = new RowHistogram({
      name: 'edgetune_job_duration_seconds',
      help: 'finished jobs by status: finished_at - started_at, seconds (computed from the jobs table at each scrape)',
      labelNames: ['status'] as const,
      buckets: JOB_DURATION_BUCKETS_SECONDS,
      registers,
    });
    const queueJobs = new Gauge({
      name: 'edgetune_queue_jobs',
      help: 'jobs in the BullMQ queue by state',
      labelNames: ['queue', 'state'] as const,
      registers,
    });
    const gauge = (name: string, help: string) => new Gauge({ name, help, labelNames: ['worker_id'] as const, registers });
    const workerUp = gauge('edgetune_worker_up', 'whether the worker heartbeated within 3 heartbeat intervals: 1 live, 0 not');
    const workerHeartbeat = gauge('edgetune_worker_last_heartbeat_timestamp_seconds', "the worker's last heartbeat, Unix time, seconds");
    const workerBudget = gauge('edgetune_worker_memory_budget_bytes', 'memory a job may use on the worker, as it reports it, bytes');
    const workerJobs = gauge('edgetune_worker_running_jobs', 'jobs running on the worker');
    const workerStep = gauge(
      'edgetune_worker_step_duration_seconds',
      "latest optimizer step's duration among the worker's running jobs (the longest if several), seconds",
    );
    const workerTokens = gauge(
      'edgetune_worker_tokens_per_second',
      "training throughput of the worker's running jobs at their latest step, tokens/s",
    );
    const workerRss = gauge(
      'edgetune_worker_resident_memory_bytes',
      "resident memory of the worker's job processes at their latest step, bytes",
    );
    const perWorker = [workerUp, workerHeartbeat, workerBudget, workerJobs, workerStep, workerTokens, workerRss];

    /** Reads every source into the gauges; a failing source is skipped. */
    const refresh = async () => {
      const { db, redis, queue, config } = app;
      for (const g of [jobs, queueJobs, ...perWorker]) g.reset();
      jobDuration.set([]);
      const fromDb = within(Promise.all([jobStats(db), workerStats(db, config.workerHeartbeatMs)]), SOURCE_TIMEOUT_MS).then(
        ([j, workers]) => {
          for (const [status, n] of Object.entries(j.byStatus)) jobs.set({ status }, n);
          jobDuration.set(j.durations);
          for (const w of workers) {
            const l = { worker_id: w.id };
            workerUp.set(l, w.live ? 1 : 0);
            workerHeartbeat.set(l, w.heartbeatAt.getTime() / 1000);
            workerBudget.set(l, w.memoryBudgetBytes);
            workerJobs.set(l, w.runningJobs);
            if (w.stepSeconds !== null) workerStep.set(l, w.stepSeconds);
            if (w.tokensPerSecond !== null) workerTokens.set(l, w.tokensPerSecond);
            if (w.rssBytes !== null) workerRss.set(l, w.rssBytes);
          }
          return 1;
        },
        (e: Error) => {
          app.log.warn(`metrics: PostgreSQL skipped: ${e.message}`);
          return 0;
        },
      );
      // a Redis that is down answers nothing until it is back: skip it at once rather than wait
      const fromRedis = (
        redis.status === 'ready'
          ? within(queue.getJobCounts(...QUEUE_STATES), SOURCE_TIMEOUT_MS)
          : Promise.reject(new Error(`redis ${redis.status}`))
      ).then(
        (counts) => {
          for (const state of QUEUE_STATES) queueJobs.set({ queue: QUEUE_NAME, state }, counts[state] ?? 0);
          return 1;
        },
        (e: Error) => {
          app.log.warn(`metrics: Redis skipped: ${e.message}`);
          return 0;
        },
      );
      const [pg, rd] = await Promise.all([fromDb, fromRedis]);
      sourceUp.set({ source: 'postgresql' }, pg);
      sourceUp.set({ source: 'redis' }, rd);
      return register.metrics();
    };
    // concurrent scrapes share one refresh (the gauges are reset and refilled by it)
    let scraping: Promise<string> | null = null;

    app.get('/metrics', { schema: { hide: true }, config: { public: true } }, async (req, reply) => {
      if (app.config.metricsToken) checkToken(req, app.config.metricsToken);
      scraping ??= refresh().finally(() => {
        scraping = null;
      });
      const text = await scraping;
      return reply.type(register.contentType).send(text);
    });
  },
  { name: 'metrics', dependencies: ['deps'] },
);

export default metrics;
