-- AlterTable
ALTER TABLE "jobs" ADD COLUMN     "keep_checkpoints" BOOLEAN NOT NULL DEFAULT false;
