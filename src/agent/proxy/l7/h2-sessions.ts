// Upstream HTTP/2 sessions, one multiplexed session per endpoint, shared by the exchanges of
// http2-proxy.ts and the HTTP/2 copies of mirror.ts.

import http2 from 'node:http2';
import type net from 'node:net';
import type { CircuitBreaker } from '../core/circuit-breaker';
import type { UpstreamEndpoint } from '../core/endpoints';
import type { MooringAlpn } from '../core/identity';
import { dial, type DialFailure } from '../l4/dial';
import type { TlsContexts } from '../l4/tls';

/** How a session is opened when there is none (and when an open one is too old to use). */
export interface SessionOptions {
  readonly alpn: MooringAlpn;
  readonly tls: TlsContexts | null;
  readonly connectTimeoutMs: number;
  /** The cluster's circuit breaker (the session counts as one of its connections). */
  readonly breaker?: CircuitBreaker | null;
  /** An open session older than this takes no new stream (`maxConnectionDuration`). */
  readonly maxAgeMs?: number;
  /** A session it opens is closed after this long with no frame (0 or absent: never). */
  readonly idleTimeoutMs?: number;
  /** Called with the socket of a session it opens once TCP is up (tcpKeepalive). */
  readonly tune?: (socket: net.Socket) => void;
}

/**
 * One multiplexed session per upstream endpoint (per cluster and endpoint under a circuit
 * breaker). Under a breaker, a request waiting for the session being opened is pending (the
 * caller admitted it) until the session is there or failed; a session counts as a connection
 * until it closes. An endpoint always gets its one session (Envoy's exception to maxConnections
 * for an endpoint without a connection): HTTP/2 meets maxConnections only in the counts.
 */
export class H2SessionPool {
  private readonly sessions = new Map<string, http2.ClientHttp2Session>();
  /** When each session was opened (performance.now()): `maxConnectionDuration` retires it. */
  private readonly openedAt = new WeakMap<http2.ClientHttp2Session, number>();
  private readonly waiting = new Map<
    string,
    ((err: DialFailure | null, s: http2.ClientHttp2Session | null) => void)[]
  >();

  /** Whether a live session to this pool key exists (a request on it is not pending). */
  has(key: string): boolean {
    const s = this.sessions.get(key);
    return s !== undefined && !s.closed && !s.destroyed;
  }

  /** The session to `endpoint` (`cb` once it is there), opened as `o` says when there is none. */
  get(
    endpoint: UpstreamEndpoint,
    o: SessionOptions,
    cb: (err: DialFailure | null, session: http2.ClientHttp2Session | null) => void,
  ): void {
    const { alpn, tls, connectTimeoutMs, maxAgeMs, idleTimeoutMs, tune } = o;
    const breaker = o.breaker ?? null;
    const key = breaker === null ? endpoint.key : breaker.poolKey(endpoint.key);
    const existing = this.sessions.get(key);
    if (existing !== undefined && !existing.closed && !existing.destroyed) {
      const opened = this.openedAt.get(existing) ?? 0;
      if (maxAgeMs === undefined || performance.now() - opened < maxAgeMs) {
        cb(null, existing);
        return;
      }
      // Too old for new streams: its own finish on it (GOAWAY), the next ones get a new session.
      this.sessions.delete(key);
      existing.close();
    }
    const waiter =
      breaker === null
        ? cb
        : (err: DialFailure | null, session: http2.ClientHttp2Session | null): void => {
            breaker.leave();
            cb(err, session);
          };
    const queue = this.waiting.get(key);
    if (queue !== undefined) {
      queue.push(waiter);
      return;
    }
    this.waiting.set(key, [waiter]);
    breaker?.connectionOpened();
    dial({ endpoint, alpn, tls, connectTimeoutMs, tune }, (err, socket) => {
      const callbacks = this.waiting.get(key) ?? [];
      this.waiting.delete(key);
      if (err !== null || socket === null) {
        breaker?.connectionClosed();
        for (const c of callbacks) c(err, null);
        return;
      }
      const scheme =
        endpoint.identity === null && endpoint.originate === undefined ? 'http' : 'https';
      const host = endpoint.address.includes(':') ? `[${endpoint.address}]` : endpoint.address;
      const session = http2.connect(`${scheme}://${host}:${endpoint.port}`, {
        createConnection: () => socket,
        settings: { enablePush: false },
      });
      const forget = (): void => {
        if (this.sessions.get(key) === session) this.sessions.delete(key);
      };
      session.on('close', forget);
      if (breaker !== null) session.once('close', () => breaker.connectionClosed());
      session.on('goaway', forget);
      session.on('error', () => {
        forget();
        session.destroy();
      });
      if (idleTimeoutMs !== undefined && idleTimeoutMs > 0) {
        // A DestinationRule's http.idleTimeout: a quiet session goes (GOAWAY); a stream still
        // open on it finishes there, and the next requests get a new session.
        session.setTimeout(idleTimeoutMs);
        session.on('timeout', () => {
          forget();
          session.close();
        });
      }
      session.unref();
      this.openedAt.set(session, performance.now());
      this.sessions.set(key, session);
      for (const c of callbacks) c(null, session);
    });
  }

  close(): void {
    for (const s of this.sessions.values()) s.destroy();
    this.sessions.clear();
  }

  count(): number {
    return this.sessions.size;
  }
}
