/**
 * Base models in the `base_models` table: what each host found in its models folder (core's scanModels).
 */
import type { ScannedModel } from '@edgetune/core';
import type { PrismaClient } from './db.js';

/**
 * Records this host's models in the `base_models` table (upsert; adds `host` to the model's hosts). A
 * model's `fingerprint` becomes this host's when it has one (a host without weights keeps the recorded
 * one); `log` hears when it differs from the one another host recorded.
 */
export async function registerModels(
  db: PrismaClient,
  models: ScannedModel[],
  host: string,
  log: (msg: string) => void = () => {},
): Promise<void> {
  for (const m of models) {
    const data = {
      config: m.config as object,
      numLayers: m.numLayers,
      hiddenSize: m.hiddenSize,
      vocabSize: m.vocabSize,
      maxPositionEmbeddings: m.maxPositionEmbeddings,
      paramCount: BigInt(Math.round(m.paramCount)),
      ...(m.fingerprint ? { fingerprint: m.fingerprint } : {}),
    };
    const existing = await db.baseModel.findUnique({ where: { id: m.id }, select: { hosts: true, fingerprint: true } });
    if (m.fingerprint && existing?.fingerprint && existing.fingerprint !== m.fingerprint) {
      log(
        `model ${m.id}: this host's weights (fingerprint ${m.fingerprint.slice(0, 12)}) differ from those last recorded (${existing.fingerprint.slice(0, 12)}); ` +
          'compression policies are kept per fingerprint',
      );
    }
    const hosts = [...(existing?.hosts ?? []).filter((h) => h !== host), host].slice(-32);
    await db.baseModel.upsert({ where: { id: m.id }, create: { id: m.id, ...data, hosts }, update: { ...data, hosts } });
  }
}
