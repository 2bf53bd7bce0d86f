/** A run's progress as the API shows it: status events, step metrics, and the row's step, ETA and latest metrics. */
import type { StepReport, ValidationPoint } from '@edgetune/engine';
import type { NewJobEvent } from '@edgetune/store';
import type { JobRun } from './context.js';
import { validationPointOf } from './result.js';

/** Milliseconds between two writes of step metrics. */
const FLUSH_MS = 250;

/** Records that the run started, or resumed from the checkpoint at `resumeStep`, with the pid of the process that runs it. */
export async function reportStarted(run: JobRun, resumeStep: number | null): Promise<void> {
  const { attempt } = run;
  const { workerId } = run.ctx;
  await run.events([
    {
      type: 'status',
      message:
        resumeStep !== null
          ? `Job resumed from checkpoint at step ${resumeStep} (attempt ${attempt}) on ${workerId}`
          : `Job started (attempt ${attempt}) on ${workerId}`,
      data: { status: 'running', attempt, worker_id: workerId, pid: process.pid, resumed_from_step: resumeStep },
    },
  ]);
}

/**
 * Step metrics of one run, written in batches: every {@link FLUSH_MS}, at the last step, once the run is
 * aborted, and whenever {@link ProgressReporter.flush} is called (before checkpoints and at the end).
 */
export class ProgressReporter {
  /** the last step's report (its loss, exit and window go with the next checkpoint) */
  lastStep: StepReport | null = null;
  /** the latest in-loop validation point (its loss goes with the next checkpoint) */
  lastEval: ValidationPoint | null = null;
  private pending: NewJobEvent[] = [];
  private row: { step: number; etaSeconds: number; latestMetrics: object } | null = null;
  private lastFlush = Date.now();

  constructor(
    private readonly run: JobRun,
    private readonly signal: AbortSignal,
  ) {}

  /** Queues step `r`'s `metrics` event and the row's progress; flushes when due. */
  async onStep(r: StepReport): Promise<void> {
    this.lastStep = r;
    const metrics = {
      step: r.step,
      total_steps: r.totalSteps,
      train_loss: r.loss,
      learning_rate: r.lr,
      grad_norm: r.gradNorm,
      window: r.window,
      exit_layer: r.exitLayer,
      tokens: r.tokens,
      tokens_per_sec: Math.round(r.tokensPerSec * 10) / 10,
      step_ms: Math.round(r.stepMs),
      elapsed_ms: Math.round(r.elapsedMs),
      eta_seconds: Math.round(r.etaMs / 1000),
      // this job process's resident memory (GET /metrics sums it per worker)
      rss_bytes: process.memoryUsage.rss(),
    };
    // a resumed attempt retrains the steps after its checkpoint that an earlier attempt already recorded
    if (r.step > this.run.recorded.step)
      this.pending.push({
        type: 'metrics',
        message: `step ${r.step}/${r.totalSteps}: loss ${r.loss.toFixed(4)} (exit ${r.exitLayer})`,
        data: metrics,
      });
    this.row = { step: r.step, etaSeconds: Math.round(r.etaMs / 1000), latestMetrics: metrics };
    if (Date.now() - this.lastFlush >= FLUSH_MS || r.step === r.totalSteps || this.signal.aborted) await this.flush();
  }

  /** Records an in-loop validation evaluation as a `metrics` event (data `validation_point`), written at once. */
  async onEval(p: ValidationPoint): Promise<void> {
    this.lastEval = p;
    if (p.step <= this.run.recorded.evalStep) return;
    const v = p.accuracy === null ? `loss ${p.loss.toFixed(4)}` : `accuracy ${(100 * p.accuracy).toFixed(1)}%, loss ${p.loss.toFixed(4)}`;
    this.pending.push({ type: 'metrics', message: `validation at step ${p.step}: ${v}`, data: { validation_point: validationPointOf(p) } });
    await this.flush();
  }

  /**
   * Writes the queued events and progress while this attempt owns the job.
   * @throws StaleAttemptError once a newer attempt owns the job; database errors (Prisma) once retrying gives up.
   */
  async flush(): Promise<void> {
    this.lastFlush = Date.now();
    if (this.pending.length) await this.run.events(this.pending.splice(0));
    if (this.row) {
      const p = this.row;
      this.row = null;
      await this.run.write((tx) => tx.job.update({ where: { id: this.run.id }, data: p }));
    }
  }
}
