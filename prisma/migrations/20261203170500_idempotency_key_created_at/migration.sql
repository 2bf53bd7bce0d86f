-- Idempotency-Key answers expire after EDGETUNE_IDEMPOTENCY_RETENTION_MS (24 h by default) and the API
-- sweeps them in batches, oldest first (apps/api/src/idempotency.ts): an index on the claim time lets
-- each batch find them without scanning the table.

-- CreateIndex
CREATE INDEX "idempotency_keys_created_at_idx" ON "idempotency_keys"("created_at");
