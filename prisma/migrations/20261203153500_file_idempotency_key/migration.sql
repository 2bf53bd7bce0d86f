-- A file records the Idempotency-Key of the upload that created it (unique per project, NULL without one), so a
-- retry that takes over the key of a request whose API died answers that file instead of storing a second copy.

-- AlterTable
ALTER TABLE "files" ADD COLUMN     "idempotency_key" TEXT;

-- CreateIndex
CREATE UNIQUE INDEX "files_project_id_idempotency_key_key" ON "files"("project_id", "idempotency_key");
