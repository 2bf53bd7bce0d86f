/**
 * Safetensors reader and writer (https://github.com/huggingface/safetensors, "format" section):
 * 8-byte little-endian u64 header length N, N bytes of JSON header
 * `{name: {dtype, shape, data_offsets: [begin, end]}, "__metadata__"?: {string: string}}`, then the raw
 * little-endian tensor bytes, offsets relative to the end of the header. No maintained npm package does
 * this, so we keep our own (about 150 lines).
 */
import { readFileSync, writeFileSync, existsSync } from 'node:fs';
import { join } from 'node:path';

/** Dtypes we read. F16/BF16 are widened to float32 on load; integer types keep their width. */
export type SafetensorsDtype = 'F32' | 'F16' | 'BF16' | 'F64' | 'I64' | 'I32' | 'I16' | 'I8' | 'U8' | 'BOOL';

/** One tensor as read from a file: row-major data and its shape. */
export interface NamedTensor {
  /** Dtype as stored in the file (before widening). */
  dtype: SafetensorsDtype;
  shape: number[];
  /** Float32Array for F16/BF16/F32/F64, Int32Array for I32/I16/I64 (I64 must fit in 32 bits), Uint8Array/Int8Array otherwise. */
  data: Float32Array | Int32Array | Int8Array | Uint8Array;
}

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

const BYTES: Record<SafetensorsDtype, number> = { F32: 4, F16: 2, BF16: 2, F64: 8, I64: 8, I32: 4, I16: 2, I8: 1, U8: 1, BOOL: 1 };

/** IEEE 754 half -> float32 via a 64 K lookup table (built once, 256 KiB). */
let halfTable: Float32Array | null = null;
function halfToFloatTable(): Float32Array {
  if (halfTable) return halfTable;
  halfTable = new Float32Array(65536);
  for (let h = 0; h < 65536; h++) {
    const s = h & 0x8000 ? -1 : 1,
      e = (h >> 10) & 0x1f,
      m = h & 0x3ff;
    halfTable[h] = e === 0 ? s * m * 2 ** -24 : e === 31 ? (m ? NaN : s * Infinity) : s * (1 + m / 1024) * 2 ** (e - 15);
  }
  return halfTable;
}

/** float32 -> IEEE half with round-to-nearest-even (used by the writer for F16 output). */
export function floatToHalf(f: number): number {
  const buf = new DataView(new ArrayBuffer(4));
  buf.setFloat32(0, f);
  const x = buf.getUint32(0);
  const sign = (x >>> 16) & 0x8000;
  const e = ((x >>> 23) & 0xff) - 127 + 15;
  let m = x & 0x7fffff;
  if (((x >>> 23) & 0xff) === 0xff) return sign | 0x7c00 | (m ? 0x200 : 0);
  if (e >= 31) return sign | 0x7c00;
  if (e <= 0) {
    if (e < -10) return sign;
    m |= 0x800000;
    const shift = 14 - e;
    let h = m >> shift;
    const rem = m & ((1 << shift) - 1),
      half = 1 << (shift - 1);
    if (rem > half || (rem === half && h & 1)) h++;
    return sign | h;
  }
  let h = sign | (e << 10) | (m >> 13);
  const rem = m & 0x1fff;
  if (rem > 0x1000 || (rem === 0x1000 && h & 1)) h++;
  return h;
}

function decode(dtype: SafetensorsDtype, bytes: Uint8Array, count: number, file: string, name: string): NamedTensor['data'] {
  // Copy to an aligned buffer: the tensor's offset inside the file is not guaranteed to be aligned.
  const copy = new Uint8Array(bytes.byteLength);
  copy.set(bytes);
  const ab = copy.buffer;
  switch (dtype) {
    case 'F32':
      return new Float32Array(ab, 0, count);
    case 'F64':
      return Float32Array.from(new Float64Array(ab, 0, count));
    case 'F16': {
      const t = halfToFloatTable(),
        src = new Uint16Array(ab, 0, count),
        out = new Float32Array(count);
      for (let i = 0; i < count; i++) out[i] = t[src[i]];
      return out;
    }
    case 'BF16': {
      const src = new Uint16Array(ab, 0, count),
        out = new Uint32Array(count);
      for (let i = 0; i < count; i++) out[i] = src[i] << 16;
      return new Float32Array(out.buffer);
    }
    case 'I32':
      return new Int32Array(ab, 0, count);
    case 'I16':
      return Int32Array.from(new Int16Array(ab, 0, count));
    case 'I64': {
      const src = new BigInt64Array(ab, 0, count),
        out = new Int32Array(count);
      for (let i = 0; i < count; i++) {
        const v = Number(src[i]);
        if (!Number.isSafeInteger(v) || v > 2147483647 || v < -2147483648)
          throw new SafetensorsError(`tensor ${name}: I64 value ${src[i]} does not fit in int32`, file);
        out[i] = v;
      }
      return out;
    }
    case 'I8':
      return new Int8Array(ab, 0, count);
    case 'U8':
    case 'BOOL':
      return new Uint8Array(ab, 0, count);
  }
}

/**
 * Reads every tensor of one `.safetensors` file.
 * @param names optional filter: only these tensors are decoded.
 * @returns tensors by name and the `__metadata__` map.
 * @throws SafetensorsError on a truncated file, a bad header, an unknown dtype or out-of-range offsets.
 */
export function readSafetensors(
  file: string,
  names?: Set<string>,
): { tensors: Map<string, NamedTensor>; metadata: Record<string, string> } {
  const buf = readFileSync(file);
  if (buf.byteLength < 8) throw new SafetensorsError('file shorter than its 8-byte header length', file);
  const n = Number(buf.readBigUInt64LE(0));
  if (n <= 0 || 8 + n > buf.byteLength) throw new SafetensorsError(`header length ${n} exceeds file size ${buf.byteLength}`, file);
  let header: Record<string, unknown>;
  try {
    header = JSON.parse(buf.subarray(8, 8 + n).toString('utf8'));
  } catch (e) {
    throw new SafetensorsError(`header is not valid JSON (${(e as Error).message})`, file);
  }
  const dataStart = 8 + n;
  const tensors = new Map<string, NamedTensor>();
  let metadata: Record<string, string> = {};
  for (const [name, v] of Object.entries(header)) {
    if (name === '__metadata__') {
      metadata = (v ?? {}) as Record<string, string>;
      continue;
    }
    if (names && !names.has(name)) continue;
    const info = v as { dtype?: string; shape?: number[]; data_offsets?: [number, number] };
    const dtype = info.dtype as SafetensorsDtype;
    if (!(dtype in BYTES)) throw new SafetensorsError(`tensor ${name}: unsupported dtype ${info.dtype}`, file);
    const shape = info.shape ?? [];
    const count = shape.reduce((a, b) => a * b, 1);
    const [b, e] = info.data_offsets ?? [0, -1];
    if (e - b !== count * BYTES[dtype] || dataStart + e > buf.byteLength || b < 0) {
      throw new SafetensorsError(
        `tensor ${name}: data_offsets [${b}, ${e}] do not match shape [${shape}] x ${dtype} or the file size`,
        file,
      );
    }
    tensors.set(name, { dtype, shape, data: decode(dtype, buf.subarray(dataStart + b, dataStart + e), count, file, name) });
  }
  return { tensors, metadata };
}

/**
 * Reads a model folder's weights: `model.safetensors`, or the shards listed in
 * `model.safetensors.index.json` (`weight_map`), as Hugging Face `save_pretrained` writes them.
 * @throws SafetensorsError when neither file exists or a shard misses a listed tensor.
 */
export function readModelWeights(dir: string): Map<string, NamedTensor> {
  const single = join(dir, 'model.safetensors');
  const index = join(dir, 'model.safetensors.index.json');
  if (existsSync(single)) return readSafetensors(single).tensors;
  if (!existsSync(index)) throw new SafetensorsError(`no model.safetensors or model.safetensors.index.json in ${dir}`);
  const map = (JSON.parse(readFileSync(index, 'utf8')) as { weight_map?: Record<string, string> }).weight_map;
  if (!map) throw new SafetensorsError('index has no weight_map', index);
  const byShard = new Map<string, Set<string>>();
  for (const [name, shard] of Object.entries(map)) {
    if (!byShard.has(shard)) byShard.set(shard, new Set());
    byShard.get(shard)!.add(name);
  }
  const out = new Map<string, NamedTensor>();
  for (const [shard, names] of byShard) {
    const { tensors } = readSafetensors(join(dir, shard), names);
    for (const name of names) {
      const t = tensors.get(name);
      if (!t) throw new SafetensorsError(`tensor ${name} listed in the index is missing`, join(dir, shard));
      out.set(name, t);
    }
  }
  return out;
}

/** A tensor to write: float data is written as F32 (default), F16 or BF16. */
export interface TensorToWrite {
  shape: number[];
  data: Float32Array | Int32Array | Int8Array | Uint8Array;
  dtype?: SafetensorsDtype;
}

function encode(t: TensorToWrite): { dtype: SafetensorsDtype; bytes: Uint8Array } {
  const dtype =
    t.dtype ?? (t.data instanceof Float32Array ? 'F32' : t.data instanceof Int32Array ? 'I32' : t.data instanceof Int8Array ? 'I8' : 'U8');
  const n = t.data.length;
  if (dtype === 'F16' || dtype === 'BF16') {
    const out = new Uint16Array(n),
      src = t.data as Float32Array;
    if (dtype === 'F16') for (let i = 0; i < n; i++) out[i] = floatToHalf(src[i]);
    else {
      const u = new Uint32Array(src.buffer, src.byteOffset, n);
      for (let i = 0; i < n; i++) {
        const x = u[i];
        out[i] = (x + 0x7fff + ((x >>> 16) & 1)) >>> 16;
      } // round to nearest even
    }
    return { dtype, bytes: new Uint8Array(out.buffer) };
  }
  return { dtype, bytes: new Uint8Array(t.data.buffer, t.data.byteOffset, t.data.byteLength) };
}

/**
 * Serialises tensors to safetensors bytes, names sorted, header padded with spaces to 8-byte alignment.
 * @throws SafetensorsError when a shape does not match its data length.
 */
export function serializeSafetensors(
  tensors: Map<string, TensorToWrite> | Record<string, TensorToWrite>,
  metadata?: Record<string, string>,
): Buffer {
  const entries = (tensors instanceof Map ? [...tensors.entries()] : Object.entries(tensors)).sort(([a], [b]) =>
    a < b ? -1 : a > b ? 1 : 0,
  );
  const header: Record<string, unknown> = {};
  if (metadata) header.__metadata__ = metadata;
  const blobs: Uint8Array[] = [];
  let off = 0;
  for (const [name, t] of entries) {
    const count = t.shape.reduce((a, b) => a * b, 1);
    if (count !== t.data.length)
      throw new SafetensorsError(`tensor ${name}: shape [${t.shape}] needs ${count} values, got ${t.data.length}`);
    const { dtype, bytes } = encode(t);
    header[name] = { dtype, shape: t.shape, data_offsets: [off, off + bytes.byteLength] };
    blobs.push(bytes);
    off += bytes.byteLength;
  }
  let json = JSON.stringify(header);
  while ((8 + Buffer.byteLength(json)) % 8 !== 0) json += ' ';
  const head = Buffer.alloc(8);
  head.writeBigUInt64LE(BigInt(Buffer.byteLength(json)));
  return Buffer.concat([head, Buffer.from(json, 'utf8'), ...blobs]);
}

/** Writes tensors to a `.safetensors` file (see {@link serializeSafetensors}). */
export function writeSafetensors(
  file: string,
  tensors: Map<string, TensorToWrite> | Record<string, TensorToWrite>,
  metadata?: Record<string, string>,
): void {
  writeFileSync(file, serializeSafetensors(tensors, metadata));
}
