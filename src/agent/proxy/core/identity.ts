// Peer identity rules of the data plane (pure). A sidecar's certificate is a SPIFFE X.509-SVID:
// exactly one URI SAN, its SPIFFE ID. The outbound side compares it exactly with the identity
// the mesh expects for the endpoint; the inbound side accepts any workload of the trust domain
// (authorization policies are not part of Mooring yet). Anything else fails closed.

/** ALPN names a Mooring sidecar offers to another; what follows the handshake depends on it. */
export const ALPN = {
  /** HTTP/1.1 requests, framed by the sidecars, over a pooled keep-alive connection. */
  http1: 'mooring/http1',
  /** HTTP/2 (and gRPC) between the sidecars. */
  h2: 'mooring/h2',
  /** Opaque bytes of one app connection. */
  tcp: 'mooring/tcp',
} as const;
export type MooringAlpn = (typeof ALPN)[keyof typeof ALPN];
export const MOORING_ALPNS: readonly MooringAlpn[] = [ALPN.http1, ALPN.h2, ALPN.tcp];

export const isMooringAlpn = (name: string): name is MooringAlpn =>
  name === ALPN.http1 || name === ALPN.h2 || name === ALPN.tcp;

/** True when a ClientHello's ALPN list names a Mooring protocol. */
export const offersMooring = (alpn: readonly string[]): boolean => alpn.some(isMooringAlpn);

/**
 * The URI SANs of a certificate from Node's `subjectaltname` text, e.g.
 * `URI:spiffe://cluster.local/ns/a/sa/b, DNS:x`. Node quotes entries holding a comma or a quote
 * (JSON string syntax); a SPIFFE ID never holds either, so a quoted URI is returned as it reads
 * and then fails the exact comparison.
 */
export function uriSans(subjectAltName: string | undefined): string[] {
  if (subjectAltName === undefined || subjectAltName === '') return [];
  const out: string[] = [];
  for (const entry of subjectAltName.split(', ')) {
    if (entry.startsWith('URI:')) out.push(entry.slice(4));
  }
  return out;
}

export type PeerCheck =
  { readonly ok: true; readonly id: string } | { readonly ok: false; readonly reason: string };

/** The peer's SPIFFE ID when its certificate carries exactly one URI SAN in the trust domain. */
export function peerSpiffeId(subjectAltName: string | undefined, trustDomain: string): PeerCheck {
  const uris = uriSans(subjectAltName);
  if (uris.length !== 1) {
    return {
      ok: false,
      reason: `the peer certificate has ${uris.length} URI SANs, not exactly one`,
    };
  }
  const id = uris[0] as string;
  const prefix = `spiffe://${trustDomain}/`;
  if (!id.startsWith(prefix) || id.length === prefix.length) {
    return {
      ok: false,
      reason: `the peer identity ${id.slice(0, 256)} is not in trust domain ${trustDomain}`,
    };
  }
  return { ok: true, id };
}

/** The endpoint presented exactly the identity the mesh expects for it. */
export function checkExpectedIdentity(
  subjectAltName: string | undefined,
  expected: string,
): PeerCheck {
  const uris = uriSans(subjectAltName);
  if (uris.length !== 1) {
    return {
      ok: false,
      reason: `the endpoint's certificate has ${uris.length} URI SANs, not exactly one`,
    };
  }
  const id = uris[0] as string;
  if (id !== expected) {
    return {
      ok: false,
      reason: `the endpoint presented ${id.slice(0, 256)}, the mesh expects ${expected}`,
    };
  }
  return { ok: true, id };
}

/** Envoy's `x-forwarded-client-cert` value for a verified peer: `By=<own>;URI=<peer>`. */
export const xfccValue = (own: string, peer: string): string => `By=${own};URI=${peer}`;

/** The namespace of a `spiffe://<td>/ns/<ns>/sa/<sa>` ID, or null. */
export function namespaceOfSpiffeId(id: string): string | null {
  const m = /^spiffe:\/\/[^/]+\/ns\/([^/]+)\/sa\/[^/]+$/.exec(id);
  return m === null ? null : (m[1] as string);
}
