import { parseCidr } from '../ip';

// Parsers for the comma-separated lists of the traffic annotations and of `mooring iptables`
// flags. Each returns a result instead of throwing so that the caller names the key.

export type Wildcard = '*';
export type ParseResult<T> = { ok: true; value: T } | { ok: false; reason: string };

function items(value: string): string[] {
  return value
    .split(',')
    .map((s) => s.trim())
    .filter((s) => s !== '');
}

export function parsePort(text: string): number | undefined {
  if (!/^[0-9]{1,5}$/.test(text)) return undefined;
  const n = Number(text);
  return n >= 1 && n <= 65535 ? n : undefined;
}

/** `80, 443` -> [80, 443]; duplicates removed, order kept. */
export function parsePortList(value: string): ParseResult<number[]> {
  const out: number[] = [];
  for (const item of items(value)) {
    const port = parsePort(item);
    if (port === undefined) return { ok: false, reason: `"${item}" is not a port (1-65535)` };
    if (!out.includes(port)) out.push(port);
  }
  return { ok: true, value: out };
}

/** `*` or a port list. An empty value is an empty list. */
export function parsePortListOrWildcard(value: string): ParseResult<number[] | Wildcard> {
  if (value.trim() === '*') return { ok: true, value: '*' };
  return parsePortList(value);
}

export function parseCidrList(value: string): ParseResult<string[]> {
  const out: string[] = [];
  for (const item of items(value)) {
    const cidr = parseCidr(item);
    if (cidr === undefined) return { ok: false, reason: `"${item}" is not an IPv4 or IPv6 CIDR` };
    if (!out.includes(cidr)) out.push(cidr);
  }
  return { ok: true, value: out };
}

export function parseCidrListOrWildcard(value: string): ParseResult<string[] | Wildcard> {
  if (value.trim() === '*') return { ok: true, value: '*' };
  return parseCidrList(value);
}
