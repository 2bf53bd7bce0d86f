/**
 * Streaming safetensors writer (https://github.com/huggingface/safetensors, "format" section): the header is
 * computed from the tensors' dtypes and shapes alone and written first, then each tensor's bytes are produced
 * chunk by chunk, so a multi-GB file never sits in memory. Layout: 8-byte little-endian u64 header length N,
 * N bytes of JSON (`__metadata__` first, then `{name: {dtype, shape, data_offsets: [begin, end]}}` in data order)
 * padded with spaces so the data starts 8-byte aligned, then the tensors back to back, offsets relative to
 * the data start.
 */
import { closeSync, openSync, writeSync } from 'node:fs';
import { SAFETENSORS_DTYPE_BYTES, type SafetensorsDtype } from '@edgetune/core';

/** A dtype name of the safetensors format. */
export type StreamDtype = SafetensorsDtype;

/** What the header needs of a tensor. */
export interface TensorSpec {
  name: string;
  dtype: StreamDtype;
  /** Row-major shape in elements; `[]` is a scalar. */
  shape: number[];
}

/** Bytes of one tensor: elements x dtype width. */
export function tensorBytes(t: TensorSpec): number {
  return t.shape.reduce((a, b) => a * b, 1) * SAFETENSORS_DTYPE_BYTES[t.dtype];
}

/**
 * The 8-byte length prefix + space-padded JSON header for `tensors` laid out back to back in the given order.
 * @returns the prefix+header bytes, each tensor's [begin, end) data offsets and the data size in bytes.
 * @throws RangeError for an empty or duplicated name, `__metadata__` as a name, or a shape that is not a list of
 *   non-negative integers.
 */
export function safetensorsHeader(
  tensors: readonly TensorSpec[],
  metadata?: Record<string, string>,
): { head: Buffer; offsets: Array<[number, number]>; dataBytes: number } {
  const header: Record<string, unknown> = {};
  if (metadata) header.__metadata__ = metadata;
  const offsets: Array<[number, number]> = [];
  let off = 0;
  for (const t of tensors) {
    if (!t.name || t.name === '__metadata__' || t.name in header)
      throw new RangeError(`bad or duplicate tensor name ${JSON.stringify(t.name)}`);
    if (!t.shape.every((d) => Number.isInteger(d) && d >= 0)) throw new RangeError(`tensor ${t.name}: bad shape [${t.shape}]`);
    const n = tensorBytes(t);
    header[t.name] = { dtype: t.dtype, shape: t.shape, data_offsets: [off, off + n] };
    offsets.push([off, off + n]);
    off += n;
  }
  let json = JSON.stringify(header);
  const pad = (8 - (Buffer.byteLength(json) % 8)) % 8;
  json += ' '.repeat(pad);
  const jsonBytes = Buffer.from(json, 'utf8');
  const head = Buffer.alloc(8 + jsonBytes.byteLength);
  head.writeBigUInt64LE(BigInt(jsonBytes.byteLength), 0);
  jsonBytes.copy(head, 8);
  return { head, offsets, dataBytes: off };
}

/**
 * Fills `chunk` (a view of at most `chunkBytes` bytes, a whole number of elements) with the bytes of `tensor`
 * that start at `byteOffset` within it. Chunks arrive in order; the view is reused between calls.
 */
export type ChunkFiller = (tensor: TensorSpec, chunk: Uint8Array, byteOffset: number) => void;

/**
 * Writes a safetensors file tensor by tensor: header first, then for each tensor (in the given order)
 * `fill` is asked for its bytes in chunks of `chunkBytes` (default 8 MiB), so memory stays at one chunk.
 * @returns the file size in bytes.
 * @throws RangeError as {@link safetensorsHeader}; file system errors as thrown by `node:fs`.
 */
export function writeSafetensorsStream(
  file: string,
  tensors: readonly TensorSpec[],
  fill: ChunkFiller,
  opts: { metadata?: Record<string, string>; chunkBytes?: number } = {},
): number {
  const { head, dataBytes } = safetensorsHeader(tensors, opts.metadata);
  const chunkBytes = Math.max(8, Math.floor((opts.chunkBytes ?? 8 * 2 ** 20) / 8) * 8);
  const buf = new Uint8Array(chunkBytes);
  const fd = openSync(file, 'w');
  try {
    writeAll(fd, head);
    for (const t of tensors) {
      const total = tensorBytes(t);
      for (let done = 0; done < total; ) {
        const n = Math.min(chunkBytes, total - done);
        const view = buf.subarray(0, n);
        fill(t, view, done);
        writeAll(fd, view);
        done += n;
      }
    }
  } finally {
    closeSync(fd);
  }
  return head.byteLength + dataBytes;
}

/** writeSync until every byte is written (a single call may write fewer). */
export function writeAll(fd: number, bytes: Uint8Array): void {
  for (let off = 0; off < bytes.byteLength; ) off += writeSync(fd, bytes, off, bytes.byteLength - off);
}
