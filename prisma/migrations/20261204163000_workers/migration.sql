-- Workers report the device they run jobs on (memory budget, threads, backend, measured SGEMM) at
-- startup and every heartbeat, so that the API plans dry runs and admits jobs for the workers'
-- own device instead of its host's and a fixed throughput guess.

-- CreateTable
CREATE TABLE "workers" (
    "id" TEXT NOT NULL,
    "host" TEXT NOT NULL,
    "pid" INTEGER NOT NULL,
    "concurrency" INTEGER NOT NULL,
    "memory_budget_bytes" BIGINT NOT NULL,
    "total_memory_bytes" BIGINT NOT NULL,
    "threads" INTEGER NOT NULL,
    "backend" TEXT NOT NULL,
    "matmul" TEXT NOT NULL,
    "matmul_gflops" DOUBLE PRECISION NOT NULL,
    "started_at" TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,
    "heartbeat_at" TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,

    CONSTRAINT "workers_pkey" PRIMARY KEY ("id")
);

-- CreateIndex
CREATE INDEX "workers_heartbeat_at_idx" ON "workers"("heartbeat_at");
