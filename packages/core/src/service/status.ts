/** Job statuses: validating_files -> queued -> running -> succeeded | failed | cancelling -> cancelled. */
export const JOB_STATUSES = ['validating_files', 'queued', 'running', 'succeeded', 'failed', 'cancelling', 'cancelled'] as const;
export type JobStatus = (typeof JOB_STATUSES)[number];
/** Statuses a job never leaves. */
export const TERMINAL_STATUSES: readonly JobStatus[] = ['succeeded', 'failed', 'cancelled'];

/** Whether `s` is terminal. */
export function isTerminal(s: string): boolean {
  return (TERMINAL_STATUSES as readonly string[]).includes(s);
}

/** A job's `error` member: OpenAI's shape. `code` separates user errors from system ones. */
export interface JobError {
  code: string;
  message: string;
  param: string | null;
}
