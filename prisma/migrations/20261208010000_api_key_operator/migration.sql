-- An operator key administers every project, other admin keys only their own.
ALTER TABLE "api_keys" ADD COLUMN "operator" BOOLEAN NOT NULL DEFAULT false;

-- The key the service created at bootstrap (the oldest admin key named "bootstrap") becomes the operator key.
UPDATE "api_keys" SET "operator" = true
WHERE "id" = (SELECT "id" FROM "api_keys" WHERE "admin" AND "name" = 'bootstrap' ORDER BY "created_at", "id" LIMIT 1);
