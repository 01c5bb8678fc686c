// Connecting to an upstream endpoint: plain TCP, or mutual TLS to a sidecar with the ALPN of the
// protocol that follows, the endpoint's certificate required to carry exactly the SPIFFE ID the
// mesh expects for it. Fails closed: a meshed endpoint is never dialled in plain text, and an
// endpoint that presents another identity is refused before a byte of the request is sent.

import net from 'node:net';
import tls from 'node:tls';
import { checkExpectedIdentity, type MooringAlpn } from '../core/identity';
import type { UpstreamEndpoint } from '../core/endpoints';
import { MESH_TLS, type TlsContexts } from './tls';

export type DialFailureKind =
  /** TCP refused, reset, unreachable, or the connect timeout. */
  | 'connect-failure'
  /** The TLS handshake failed (untrusted chain, no shared protocol...). */
  | 'tls'
  /** The endpoint presented another identity than the mesh expects. */
  | 'identity'
  /** A meshed endpoint, and this proxy has no certificate yet. */
  | 'no-credentials';

export class DialFailure extends Error {
  override readonly name = 'DialFailure';
  constructor(
    readonly kind: DialFailureKind,
    message: string,
  ) {
    super(message);
  }
}

export interface DialOptions {
  readonly endpoint: UpstreamEndpoint;
  /** The ALPN to offer when the endpoint is meshed. */
  readonly alpn: MooringAlpn;
  readonly tls: TlsContexts | null;
  readonly connectTimeoutMs: number;
}

export type DialCallback = (err: DialFailure | null, socket: net.Socket | null) => void;

/** Dials; calls back once. Returns a function that abandons the attempt. */
export function dial(o: DialOptions, cb: DialCallback): () => void {
  const e = o.endpoint;
  let done = false;
  const finish = (err: DialFailure | null, socket: net.Socket | null): void => {
    if (done) {
      socket?.destroy();
      return;
    }
    done = true;
    clearTimeout(timer);
    cb(err, socket);
  };
  if (e.identity !== null && o.tls === null) {
    process.nextTick(() =>
      cb(
        new DialFailure(
          'no-credentials',
          'no workload certificate yet: cannot reach a meshed endpoint',
        ),
        null,
      ),
    );
    return () => {};
  }
  let socket: net.Socket;
  if (e.identity === null) {
    socket = net.connect({ host: e.address, port: e.port, allowHalfOpen: true, noDelay: true });
    socket.once('connect', () => {
      socket.removeListener('error', onError);
      finish(null, socket);
    });
  } else {
    const expected = e.identity;
    let identityProblem: string | null = null;
    const t = tls.connect({
      // allowHalfOpen reaches the TLSSocket (Node passes it through; the types omit it).
      ...({ allowHalfOpen: true } as tls.ConnectionOptions),
      host: e.address,
      port: e.port,
      secureContext: (o.tls as TlsContexts).client,
      ALPNProtocols: [o.alpn],
      rejectUnauthorized: true,
      ...MESH_TLS,
      checkServerIdentity: (_host, cert) => {
        const check = checkExpectedIdentity(cert.subjectaltname, expected);
        if (check.ok) return undefined;
        identityProblem = check.reason;
        return new Error(check.reason);
      },
    });
    socket = t;
    t.setNoDelay(true);
    t.once('secureConnect', () => {
      t.removeListener('error', onError);
      if (t.alpnProtocol !== o.alpn) {
        t.destroy();
        finish(new DialFailure('tls', `the endpoint did not accept ALPN ${o.alpn}`), null);
        return;
      }
      finish(null, t);
    });
    t.once('error', () => {
      if (identityProblem !== null) finish(new DialFailure('identity', identityProblem), null);
    });
  }
  const onError = (err: NodeJS.ErrnoException): void => {
    socket.destroy();
    const tlsError =
      err.code?.startsWith('ERR_SSL') === true || err.code?.startsWith('ERR_TLS') === true;
    finish(new DialFailure(tlsError ? 'tls' : 'connect-failure', err.message), null);
  };
  socket.once('error', onError);
  const timer = setTimeout(() => {
    socket.destroy();
    finish(
      new DialFailure('connect-failure', `connect timeout after ${o.connectTimeoutMs} ms`),
      null,
    );
  }, o.connectTimeoutMs);
  return () => {
    if (done) return;
    done = true;
    clearTimeout(timer);
    socket.destroy();
  };
}
