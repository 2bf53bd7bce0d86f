/**
 * Just enough RFC 822 / MIME to get the subject and the readable start of an e-mail: header unfolding,
 * RFC 2047 encoded-words, multipart walking, quoted-printable / base64 bodies, charsets, HTML to text.
 * Lenient by design: real mail (and spam especially) breaks the rules, so every step falls back instead of throwing.
 */
import { TextDecoder } from 'node:util';

/** A message or MIME part: lower-cased header names -> unfolded values (in order), and the raw body (LF line ends). */
export interface MimeEntity {
  headers: Map<string, string[]>;
  body: string;
}

/** Splits raw message text into headers and body. Headers end at the first empty line; a leading mbox `From ` line is skipped. */
export function parseEntity(raw: string): MimeEntity {
  const text = raw.replace(/\r\n?/g, '\n');
  let headerText: string;
  let body: string;
  if (text.startsWith('\n')) {
    headerText = '';
    body = text.slice(1);
  } else {
    const end = text.indexOf('\n\n');
    headerText = end < 0 ? text : text.slice(0, end);
    body = end < 0 ? '' : text.slice(end + 2);
  }
  const headers = new Map<string, string[]>();
  let current: { name: string; value: string } | null = null;
  const flush = () => {
    if (!current) return;
    const list = headers.get(current.name);
    if (list) list.push(current.value);
    else headers.set(current.name, [current.value]);
    current = null;
  };
  const lines = headerText.split('\n');
  lines.forEach((line, i) => {
    if (i === 0 && line.startsWith('From ')) return; // mbox separator, not a header
    if ((line.startsWith(' ') || line.startsWith('\t')) && current) {
      current.value += line; // unfolding: drop the line break, keep the whitespace
      return;
    }
    flush();
    const colon = line.indexOf(':');
    if (colon <= 0) return; // not a header line: ignore
    current = { name: line.slice(0, colon).trim().toLowerCase(), value: line.slice(colon + 1).trim() };
  });
  flush();
  return { headers, body };
}

/** First value of header `name` (case-insensitive), or undefined. */
export function getHeader(entity: MimeEntity, name: string): string | undefined {
  return entity.headers.get(name.toLowerCase())?.[0];
}

/** `type/subtype; a=b; c="d"` -> lower-cased type (default `text/plain`) and params with lower-cased names. */
export function parseContentType(value: string | undefined): { type: string; params: Record<string, string> } {
  if (!value) return { type: 'text/plain', params: {} };
  const semi = value.indexOf(';');
  const type = (semi < 0 ? value : value.slice(0, semi)).trim().toLowerCase() || 'text/plain';
  const params: Record<string, string> = {};
  const re = /;\s*([^\s=;]+)\s*=\s*("(?:[^"\\]|\\.)*"|[^;]*)/g;
  let m: RegExpExecArray | null;
  while ((m = re.exec(value)) !== null) {
    let v = m[2]!.trim();
    if (v.startsWith('"') && v.endsWith('"') && v.length >= 2) v = v.slice(1, -1).replace(/\\(.)/g, '$1');
    params[m[1]!.toLowerCase()] = v;
  }
  return { type, params };
}

const utf8 = new TextEncoder();

/** Quoted-printable text -> bytes. Soft line breaks vanish; stray non-ASCII chars are kept as their UTF-8 bytes. */
export function decodeQuotedPrintable(text: string): Uint8Array {
  const out: number[] = [];
  const s = text.replace(/\r\n?/g, '\n');
  for (let i = 0; i < s.length; i++) {
    const ch = s[i]!;
    if (ch === '=') {
      const hex = s.slice(i + 1, i + 3);
      if (/^[0-9A-Fa-f]{2}$/.test(hex)) {
        out.push(parseInt(hex, 16));
        i += 2;
        continue;
      }
      const soft = /^[ \t]*\n/.exec(s.slice(i + 1, i + 80));
      if (soft) {
        i += soft[0].length;
        continue;
      }
      out.push(0x3d); // a lone '=': keep it
      continue;
    }
    const code = ch.charCodeAt(0);
    if (code < 0x80) out.push(code);
    else {
      const cp = s.codePointAt(i)!;
      if (cp > 0xffff) i++;
      out.push(...utf8.encode(String.fromCodePoint(cp)));
    }
  }
  return Uint8Array.from(out);
}

/** Base64 text -> bytes, ignoring whitespace and junk characters. */
export function decodeBase64(text: string): Uint8Array {
  return new Uint8Array(Buffer.from(text.replace(/[^A-Za-z0-9+/]/g, ''), 'base64'));
}

const decoders = new Map<string, TextDecoder | null>();
function decoderFor(label: string, fatal = false): TextDecoder | null {
  const key = `${label}|${fatal}`;
  let d = decoders.get(key);
  if (d === undefined) {
    try {
      d = new TextDecoder(label, { fatal });
    } catch {
      d = null;
    }
    decoders.set(key, d);
  }
  return d;
}

/**
 * Bytes -> text in `charset`. Unknown, missing or ASCII charsets try UTF-8 first and fall back to windows-1252
 * (which maps every byte), so this never throws. Returns null only when `strict` and the charset is unknown.
 */
export function decodeBytes(bytes: Uint8Array, charset?: string, strict = false): string | null {
  const cs = (charset ?? '').trim().replace(/^["']|["']$/g, '').toLowerCase();
  if (cs && cs !== 'us-ascii' && cs !== 'ascii') {
    const d = decoderFor(cs);
    if (d) return d.decode(bytes);
    if (strict) return null;
  }
  try {
    return decoderFor('utf-8', true)!.decode(bytes);
  } catch {
    return decoderFor('windows-1252')!.decode(bytes);
  }
}

const ENCODED_WORD = /=\?([^?\s]+)\?([bBqQ])\?([^?\s]*)\?=/g;

/**
 * Decodes RFC 2047 encoded-words (`=?utf-8?B?...?=`, `=?iso-8859-1?Q?...?=`) in a header value. Whitespace between
 * adjacent encoded-words is dropped, and adjacent words in one charset are decoded together (a multi-byte char may
 * be split across them). Words in an unknown charset are left as they are.
 */
export function decodeEncodedWords(value: string): string {
  type Seg = { text: string } | { raw: string; charset: string; bytes: Uint8Array };
  const segs: Seg[] = [];
  let last = 0;
  let m: RegExpExecArray | null;
  ENCODED_WORD.lastIndex = 0;
  while ((m = ENCODED_WORD.exec(value)) !== null) {
    const between = value.slice(last, m.index);
    const prev = segs[segs.length - 1];
    // Whitespace between two encoded-words is not part of the text (RFC 2047 section 6.2).
    if (between.length > 0 && !(prev && 'raw' in prev && /^\s+$/.test(between))) segs.push({ text: between });
    const charset = m[1]!.split('*')[0]!.toLowerCase(); // drop RFC 2231 language suffix
    const payload = m[3]!;
    let bytes: Uint8Array;
    if (m[2]!.toUpperCase() === 'B') bytes = decodeBase64(payload);
    else bytes = decodeQuotedPrintable(payload.replace(/_/g, '=20'));
    segs.push({ raw: m[0], charset, bytes });
    last = m.index + m[0].length;
  }
  if (segs.length === 0) return value;
  if (last < value.length) segs.push({ text: value.slice(last) });

  let out = '';
  for (let i = 0; i < segs.length; ) {
    const s = segs[i]!;
    if ('text' in s) {
      out += s.text;
      i++;
      continue;
    }
    let j = i + 1;
    const group: Uint8Array[] = [s.bytes];
    const raws: string[] = [s.raw];
    for (; j < segs.length; j++) {
      const n = segs[j]!;
      if (!('raw' in n) || n.charset !== s.charset) break;
      group.push(n.bytes);
      raws.push(n.raw);
    }
    const decoded = decodeBytes(Buffer.concat(group), s.charset, true);
    out += decoded ?? raws.join(' ');
    i = j;
  }
  return out;
}

const NAMED_ENTITIES: Record<string, string> = {
  nbsp: ' ', amp: '&', lt: '<', gt: '>', quot: '"', apos: "'", copy: '©', reg: '®', trade: '™',
  mdash: '—', ndash: '–', hellip: '…', lsquo: '‘', rsquo: '’', ldquo: '“', rdquo: '”', bull: '•',
  middot: '·', euro: '€', pound: '£', cent: '¢', yen: '¥', deg: '°', times: '×', laquo: '«', raquo: '»',
  eacute: 'é', egrave: 'è', agrave: 'à', aacute: 'á', ccedil: 'ç', ouml: 'ö', uuml: 'ü', auml: 'ä', szlig: 'ß',
};

/** Decodes `&amp;`-style named (common ones) and numeric character references; unknown ones stay. */
export function decodeHtmlEntities(text: string): string {
  return text.replace(/&(#[xX][0-9a-fA-F]{1,6}|#[0-9]{1,7}|[a-zA-Z]{2,8});?/g, (whole, ent: string) => {
    if (ent.startsWith('#')) {
      const cp = ent[1] === 'x' || ent[1] === 'X' ? parseInt(ent.slice(2), 16) : parseInt(ent.slice(1), 10);
      if (cp > 0 && cp <= 0x10ffff && !(cp >= 0xd800 && cp <= 0xdfff)) return String.fromCodePoint(cp);
      return ' ';
    }
    return NAMED_ENTITIES[ent.toLowerCase()] ?? whole;
  });
}

/** HTML -> text: drops comments, script/style/head blocks and tags (block tags become spaces), decodes entities. */
export function htmlToText(html: string): string {
  return decodeHtmlEntities(
    html
      .replace(/<!--[\s\S]*?-->/g, ' ')
      .replace(/<(script|style|head)\b[^>]*>[\s\S]*?<\/\1\s*>/gi, ' ')
      .replace(/<![^>]*>/g, ' ')
      // Inline tags vanish (spam splits words with them: <i>R</i>EAD), block-level ones separate words.
      .replace(/<\/?(?:a|b|i|u|s|em|strong|span|font|small|big|sup|sub|tt|abbr)\b[^<>]*>/gi, '')
      .replace(/<\/?[a-zA-Z][^<>]*>/g, ' '),
  );
}

const HTML_HINT = /<\/?(html|body|div|p|br|table|tr|td|font|a|img|span|center|b|strong|i|u|hr|meta|style|script)\b[^<>]*>/i;

/** Whether a text/plain body is really HTML (common in spam). */
export function looksLikeHtml(text: string): boolean {
  return HTML_HINT.test(text);
}

/** Splits a multipart body at `--boundary` lines; preamble and epilogue are dropped. */
export function splitMultipart(body: string, boundary: string): string[] {
  const delim = `--${boundary}`;
  const parts: string[] = [];
  let current: string[] | null = null;
  for (const line of body.split('\n')) {
    const t = line.trimEnd();
    if (t === delim || t === `${delim}--`) {
      if (current) parts.push(current.join('\n'));
      if (t !== delim) return parts; // closing delimiter
      current = [];
    } else if (current) {
      current.push(line);
    }
  }
  if (current && current.length > 0) parts.push(current.join('\n'));
  return parts;
}

/** The body of a leaf entity as text: transfer encoding undone and charset applied. */
export function decodeBody(entity: MimeEntity): string {
  const cte = (getHeader(entity, 'content-transfer-encoding') ?? '').trim().toLowerCase();
  const { params } = parseContentType(getHeader(entity, 'content-type'));
  if (cte === 'quoted-printable') return decodeBytes(decodeQuotedPrintable(entity.body), params.charset)!;
  if (cte === 'base64') return decodeBytes(decodeBase64(entity.body), params.charset)!;
  return entity.body;
}

interface Leaf {
  type: string;
  attachment: boolean;
  entity: MimeEntity;
}

function collectLeaves(entity: MimeEntity, out: Leaf[], depth: number): void {
  const { type, params } = parseContentType(getHeader(entity, 'content-type'));
  if (depth < 8 && type.startsWith('multipart/') && params.boundary) {
    const parts = splitMultipart(entity.body, params.boundary);
    if (parts.length > 0) {
      for (const p of parts) collectLeaves(parseEntity(p), out, depth + 1);
      return;
    }
  }
  if (depth < 8 && type === 'message/rfc822') {
    collectLeaves(parseEntity(entity.body), out, depth + 1);
    return;
  }
  const disposition = (getHeader(entity, 'content-disposition') ?? '').toLowerCase();
  out.push({ type: type.startsWith('multipart/') ? 'text/plain' : type, attachment: disposition.startsWith('attachment'), entity });
}

/**
 * The readable text of a message: the first inline text/plain part (depth-first) with any non-blank text, else the
 * first such text/html part turned into text, else the first such text part of any kind; '' when there is none.
 * HTML found in a text/plain part is stripped too. Whitespace is not collapsed here.
 */
export function messageText(entity: MimeEntity): string {
  const leaves: Leaf[] = [];
  collectLeaves(entity, leaves, 0);
  const textOf = (l: Leaf): string => {
    const text = decodeBody(l.entity);
    return l.type === 'text/html' || looksLikeHtml(text) ? htmlToText(text) : text;
  };
  const tiers: Array<(l: Leaf) => boolean> = [
    (l) => l.type === 'text/plain' && !l.attachment,
    (l) => l.type === 'text/html' && !l.attachment,
    (l) => l.type.startsWith('text/'),
  ];
  for (const tier of tiers) {
    for (const leaf of leaves) {
      if (!tier(leaf)) continue;
      const text = textOf(leaf);
      if (text.trim().length > 0) return text;
    }
  }
  return '';
}

/** Subject (encoded-words decoded, '' when absent) and readable body text of a raw RFC 822 message. */
export function parseEmail(raw: string): { subject: string; body: string } {
  const entity = parseEntity(raw);
  const subject = decodeEncodedWords(getHeader(entity, 'subject') ?? '');
  return { subject, body: messageText(entity) };
}
