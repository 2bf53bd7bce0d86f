/** HTTP `Range` requests (RFC 9110 §14) of one byte range, parsed by range-parser. */
import rangeParser from 'range-parser';

/** A byte range of a body, inclusive at both ends (byte offsets). */
export interface ByteRange {
  start: number;
  end: number;
}

/**
 * The single byte range that `header` asks for in a body of `size` bytes.
 * @returns the range to send (206); null to send the whole body (200): no header, another unit, several
 *   ranges (no multipart/byteranges answers), a malformed range, or an invalid one (last before first);
 *   'unsatisfiable' (416) for a range that starts at or past the end, or the empty suffix `-0`
 */
export function byteRange(header: string | undefined, size: number): ByteRange | null | 'unsatisfiable' {
  const spec = header?.trim();
  // one `bytes=` range of digits: other units and range sets are ignored, as RFC 9110 §14.2 allows
  if (!spec || !/^bytes=[\d-]+$/.test(spec)) return null;
  const ranges = rangeParser(size, spec);
  if (ranges === -2) return null;
  if (ranges !== -1) return ranges[0];
  // range-parser answers -1 for two ranges that RFC 9110 §14.1 treats otherwise: a suffix longer than the
  // body is the whole body, and a last position before the first makes the range invalid (ignored)
  const [first, last] = spec.slice('bytes='.length).split('-');
  if (first === '' && Number(last) > 0 && size > 0) return { start: 0, end: size - 1 };
  if (first !== '' && last !== '' && Number(last) < Number(first)) return null;
  return 'unsatisfiable';
}
