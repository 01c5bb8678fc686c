// What a connection speaks, from its first bytes (pure). The proxy reads the client's first
// bytes and asks `sniff`; `more` means "wait for more bytes" (up to the protocol detection
// timeout, then the connection is opaque TCP).
//
//   tls    a TLS ClientHello (record type 22, handshake type 1), with its ALPN list and SNI
//   http1  an HTTP/1.x request line: `<METHOD> <target> HTTP/1.<d>`
//   http2  the HTTP/2 connection preface (`PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n`, RFC 9113 3.4)
//   other  anything else: opaque bytes

export type Sniffed =
  | { readonly kind: 'tls'; readonly alpn: readonly string[]; readonly serverName: string | null }
  | { readonly kind: 'http1' }
  | { readonly kind: 'http2' }
  | { readonly kind: 'other' }
  | { readonly kind: 'more' };

const MORE: Sniffed = { kind: 'more' };
const OTHER: Sniffed = { kind: 'other' };
const HTTP1: Sniffed = { kind: 'http1' };
const HTTP2: Sniffed = { kind: 'http2' };

export const H2_PREFACE = Buffer.from('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n', 'latin1');
/** The longest method name we wait for (WebDAV's are the longest common ones, ~16). */
const MAX_METHOD = 24;
/** The longest request line we wait for before calling the bytes opaque. */
const MAX_REQUEST_LINE = 8192;
/** A ClientHello larger than this (post-quantum key shares are ~1.2 KB) is not waited for. */
const MAX_CLIENT_HELLO = 16 * 1024;

/** A char code of RFC 9110's tchar (a method's, a header name's), for bytes or a latin1 string. */
export const isTokenChar = (c: number): boolean =>
  // RFC 9110 tchar: ALPHA / DIGIT / "!#$%&'*+-.^_`|~"
  (c >= 0x41 && c <= 0x5a) ||
  (c >= 0x61 && c <= 0x7a) ||
  (c >= 0x30 && c <= 0x39) ||
  c === 0x21 ||
  (c >= 0x23 && c <= 0x27) ||
  c === 0x2a ||
  c === 0x2b ||
  c === 0x2d ||
  c === 0x2e ||
  c === 0x5e ||
  c === 0x5f ||
  c === 0x60 ||
  c === 0x7c ||
  c === 0x7e;

/** A char code allowed in a request target: no control character, space or DEL. */
export const isTargetChar = (c: number): boolean => c > 0x20 && c !== 0x7f;

export function sniff(buf: Buffer): Sniffed {
  if (buf.length === 0) return MORE;
  const first = buf[0] as number;
  if (first === 0x16) return sniffTls(buf);
  if (first === 0x50 /* P */) {
    const n = Math.min(buf.length, H2_PREFACE.length);
    if (buf.compare(H2_PREFACE, 0, n, 0, n) === 0) return n === H2_PREFACE.length ? HTTP2 : MORE;
  }
  return sniffHttp1(buf);
}

function sniffHttp1(buf: Buffer): Sniffed {
  // METHOD: one or more tchars, then a space.
  let i = 0;
  while (i < buf.length && i <= MAX_METHOD && isTokenChar(buf[i] as number)) i++;
  if (i === buf.length) return i <= MAX_METHOD ? MORE : OTHER;
  if (i === 0 || buf[i] !== 0x20) return OTHER;
  // The target: no control characters or spaces, up to the next space.
  const lineEnd = buf.indexOf(0x0a, i);
  const limit = lineEnd === -1 ? buf.length : lineEnd;
  let j = i + 1;
  while (j < limit && buf[j] !== 0x20) {
    if (!isTargetChar(buf[j] as number)) return OTHER;
    j++;
  }
  if (j === i + 1 && j < limit) return OTHER; // empty target
  if (lineEnd === -1) {
    if (buf.length > MAX_REQUEST_LINE) return OTHER;
    // Check what we have of " HTTP/1." against the bytes so far.
    return matchesSoFar(buf, j, ' HTTP/1.') ? MORE : OTHER;
  }
  // `<target> HTTP/1.d\r\n`
  const end = buf[lineEnd - 1] === 0x0d ? lineEnd - 1 : lineEnd;
  if (end - j !== 9) return OTHER;
  if (buf.toString('latin1', j, j + 8) !== ' HTTP/1.') return OTHER;
  const minor = buf[j + 8] as number;
  return minor >= 0x30 && minor <= 0x39 ? HTTP1 : OTHER;
}

function matchesSoFar(buf: Buffer, from: number, expected: string): boolean {
  for (let k = 0; from + k < buf.length && k < expected.length; k++) {
    if (buf[from + k] !== expected.charCodeAt(k)) return false;
  }
  return true;
}

/**
 * A TLS record holding a ClientHello: the ALPN protocols and SNI it offers. Only the first
 * handshake message is read; it may span records only up to MAX_CLIENT_HELLO bytes.
 */
function sniffTls(buf: Buffer): Sniffed {
  if (buf.length < 6) {
    // Record header: type 22, version 3.x, length; then handshake type 1.
    if (buf.length >= 2 && buf[1] !== 0x03) return OTHER;
    if (buf.length >= 6 && buf[5] !== 0x01) return OTHER;
    return MORE;
  }
  if (buf[1] !== 0x03 || buf[5] !== 0x01) return OTHER;
  // Reassemble handshake bytes across records (a large ClientHello is split in several).
  const hs: Buffer[] = [];
  let hsLength = 0;
  let offset = 0;
  let wanted = -1;
  while (offset + 5 <= buf.length) {
    if (buf[offset] !== 0x16) return OTHER;
    const recordLength = buf.readUInt16BE(offset + 3);
    if (recordLength === 0 || recordLength > 16384 + 256) return OTHER;
    const available = Math.min(recordLength, buf.length - offset - 5);
    hs.push(buf.subarray(offset + 5, offset + 5 + available));
    hsLength += available;
    if (wanted === -1 && hsLength >= 4) {
      const head = hs.length === 1 ? (hs[0] as Buffer) : Buffer.concat(hs);
      wanted = 4 + head.readUIntBE(1, 3);
      if (wanted > MAX_CLIENT_HELLO) return OTHER;
    }
    if (wanted !== -1 && hsLength >= wanted) break;
    if (available < recordLength) return MORE;
    offset += 5 + recordLength;
  }
  if (wanted === -1 || hsLength < wanted) {
    return buf.length > MAX_CLIENT_HELLO + 64 ? OTHER : MORE;
  }
  const hello = (hs.length === 1 ? (hs[0] as Buffer) : Buffer.concat(hs)).subarray(4, wanted);
  return parseClientHello(hello) ?? OTHER;
}

function parseClientHello(b: Buffer): Sniffed | null {
  // legacy_version(2) random(32) session_id<0..32> cipher_suites<2..> compression<1..> extensions<..>
  let p = 34;
  if (p + 1 > b.length) return null;
  p += 1 + (b[p] as number);
  if (p + 2 > b.length) return null;
  p += 2 + b.readUInt16BE(p);
  if (p + 1 > b.length) return null;
  p += 1 + (b[p] as number);
  const alpn: string[] = [];
  let serverName: string | null = null;
  if (p === b.length) return { kind: 'tls', alpn, serverName };
  if (p + 2 > b.length) return null;
  const extEnd = p + 2 + b.readUInt16BE(p);
  if (extEnd > b.length) return null;
  p += 2;
  while (p + 4 <= extEnd) {
    const type = b.readUInt16BE(p);
    const len = b.readUInt16BE(p + 2);
    const body = p + 4;
    if (body + len > extEnd) return null;
    if (type === 16 && len >= 2) {
      // application_layer_protocol_negotiation: list<2> of name<1>
      const listEnd = body + 2 + b.readUInt16BE(body);
      if (listEnd > body + len) return null;
      for (let q = body + 2; q < listEnd;) {
        const n = b[q] as number;
        if (n === 0 || q + 1 + n > listEnd) return null;
        alpn.push(b.toString('latin1', q + 1, q + 1 + n));
        q += 1 + n;
      }
    } else if (type === 0 && len >= 5) {
      // server_name: list<2> of (type(1)=0, name<2>)
      if (b[body + 2] === 0) {
        const n = b.readUInt16BE(body + 3);
        if (body + 5 + n <= body + len) serverName = b.toString('latin1', body + 5, body + 5 + n);
      }
    }
    p = body + len;
  }
  return { kind: 'tls', alpn, serverName };
}

/** The longest request head waited for to read its Host (a ServiceEntry host without address). */
export const MAX_REQUEST_HEAD = 16 * 1024;

/** True when `buf` holds a whole request head (or as much of one as is waited for). */
export const headComplete = (buf: Buffer): boolean =>
  buf.length >= MAX_REQUEST_HEAD || buf.includes('\r\n\r\n', 0, 'latin1');

/**
 * The Host of the HTTP/1.x request whose head starts `buf`: lowercase, without its port or a
 * final dot; null when the head has none (or is not whole).
 */
export function requestHost(buf: Buffer): string | null {
  const end = buf.indexOf('\r\n\r\n', 0, 'latin1');
  if (end === -1) return null;
  const head = buf.toString('latin1', 0, end);
  const m = /\r\nhost:[ \t]*([^\r\n]*)/i.exec(head);
  if (m === null) return null;
  const value = (m[1] as string).trim().toLowerCase();
  let host: string;
  if (value.startsWith('[')) {
    const close = value.indexOf(']');
    host = close === -1 ? '' : value.slice(0, close + 1);
  } else {
    const colon = value.indexOf(':');
    host = colon === -1 ? value : value.slice(0, colon);
  }
  host = host.replace(/\.$/, '');
  return host === '' ? null : host;
}
