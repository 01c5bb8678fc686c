// Pools of upstream HTTP/1.1 connections, one list of idle keep-alive connections per endpoint.
// A connection is leased to one exchange at a time and comes back when its response ended
// cleanly; an idle connection that closes, errors or sends anything leaves the pool at once.
// The most recently used connection is reused first (warm, least likely closed by the peer).

import type net from 'node:net';
import type { CircuitBreaker } from '../core/circuit-breaker';
import { ResponseParser, type ParserHandler, type ResponseHead } from './http1-codec';

export interface ConnectionEvents extends ParserHandler<ResponseHead> {
  /** The connection closed or failed while leased. */
  onUpstreamClose(err: Error | null): void;
  /**
   * One read is framed: what it held is written on. A response head waits for it, so that the
   * head and the body that came with it leave in one write (one TLS record, one system call).
   */
  onReadDone(): void;
}

const IDLE: ConnectionEvents = {
  onHead: () => {},
  onBody: () => {},
  onMessageEnd: () => {},
  onUpstreamClose: () => {},
  onReadDone: () => {},
};

/**
 * Where a connection is: idle (in the pool, or on its way there or out), leased to one exchange,
 * or closed for good. One field that changes with every lease: were "closed" a field of its own,
 * false in every connection until the first one closes, V8 would compile the request path with
 * it as a constant, and throw that code away at the first close (measured: a recompile of 11-22
 * ms of the exchange's functions, in the middle of the traffic).
 */
const enum ConnState {
  Idle,
  Leased,
  Closed,
}

export class UpstreamConnection implements ParserHandler<ResponseHead> {
  readonly parser: ResponseParser;
  /** The exchange this connection is leased to, or IDLE. */
  private events: ConnectionEvents = IDLE;
  private state = ConnState.Idle;
  /** Requests sent on it (for maxRequestsPerConnection and reuse decisions). */
  requests = 0;
  /** Bytes received for the current lease (a retry on a reused connection needs 0). */
  received = 0;
  /** Armed while idle; kept (and re-armed) across leases, so a request does not make a timer. */
  private idleTimer: NodeJS.Timeout | null = null;
  /** Why the proxy itself closes this connection (null: the peer or an error closed it). */
  private closing: LocalClose | null = null;
  /** When it was opened (performance.now()): `maxConnectionDuration` retires it. */
  readonly openedAt = performance.now();
  /** How long it may stay idle (a DestinationRule's `http.idleTimeout`; 0: for ever), else the pool's. */
  idleTimeoutMs: number | undefined = undefined;

  constructor(
    readonly socket: net.Socket,
    readonly poolKey: string,
    private readonly pool: ConnectionPool,
    /** The cluster's circuit breaker that counts this connection (a DestinationRule's limits). */
    private readonly breaker: CircuitBreaker<UpstreamConnection> | null = null,
  ) {
    this.parser = new ResponseParser(this);
    socket.on('data', (chunk: Buffer) => this.onData(chunk));
    socket.on('error', (err: Error) => this.onClose(err));
    socket.on('close', () => this.onClose(null));
    // The peer ended its side: nothing more can come on this connection. A response read until
    // close ends here (onClose finishes it); anything else half-done fails.
    socket.on('end', () => socket.destroy());
  }

  /** Leased to an exchange (and not closed). */
  get leased(): boolean {
    return this.state === ConnState.Leased;
  }

  /** Closed, or detached from the pool: never to be used again. */
  get closed(): boolean {
    return this.state === ConnState.Closed;
  }

  lease(events: ConnectionEvents): void {
    this.events = events;
    this.state = ConnState.Leased;
    this.received = 0;
    this.requests++;
  }

  /**
   * The exchange is over and left the connection clean: to a request waiting for it (under a
   * circuit breaker), else back to the pool.
   */
  release(): void {
    this.events = IDLE;
    if (this.closed) return;
    this.state = ConnState.Idle;
    if (this.breaker?.handOver(this.poolKey, this) === true) return;
    if (this.pool.handOver(this)) return;
    this.pool.putIdle(this);
  }

  /** The exchange is over and the connection cannot be reused. */
  discard(): void {
    this.events = IDLE;
    if (this.leased) this.state = ConnState.Idle;
    this.close('discarded');
  }

  /** Closes the connection for a reason of the proxy's own (counted by the pool). */
  close(reason: LocalClose): void {
    this.closing ??= reason;
    this.clearIdle();
    this.socket.destroy();
  }

  /** The connection leaves the pool for good (an upgrade): its socket is the caller's. */
  detach(): void {
    this.events = IDLE;
    this.state = ConnState.Closed;
    this.clearIdle();
    for (const event of ['data', 'end', 'close', 'error']) this.socket.removeAllListeners(event);
    this.pool.forget(this);
    // A tunnel still holds a connection to the cluster until it closes.
    if (this.breaker !== null) this.socket.once('close', () => this.freeSlot());
  }

  /** The connection no longer counts against its cluster's limit: a waiting request may open one. */
  private freeSlot(): void {
    if (this.breaker === null) return;
    this.breaker.connectionClosed();
    this.breaker.pump(this.pool.openCount(this.poolKey) === 0 ? this.poolKey : undefined);
  }

  /** Arms the idle timer: the connection closes once idle for `ms` (0: never). */
  startIdleTimer(ms: number): void {
    if (ms === 0) return;
    if (this.idleTimer !== null) {
      this.idleTimer.refresh();
      return;
    }
    this.idleTimer = setTimeout(() => {
      // Leased since it was armed: the next release re-arms it.
      if (this.state === ConnState.Idle) this.close('idleTimeout');
    }, ms);
    this.idleTimer.unref();
  }

  private clearIdle(): void {
    if (this.idleTimer !== null) {
      clearTimeout(this.idleTimer);
      this.idleTimer = null;
    }
  }

  private onData(chunk: Buffer): void {
    if (!this.leased) {
      // Nothing is expected on an idle connection (a 408 before closing, say): drop it.
      this.close('unexpectedData');
      return;
    }
    this.received += chunk.length;
    const events = this.events;
    try {
      this.parser.execute(chunk);
    } catch (err) {
      this.discard();
      events.onUpstreamClose(err as Error);
      return;
    }
    events.onReadDone();
  }

  private onClose(err: Error | null): void {
    if (this.closed) return;
    const leased = this.leased;
    this.state = ConnState.Closed;
    this.clearIdle();
    this.pool.forget(this);
    this.pool.counted(this.closing ?? (err === null ? 'peer' : 'error'));
    this.freeSlot();
    if (leased) {
      const events = this.events;
      // A response read until close ends here.
      if (err === null && this.parser.inBody) {
        try {
          this.parser.finish();
          return;
        } catch {
          // half a body: fall through to the failure
        }
      }
      this.events = IDLE;
      events.onUpstreamClose(err);
    }
  }

  // ParserHandler: forwarded to the exchange that holds the lease.
  onHead(head: ResponseHead): void {
    this.events.onHead(head);
  }
  onBody(chunk: Buffer): void {
    this.events.onBody(chunk);
  }
  onMessageEnd(): void {
    this.events.onMessageEnd();
  }
}

/** Why the proxy closes a pooled connection itself. */
export type LocalClose =
  'idleTimeout' | 'overflow' | 'discarded' | 'unexpectedData' | 'maxDuration' | 'shutdown';

/**
 * What a pool did, as Envoy's upstream_cx_* counters: connections opened, requests that found
 * an idle one, and closes by reason (the peer's, an error, or the proxy's own).
 */
export interface PoolCounters {
  opened: number;
  reused: number;
  /** Requests that waited for a connection: MAX_DIALS_PER_KEY were being opened already. */
  waited: number;
  closed: Record<LocalClose | 'peer' | 'error', number>;
}

export interface PoolOptions {
  /** How long an idle connection is kept. */
  readonly idleTimeoutMs: number;
  /** Idle connections kept per endpoint at most. */
  readonly maxIdlePerKey: number;
}

/**
 * Connections being opened to one endpoint at once, at most. A request that finds no idle
 * connection and this many being opened waits for the first to come free or for room to open its
 * own. Without it a burst (a cold start, a stall of the machine) opens a connection, and makes a
 * handshake, for every request waiting at that moment: measured in Pods, 900 mTLS connections in
 * the first 5 s at 1,000 requests/s, their handshakes slowing the proxy further.
 */
export const MAX_DIALS_PER_KEY = 8;

/** A request waiting for a connection to one endpoint. */
export interface ConnectionWaiter {
  /** A released connection for it, or (null) room to open one now. */
  wake(conn: UpstreamConnection | null): void;
}

export class ConnectionPool {
  private readonly idle = new Map<string, UpstreamConnection[]>();
  private readonly open = new Map<string, number>();
  private readonly dialing = new Map<string, number>();
  private readonly waiting = new Map<string, ConnectionWaiter[]>();
  private readonly counters: PoolCounters = {
    opened: 0,
    reused: 0,
    waited: 0,
    closed: {
      peer: 0,
      error: 0,
      idleTimeout: 0,
      overflow: 0,
      discarded: 0,
      unexpectedData: 0,
      maxDuration: 0,
      shutdown: 0,
    },
  };

  constructor(private readonly options: PoolOptions) {}

  /** An idle connection to reuse, or null; one older than `maxAgeMs` is closed instead. */
  take(key: string, maxAgeMs?: number): UpstreamConnection | null {
    const list = this.idle.get(key);
    if (list === undefined) return null;
    const bornAfter = maxAgeMs === undefined ? -Infinity : performance.now() - maxAgeMs;
    while (list.length > 0) {
      const conn = list.pop() as UpstreamConnection;
      if (conn.openedAt <= bornAfter) {
        conn.close('maxDuration');
        continue;
      }
      if (!conn.closed && !conn.socket.destroyed) {
        this.counters.reused++;
        return conn;
      }
    }
    this.idle.delete(key);
    return null;
  }

  /**
   * A new connection joins the pool's accounting (leased by its creator); with a breaker, it
   * counts against the cluster's limit (from its dial) until it closes.
   */
  adopt(
    socket: net.Socket,
    key: string,
    breaker: CircuitBreaker<UpstreamConnection> | null = null,
  ): UpstreamConnection {
    this.open.set(key, (this.open.get(key) ?? 0) + 1);
    this.counters.opened++;
    return new UpstreamConnection(socket, key, this, breaker);
  }

  /** Connections open (idle or leased) to an endpoint. */
  openCount(key: string): number {
    return this.open.get(key) ?? 0;
  }

  putIdle(conn: UpstreamConnection): void {
    let list = this.idle.get(conn.poolKey);
    if (list === undefined) {
      list = [];
      this.idle.set(conn.poolKey, list);
    }
    if (list.length >= this.options.maxIdlePerKey) {
      conn.close('overflow');
      return;
    }
    list.push(conn);
    conn.startIdleTimer(conn.idleTimeoutMs ?? this.options.idleTimeoutMs);
  }

  forget(conn: UpstreamConnection): void {
    const n = (this.open.get(conn.poolKey) ?? 1) - 1;
    if (n <= 0) this.open.delete(conn.poolKey);
    else this.open.set(conn.poolKey, n);
    const list = this.idle.get(conn.poolKey);
    if (list === undefined) return;
    const i = list.indexOf(conn);
    if (i !== -1) list.splice(i, 1);
    if (list.length === 0) this.idle.delete(conn.poolKey);
  }

  /** Closes every idle connection (shutdown). */
  closeIdle(): void {
    for (const list of this.idle.values()) for (const conn of list) conn.close('shutdown');
    this.idle.clear();
  }

  /** A connection of this pool closed, for this reason. */
  counted(reason: LocalClose | 'peer' | 'error'): void {
    this.counters.closed[reason]++;
  }

  /** Whether a connection to `key` may be opened now (else: wait, with `wait`). */
  mayDial(key: string): boolean {
    return (this.dialing.get(key) ?? 0) < MAX_DIALS_PER_KEY;
  }

  dialStarted(key: string): void {
    this.dialing.set(key, (this.dialing.get(key) ?? 0) + 1);
  }

  /** A dial to `key` ended (connected, failed or abandoned): the first waiting request may dial. */
  dialEnded(key: string): void {
    const n = (this.dialing.get(key) ?? 1) - 1;
    if (n <= 0) this.dialing.delete(key);
    else this.dialing.set(key, n);
    this.passOn(key);
  }

  /** Room to open a connection to `key`: the first waiting request takes it. */
  passOn(key: string): void {
    this.shift(key)?.wake(null);
  }

  /** Waits (FIFO) for a connection to `key` to come free, or for room to open one. */
  wait(key: string, w: ConnectionWaiter): void {
    this.counters.waited++;
    const list = this.waiting.get(key);
    if (list === undefined) this.waiting.set(key, [w]);
    else list.push(w);
  }

  cancelWait(key: string, w: ConnectionWaiter): void {
    const list = this.waiting.get(key);
    const i = list?.indexOf(w) ?? -1;
    if (i === -1) return;
    (list as ConnectionWaiter[]).splice(i, 1);
    if (list?.length === 0) this.waiting.delete(key);
  }

  /** A released connection goes to the first request waiting for its endpoint (true), if any. */
  handOver(conn: UpstreamConnection): boolean {
    const w = this.shift(conn.poolKey);
    if (w === undefined) return false;
    this.counters.reused++;
    w.wake(conn);
    return true;
  }

  private shift(key: string): ConnectionWaiter | undefined {
    const list = this.waiting.get(key);
    if (list === undefined) return undefined;
    const w = list.shift();
    if (list.length === 0) this.waiting.delete(key);
    return w;
  }

  stats(): {
    endpoints: number;
    idle: number;
    open: number;
    dialing: number;
    waiting: number;
  } & PoolCounters {
    let idle = 0;
    for (const list of this.idle.values()) idle += list.length;
    let open = 0;
    for (const n of this.open.values()) open += n;
    let dialing = 0;
    for (const n of this.dialing.values()) dialing += n;
    let waiting = 0;
    for (const list of this.waiting.values()) waiting += list.length;
    return {
      endpoints: this.open.size,
      idle,
      open,
      dialing,
      waiting,
      ...this.counters,
      closed: { ...this.counters.closed },
    };
  }
}
