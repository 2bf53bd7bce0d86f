/**
 * Base models in the `base_models` table: what each host found in its models folder (core's scanModels).
 */
import type { ScannedModel } from '@edgetune/core';
import type { PrismaClient } from './db.js';

/**
 * Records this host's models in the `base_models` table (upsert; adds `host` to the model's hosts). A
 * model's `fingerprint`, and its weights' stored dtype, bytes and parameter count (safetensors headers),
 * become this host's when it has them (a host without weights keeps the recorded ones); `log` hears when
 * the fingerprint differs from the one another host recorded.
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
      ...(m.fingerprint ? { fingerprint: m.fingerprint } : {}),
    };
    const existing = await db.baseModel.findUnique({ where: { id: m.id }, select: { hosts: true, fingerprint: true, weightBytes: true } });
    const weights = {
      paramCount: BigInt(Math.round(m.paramCount)),
      storedDtype: m.storedDtype,
      weightBytes: m.weightBytes === null ? null : BigInt(m.weightBytes),
    };
    // the headers' figures stand against a host without the weights (its count is the config's)
    const keepRecorded = m.weightBytes === null && existing?.weightBytes != null;
    if (m.fingerprint && existing?.fingerprint && existing.fingerprint !== m.fingerprint) {
      log(
        `model ${m.id}: this host's weights (fingerprint ${m.fingerprint.slice(0, 12)}) differ from those last recorded (${existing.fingerprint.slice(0, 12)}); ` +
          'compression policies are kept per fingerprint',
      );
    }
    const hosts = [...(existing?.hosts ?? []).filter((h) => h !== host), host].slice(-32);
    await db.baseModel.upsert({
      where: { id: m.id },
      create: { id: m.id, ...data, ...weights, hosts },
      update: { ...data, ...(keepRecorded ? {} : weights), hosts },
    });
  }
}
