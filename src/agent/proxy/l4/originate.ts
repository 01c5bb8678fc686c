// TLS the proxy originates itself (a DestinationRule's `tls.mode` SIMPLE or MUTUAL): to an
// endpoint outside the mesh that speaks TLS while the app speaks plain text to its sidecar.
// The server's chain is checked against `caCertificates` (a PEM file in the proxy's container)
// or, without it, Node's bundled roots, and with `caCrl` against revocation lists (OpenSSL's
// check of every certificate of the chain, as Envoy's default: a CA without its list there
// fails too); its name against `subjectAltNames`, else `sni`; MUTUAL presents
// `clientCertificate` and `privateKey`. Files are read when a connection first needs them, then
// again once a minute (a certificate renewed or a list updated on disk is picked up).

import { readFileSync } from 'node:fs';
import tls from 'node:tls';
import type { TlsPolicy } from '../../../api/mesh';
import { ALPN, type MooringAlpn } from '../core/identity';

/** How long the files of a policy are used before they are read again. */
export const ORIGINATE_REREAD_MS = 60_000;

const contexts = new WeakMap<
  TlsPolicy,
  { readonly context: tls.SecureContext; readonly at: number }
>();

/** The secure context of `policy` (its files read, or read again when older than a minute). */
function contextOf(policy: TlsPolicy, now: number): tls.SecureContext {
  const kept = contexts.get(policy);
  if (kept !== undefined && now - kept.at < ORIGINATE_REREAD_MS) return kept.context;
  const read = (field: string, path: string | undefined): string | undefined => {
    if (path === undefined) return undefined;
    try {
      return readFileSync(path, 'utf8');
    } catch (err) {
      throw new Error(
        `cannot read ${field} ${path}: ${(err as NodeJS.ErrnoException).code ?? String(err)}`,
        { cause: err },
      );
    }
  };
  const ca = read('caCertificates', policy.caCertificates);
  const crl = read('caCrl', policy.caCrl);
  const cert = read('clientCertificate', policy.clientCertificate);
  const key = read('privateKey', policy.privateKey);
  const context = tls.createSecureContext({
    ...(ca === undefined ? {} : { ca }),
    ...(crl === undefined ? {} : { crl }),
    ...(cert === undefined ? {} : { cert }),
    ...(key === undefined ? {} : { key }),
    minVersion: 'TLSv1.2',
  });
  contexts.set(policy, { context, at: now });
  return context;
}

/** The ALPN a server outside the mesh knows for the protocol that follows. */
const ALPN_OUTSIDE: Readonly<Record<MooringAlpn, string[] | undefined>> = {
  [ALPN.http1]: ['http/1.1'],
  [ALPN.h2]: ['h2'],
  [ALPN.tcp]: undefined,
};

/**
 * The options of `tls.connect` for `policy` (throws, naming the file, when one cannot be read).
 * The server name is checked against `subjectAltNames` (any one), else `sni`; with neither, the
 * chain alone is checked (Istio's default without them). `now`: the proxy's clock (ms), which
 * decides when the files are read again.
 */
export function originateOptions(
  policy: TlsPolicy,
  alpn: MooringAlpn,
  now: number = performance.now(),
): tls.ConnectionOptions {
  const names = policy.subjectAltNames ?? (policy.sni === undefined ? [] : [policy.sni]);
  const protocols = ALPN_OUTSIDE[alpn];
  return {
    secureContext: contextOf(policy, now),
    ...(policy.sni === undefined ? {} : { servername: policy.sni }),
    ...(protocols === undefined ? {} : { ALPNProtocols: protocols }),
    rejectUnauthorized: policy.insecureSkipVerify !== true,
    checkServerIdentity: (_host, cert) => {
      if (policy.insecureSkipVerify === true || names.length === 0) return undefined;
      for (const name of names) {
        if (tls.checkServerIdentity(name, cert) === undefined) return undefined;
      }
      return new Error(
        `the server's certificate names none of ${names.join(', ')} (${cert.subjectaltname ?? 'no SAN'})`,
      );
    },
  };
}
