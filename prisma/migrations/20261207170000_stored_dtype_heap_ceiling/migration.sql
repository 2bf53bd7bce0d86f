-- Base models also record how their weights are stored (the safetensors headers' dtype and bytes), so that
-- GET /v1/models lists them and the planner keeps 16-bit weights out of the TF.js heap. Workers also report
-- their backend's hard limit on TF.js tensor memory (wasm: 4294901760 bytes), which the API plans against.
-- Null: not reported.

-- AlterTable
ALTER TABLE "base_models" ADD COLUMN "stored_dtype" TEXT,
ADD COLUMN "weight_bytes" BIGINT;

-- AlterTable
ALTER TABLE "workers" ADD COLUMN "tensor_heap_ceiling_bytes" BIGINT;
