/*
  Policies become LUC policies keyed by (base model, budget), and jobs record their device, plan and policy.
  No release wrote the policies table before this migration, so dropping its placeholder columns loses nothing.

  Warnings:

  - You are about to drop the column `budget` on the `policies` table. All the data in the column will be lost.
  - You are about to drop the column `policy` on the `policies` table. All the data in the column will be lost.
  - A unique constraint covering the columns `[seq]` on the table `policies` will be added. If there are existing duplicate values, this will fail.
  - A unique constraint covering the columns `[base_model_id,target_sparsity,avg_bits,method,sparsity_rule,bits_rule,group_size]` on the table `policies` will be added. If there are existing duplicate values, this will fail.
  - Added the required column `avg_bits` to the `policies` table without a default value. This is not possible if the table is not empty.
  - Added the required column `bits_rule` to the `policies` table without a default value. This is not possible if the table is not empty.
  - Added the required column `group_size` to the `policies` table without a default value. This is not possible if the table is not empty.
  - Added the required column `method` to the `policies` table without a default value. This is not possible if the table is not empty.
  - Added the required column `num_layers` to the `policies` table without a default value. This is not possible if the table is not empty.
  - Added the required column `sparsity_rule` to the `policies` table without a default value. This is not possible if the table is not empty.
  - Added the required column `target_sparsity` to the `policies` table without a default value. This is not possible if the table is not empty.

*/
-- DropIndex
DROP INDEX "policies_base_model_id_idx";

-- AlterTable
ALTER TABLE "jobs" ADD COLUMN     "device" JSONB,
ADD COLUMN     "plan" JSONB,
ADD COLUMN     "policy_id" TEXT;

-- AlterTable
ALTER TABLE "policies" DROP COLUMN "budget",
DROP COLUMN "policy",
ADD COLUMN     "avg_bits" DOUBLE PRECISION NOT NULL,
ADD COLUMN     "bits" INTEGER[],
ADD COLUMN     "bits_rule" TEXT NOT NULL,
ADD COLUMN     "calibration" JSONB,
ADD COLUMN     "group_size" INTEGER NOT NULL,
ADD COLUMN     "method" TEXT NOT NULL,
ADD COLUMN     "num_layers" INTEGER NOT NULL,
ADD COLUMN     "prune_sensitivity" DOUBLE PRECISION[],
ADD COLUMN     "quant_sensitivity" DOUBLE PRECISION[],
ADD COLUMN     "sensitivity" JSONB,
ADD COLUMN     "seq" BIGSERIAL NOT NULL,
ADD COLUMN     "source_job_id" TEXT,
ADD COLUMN     "sparsity" DOUBLE PRECISION[],
ADD COLUMN     "sparsity_rule" TEXT NOT NULL,
ADD COLUMN     "target_sparsity" DOUBLE PRECISION NOT NULL;

-- CreateIndex
CREATE INDEX "jobs_policy_id_idx" ON "jobs"("policy_id");

-- CreateIndex
CREATE UNIQUE INDEX "policies_seq_key" ON "policies"("seq");

-- CreateIndex
CREATE INDEX "policies_base_model_id_seq_idx" ON "policies"("base_model_id", "seq");

-- CreateIndex
CREATE UNIQUE INDEX "policies_budget_key" ON "policies"("base_model_id", "target_sparsity", "avg_bits", "method", "sparsity_rule", "bits_rule", "group_size");

-- AddForeignKey
ALTER TABLE "jobs" ADD CONSTRAINT "jobs_policy_id_fkey" FOREIGN KEY ("policy_id") REFERENCES "policies"("id") ON DELETE SET NULL ON UPDATE CASCADE;
