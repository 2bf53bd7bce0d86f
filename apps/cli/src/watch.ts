/**
 * `edgetune jobs watch JOB_ID`: follows a job over its SSE stream (the client reopens a dropped stream with
 * Last-Event-ID), draws step/loss/tokens per second/ETA with core's ProgressBar on stderr, prints the other
 * events as log lines, then the final job. Exit code 0 when the job succeeded, 1 when it failed or was cancelled.
 */
import { isTerminal, ProgressBar } from '@edgetune/core';
import { ok, type Job, type JobEvent, type JobStatus } from '@edgetune/client';
import type { Command, Context } from './args.js';
import { jobSummary } from './jobs.js';
import { time } from './format.js';

/** Follows job `id` until it is finished; returns its final status. @throws EdgetuneApiError, EdgetuneConnectionError */
export async function watchJob(ctx: Context, id: string): Promise<JobStatus> {
  const getJob = () => ok(ctx.client.GET('/v1/jobs/{id}', { params: { path: { id } } }));
  let job = await getJob();
  if (!isTerminal(job.status)) {
    let bar: ProgressBar | null = null;
    let total = 0;
    const log = (line: string) => {
      bar?.clear();
      process.stderr.write(`${line}\n`);
    };
    const stream = ctx.client.streamJobEvents(id, {
      onReconnect: (n, err) => log(`event stream dropped${err ? ` (${(err as Error).message})` : ''}; reconnecting (${n})`),
    });
    for await (const m of stream) {
      if (m.event === 'end') break;
      const e = m.data as JobEvent;
      if (ctx.json) ctx.print(JSON.stringify(e));
      const d = (e.data ?? {}) as Record<string, number | undefined>;
      if (e.type === 'metrics' && typeof d.step === 'number' && typeof d.total_steps === 'number') {
        if (!bar || d.total_steps !== total) {
          bar?.done();
          total = d.total_steps;
          bar = new ProgressBar(id, total);
        }
        bar.update(d.step, {
          ...(typeof d.train_loss === 'number' ? { loss: d.train_loss } : {}),
          ...(typeof d.tokens_per_sec === 'number' ? { tps: d.tokens_per_sec } : {}),
          ...(typeof d.eta_seconds === 'number' ? { etaMs: d.eta_seconds * 1000 } : {}),
        });
      } else log(`${time(e.created_at)}  ${e.level === 'info' ? '' : `${e.level}: `}${e.message}`);
    }
    bar?.done();
    job = await getJob();
  }
  ctx.print(ctx.json ? JSON.stringify(job) : finalLine(job));
  return job.status;
}

function finalLine(j: Job): string {
  const next = j.status === 'succeeded' ? `\nadapter: edgetune adapters download ${j.id} --format bundle` : '';
  return `${jobSummary(j)}${next}`;
}

export const WATCH_COMMAND: Command = {
  group: 'jobs',
  name: 'watch',
  args: ['JOB_ID'],
  options: {},
  usage: 'JOB_ID',
  summary: 'follow a job (progress bar, events) until it ends; exit code 0 only if it succeeded',
  async run(ctx, _v, [id]) {
    const status = await watchJob(ctx, id!);
    if (status !== 'succeeded') process.exitCode = 1;
  },
};
