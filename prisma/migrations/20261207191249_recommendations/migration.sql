-- The advisor's answers (POST /v1/recommendations): the request, the training data's summary, the ranked
-- candidates and those left out, and in measure mode the probe jobs (their ranking is computed when read).

-- CreateTable
CREATE TABLE "recommendations" (
    "id" TEXT NOT NULL,
    "seq" BIGSERIAL NOT NULL,
    "project_id" TEXT NOT NULL,
    "mode" TEXT NOT NULL,
    "training_file" TEXT NOT NULL,
    "validation_file" TEXT,
    "request" JSONB NOT NULL,
    "data" JSONB NOT NULL,
    "candidates" JSONB NOT NULL,
    "left_out" JSONB NOT NULL,
    "probes" JSONB,
    "rules_source" TEXT NOT NULL,
    "created_at" TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,

    CONSTRAINT "recommendations_pkey" PRIMARY KEY ("id")
);

-- CreateIndex
CREATE UNIQUE INDEX "recommendations_seq_key" ON "recommendations"("seq");

-- CreateIndex
CREATE INDEX "recommendations_project_id_seq_idx" ON "recommendations"("project_id", "seq");

-- AddForeignKey
ALTER TABLE "recommendations" ADD CONSTRAINT "recommendations_project_id_fkey" FOREIGN KEY ("project_id") REFERENCES "projects"("id") ON DELETE CASCADE ON UPDATE CASCADE;
