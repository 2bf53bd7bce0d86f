-- Policies are keyed by the content of the base model too: model_fingerprint is the sha256 over the model
-- folder's config.json and weight files (apps/api/src/shared/fingerprint.ts), so a policy profiled on one set
-- of weights is never reused for other weights that carry the same model id. base_models.fingerprint is the
-- fingerprint the hosts report (null until a host with the weights registers the model again).
--
-- Existing policies were profiled on weights nobody recorded. They get an empty model_fingerprint (the
-- default only fills existing rows and is dropped at once), which no lookup ever matches: they stay listed
-- but are never reused, and the next job with their budget profiles the model afresh. The unique budget key
-- keeps holding for them (one row per old key, and the empty string is one value, unlike NULL).

-- DropIndex
DROP INDEX "policies_budget_key";

-- AlterTable
ALTER TABLE "base_models" ADD COLUMN     "fingerprint" TEXT;

-- AlterTable
ALTER TABLE "policies" ADD COLUMN     "model_fingerprint" TEXT NOT NULL DEFAULT '';
ALTER TABLE "policies" ALTER COLUMN "model_fingerprint" DROP DEFAULT;

-- CreateIndex
CREATE UNIQUE INDEX "policies_budget_key" ON "policies"("base_model_id", "model_fingerprint", "target_sparsity", "avg_bits", "method", "sparsity_rule", "bits_rule", "group_size");
