// Peer metadata between sidecars (pure), Istio's metadata exchange in Mooring's words: the
// destination sidecar reports `source_workload`, `source_app`, `source_version` (its peer's
// certificate gives only the principal), so the source sidecar tells them. HTTP carries them in
// a request header between two sidecars (`x-mooring-peer`, removed before the app sees it, and
// removed from anything an app sends); opaque TCP in one line sent right after the handshake.
// Only read from a peer whose certificate was verified; the principal always comes from the
// certificate, never from here.

import type { WorkloadInfo } from '../../../api/mesh';

export const PEER_HEADER = 'x-mooring-peer';
/** The TCP preamble: `MOORING-PEER <value>\n`, at most this long. */
export const PEER_LINE_PREFIX = 'MOORING-PEER ';
export const MAX_PEER_LINE = 1024;

export interface PeerMetadata {
  readonly workload: WorkloadInfo;
  /** The FQDN of the service the request was sent to (HTTP only). */
  readonly service: string | null;
}

/** `<base64url of {n,ns,a,v}>` for a workload; computed once per proxy. */
export function encodeWorkload(w: WorkloadInfo): string {
  return Buffer.from(
    JSON.stringify({ n: w.name, ns: w.namespace, a: w.app, v: w.version }),
    'utf8',
  ).toString('base64url');
}

/** The header value: the workload part, then `.` and the service's FQDN. */
export const peerHeaderValue = (encodedWorkload: string, service: string): string =>
  `${encodedWorkload}.${service}`;

const cache = new Map<string, WorkloadInfo | null>();
const CACHE_MAX = 1024;

const str = (v: unknown): string | null => (typeof v === 'string' && v.length <= 253 ? v : null);

/** The workload of an encoded value, or null when it cannot be read. Cached. */
export function decodeWorkload(encoded: string): WorkloadInfo | null {
  const hit = cache.get(encoded);
  if (hit !== undefined) return hit;
  let result: WorkloadInfo | null = null;
  try {
    const raw = JSON.parse(Buffer.from(encoded, 'base64url').toString('utf8')) as Record<
      string,
      unknown
    >;
    const name = str(raw.n);
    const namespace = str(raw.ns);
    if (name !== null && namespace !== null) {
      result = { name, namespace, app: str(raw.a), version: str(raw.v) };
    }
  } catch {
    result = null;
  }
  if (cache.size >= CACHE_MAX) cache.clear();
  cache.set(encoded, result);
  return result;
}

export function parsePeerHeader(value: string): PeerMetadata | null {
  const dot = value.indexOf('.');
  const encoded = dot === -1 ? value : value.slice(0, dot);
  const workload = decodeWorkload(encoded);
  if (workload === null) return null;
  const service = dot === -1 ? null : value.slice(dot + 1);
  return { workload, service: service === '' ? null : service };
}
