// The nginx pair that stands in for a C proxy beside the sidecars (bench/proxy.ts on loopback,
// bench/pods.ts in real Pods): A takes plain HTTP/1.1 and proxies it with mutual TLS 1.3 to B,
// which checks the client certificate against the same root and proxies to the app. Both keep
// their upstream connections alive, as the sidecars' pools do. Also the certificates the benches
// give both pairs.

import { generateKeyPairSync } from 'node:crypto';
import { chownSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { makeCa, makeLeaf, withDns, withUri } from '../test/fixtures/agent-pki';

/** One process, no daemon, its files under PREFIX (replaced by the caller). */
export const NGINX_HEAD = `
daemon off; master_process off; worker_processes 1; pid PREFIX/nginx.pid; error_log PREFIX/error.log warn;
events { worker_connections 4096; }
`;

// Where nginx keeps request bodies and buffered answers: under its prefix, so that it also runs
// as a user that cannot write to the distribution's /var/lib/nginx (the proxy's UID, in Pods).
const TEMP_PATHS = ['client_body', 'proxy', 'fastcgi', 'uwsgi', 'scgi']
  .map((kind) => `${kind}_temp_path PREFIX/${kind};`)
  .join(' ');

/** PEM files of one root and two leaves: the client's (A) and the server's (B, DNS server.mesh). */
export interface MtlsFiles {
  readonly root: string;
  readonly clientCert: string;
  readonly clientKey: string;
  readonly serverCert: string;
  readonly serverKey: string;
}

export interface BenchLeaf {
  readonly cert: string;
  readonly key: string;
  readonly spiffe: string;
}

/**
 * One root and two leaves, client and server: a URI SAN (their SPIFFE ID) for Mooring's sidecars
 * and a DNS SAN (`client.mesh`, `server.mesh`) for nginx.
 */
export function makeBenchPki(): { rootPem: string; client: BenchLeaf; server: BenchLeaf } {
  const root = makeCa('Mooring Bench Root');
  const leaf = (name: string): BenchLeaf => {
    const { privateKey, publicKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
    const spiffe = `spiffe://cluster.local/ns/default/sa/${name}`;
    return {
      cert: makeLeaf(root, publicKey, withUri(spiffe), withDns(`${name}.mesh`)),
      key: privateKey.export({ format: 'pem', type: 'pkcs8' }).toString(),
      spiffe,
    };
  };
  return { rootPem: root.pem, client: leaf('client'), server: leaf('server') };
}

/** The PKI's PEM files in `dir` (mode 0600; owned by `owner` when given, e.g. the proxy's UID). */
export function writeMtlsFiles(
  dir: string,
  pki: ReturnType<typeof makeBenchPki>,
  owner?: number,
): MtlsFiles {
  const file = (name: string, text: string): string => {
    const p = path.join(dir, name);
    writeFileSync(p, text, { mode: 0o600 });
    if (owner !== undefined) chownSync(p, owner, owner);
    return p;
  };
  return {
    root: file('root.pem', pki.rootPem),
    clientCert: file('client.pem', pki.client.cert),
    clientKey: file('client-key.pem', pki.client.key),
    serverCert: file('server.pem', pki.server.cert),
    serverKey: file('server-key.pem', pki.server.key),
  };
}

/** B: TLS 1.3 on `listen` ("address:port"), a client certificate required, then `app`. */
export function nginxInboundConfig(listen: string, app: string, files: MtlsFiles): string {
  return `${NGINX_HEAD} http { access_log off; keepalive_requests 1000000; ${TEMP_PATHS}
      upstream app { server ${app}; keepalive 64; }
      server { listen ${listen} ssl; ssl_protocols TLSv1.3;
        ssl_certificate ${files.serverCert}; ssl_certificate_key ${files.serverKey};
        ssl_verify_client on; ssl_client_certificate ${files.root}; ssl_verify_depth 2;
        location / { proxy_pass http://app; proxy_http_version 1.1; proxy_set_header Connection ""; } } }`;
}

/** A: plain HTTP on `listen`, then mutual TLS 1.3 to B at `peer`, whose certificate is checked. */
export function nginxOutboundConfig(listen: string, peer: string, files: MtlsFiles): string {
  return `${NGINX_HEAD} http { access_log off; keepalive_requests 1000000; ${TEMP_PATHS}
      upstream peer { server ${peer}; keepalive 64; }
      server { listen ${listen};
        location / { proxy_pass https://peer; proxy_http_version 1.1; proxy_set_header Connection "";
          proxy_ssl_protocols TLSv1.3; proxy_ssl_session_reuse on;
          proxy_ssl_certificate ${files.clientCert}; proxy_ssl_certificate_key ${files.clientKey};
          proxy_ssl_trusted_certificate ${files.root}; proxy_ssl_verify on; proxy_ssl_verify_depth 2;
          proxy_ssl_name server.mesh; } } }`;
}
