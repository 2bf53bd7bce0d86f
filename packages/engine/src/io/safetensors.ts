/**
 * Safetensors reader and writer (https://github.com/huggingface/safetensors, "format" section):
 * 8-byte little-endian u64 header length N, N bytes of JSON header
 * `{name: {dtype, shape, data_offsets: [begin, end]}, "__metadata__"?: {string: string}}`, then the raw
 * little-endian tensor bytes, offsets relative to the end of the header. No maintained npm package does
 * this, so we keep our own (about 150 lines).
 */
import { closeSync, openSync, readSync } from 'node:fs';
import { readSafetensorsHeader, readWeightIndex, SafetensorsError, type SafetensorsDtype, type TensorEntry } from '@edgetune/core';
import { safetensorsHeader, writeAll } from './safetensors-writer.js';

export { SafetensorsError, type SafetensorsDtype } from '@edgetune/core';

/** One tensor as read from a file: row-major data and its shape. */
export interface NamedTensor {
  /** Dtype as stored in the file (before widening). */
  dtype: SafetensorsDtype;
  shape: number[];
  /** Float32Array for F16/BF16/F32/F64, Int32Array for I32/I16/I64 (I64 must fit in 32 bits), Uint8Array/Int8Array otherwise. */
  data: Float32Array | Int32Array | Int8Array | Uint8Array;
}

let halfTable: Float32Array | null = null;
/** IEEE 754 half -> float32 lookup table, indexed by the 16-bit pattern (64 Ki entries, 256 KiB, built once). */
export function halfToFloatTable(): Float32Array {
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
  // An aligned buffer of its own (readEntry's are; a view into a larger buffer is copied).
  const ab = bytes.byteOffset === 0 && bytes.buffer.byteLength === bytes.byteLength ? bytes.buffer : bytes.slice().buffer;
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

/** Reads an entry's bytes from an open file into a fresh (aligned) buffer. */
function readEntry(fd: number, t: TensorEntry): Uint8Array {
  const bytes = new Uint8Array(t.end - t.begin);
  let at = 0;
  while (at < bytes.byteLength) {
    // readSync reads at most 2 GiB per call
    const n = readSync(fd, bytes, at, Math.min(bytes.byteLength - at, 2 ** 30), t.begin + at);
    if (n <= 0) throw new SafetensorsError(`tensor ${t.name}: file ends early`, t.file);
    at += n;
  }
  return bytes;
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
  const h = readSafetensorsHeader(file);
  const tensors = new Map<string, NamedTensor>();
  const fd = openSync(file, 'r');
  try {
    for (const t of h.tensors) {
      if (names && !names.has(t.name)) continue;
      tensors.set(t.name, { dtype: t.dtype, shape: t.shape, data: decode(t.dtype, readEntry(fd, t), t.size, file, t.name) });
    }
  } finally {
    closeSync(fd);
  }
  return { tensors, metadata: h.metadata };
}

/**
 * Reads a model folder's weights: `model.safetensors`, or the shards listed in
 * `model.safetensors.index.json` (`weight_map`), as Hugging Face `save_pretrained` writes them. Every
 * float tensor is widened to float32: for small models (see {@link readWeightTensors} for large ones).
 * @throws SafetensorsError when neither file exists or a shard misses a listed tensor.
 */
export function readModelWeights(dir: string): Map<string, NamedTensor> {
  const out = new Map<string, NamedTensor>();
  readWeightTensors(dir, (name, t) => out.set(name, { dtype: t.dtype, shape: t.shape, data: t.decoded() }));
  return out;
}

/** One tensor handed to {@link readWeightTensors}'s callback. */
export interface RawTensor {
  dtype: SafetensorsDtype;
  shape: number[];
  /** The stored values without conversion: Float32Array (F32), Uint16Array bit patterns (BF16, F16), else the bytes. */
  raw: Float32Array | Uint16Array | Uint8Array;
  /** float32 values (a new array for 16-bit dtypes). @throws SafetensorsError for a non-float dtype */
  widened(): Float32Array;
  /** The values as {@link NamedTensor} data (floats widened, integers as in {@link readSafetensors}). */
  decoded(): NamedTensor['data'];
}

/**
 * Streams a model folder's tensors one at a time, in file order, so that a model larger than memory in
 * float32 can be loaded in its stored precision: each tensor's bytes are read into a buffer of their own
 * and handed over; nothing else is kept. `total` gives the whole folder's sizes (from the headers); `want`
 * selects the tensors to read (default all).
 * @throws SafetensorsError as {@link readWeightIndex}, or on a short read.
 */
export function readWeightTensors(
  dir: string,
  onTensor: (name: string, t: RawTensor, total: { bytes: number; params: number; f32Bytes: number }) => void,
  want: (name: string) => boolean = () => true,
): void {
  const index = readWeightIndex(dir);
  const total = { bytes: index.bytes, params: index.params, f32Bytes: 4 * index.params };
  for (const file of index.files) {
    const entries = [...index.tensors.values()].filter((t) => t.file === file && want(t.name)).sort((a, b) => a.begin - b.begin);
    const fd = openSync(file, 'r');
    try {
      for (const t of entries) {
        const bytes = readEntry(fd, t);
        const raw =
          t.dtype === 'F32'
            ? new Float32Array(bytes.buffer, 0, t.size)
            : t.dtype === 'BF16' || t.dtype === 'F16'
              ? new Uint16Array(bytes.buffer, 0, t.size)
              : bytes;
        const decoded = () => decode(t.dtype, bytes, t.size, file, t.name);
        onTensor(
          t.name,
          {
            dtype: t.dtype,
            shape: t.shape,
            raw,
            decoded,
            widened: () => {
              const d = decoded();
              if (!(d instanceof Float32Array)) throw new SafetensorsError(`tensor ${t.name}: ${t.dtype} is not a float dtype`, file);
              return d;
            },
          },
          total,
        );
      }
    } finally {
      closeSync(fd);
    }
  }
}

/** A tensor to write: float data is written as F32 (default), F16 or BF16. */
export interface TensorToWrite {
  shape: number[];
  /**
   * Uint16Array: BF16/F16 bit patterns, written as they are (dtype must be BF16 or F16). A function is called
   * when the writer reaches the tensor (e.g. a tensor read out of the TF.js heap), so that the arrays of a file
   * need not all exist at once; without `dtype` its result is F32.
   */
  data: TensorData | (() => TensorData);
  dtype?: SafetensorsDtype;
}

/** The values of a tensor to write. */
type TensorData = Float32Array | Int32Array | Int8Array | Uint8Array | Uint16Array;

/** `t` with its data read (a lazy tensor's function called). @throws SafetensorsError when its length is not the shape's. */
function resolved(name: string, t: TensorToWrite): TensorToWrite & { data: TensorData } {
  const data = typeof t.data === 'function' ? t.data() : t.data;
  const count = t.shape.reduce((a, b) => a * b, 1);
  if (count !== data.length) throw new SafetensorsError(`tensor ${name}: shape [${t.shape}] needs ${count} values, got ${data.length}`);
  return { ...t, data };
}

function encode(t: TensorToWrite & { data: TensorData }): { dtype: SafetensorsDtype; bytes: Uint8Array } {
  const dtype = dtypeOf(t);
  const n = t.data.length;
  if (t.data instanceof Uint16Array) {
    if (dtype !== 'F16' && dtype !== 'BF16') throw new SafetensorsError(`16-bit bit patterns need dtype BF16 or F16, got ${dtype}`);
    return { dtype, bytes: new Uint8Array(t.data.buffer, t.data.byteOffset, t.data.byteLength) };
  }
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

/** The stored dtype of a tensor to write: its `dtype`, else the one its array type implies. */
function dtypeOf(t: TensorToWrite): SafetensorsDtype {
  if (t.dtype) return t.dtype;
  const d = t.data;
  return typeof d === 'function' || d instanceof Float32Array
    ? 'F32'
    : d instanceof Int32Array
      ? 'I32'
      : d instanceof Int8Array
        ? 'I8'
        : 'U8';
}

/**
 * The file's layout without encoding any data: the tensors in file order (names sorted) and the 8-byte length +
 * header JSON that the streaming writer computes for them.
 * @throws SafetensorsError when a shape does not match its data length.
 */
function layout(
  tensors: Map<string, TensorToWrite> | Record<string, TensorToWrite>,
  metadata?: Record<string, string>,
): { head: Buffer; entries: [string, TensorToWrite][] } {
  const entries = (tensors instanceof Map ? [...tensors.entries()] : Object.entries(tensors)).sort(([a], [b]) =>
    a < b ? -1 : a > b ? 1 : 0,
  );
  for (const [name, t] of entries) {
    const count = t.shape.reduce((a, b) => a * b, 1);
    if (typeof t.data !== 'function' && count !== t.data.length)
      throw new SafetensorsError(`tensor ${name}: shape [${t.shape}] needs ${count} values, got ${t.data.length}`);
  }
  const { head } = safetensorsHeader(
    entries.map(([name, t]) => ({ name, dtype: dtypeOf(t), shape: t.shape })),
    metadata,
  );
  return { head, entries };
}

/**
 * Serialises tensors to safetensors bytes, names sorted, header padded with spaces to 8-byte alignment.
 * @throws SafetensorsError when a shape does not match its data length.
 */
export function serializeSafetensors(
  tensors: Map<string, TensorToWrite> | Record<string, TensorToWrite>,
  metadata?: Record<string, string>,
): Buffer {
  const { head, entries } = layout(tensors, metadata);
  return Buffer.concat([head, ...entries.map(([name, t]) => encode(resolved(name, t)).bytes)]);
}

/**
 * Writes tensors to a `.safetensors` file, byte-identical to {@link serializeSafetensors}, one tensor at a
 * time: a file of packed weights never exists whole in memory besides the tensors themselves.
 * @throws SafetensorsError when a shape does not match its data length.
 */
export function writeSafetensors(
  file: string,
  tensors: Map<string, TensorToWrite> | Record<string, TensorToWrite>,
  metadata?: Record<string, string>,
): void {
  const { head, entries } = layout(tensors, metadata);
  const fd = openSync(file, 'w');
  try {
    writeAll(fd, head);
    for (const [name, t] of entries) writeAll(fd, encode(resolved(name, t)).bytes);
  } finally {
    closeSync(fd);
  }
}
