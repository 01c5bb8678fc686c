// The proxy's TLS state: the workload certificate, its key and the trust bundle, as two
// SecureContexts (server side for inbound, client side for outbound). A renewed certificate or a
// new bundle replaces both contexts at once: new handshakes use them from then on, connections
// already open keep the context they were made with (nothing is dropped). Through a root
// rotation the bundle holds the old and the new root, so both sides keep verifying each other.
//
// Between sidecars: TLS 1.3 only, mutual, the peer chain verified against the bundle by OpenSSL,
// the peer's SPIFFE ID checked by us (core/identity.ts).

import { createHash } from 'node:crypto';
import tls from 'node:tls';

export interface WorkloadCredentials {
  /** The leaf and its intermediates, PEM. */
  readonly chainPem: string;
  readonly keyPem: string;
  /** Every trusted root, PEM. */
  readonly roots: readonly string[];
  /** The SPIFFE ID the leaf carries. */
  readonly spiffeId: string;
}

export interface TlsContexts {
  readonly server: tls.SecureContext;
  readonly client: tls.SecureContext;
  readonly spiffeId: string;
  /** A short fingerprint of the certificate and bundle, for logs and the config dump. */
  readonly fingerprint: string;
  readonly since: Date;
}

/** Options every sidecar-to-sidecar handshake uses. */
export const MESH_TLS = { minVersion: 'TLSv1.3', maxVersion: 'TLSv1.3' } as const;

export function createTlsContexts(c: WorkloadCredentials, now: Date): TlsContexts {
  const options: tls.SecureContextOptions = {
    key: c.keyPem,
    cert: c.chainPem,
    ca: [...c.roots],
    ...MESH_TLS,
  };
  const fingerprint = createHash('sha256')
    .update(c.chainPem)
    .update(c.roots.join(''))
    .digest('hex')
    .slice(0, 16);
  return {
    server: tls.createSecureContext(options),
    client: tls.createSecureContext(options),
    spiffeId: c.spiffeId,
    fingerprint,
    since: now,
  };
}
