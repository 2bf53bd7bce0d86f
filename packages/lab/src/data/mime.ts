/**
 * The subject and readable text of an e-mail. postal-mime does the RFC 822 / MIME work (headers, RFC 2047
 * encoded-words, multipart, quoted-printable / base64, charsets); html-to-text turns HTML into text. What is
 * left here is which text a prompt gets.
 */
import PostalMime, { type Email } from 'postal-mime';
import { compile } from 'html-to-text';

/**
 * HTML -> text: the words a reader of the mail sees. Link targets, images, `<title>` and rules are dropped
 * (URLs and dashes would fill the prompt); headings keep their case, quotes get no `>`, table cells stay apart.
 * Inline tags join (spam splits words with them: `<b>N</b>OW` -> `NOW`). Line breaks are kept.
 */
export const htmlToText: (html: string) => string = compile({
  wordwrap: false,
  // The whole document, not only <body>: spam writes text outside it, and a text part quoting an HTML mail has
  // its own words before that mail's <body>.
  baseElements: { selectors: [] },
  selectors: [
    { selector: 'a', options: { ignoreHref: true } },
    { selector: 'img', format: 'skip' },
    { selector: 'title', format: 'skip' },
    { selector: 'hr', format: 'block' },
    { selector: 'blockquote', format: 'block' },
    ...['h1', 'h2', 'h3', 'h4', 'h5', 'h6'].map((selector) => ({ selector, options: { uppercase: false } })),
    ...['tr', 'td', 'th'].map((selector) => ({ selector, format: 'block' })),
  ],
});

const HTML_HINT = /<\/?(html|body|div|p|br|table|tr|td|font|a|img|span|center|b|strong|i|u|hr|meta|style|script)\b[^<>]*>/i;

/** Whether a text/plain body is really HTML (common in spam). */
export function looksLikeHtml(text: string): boolean {
  return HTML_HINT.test(text);
}

/**
 * The readable text of a parsed message: its inline text parts (postal-mime joins them; HTML found in them is
 * converted), else its HTML converted, else the first text attachment (a part whose Content-Type is malformed
 * lands there); '' when there is none. Whitespace is not collapsed here.
 */
export function messageText(email: Email): string {
  const plain = email.text ?? '';
  const fromPlain = looksLikeHtml(plain) ? htmlToText(plain) : plain;
  if (fromPlain.trim()) return fromPlain;
  const fromHtml = email.html ? htmlToText(email.html) : '';
  if (fromHtml.trim()) return fromHtml;
  const part = email.attachments.find((a) => a.mimeType.startsWith('text/') && typeof a.content !== 'string');
  return part ? new TextDecoder().decode(part.content as ArrayBuffer | Uint8Array) : '';
}

/**
 * Subject ('' when absent) and readable text ({@link messageText}) of a raw RFC 822 message: its bytes, or
 * text already decoded (the stdlib corpus: UTF-8 with unreadable bytes as U+FFFD). Malformed mail gives what
 * could be read. Rejects (postal-mime's error) only past its limits: MIME nesting over 256 levels, headers over
 * 2 MiB in all.
 */
export async function parseEmail(raw: string | Uint8Array): Promise<{ subject: string; body: string }> {
  if (typeof raw !== 'string') {
    const email = await PostalMime.parse(raw);
    return { subject: email.subject ?? '', body: messageText(email) };
  }
  // Text is re-encoded as UTF-8 for the parser, which then reads each part in its declared charset: a U+FFFD
  // (EF BF BD) in a latin-1 part would come back as "ï¿½". It crosses as ASCII SUB, which every charset keeps.
  const email = await PostalMime.parse(raw.replace(/\uFFFD/g, '\u001A'));
  // biome-ignore lint/suspicious/noControlCharactersInRegex: SUB is the placeholder put in above
  const restore = (s: string) => s.replace(/\u001A/g, '\uFFFD');
  return { subject: restore(email.subject ?? ''), body: restore(messageText(email)) };
}
