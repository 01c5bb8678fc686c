// The handful of DER encoders a PKCS#10 CSR needs. Written here instead of loading node-forge:
// the agent runs in every Pod, and forge costs ~10 MB of resident memory for four functions.

const TAG = {
  integer: 0x02,
  bitString: 0x03,
  null: 0x05,
  oid: 0x06,
  sequence: 0x30,
  set: 0x31,
} as const;

function encodeLength(length: number): Buffer {
  if (length < 0x80) return Buffer.from([length]);
  const bytes: number[] = [];
  for (let n = length; n > 0; n = Math.floor(n / 256)) bytes.unshift(n & 0xff);
  return Buffer.from([0x80 | bytes.length, ...bytes]);
}

/** One TLV: tag, definite length, content. */
export function tlv(tag: number, content: Buffer): Buffer {
  return Buffer.concat([Buffer.from([tag]), encodeLength(content.length), content]);
}

export const sequence = (...items: Buffer[]): Buffer => tlv(TAG.sequence, Buffer.concat(items));
export const set = (...items: Buffer[]): Buffer => tlv(TAG.set, Buffer.concat(items));
export const derNull = (): Buffer => tlv(TAG.null, Buffer.alloc(0));
/** A BIT STRING with no unused bits (signatures, keys). */
export const bitString = (bytes: Buffer): Buffer =>
  tlv(TAG.bitString, Buffer.concat([Buffer.from([0]), bytes]));
/** A context-specific constructed tag, [n] IMPLICIT. */
export const contextConstructed = (n: number, ...items: Buffer[]): Buffer =>
  tlv(0xa0 | n, Buffer.concat(items));

/** A small non-negative INTEGER. */
export function integer(value: number): Buffer {
  if (!Number.isInteger(value) || value < 0) throw new RangeError(`bad INTEGER ${value}`);
  const bytes: number[] = [];
  for (let n = value; n > 0; n = Math.floor(n / 256)) bytes.unshift(n & 0xff);
  if (bytes.length === 0 || (bytes[0] ?? 0) & 0x80) bytes.unshift(0);
  return tlv(TAG.integer, Buffer.from(bytes));
}

/** An OBJECT IDENTIFIER from its dotted form. */
export function oid(dotted: string): Buffer {
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

/** PEM armour around DER bytes, 64 columns. */
export function toPem(label: string, der: Buffer): string {
  const b64 = der.toString('base64').replace(/(.{64})/g, '$1\n');
  return `-----BEGIN ${label}-----\n${b64}${b64.endsWith('\n') ? '' : '\n'}-----END ${label}-----\n`;
}
