// A minimal DER writer and reader: the few ASN.1 types an X.509 certificate needs. Certificates
// are built by concatenating pre-encoded pieces (issuer Name, SPKI, constant extensions) instead
// of building an object tree with node-forge, which costs about ten times the ECDSA signature
// (bench/ca.ts measures both).

export const TAG = {
  boolean: 0x01,
  integer: 0x02,
  bitString: 0x03,
  octetString: 0x04,
  null: 0x05,
  oid: 0x06,
  utf8String: 0x0c,
  printableString: 0x13,
  ia5String: 0x16,
  utcTime: 0x17,
  generalizedTime: 0x18,
  sequence: 0x30,
  set: 0x31,
} as const;

/** Malformed DER: what the reader throws (callers turn it into their coded error). */
export class DerError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'DerError';
  }
}

/** One TLV: tag, definite minimal length, content; written in one allocation. */
export function tlv(tag: number, ...content: Buffer[]): Buffer {
  let length = 0;
  for (const c of content) length += c.length;
  // Short form below 128; else one byte of 0x80 | count, then the big-endian length bytes.
  let lengthSize = 1;
  if (length >= 0x80) for (let n = length; n > 0; n = Math.floor(n / 256)) lengthSize++;
  const out = Buffer.allocUnsafe(1 + lengthSize + length);
  out[0] = tag;
  if (lengthSize === 1) {
    out[1] = length;
  } else {
    out[1] = 0x80 | (lengthSize - 1);
    for (let i = lengthSize, n = length; i >= 2; i--, n = Math.floor(n / 256)) out[i] = n & 0xff;
  }
  let at = 1 + lengthSize;
  for (const c of content) {
    c.copy(out, at);
    at += c.length;
  }
  return out;
}

export const sequence = (...items: Buffer[]): Buffer => tlv(TAG.sequence, ...items);
export const set = (...items: Buffer[]): Buffer => tlv(TAG.set, ...items);
export const octetString = (bytes: Buffer): Buffer => tlv(TAG.octetString, bytes);
export const derNull = (): Buffer => Buffer.from([TAG.null, 0]);
export const boolean = (value: boolean): Buffer => Buffer.from([TAG.boolean, 1, value ? 0xff : 0]);
export const utf8String = (s: string): Buffer => tlv(TAG.utf8String, Buffer.from(s, 'utf8'));
export const ia5String = (s: string): Buffer => tlv(TAG.ia5String, Buffer.from(s, 'ascii'));
export const printableString = (s: string): Buffer => {
  if (!/^[A-Za-z0-9 '()+,\-./:=?]*$/.test(s)) throw new RangeError(`not printable: ${s}`);
  return tlv(TAG.printableString, Buffer.from(s, 'ascii'));
};
/** A BIT STRING with no unused bits (signatures, keys). */
export const bitString = (bytes: Buffer): Buffer => tlv(TAG.bitString, Buffer.from([0]), bytes);
/** [n] EXPLICIT (context-specific, constructed). */
export const explicit = (n: number, ...items: Buffer[]): Buffer => tlv(0xa0 | n, ...items);
/** [n] IMPLICIT primitive (context-specific), e.g. GeneralName choices. */
export const implicitPrimitive = (n: number, bytes: Buffer): Buffer => tlv(0x80 | n, bytes);

/**
 * A named BIT STRING (KeyUsage) from the numbers of its set bits, with trailing zero bits
 * removed as DER requires.
 */
export function namedBits(bits: readonly number[]): Buffer {
  if (bits.length === 0) return Buffer.from([TAG.bitString, 1, 0]);
  const highest = Math.max(...bits);
  const bytes = Buffer.alloc(Math.floor(highest / 8) + 1);
  for (const bit of bits) {
    const i = Math.floor(bit / 8);
    bytes[i] = (bytes[i] as number) | (0x80 >> (bit % 8));
  }
  const unused = 7 - (highest % 8);
  return tlv(TAG.bitString, Buffer.from([unused]), bytes);
}

/** A small non-negative INTEGER. */
export function smallInteger(value: number): Buffer {
  if (!Number.isInteger(value) || value < 0) throw new RangeError(`bad INTEGER ${value}`);
  const bytes: number[] = [];
  for (let n = value; n > 0; n = Math.floor(n / 256)) bytes.unshift(n & 0xff);
  if (bytes.length === 0 || (bytes[0] as number) & 0x80) bytes.unshift(0);
  return tlv(TAG.integer, Buffer.from(bytes));
}

/** A non-negative INTEGER from big-endian magnitude bytes, minimally encoded. */
export function unsignedInteger(magnitude: Buffer): Buffer {
  let start = 0;
  while (start < magnitude.length - 1 && magnitude[start] === 0) start++;
  const trimmed = magnitude.subarray(start);
  if (trimmed.length === 0) return Buffer.from([TAG.integer, 1, 0]);
  return (trimmed[0] as number) & 0x80
    ? tlv(TAG.integer, Buffer.from([0]), trimmed)
    : tlv(TAG.integer, trimmed);
}

const OID_ENCODINGS = new Map<string, Buffer>();
const MAX_CACHED_OIDS = 256;

/**
 * An OBJECT IDENTIFIER from its dotted form. Encoded once per OID (the few the CA writes are
 * written into every certificate): the Buffer is shared, callers copy it and never change it.
 */
export function oid(dotted: string): Buffer {
  let encoded = OID_ENCODINGS.get(dotted);
  if (encoded === undefined) {
    encoded = encodeOid(dotted);
    // Bounded, should a caller ever pass OIDs that are not constants of the code.
    if (OID_ENCODINGS.size < MAX_CACHED_OIDS) OID_ENCODINGS.set(dotted, encoded);
  }
  return encoded;
}

function encodeOid(dotted: string): Buffer {
  const arcs = dotted.split('.').map((a) => {
    if (!/^[0-9]+$/.test(a)) throw new RangeError(`bad OID ${dotted}`);
    return Number(a);
  });
  const [first, second, ...rest] = arcs;
  if (first === undefined || second === undefined) throw new RangeError(`bad OID ${dotted}`);
  const out: number[] = [];
  for (const arc of [first * 40 + second, ...rest]) {
    const base128: number[] = [arc & 0x7f];
    for (let n = Math.floor(arc / 128); n > 0; n = Math.floor(n / 128)) {
      base128.unshift((n & 0x7f) | 0x80);
    }
    out.push(...base128);
  }
  return tlv(TAG.oid, Buffer.from(out));
}

/** The dotted form of an OID's content bytes; DerError when they are empty or cut short. */
export function oidToString(content: Buffer): string {
  if (content.length === 0) throw new DerError('empty OID');
  const arcs: number[] = [];
  let value = 0;
  for (const byte of content) {
    value = value * 128 + (byte & 0x7f);
    if ((byte & 0x80) === 0) {
      arcs.push(value);
      value = 0;
    }
  }
  if ((content[content.length - 1] as number) & 0x80) throw new DerError('truncated OID');
  const first = arcs.shift() as number;
  const head = first < 80 ? [Math.floor(first / 40), first % 40] : [2, first - 80];
  return [...head, ...arcs].join('.');
}

const two = (n: number): string => String(n).padStart(2, '0');

/**
 * A certificate time: UTCTime through 2049, GeneralizedTime from 2050 (RFC 5280 4.1.2.5),
 * whole seconds, always Zulu.
 */
export function time(date: Date): Buffer {
  const y = date.getUTCFullYear();
  const rest =
    two(date.getUTCMonth() + 1) +
    two(date.getUTCDate()) +
    two(date.getUTCHours()) +
    two(date.getUTCMinutes()) +
    two(date.getUTCSeconds()) +
    'Z';
  if (y >= 1950 && y < 2050) return tlv(TAG.utcTime, Buffer.from(two(y % 100) + rest, 'ascii'));
  return tlv(TAG.generalizedTime, Buffer.from(String(y).padStart(4, '0') + rest, 'ascii'));
}

/** PEM armour around DER bytes, 64 columns. */
export function toPem(label: string, der: Buffer): string {
  const b64 = der.toString('base64');
  let body = '';
  for (let i = 0; i < b64.length; i += 64) body += b64.slice(i, i + 64) + '\n';
  return `-----BEGIN ${label}-----\n${body}-----END ${label}-----\n`;
}

/** Every PEM block of `label` in `text`, as DER. */
export function fromPemAll(text: string, label: string): Buffer[] {
  const begin = `-----BEGIN ${label}-----`;
  const end = `-----END ${label}-----`;
  const out: Buffer[] = [];
  for (let at = text.indexOf(begin); at !== -1; at = text.indexOf(begin, at)) {
    const start = at + begin.length;
    const stop = text.indexOf(end, start);
    if (stop === -1) break;
    const body = text.slice(start, stop);
    // Base64 and line breaks only; Buffer.from skips the whitespace.
    if (PEM_BODY.test(body)) out.push(Buffer.from(body, 'base64'));
    at = stop + end.length;
  }
  return out;
}

const PEM_BODY = /^[A-Za-z0-9+/=\s]*$/;

// --- reading -------------------------------------------------------------------------------

/** One decoded TLV with its position in the input, so that callers can slice exact bytes. */
export interface Node {
  readonly tag: number;
  /** Offset of the tag byte. */
  readonly start: number;
  /** Offset of the first content byte. */
  readonly contentStart: number;
  /** Offset just after the content. */
  readonly end: number;
}

/** Reads the TLV at `offset` (single-byte tags, definite minimal lengths: DER only). */
export function readNode(buf: Buffer, offset: number, limit = buf.length): Node {
  if (offset + 2 > limit) throw new DerError('truncated header');
  const tag = buf[offset] as number;
  if ((tag & 0x1f) === 0x1f) throw new DerError('multi-byte tags are not supported');
  let length = buf[offset + 1] as number;
  let contentStart = offset + 2;
  if (length & 0x80) {
    const n = length & 0x7f;
    if (n === 0) throw new DerError('indefinite length is not DER');
    if (n > 4) throw new DerError('length too large');
    if (contentStart + n > limit) throw new DerError('truncated length');
    length = 0;
    for (let i = 0; i < n; i++) length = length * 256 + (buf[contentStart + i] as number);
    if ((buf[contentStart] as number) === 0 || length < 0x80) {
      throw new DerError('length is not minimally encoded');
    }
    contentStart += n;
  }
  const end = contentStart + length;
  if (end > limit) throw new DerError('content runs past its container');
  return { tag, start: offset, contentStart, end };
}

/** The children of a constructed node. */
export function children(buf: Buffer, node: Node): Node[] {
  const out: Node[] = [];
  for (let at = node.contentStart; at < node.end;) {
    const child = readNode(buf, at, node.end);
    out.push(child);
    at = child.end;
  }
  return out;
}

/** Reads a whole buffer as exactly one TLV. */
export function readRoot(buf: Buffer): Node {
  const node = readNode(buf, 0);
  if (node.end !== buf.length) throw new DerError('trailing bytes after the outer element');
  return node;
}

export const bytesOf = (buf: Buffer, node: Node): Buffer => buf.subarray(node.start, node.end);
export const contentOf = (buf: Buffer, node: Node): Buffer =>
  buf.subarray(node.contentStart, node.end);

/** Children of `node`, checking the tag of `node` first. */
export function expectChildren(buf: Buffer, node: Node, tag: number, what: string): Node[] {
  if (node.tag !== tag) throw new DerError(`${what}: unexpected tag 0x${node.tag.toString(16)}`);
  return children(buf, node);
}
