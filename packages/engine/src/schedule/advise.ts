/**
 * The advisor on this machine (`edgetune-engine advise`): the core advisor's estimate (rules fitted to the
 * guidelines bench, candidates planned for a device) over local model folders and a local training file.
 */
import { existsSync, readdirSync } from 'node:fs';
import { basename, join } from 'node:path';
import {
  loadAdvisorRules,
  parseLlamaConfig,
  planCandidate,
  readJsonlFile,
  readModelSummary,
  recommend,
  summarizeTrainingData,
  type AdvisorModel,
  type DeviceProfile,
  type Recommendation,
} from '@edgetune/core';

/** Model folders: those named, else every subfolder of `modelsDir` with a config.json. */
export function modelFolders(dirs: string[] | null, modelsDir: string): string[] {
  if (dirs?.length) return dirs;
  if (!existsSync(modelsDir)) return [];
  return readdirSync(modelsDir, { withFileTypes: true })
    .filter((e) => e.isDirectory() && existsSync(join(modelsDir, e.name, 'config.json')))
    .map((e) => join(modelsDir, e.name))
    .sort();
}

/** A model folder as the advisor sees it (id = the folder name, as the service and the bench name it). @throws ModelConfigError */
export function advisorModelOf(dir: string): AdvisorModel {
  const s = readModelSummary(dir, basename(dir));
  return { id: s.id, shape: parseLlamaConfig(s.config), storedDtype: s.storedDtype, maxPositionEmbeddings: s.maxPositionEmbeddings };
}

/** Options of {@link adviseLocally}. */
export interface AdviseOptions {
  train: string;
  /** a validation file: candidates train with early stopping */
  val?: string;
  modelDirs: string[];
  device: DeviceProfile;
  /** seconds */
  timeBudgetS: number;
  /** rules file; default ADVISOR_RULES_FILE */
  rulesPath?: string;
}

/**
 * The advisor's estimate for local files and models.
 * @throws AdvisorRulesMissingError without fitted rules; DatasetError for a bad training file
 */
export async function adviseLocally(o: AdviseOptions): Promise<Recommendation> {
  const rules = loadAdvisorRules(o.rulesPath);
  const data = summarizeTrainingData(await readJsonlFile(o.train));
  const models = o.modelDirs.map(advisorModelOf);
  return recommend({ data, hasValidation: !!o.val, timeBudgetS: o.timeBudgetS, models }, rules, (spec) =>
    planCandidate(spec, o.device, data.n_train),
  );
}

const pct = (x: number) => `${(x * 100).toFixed(1)}%`;
const mib = (b: number) => `${Math.ceil(b / 2 ** 20)} MiB`;

/** The recommendation as text: the ranked table, then each left-out candidate with its reason. */
export function formatRecommendation(r: Recommendation): string {
  const d = r.data;
  const lines = [
    `data: ${d.n_train} examples, ${d.task_kind}${d.majority_share !== null ? ` (majority class ${pct(d.majority_share)})` : ''}; rules: ${r.rules_source}`,
    '',
    ['#', 'model', 'method', 'bits', 'r', 'steps', 'expected', '± sd', 'peak RSS', 'time', 'guidelines'].join('\t'),
  ];
  r.candidates.forEach((c, i) => {
    lines.push(
      [
        i,
        c.model,
        c.method,
        c.compression ? c.compression.avg_bits : 16,
        c.lora_r ?? '-',
        c.steps,
        `${pct(c.expected.value)} ${c.expected.metric}${c.expected.outside_measured ? ' (nearest measured size)' : ''}`,
        pct(c.expected.gain_sd * (1 - c.expected.baseline)),
        mib(c.forecast.peak_rss_bytes),
        `${c.forecast.total_s.toFixed(1)} s`,
        c.guidelines.map((g) => g.guideline).join(','),
      ].join('\t'),
    );
  });
  if (!r.candidates.length) lines.push('(no candidate fits: see below)');
  if (r.left_out.length) {
    lines.push('', 'left out:');
    for (const l of r.left_out)
      lines.push(
        l.code === 'no_bench_rows'
          ? `  ${l.reason}`
          : `  ${l.model} ${l.method}${l.compression ? ` ${l.compression.avg_bits}-bit` : ''}${l.lora_r ? ` r=${l.lora_r}` : ''}: ${l.reason}`,
      );
  }
  return lines.join('\n');
}
