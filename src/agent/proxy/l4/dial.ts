// Connecting to an upstream endpoint: plain TCP, TLS the proxy originates (l4/originate.ts), or
// mutual TLS to a sidecar with the ALPN of the protocol that follows, the endpoint's certificate
// required to carry exactly the SPIFFE ID the mesh expects for it. Fails closed: a meshed
// endpoint is never dialled in plain text, and an endpoint that presents another identity is
// refused before a byte of the request is sent.

import net from 'node:net';
import tls from 'node:tls';
import { checkExpectedIdentity, type MooringAlpn } from '../core/identity';
import type { UpstreamEndpoint } from '../core/endpoints';
import { originateOptions } from './originate';
import { copyingReads } from './read-copies';
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
  /** Called with the socket once TCP is up (TCP keepalive, a DestinationRule's tcpKeepalive). */
  readonly tune?: (socket: net.Socket) => void;
}

export type DialCallback = (err: DialFailure | null, socket: net.Socket | null) => void;

/**
 * TLS 1.3 session tickets from sidecars, to resume the next connection to the same one: no
 * certificate signature or chain verification on either side (Envoy reuses upstream sessions
 * the same way). Kept per client context: a renewed certificate or a new trust bundle makes a
 * new context, which starts with none (and the inbound side's new context has new ticket keys,
 * so an older ticket is refused there too). Within a context, per endpoint, expected identity
 * and ALPN, and kept only from a connection whose chain and identity were checked. A resumed
 * connection shows no certificate (Node skips checkServerIdentity then, and OpenSSL keeps no
 * peer chain in a ticket): it is that same checked peer, as only the sidecar that issued the
 * ticket holds the key that opens it (random per context, never leaving its process). The
 * inbound side still sees the client's certificate on resumption, and checks it as always.
 */
const sessions = new WeakMap<tls.SecureContext, Map<string, Buffer>>();
/** Tickets kept per context at most (the oldest goes first). */
export const MAX_TLS_SESSIONS = 1024;

function sessionsOf(context: tls.SecureContext): Map<string, Buffer> {
  let map = sessions.get(context);
  if (map === undefined) {
    map = new Map();
    sessions.set(context, map);
  }
  return map;
}

/** Keeps the newest ticket for `key`; beyond MAX_TLS_SESSIONS, the least recently kept goes. */
export function keepSession(map: Map<string, Buffer>, key: string, session: Buffer): void {
  map.delete(key);
  map.set(key, session);
  if (map.size > MAX_TLS_SESSIONS) map.delete(map.keys().next().value as string);
}

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
  /** TCP is up and TLS is being negotiated: a failure now is the handshake's. */
  let handshaking = false;
  /** A TLS socket being dialled: no Nagle; once TCP is up, tuned, and its failures TLS's. */
  const tlsDialled = (t: tls.TLSSocket): tls.TLSSocket => {
    t.setNoDelay(true);
    t.once('connect', () => {
      handshaking = true;
      o.tune?.(t);
    });
    return t;
  };
  if (e.originate !== undefined) {
    let options: tls.ConnectionOptions;
    try {
      options = originateOptions(e.originate, o.alpn);
    } catch (err) {
      process.nextTick(() => cb(new DialFailure('tls', (err as Error).message), null));
      return () => {};
    }
    const t = tls.connect({
      ...({ allowHalfOpen: true, onread: copyingReads() } as tls.ConnectionOptions),
      ...options,
      host: e.address,
      port: e.port,
    });
    socket = tlsDialled(t);
    t.once('secureConnect', () => {
      t.removeListener('error', onError);
      finish(null, t);
    });
  } else if (e.identity === null) {
    socket = net.connect({ host: e.address, port: e.port, allowHalfOpen: true, noDelay: true });
    socket.once('connect', () => {
      socket.removeListener('error', onError);
      o.tune?.(socket);
      finish(null, socket);
    });
  } else {
    const expected = e.identity;
    let identityProblem: string | null = null;
    const context = (o.tls as TlsContexts).client;
    const tickets = sessionsOf(context);
    const sessionKey = `${e.address}|${e.port}|${expected}|${o.alpn}`;
    const ticket = tickets.get(sessionKey);
    let verified = false;
    const t = tls.connect({
      // allowHalfOpen and onread reach the TLSSocket (Node passes them through; the types omit
      // them). onread: l4/read-copies.ts.
      ...({ allowHalfOpen: true, onread: copyingReads() } as tls.ConnectionOptions),
      host: e.address,
      port: e.port,
      secureContext: context,
      ...(ticket === undefined ? {} : { session: ticket }),
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
    socket = tlsDialled(t);
    t.once('secureConnect', () => {
      t.removeListener('error', onError);
      if (t.alpnProtocol !== o.alpn) {
        t.destroy();
        finish(new DialFailure('tls', `the endpoint did not accept ALPN ${o.alpn}`), null);
        return;
      }
      verified = true;
      finish(null, t);
    });
    // TLS 1.3 tickets come after the handshake; only those of a checked connection are kept.
    t.on('session', (session: Buffer) => {
      if (verified) keepSession(tickets, sessionKey, session);
    });
    t.once('error', () => {
      if (identityProblem !== null) finish(new DialFailure('identity', identityProblem), null);
    });
  }
  const onError = (err: NodeJS.ErrnoException): void => {
    socket.destroy();
    // A chain OpenSSL could not verify has codes of its own (UNABLE_TO_VERIFY_LEAF_SIGNATURE,
    // CERT_HAS_EXPIRED...): whatever fails once TCP is up is a TLS failure.
    const tlsError =
      handshaking ||
      err.code?.startsWith('ERR_SSL') === true ||
      err.code?.startsWith('ERR_TLS') === true;
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
