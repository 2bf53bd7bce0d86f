/**
 * Safetensors headers without the data (https://github.com/huggingface/safetensors, "format" section):
 * 8-byte little-endian u64 header length N, N bytes of JSON `{name: {dtype, shape, data_offsets: [begin, end]},
 * "__metadata__"?: {...}}`, then the tensor bytes, offsets relative to the end of the header. Reads only the
 * header of each file (a few KiB), so a 6 GB model folder is described in milliseconds: the API lists its
 * dtype and bytes, the planner sizes its weights, and the engine then reads one tensor at a time.
 */
import { closeSync, existsSync, fstatSync, openSync, readFileSync, readSync } from 'node:fs';
import { join } from 'node:path';

/** Safetensors dtypes (the format's names). */
export type SafetensorsDtype = 'F32' | 'F16' | 'BF16' | 'F64' | 'I64' | 'I32' | 'I16' | 'I8' | 'U8' | 'BOOL';

/** Bytes per element of each dtype. */
export const SAFETENSORS_DTYPE_BYTES: Readonly<Record<SafetensorsDtype, number>> = {
  F32: 4,
  F16: 2,
  BF16: 2,
  F64: 8,
  I64: 8,
  I32: 4,
  I16: 2,
  I8: 1,
  U8: 1,
  BOOL: 1,
};

/** Error for malformed or unsupported safetensors input; `file` names the offending file. */
export class SafetensorsError extends Error {
  constructor(
    message: string,
    readonly file?: string,
  ) {
    super(file ? `${file}: ${message}` : message);
    this.name = 'SafetensorsError';
  }
}

/** Where one tensor lies: its file and absolute byte range in it. */
export interface TensorEntry {
  name: string;
  dtype: SafetensorsDtype;
  shape: number[];
  /** elements */
  size: number;
  file: string;
  /** absolute byte offsets in `file`: [begin, end) */
  begin: number;
  end: number;
}

/** A model folder's weights as its headers describe them. */
export interface WeightIndex {
  /** tensors by HF name */
  tensors: Map<string, TensorEntry>;
  /** weight files read, in the order of first use */
  files: string[];
  /** sum of tensor bytes as stored (what the files hold, headers excluded) */
  bytes: number;
  /** elements of every tensor */
  params: number;
  /** elements per stored dtype, e.g. { BF16: 1100048384 } */
  dtypes: Partial<Record<SafetensorsDtype, number>>;
  /** the first file's `__metadata__` */
  metadata: Record<string, string>;
}

/**
 * Reads one file's header.
 * @returns the tensors (absolute byte ranges) and `__metadata__`
 * @throws SafetensorsError on a missing or truncated file, a bad header, an unknown dtype, or offsets that do
 *   not match the shape or lie beyond the file.
 */
export function readSafetensorsHeader(file: string): { tensors: TensorEntry[]; metadata: Record<string, string> } {
  let fd: number;
  try {
    fd = openSync(file, 'r');
  } catch (e) {
    throw new SafetensorsError(`cannot open (${(e as NodeJS.ErrnoException).code ?? (e as Error).message})`, file);
  }
  try {
    const size = fstatSync(fd).size;
    const head = Buffer.alloc(8);
    if (size < 8 || readSync(fd, head, 0, 8, 0) !== 8) throw new SafetensorsError('file shorter than its 8-byte header length', file);
    const n = Number(head.readBigUInt64LE(0));
    if (n <= 0 || 8 + n > size) throw new SafetensorsError(`header length ${n} exceeds file size ${size}`, file);
    const buf = Buffer.alloc(n);
    if (readSync(fd, buf, 0, n, 8) !== n) throw new SafetensorsError('header truncated', file);
    let header: Record<string, unknown>;
    try {
      header = JSON.parse(buf.toString('utf8'));
    } catch (e) {
      throw new SafetensorsError(`header is not valid JSON (${(e as Error).message})`, file);
    }
    const dataStart = 8 + n;
    const tensors: TensorEntry[] = [];
    let metadata: Record<string, string> = {};
    for (const [name, v] of Object.entries(header)) {
      if (name === '__metadata__') {
        metadata = (v ?? {}) as Record<string, string>;
        continue;
      }
      const info = (v ?? {}) as { dtype?: string; shape?: number[]; data_offsets?: [number, number] };
      const dtype = info.dtype as SafetensorsDtype;
      if (!Object.hasOwn(SAFETENSORS_DTYPE_BYTES, dtype))
        throw new SafetensorsError(`tensor ${name}: unsupported dtype ${info.dtype}`, file);
      const shape = info.shape ?? [];
      const count = shape.reduce((a, b) => a * b, 1);
      const [b, e] = info.data_offsets ?? [0, -1];
      if (e - b !== count * SAFETENSORS_DTYPE_BYTES[dtype] || dataStart + e > size || b < 0) {
        throw new SafetensorsError(
          `tensor ${name}: data_offsets [${b}, ${e}] do not match shape [${shape}] x ${dtype} or the file size`,
          file,
        );
      }
      tensors.push({ name, dtype, shape, size: count, file, begin: dataStart + b, end: dataStart + e });
    }
    return { tensors, metadata };
  } finally {
    closeSync(fd);
  }
}

/**
 * The weight index of a model folder: `model.safetensors`, or the shards `model.safetensors.index.json`
 * lists (`weight_map`), as Hugging Face `save_pretrained` writes them. Reads headers only.
 * @throws SafetensorsError when neither file exists, the index is malformed, or a shard lacks a listed tensor.
 */
export function readWeightIndex(dir: string): WeightIndex {
  const single = join(dir, 'model.safetensors');
  const indexFile = join(dir, 'model.safetensors.index.json');
  const out: WeightIndex = { tensors: new Map(), files: [], bytes: 0, params: 0, dtypes: {}, metadata: {} };
  const add = (t: TensorEntry) => {
    out.tensors.set(t.name, t);
    out.bytes += t.end - t.begin;
    out.params += t.size;
    out.dtypes[t.dtype] = (out.dtypes[t.dtype] ?? 0) + t.size;
  };
  if (existsSync(single)) {
    const h = readSafetensorsHeader(single);
    out.files.push(single);
    out.metadata = h.metadata;
    for (const t of h.tensors) add(t);
    return out;
  }
  if (!existsSync(indexFile)) throw new SafetensorsError(`no model.safetensors or model.safetensors.index.json in ${dir}`);
  let map: Record<string, string> | undefined;
  try {
    map = (JSON.parse(readFileSync(indexFile, 'utf8')) as { weight_map?: Record<string, string> }).weight_map;
  } catch (e) {
    throw new SafetensorsError(`not valid JSON (${(e as Error).message})`, indexFile);
  }
  if (!map || typeof map !== 'object') throw new SafetensorsError('index has no weight_map', indexFile);
  const byShard = new Map<string, string[]>();
  for (const [name, shard] of Object.entries(map)) {
    if (typeof shard !== 'string' || shard.includes('/') || shard.includes('\\'))
      throw new SafetensorsError(`weight_map entry ${name}: bad shard name ${JSON.stringify(shard)}`, indexFile);
    byShard.set(shard, [...(byShard.get(shard) ?? []), name]);
  }
  for (const [shard, names] of byShard) {
    const file = join(dir, shard);
    const h = readSafetensorsHeader(file);
    if (!out.files.length) out.metadata = h.metadata;
    out.files.push(file);
    const byName = new Map(h.tensors.map((t) => [t.name, t]));
    for (const name of names) {
      const t = byName.get(name);
      if (!t) throw new SafetensorsError(`tensor ${name} listed in the index is missing`, file);
      add(t);
    }
  }
  return out;
}

/** The dtype holding most elements of an index (what a model is "stored in"), or null for an empty index. */
export function storedDtype(index: Pick<WeightIndex, 'dtypes'>): SafetensorsDtype | null {
  let best: SafetensorsDtype | null = null;
  for (const [d, n] of Object.entries(index.dtypes) as [SafetensorsDtype, number][]) if (best === null || n > index.dtypes[best]!) best = d;
  return best;
}
