// A streaming HTTP/1.1 message framer for the proxy (RFC 9112), pure: bytes in, callbacks out.
//
// It parses a message's head into a small object and then only *frames* the body: body bytes
// (with their chunked framing and trailers, unchanged) are handed on as slices of the input,
// never copied or decoded, so a proxy writes them through as they came. It is strict where a
// lenient parser lets request smuggling through: Transfer-Encoding together with
// Content-Length, differing Content-Lengths, a Transfer-Encoding other than `chunked` last, bad
// chunk sizes, bare LF in a head, obsolete line folding, control characters in values: each is
// a parse error (the proxy answers 400 and closes).

import { isTargetChar, isTokenChar } from '../core/sniff';

export class Http1ParseError extends Error {
  override readonly name = 'Http1ParseError';
  constructor(
    message: string,
    /** 431 for a head too large, else 400 (a request) / 502 (a response). */
    readonly tooLarge = false,
  ) {
    super(message);
  }
}

/** Flat list of raw header lines: name at 2i, value at 2i+1, names in the case they came in. */
export type RawHeaders = string[];

interface HeadCommon {
  readonly versionMinor: number;
  readonly headers: RawHeaders;
  /** -1 when absent. */
  readonly contentLength: number;
  readonly chunked: boolean;
  /** The connection is to close after this message (Connection: close, or HTTP/1.0 without keep-alive). */
  readonly close: boolean;
  /** The Upgrade header (lowercase) when Connection names `upgrade`, else null. */
  readonly upgrade: string | null;
  /** The names Connection lists besides close, keep-alive and upgrade (not forwarded); null: none. */
  readonly connectionNamed: NameSet | null;
  /** The head's text without its final CRLFCRLF: the lines forwarded as they came are its slices. */
  readonly text: string;
  /** Where its first header line starts in `text` (text.length when it has none). */
  readonly fieldsStart: number;
}

export interface RequestHead extends HeadCommon {
  readonly method: string;
  readonly target: string;
  readonly host: string | null;
  readonly expectContinue: boolean;
}

export interface ResponseHead extends HeadCommon {
  readonly statusCode: number;
  readonly reason: string;
}

export interface ParserHandler<H> {
  onHead(head: H): void;
  /** A slice of the input (valid only during the call unless copied). */
  onBody(chunk: Buffer): void;
  onMessageEnd(): void;
}

/** Largest head accepted (Envoy's default max_request_headers_kb is 60). */
export const MAX_HEAD_BYTES = 60 * 1024;
const MAX_HEADERS = 200;
const CRLFCRLF = Buffer.from('\r\n\r\n', 'latin1');

/** Digits a Content-Length may have: 15 keep it exact in a number (and is far beyond any body). */
const MAX_LENGTH_DIGITS = 15;

// The character classes of a head are checked by loops over char codes, not regular
// expressions: a head has a dozen names and values, and a regular expression's call costs more
// than the loop over a short string (4% of a sidecar's CPU under load was these tests).

/** A token: one or more tchars (a method, a header name). */
export function isToken(s: string): boolean {
  const n = s.length;
  if (n === 0) return false;
  for (let i = 0; i < n; i++) {
    if (!isTokenChar(s.charCodeAt(i))) return false;
  }
  return true;
}

/**
 * A field value holds a control character: CR, LF, NUL or any other below 0x20 but tab, or DEL
 * (visible chars, space, tab and obs-text are allowed).
 */
export function hasBadValueChar(s: string): boolean {
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if ((c < 0x20 && c !== 0x09) || c === 0x7f) return true;
  }
  return false;
}

/** A request target holds a control character, a space or DEL. */
function hasBadTargetChar(s: string): boolean {
  for (let i = 0; i < s.length; i++) if (!isTargetChar(s.charCodeAt(i))) return true;
  return false;
}

/** An LF not preceded by CR. */
export function hasBareLf(text: string): boolean {
  for (let i = text.indexOf('\n'); i !== -1; i = text.indexOf('\n', i + 1)) {
    if (i === 0 || text.charCodeAt(i - 1) !== 0x0d) return true;
  }
  return false;
}

/** An LF not preceded by CR at or after `from` in a head's bytes. */
function hasBareLfFrom(buf: Buffer, from: number): boolean {
  for (let i = buf.indexOf(0x0a, from); i !== -1; i = buf.indexOf(0x0a, i + 1)) {
    if (i === 0 || buf[i - 1] !== 0x0d) return true;
  }
  return false;
}

/** Three digits, the first not 0 (a status code). */
function isStatusCode(s: string): boolean {
  if (s.length !== 3) return false;
  const a = s.charCodeAt(0);
  const b = s.charCodeAt(1);
  const c = s.charCodeAt(2);
  return a >= 0x31 && a <= 0x39 && b >= 0x30 && b <= 0x39 && c >= 0x30 && c <= 0x39;
}

const enum Body {
  None,
  Length,
  Chunked,
  UntilClose,
}

const enum Chunk {
  Size,
  Ext,
  SizeLf,
  Data,
  DataCr,
  DataLf,
  Trailer,
}

interface ParsedFields {
  contentLength: number;
  chunked: boolean;
  close: boolean;
  keepAlive: boolean;
  upgrade: string | null;
  connectionUpgrade: boolean;
  host: string | null;
  expectContinue: boolean;
  /** The Transfer-Encoding fields' values, lowercase, joined; null when there is none. */
  transferEncoding: string | null;
  /** The other tokens of the Connection fields (lowercase): the names of hop-by-hop fields. */
  connectionNamed: string[] | null;
}

/** `name` equals `lower` (lowercase) with ASCII case ignored: no lowercased copy is made. */
function sameName(name: string, lower: string): boolean {
  const n = name.length;
  if (n !== lower.length) return false;
  for (let i = 0; i < n; i++) {
    let c = name.charCodeAt(i);
    if (c >= 0x41 && c <= 0x5a) c += 0x20;
    if (c !== lower.charCodeAt(i)) return false;
  }
  return true;
}

/** Lowercase names, with their lengths: a name of another length is not lowercased to look. */
interface NameSet {
  readonly names: ReadonlySet<string>;
  readonly lengths: ReadonlySet<number>;
}

function nameSet(names: Iterable<string>): NameSet {
  const lower = new Set([...names].map((n) => n.toLowerCase()));
  return { names: lower, lengths: new Set([...lower].map((n) => n.length)) };
}

/** The fields that frame a message, read by `noteField`. */
const FRAMING = nameSet([
  'host',
  'expect',
  'upgrade',
  'connection',
  'content-length',
  'transfer-encoding',
]);

/** Optional whitespace around a field value (RFC 9110 5.6.3): space and tab only. */
const isOws = (c: number): boolean => c === 0x20 || c === 0x09;

/** `s` without optional whitespace at either end (String's trim also takes other spaces). */
function trimOws(s: string): string {
  let a = 0;
  let b = s.length;
  while (a < b && isOws(s.charCodeAt(a))) a++;
  while (b > a && isOws(s.charCodeAt(b - 1))) b--;
  return a === 0 && b === s.length ? s : s.slice(a, b);
}

/** A token of a Connection field (lowercase, trimmed). */
function connectionToken(f: ParsedFields, t: string): void {
  if (t === 'close') f.close = true;
  else if (t === 'keep-alive') f.keepAlive = true;
  else if (t === 'upgrade') f.connectionUpgrade = true;
  else if (t !== '') (f.connectionNamed ??= []).push(t);
}

/** One value of a Content-Length field (`field`, for the error): 1-15 digits, as the others. */
function contentLength(f: ParsedFields, v: string, field: string): void {
  const len = v.length;
  let n = 0;
  for (let i = 0; i < len; i++) {
    const d = v.charCodeAt(i) - 0x30;
    if (d < 0 || d > 9) {
      n = -1;
      break;
    }
    n = n * 10 + d;
  }
  if (len === 0 || len > MAX_LENGTH_DIGITS || n < 0) {
    throw new Http1ParseError(`invalid Content-Length "${field.slice(0, 32)}"`);
  }
  if (f.contentLength !== -1 && f.contentLength !== n) {
    throw new Http1ParseError('differing Content-Length values');
  }
  f.contentLength = n;
}

/**
 * The header lines of a head's text from `start` (the first line's end) to the end, read in
 * place: only each field's name and value become strings. The fields that frame the message are
 * read by `noteField`, a function of its own, and only for names of their lengths: with them in
 * this loop, V8's optimizing compiler took 18-24 ms and 5 MiB of its memory for this one function,
 * again each time a new kind of request made it start over (a first `Connection` header, say),
 * on the worker thread beside the proxy's; apart, 5-9 ms, the parsing as fast (bench/RESULTS.md,
 * 2026-12-07, midday).
 */
function parseFields(text: string, start: number, headers: RawHeaders): ParsedFields {
  const f: ParsedFields = {
    contentLength: -1,
    chunked: false,
    close: false,
    keepAlive: false,
    upgrade: null,
    connectionUpgrade: false,
    host: null,
    expectContinue: false,
    transferEncoding: null,
    connectionNamed: null,
  };
  let count = 0;
  const end = text.length;
  for (let pos = start; pos < end;) {
    const lineStart = pos;
    // One pass over the line's characters: its end (CRLF), its first colon, and whether a control
    // character (other than tab) or DEL follows that colon. Cheaper than a search per delimiter
    // and a check per part: most of a request's head is in its header values.
    let eol = end;
    let colon = -1;
    let badValue = false;
    for (let i = lineStart; i < end; i++) {
      const c = text.charCodeAt(i);
      if (c < 0x20 || c === 0x7f) {
        if (c === 0x0d && i + 1 < end && text.charCodeAt(i + 1) === 0x0a) {
          eol = i;
          break;
        }
        if (colon !== -1 && c !== 0x09) badValue = true;
      } else if (c === 0x3a && colon === -1) {
        colon = i;
      }
    }
    pos = eol + 2;
    if (eol === lineStart) continue;
    if (++count > MAX_HEADERS) throw new Http1ParseError('too many header fields', true);
    const c0 = text.charCodeAt(lineStart);
    if (c0 === 0x20 || c0 === 0x09) throw new Http1ParseError('obsolete line folding');
    if (colon <= lineStart) throw new Http1ParseError('a header line without a name');
    const name = text.slice(lineStart, colon);
    if (!isToken(name)) throw new Http1ParseError(`invalid header name "${name.slice(0, 64)}"`);
    let vs = colon + 1;
    let ve = eol;
    while (vs < ve && isOws(text.charCodeAt(vs))) vs++;
    while (ve > vs && isOws(text.charCodeAt(ve - 1))) ve--;
    const value = text.slice(vs, ve);
    if (badValue) throw new Http1ParseError(`invalid value of header ${name}`);
    headers.push(name, value);
    if (FRAMING.lengths.has(name.length)) noteField(f, name, value);
  }
  if (f.transferEncoding !== null) endTransferEncoding(f, f.transferEncoding);
  return f;
}

/**
 * A field that frames the message (Host, Expect, Upgrade, Connection, Content-Length,
 * Transfer-Encoding), by its name lowercased once (a token: ASCII). A comparison per name
 * without the copy made V8 compile six loops here: 9-13 ms against 3.5 for this one.
 */
function noteField(f: ParsedFields, name: string, value: string): void {
  switch (name.toLowerCase()) {
    case 'host':
      if (f.host !== null) throw new Http1ParseError('more than one Host header');
      f.host = value;
      break;
    case 'expect':
      if (value.toLowerCase() === '100-continue') f.expectContinue = true;
      break;
    case 'upgrade':
      f.upgrade = value.toLowerCase();
      break;
    case 'connection':
      noteConnection(f, value.toLowerCase());
      break;
    case 'content-length':
      // A list of identical values is allowed (RFC 9110 8.6); anything else is refused. One
      // value (the usual case) is the whole field value, already trimmed.
      if (value.includes(','))
        for (const part of value.split(',')) contentLength(f, trimOws(part), value);
      else contentLength(f, value, value);
      break;
    case 'transfer-encoding':
      f.transferEncoding =
        f.transferEncoding === null
          ? value.toLowerCase()
          : `${f.transferEncoding}, ${value.toLowerCase()}`;
      break;
    default:
      break;
  }
}

/** A Connection field's value (lowercase): one token (the usual case, already trimmed) or a list. */
function noteConnection(f: ParsedFields, lower: string): void {
  if (lower.includes(',')) for (const token of lower.split(',')) connectionToken(f, trimOws(token));
  else connectionToken(f, lower);
}

/** Transfer-Encoding `codings` (lowercase): chunked, once and last, and no Content-Length. */
function endTransferEncoding(f: ParsedFields, codings: string): void {
  if (f.contentLength !== -1) {
    throw new Http1ParseError('both Transfer-Encoding and Content-Length');
  }
  const list = codings.split(',').map(trimOws);
  if (list[list.length - 1] !== 'chunked') {
    throw new Http1ParseError(
      `Transfer-Encoding "${codings.slice(0, 64)}" does not end with chunked`,
    );
  }
  if (list.indexOf('chunked') !== list.length - 1) {
    throw new Http1ParseError('chunked applied more than once');
  }
  f.chunked = true;
}

/**
 * Frames a stream of HTTP/1.x messages of one kind. `execute` may be called with any split of
 * the bytes; after `pause()` it stops at the next message boundary and keeps the rest until
 * `resume()` (a proxy handles one request at a time per connection).
 */
abstract class Http1Framer<H extends HeadCommon> {
  private pending: Buffer | null = null;
  private body = Body.None;
  private remaining = 0;
  private chunk = Chunk.Size;
  private chunkSize = 0;
  private sizeDigits = 0;
  private trailerLineLength = 0;
  private inHead = true;
  private paused = false;
  private failed = false;
  /** Bytes of the current head seen so far across calls (for the size limit). */
  private headBytes = 0;

  constructor(protected readonly handler: ParserHandler<H>) {}

  get isIdle(): boolean {
    return this.inHead && this.pending === null;
  }

  /** True while a message's body is being framed. */
  get inBody(): boolean {
    return !this.inHead;
  }

  pause(): void {
    this.paused = true;
  }

  resume(): void {
    this.paused = false;
    const rest = this.pending;
    if (rest !== null) {
      this.pending = null;
      this.execute(rest);
    }
  }

  /** The connection ended: a body read until close ends here; anything else half-done is an error. */
  finish(): void {
    if (this.failed) return;
    if (!this.inHead && this.body === Body.UntilClose) {
      this.inHead = true;
      this.handler.onMessageEnd();
      return;
    }
    if (!this.inHead) throw new Http1ParseError('the connection closed in the middle of a body');
  }

  /** Bytes that arrived after a message the caller stopped framing (an upgrade). */
  takeRest(): Buffer | null {
    const rest = this.pending;
    this.pending = null;
    return rest;
  }

  execute(input: Buffer): void {
    if (this.failed) return;
    let buf = input;
    try {
      while (buf.length > 0) {
        if (this.paused && this.inHead) {
          this.pending = this.pending === null ? buf : Buffer.concat([this.pending, buf]);
          return;
        }
        if (this.inHead) {
          // Bytes of the head already scanned at an earlier read are not scanned again.
          let scanned = 0;
          if (this.pending !== null) {
            scanned = this.pending.length;
            buf = Buffer.concat([this.pending, buf]);
            this.pending = null;
          }
          const end = buf.indexOf(CRLFCRLF, Math.max(0, scanned - 3));
          if (end === -1) {
            if (buf.length > MAX_HEAD_BYTES)
              throw new Http1ParseError('the head is too large', true);
            // A head whose lines end in a bare LF never holds a CRLFCRLF: refused now, not left
            // waiting for an end that will not come. (Only a head split across reads gets here.)
            if (hasBareLfFrom(buf, scanned)) throw new Http1ParseError('a bare LF in the head');
            this.pending = buf;
            return;
          }
          if (end + 4 > MAX_HEAD_BYTES) throw new Http1ParseError('the head is too large', true);
          const text = buf.toString('latin1', 0, end);
          buf = buf.subarray(end + 4);
          this.headBytes = 0;
          this.startMessage(text);
          continue;
        }
        buf = this.frameBody(buf);
      }
    } catch (err) {
      this.failed = true;
      throw err;
    }
  }

  /** The kind-specific part: parse the head text (without the final CRLFCRLF), call onHead. */
  protected abstract parseHead(text: string): {
    head: H;
    body: 'none' | 'length' | 'chunked' | 'close';
  };

  private startMessage(text: string): void {
    // A leading empty line before a request is tolerated (RFC 9112 2.2).
    const trimmed = text.startsWith('\r\n') ? text.replace(/^(\r\n)+/, '') : text;
    if (hasBareLf(trimmed)) {
      throw new Http1ParseError('a bare LF in the head');
    }
    const { head, body } = this.parseHead(trimmed);
    this.inHead = false;
    switch (body) {
      case 'none':
        this.body = Body.None;
        break;
      case 'length':
        this.body = head.contentLength === 0 ? Body.None : Body.Length;
        this.remaining = head.contentLength;
        break;
      case 'chunked':
        this.body = Body.Chunked;
        this.chunk = Chunk.Size;
        this.chunkSize = 0;
        this.sizeDigits = 0;
        break;
      case 'close':
        this.body = Body.UntilClose;
        break;
    }
    this.handler.onHead(head);
    if (this.body === Body.None) this.endMessage();
  }

  private endMessage(): void {
    this.inHead = true;
    this.handler.onMessageEnd();
  }

  /** Frames body bytes; returns what follows the message (or an empty buffer). */
  private frameBody(buf: Buffer): Buffer {
    switch (this.body) {
      case Body.UntilClose:
        this.handler.onBody(buf);
        return buf.subarray(buf.length);
      case Body.Length: {
        const n = Math.min(this.remaining, buf.length);
        this.remaining -= n;
        this.handler.onBody(n === buf.length ? buf : buf.subarray(0, n));
        if (this.remaining === 0) this.endMessage();
        return buf.subarray(n);
      }
      case Body.Chunked:
        return this.frameChunked(buf);
      default:
        this.endMessage();
        return buf;
    }
  }

  private frameChunked(buf: Buffer): Buffer {
    let i = 0;
    const n = buf.length;
    while (i < n) {
      const c = buf[i] as number;
      switch (this.chunk) {
        case Chunk.Size: {
          const d = hexValue(c);
          if (d >= 0) {
            if (++this.sizeDigits > 12) throw new Http1ParseError('chunk size too large');
            this.chunkSize = this.chunkSize * 16 + d;
            i++;
          } else if (this.sizeDigits === 0) {
            throw new Http1ParseError('invalid chunk size');
          } else if (c === 0x3b /* ; */ || c === 0x20 || c === 0x09) {
            this.chunk = Chunk.Ext;
            i++;
          } else if (c === 0x0d) {
            this.chunk = Chunk.SizeLf;
            i++;
          } else {
            throw new Http1ParseError('invalid chunk size');
          }
          break;
        }
        case Chunk.Ext:
          if (c === 0x0d) this.chunk = Chunk.SizeLf;
          else if (c === 0x0a || c < 0x09) throw new Http1ParseError('invalid chunk extension');
          i++;
          break;
        case Chunk.SizeLf:
          if (c !== 0x0a) throw new Http1ParseError('a chunk size line without CRLF');
          i++;
          if (this.chunkSize === 0) {
            this.chunk = Chunk.Trailer;
            this.trailerLineLength = 0;
          } else {
            this.chunk = Chunk.Data;
            this.remaining = this.chunkSize;
          }
          break;
        case Chunk.Data: {
          const take = Math.min(this.remaining, n - i);
          this.remaining -= take;
          i += take;
          if (this.remaining === 0) this.chunk = Chunk.DataCr;
          break;
        }
        case Chunk.DataCr:
          if (c !== 0x0d) throw new Http1ParseError('a chunk without its CRLF');
          this.chunk = Chunk.DataLf;
          i++;
          break;
        case Chunk.DataLf:
          if (c !== 0x0a) throw new Http1ParseError('a chunk without its CRLF');
          this.chunk = Chunk.Size;
          this.chunkSize = 0;
          this.sizeDigits = 0;
          i++;
          break;
        case Chunk.Trailer:
          // Trailer lines until an empty line. Only their CRLF structure matters here.
          if (c === 0x0a) {
            if (this.trailerLineLength === 1) {
              // "\r\n" alone: the end of the message.
              i++;
              this.handler.onBody(buf.subarray(0, i));
              this.endMessage();
              return buf.subarray(i);
            }
            this.trailerLineLength = 0;
          } else {
            if (++this.trailerLineLength > MAX_HEAD_BYTES) {
              throw new Http1ParseError('trailers too large', true);
            }
            if (c !== 0x0d && this.trailerLineLength === 1 && c < 0x20 && c !== 0x09) {
              throw new Http1ParseError('invalid trailer');
            }
          }
          i++;
          break;
      }
    }
    this.handler.onBody(buf);
    return buf.subarray(n);
  }
}

function hexValue(c: number): number {
  if (c >= 0x30 && c <= 0x39) return c - 0x30;
  if (c >= 0x61 && c <= 0x66) return c - 0x57;
  if (c >= 0x41 && c <= 0x46) return c - 0x37;
  return -1;
}

function parseVersion(v: string): number {
  if (v === 'HTTP/1.1') return 1;
  if (v === 'HTTP/1.0') return 0;
  throw new Http1ParseError(`unsupported version "${v.slice(0, 16)}"`);
}

export class RequestParser extends Http1Framer<RequestHead> {
  protected parseHead(text: string): { head: RequestHead; body: 'none' | 'length' | 'chunked' } {
    const eol = text.indexOf('\r\n');
    const line = eol === -1 ? text : text.slice(0, eol);
    const sp1 = line.indexOf(' ');
    const sp2 = line.lastIndexOf(' ');
    if (sp1 <= 0 || sp2 === sp1) throw new Http1ParseError('invalid request line');
    const method = line.slice(0, sp1);
    const target = line.slice(sp1 + 1, sp2);
    if (!isToken(method)) throw new Http1ParseError('invalid method');
    if (target === '' || hasBadTargetChar(target))
      throw new Http1ParseError('invalid request target');
    const versionMinor = parseVersion(line.slice(sp2 + 1));
    const headers: RawHeaders = [];
    const fieldsStart = eol === -1 ? text.length : eol + 2;
    const f = parseFields(text, fieldsStart, headers);
    if (versionMinor === 1 && f.host === null)
      throw new Http1ParseError('an HTTP/1.1 request without Host');
    const head: RequestHead = {
      method,
      target,
      versionMinor,
      headers,
      contentLength: f.contentLength,
      chunked: f.chunked,
      close: f.close || (versionMinor === 0 && !f.keepAlive),
      // An h2c upgrade is not made, as Envoy does not make it: the request goes on as HTTP/1.1,
      // its Upgrade and HTTP2-Settings dropped (both hop-by-hop).
      upgrade: f.connectionUpgrade && f.upgrade !== null && f.upgrade !== 'h2c' ? f.upgrade : null,
      host: f.host,
      expectContinue: f.expectContinue,
      connectionNamed: f.connectionNamed === null ? null : nameSet(f.connectionNamed),
      text,
      fieldsStart,
    };
    const body = f.chunked ? 'chunked' : f.contentLength > 0 ? 'length' : 'none';
    return { head, body };
  }
}

export class ResponseParser extends Http1Framer<ResponseHead> {
  /** Set before each response: the request was HEAD (its response has no body). */
  requestMethod = 'GET';

  protected parseHead(text: string): {
    head: ResponseHead;
    body: 'none' | 'length' | 'chunked' | 'close';
  } {
    const eol = text.indexOf('\r\n');
    const line = eol === -1 ? text : text.slice(0, eol);
    // HTTP/1.1 200 OK   (the reason may be empty, and may hold spaces)
    const sp1 = line.indexOf(' ');
    if (sp1 <= 0) throw new Http1ParseError('invalid status line');
    const versionMinor = parseVersion(line.slice(0, sp1));
    const codeText = line.slice(sp1 + 1, sp1 + 4);
    if (!isStatusCode(codeText)) throw new Http1ParseError('invalid status code');
    const statusCode = Number(codeText);
    const rest = line.slice(sp1 + 4);
    if (rest !== '' && !rest.startsWith(' ')) throw new Http1ParseError('invalid status line');
    const reason = rest.slice(1);
    // Forwarded as it came: a CR in it would end the line for a lenient client.
    if (hasBadValueChar(reason)) throw new Http1ParseError('invalid reason phrase');
    const headers: RawHeaders = [];
    const fieldsStart = eol === -1 ? text.length : eol + 2;
    const f = parseFields(text, fieldsStart, headers);
    const head: ResponseHead = {
      statusCode,
      reason,
      versionMinor,
      headers,
      contentLength: f.contentLength,
      chunked: f.chunked,
      close: f.close || (versionMinor === 0 && !f.keepAlive),
      upgrade: f.connectionUpgrade && f.upgrade !== null ? f.upgrade : null,
      connectionNamed: f.connectionNamed === null ? null : nameSet(f.connectionNamed),
      text,
      fieldsStart,
    };
    let body: 'none' | 'length' | 'chunked' | 'close';
    if (
      this.requestMethod === 'HEAD' ||
      (statusCode >= 100 && statusCode < 200) ||
      statusCode === 204 ||
      statusCode === 304
    ) {
      body = 'none';
    } else if (f.chunked) {
      body = 'chunked';
    } else if (f.contentLength >= 0) {
      body = 'length';
    } else {
      body = 'close';
    }
    return { head, body };
  }
}

/** Lowercase names whose lines a proxy does not forward (RFC 9110 7.6.1), plus those named by Connection. */
const HOP_BY_HOP = nameSet([
  'connection',
  'keep-alive',
  'proxy-connection',
  'proxy-authenticate',
  'proxy-authorization',
  'te',
  'upgrade',
  // HTTP/2's settings for an h2c upgrade, which is never made: of this connection only.
  'http2-settings',
]);

const nameSets = new WeakMap<ReadonlySet<string>, NameSet>();

/** `set`'s names lowercased, with their lengths, made once per set. */
function nameSetOf(set: ReadonlySet<string>): NameSet {
  let s = nameSets.get(set);
  if (s === undefined) {
    s = nameSet(set);
    nameSets.set(set, s);
  }
  return s;
}

/** `name` (any case) is in `s`. */
const inSet = (s: NameSet, name: string): boolean =>
  s.lengths.has(name.length) && s.names.has(name.toLowerCase());

export interface HeadRewrite {
  /** Names to drop, any case (in addition to hop-by-hop ones). */
  readonly remove?: ReadonlySet<string>;
  /** Lines to add at the end: lists of [name, value, name, value...], in order. */
  readonly add?: readonly (readonly string[])[];
  /** The Connection header to send (e.g. 'keep-alive', 'close', 'upgrade'), or null for none. */
  readonly connection: string | null;
  /** For an upgrade: the Upgrade header to keep. */
  readonly upgrade?: string | null;
}

/** What `forwardHeaderLines` reads of a parsed head. */
export type HeadLines = Pick<HeadCommon, 'headers' | 'text' | 'fieldsStart' | 'connectionNamed'>;

/**
 * Header lines to forward: hop-by-hop ones and `remove` dropped, `add` appended. The lines kept
 * are copied from the head's text in runs, as they came (one slice for each run between two
 * dropped lines), not rebuilt line by line (a sixth of what a sidecar allocated per request was
 * these lines rebuilt). A name of a length some dropped name has is lowercased and looked up in a
 * set: comparisons in place (a loop per candidate name) made V8 take 27-30 ms to optimize this
 * function, on every recompile, and 3.3 MiB of its memory (bench/RESULTS.md, 2026-12-07,
 * midday).
 */
export function forwardHeaderLines(head: HeadLines, rewrite: HeadRewrite): string {
  const { headers, text, connectionNamed: named } = head;
  const remove = rewrite.remove === undefined ? null : nameSetOf(rewrite.remove);
  const end = text.length;
  let out = '';
  // Header i is the head's line i: a head holds no empty line before its end.
  let run = head.fieldsStart; // the start of the kept lines not copied yet
  let line = head.fieldsStart;
  for (let i = 0; i < headers.length; i += 2) {
    const crlf = text.indexOf('\r\n', line);
    const next = crlf === -1 ? end + 2 : crlf + 2;
    const name = headers[i] as string;
    if (
      inSet(HOP_BY_HOP, name) ||
      (remove !== null && inSet(remove, name)) ||
      (named !== null && inSet(named, name))
    ) {
      if (line > run) out += text.slice(run, line);
      run = next;
    }
    line = next;
  }
  // The last line has no CRLF in the text.
  if (run < end) out += `${text.slice(run)}\r\n`;
  if (rewrite.upgrade) out += `Upgrade: ${rewrite.upgrade}\r\n`;
  if (rewrite.connection !== null) out += `Connection: ${rewrite.connection}\r\n`;
  const lists = rewrite.add;
  if (lists !== undefined) {
    for (const add of lists) {
      for (let i = 0; i < add.length; i += 2)
        out += `${add[i] as string}: ${add[i + 1] as string}\r\n`;
    }
  }
  return out;
}

/** The first value of a header (case-insensitive name given in lowercase), or null. */
export function headerValue(headers: RawHeaders, lowerName: string): string | null {
  for (let i = 0; i < headers.length; i += 2) {
    const name = headers[i] as string;
    if (sameName(name, lowerName)) {
      return headers[i + 1] as string;
    }
  }
  return null;
}
