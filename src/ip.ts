// IP addresses and CIDRs as text (pure): a CIDR's canonical form, an address's bytes, and
// whether an address is in a CIDR. Shared by `mooring iptables` and the injector's annotations
// (their CIDR lists), the mesh's validator and the proxy (VirtualService subnet matches).

import { isIP } from 'node:net';

/** Canonical form of an IPv4 or IPv6 CIDR (a bare address gets /32 or /128). */
export function parseCidr(text: string): string | undefined {
  const [addr, prefix, ...rest] = text.split('/');
  // isIP accepts an IPv6 zone (fe80::1%eth0), which iptables does not.
  if (addr === undefined || rest.length > 0 || addr.includes('%')) return undefined;
  const family = isIP(addr);
  if (family === 0) return undefined;
  const max = family === 4 ? 32 : 128;
  if (prefix === undefined) return `${addr}/${max}`;
  if (!/^[0-9]{1,3}$/.test(prefix) || Number(prefix) > max) return undefined;
  return `${addr}/${Number(prefix)}`;
}

export function cidrFamily(cidr: string): 4 | 6 {
  return cidr.includes(':') ? 6 : 4;
}

/** The 4 bytes of a dotted IPv4 address. */
export function ipv4Bytes(addr: string): number[] {
  return addr.split('.').map(Number);
}

/** The 16 bytes of an IPv6 address (`::` and a trailing dotted IPv4 part allowed). */
export function ipv6Bytes(addr: string): number[] {
  const groups = (part: string): number[] => {
    if (part === '') return [];
    return part.split(':').flatMap((g) => {
      if (!g.includes('.')) return [parseInt(g, 16)];
      const [a = 0, b = 0, c = 0, d = 0] = ipv4Bytes(g);
      return [a * 256 + b, c * 256 + d];
    });
  };
  const [head = '', tail] = addr.split('::');
  const h = groups(head);
  const t = tail === undefined ? [] : groups(tail);
  const all = [...h, ...Array<number>(8 - h.length - t.length).fill(0), ...t];
  return all.flatMap((g) => [g >> 8, g & 0xff]);
}

/** An address as bytes, to test against several networks with one parse. */
export interface AddressBytes {
  readonly family: 4 | 6;
  readonly bytes: readonly number[];
}

/** A CIDR parsed once (one that parseCidr accepted). */
export interface Network extends AddressBytes {
  readonly bits: number;
}

/**
 * An address's bytes; null when it is no IP address. An IPv4-mapped IPv6 address
 * (`::ffff:10.0.0.1`, as a dual-stack socket reports an IPv4 peer) is its IPv4 address.
 */
export function addressBytes(address: string): AddressBytes | null {
  const mapped = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(address);
  const addr = mapped === null ? address : (mapped[1] as string);
  const family = isIP(addr);
  if (family === 0) return null;
  return family === 4
    ? { family: 4, bytes: ipv4Bytes(addr) }
    : { family: 6, bytes: ipv6Bytes(addr) };
}

export function parseNetwork(cidr: string): Network {
  const [net = '', prefixText = ''] = cidr.split('/');
  const family = cidrFamily(cidr);
  return {
    family,
    bytes: family === 4 ? ipv4Bytes(net) : ipv6Bytes(net),
    bits: Number(prefixText),
  };
}

export function inNetwork(address: AddressBytes | null, network: Network): boolean {
  if (address === null || address.family !== network.family) return false;
  const a = address.bytes;
  const n = network.bytes;
  let bits = network.bits;
  for (let i = 0; bits > 0; i++, bits -= 8) {
    const mask = (0xff << (8 - Math.min(8, bits))) & 0xff;
    if (((a[i] ?? 0) & mask) !== ((n[i] ?? 0) & mask)) return false;
  }
  return true;
}

/** Whether `address` is in `cidr` (one that parseCidr accepted), IPv4-mapped as its IPv4. */
export function inCidr(address: string, cidr: string): boolean {
  return inNetwork(addressBytes(address), parseNetwork(cidr));
}
