-- A job records the Idempotency-Key of the POST that created it (unique per project, NULL for jobs created
-- without one), so a retry that takes over the key of a request whose API died finds that request's job
-- instead of creating a second one (apps/api/src/jobs.ts, createJob).

-- AlterTable
ALTER TABLE "jobs" ADD COLUMN     "idempotency_key" TEXT;

-- CreateIndex
CREATE UNIQUE INDEX "jobs_project_id_idempotency_key_key" ON "jobs"("project_id", "idempotency_key");
