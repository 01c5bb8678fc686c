// HTTP/1.1 through the proxy: one `Http1Downstream` per client connection, one `Exchange` per
// request. The request head is parsed and re-written (hop-by-hop headers dropped, the proxy's
// headers added); bodies pass through as the bytes that came, framing included, with
// backpressure both ways. Upstream connections come from a keep-alive pool. What differs between
// the outbound and the inbound side (where a request goes, which headers change, what is
// recorded) is the `Http1Handler`'s; the mechanics are here.
//
// Retries happen only while nothing has reached the client and the request body was small
// enough to be kept (RETRY_BUFFER_BYTES); a request whose body streamed past it is not retried.

import { STATUS_CODES } from 'node:http';
import type net from 'node:net';
import { OVERLOADED_HEADER, type CircuitBreaker, type Waiter } from '../core/circuit-breaker';
import type { UpstreamEndpoint } from '../core/endpoints';
import { retriableFailure, retriableStatus } from '../core/retry';
import { dial, type DialFailure } from '../l4/dial';
import {
  forwardHeaderLines,
  Http1ParseError,
  RequestParser,
  type ParserHandler,
  type RequestHead,
  type ResponseHead,
} from './http1-codec';
import type { ExchangePlan, HeaderChanges, LocalReply, ResponseFlag } from './exchange-plan';
import { ExchangePolicy, failureFlag, resetReply } from './exchange-policy';
import { Http1Mirror, mirrorOptions, shadowHost, type MirrorTarget } from './mirror';
import type {
  ConnectionEvents,
  ConnectionPool,
  ConnectionWaiter,
  UpstreamConnection,
} from './pool';

/** Request bodies up to this size are kept for a retry (Envoy keeps up to its buffer limit). */
export const RETRY_BUFFER_BYTES = 64 * 1024;

export type {
  AttemptFailure,
  AttemptOutcome,
  ExchangePlan,
  LocalReply,
  ResponseFlag,
} from './exchange-plan';

/** What the handler learns when an exchange is over (metrics, access log). */
export interface ExchangeRecord {
  /** null for a request whose head could not be read (the connection answered it itself). */
  readonly head: RequestHead | null;
  readonly plan: ExchangePlan | LocalReply;
  /** The endpoint of the last attempt, if any. */
  readonly endpoint: UpstreamEndpoint | null;
  /** 0 when no response was sent (the client went away first). */
  readonly status: number;
  readonly flags: readonly ResponseFlag[];
  readonly startNs: bigint;
  readonly durationMs: number;
  readonly requestBytes: number;
  readonly responseBytes: number;
  readonly attempts: number;
}

export interface Http1Handler {
  plan(head: RequestHead, downstream: Http1Downstream): ExchangePlan | LocalReply;
  finished(record: ExchangeRecord, downstream: Http1Downstream): void;
  /**
   * A request the connection answered itself, 400 or 431 with flag DPE, as its head could not be
   * read: no plan was made for it. Counted as Envoy counts it.
   */
  refused(record: ExchangeRecord, downstream: Http1Downstream): void;
  /** True while the proxy drains this side: each response closes its connection. */
  draining?(): boolean;
}

export const localReply = (
  status: number,
  body: string | Buffer,
  flags: ResponseFlag[] = [],
  headers?: readonly string[],
): LocalReply => ({ kind: 'local', status, body, flags, ...(headers ? { headers } : {}) });

const flagsText = (flags: readonly ResponseFlag[]): string =>
  flags.length === 0 ? '-' : flags.join(',');
export { flagsText };

/** A client connection speaking HTTP/1.1 to the proxy. */
export class Http1Downstream implements ParserHandler<RequestHead> {
  private readonly parser = new RequestParser(this);
  private exchange: Exchange | null = null;
  private ended = false;
  /** A read is being framed. */
  private reading = false;
  /** The upstream socket written to in this read, corked until its end. */
  private uncorkAfterRead: net.Socket | null = null;
  closed = false;
  /** Requests served on this connection. */
  requests = 0;

  /** This connection drains (its port no longer takes plain text). */
  private drainRequested = false;
  constructor(
    readonly socket: net.Socket,
    private readonly handler: Http1Handler,
    readonly pool: ConnectionPool,
    /** The connection's own facts, for the handler (peer identity, original destination...). */
    readonly info: Readonly<Record<string, unknown>>,
    first: Buffer | null,
    /** No request in flight and no byte for this long: the connection is closed (0: never). */
    readonly idleTimeoutMs: number,
  ) {
    socket.on('data', (chunk: Buffer) => this.onData(chunk));
    socket.on('end', () => this.onEnd());
    socket.on('close', () => this.onClose());
    socket.on('error', () => socket.destroy());
    if (idleTimeoutMs > 0) {
      // Node's socket timer restarts at each read and write: it fires after that long quiet.
      socket.setTimeout(idleTimeoutMs);
      socket.on('timeout', this.onIdle);
    }
    if (first !== null && first.length > 0) this.onData(first);
    // The socket may have been paused while its first bytes were sniffed, and the client may
    // have ended its side meanwhile.
    if (socket.readableEnded) this.onEnd();
    else socket.resume();
  }

  /** Envoy's idle_timeout: only with no request in flight (a slow answer is not idleness). */
  private readonly onIdle = (): void => {
    if (this.exchange === null) this.socket.destroy();
  };

  private onData(chunk: Buffer): void {
    // What one read produces for the upstream leaves in one write.
    const up = this.exchange?.upstreamSocket ?? null;
    this.reading = true;
    if (up !== null) this.holdUntilRead(up);
    try {
      this.parser.execute(chunk);
    } catch (err) {
      this.parseFailed(err as Error);
    } finally {
      this.reading = false;
      this.releaseHeld();
    }
  }

  /**
   * Keeps `socket` corked until the read being framed ends, so that a request head written now
   * and the body bytes that came with it leave in one write. False outside a read.
   */
  holdUntilRead(socket: net.Socket): boolean {
    if (!this.reading) return false;
    if (this.uncorkAfterRead !== socket) {
      this.releaseHeld();
      socket.cork();
      this.uncorkAfterRead = socket;
    }
    return true;
  }

  private releaseHeld(): void {
    const held = this.uncorkAfterRead;
    if (held === null) return;
    this.uncorkAfterRead = null;
    held.uncork();
  }

  private parseFailed(err: Error): void {
    const tooLarge = err instanceof Http1ParseError && err.tooLarge;
    if (this.exchange !== null) {
      this.exchange.requestMalformed();
      return;
    }
    const status = tooLarge ? 431 : 400;
    const reply = localReply(status, tooLarge ? 'headers too large' : 'bad request', ['DPE']);
    const responseBytes = writeLocal(this.socket, reply, true, false);
    this.handler.refused(
      {
        head: null,
        plan: reply,
        endpoint: null,
        status,
        flags: reply.flags,
        startNs: process.hrtime.bigint(),
        durationMs: 0,
        requestBytes: 0,
        responseBytes,
        attempts: 0,
      },
      this,
    );
  }

  private onEnd(): void {
    this.ended = true;
    try {
      this.parser.finish();
    } catch {
      // A request cut in the middle of its body cannot come whole: it is given up (flag DC),
      // as Envoy resets it, instead of waiting for an answer to a request nobody can finish.
      this.exchange?.downstreamClosed();
      return;
    }
    if (this.exchange === null) this.socket.end();
  }

  private onClose(): void {
    this.closed = true;
    const ex = this.exchange;
    this.exchange = null;
    ex?.downstreamClosed();
  }

  // ParserHandler<RequestHead>
  onHead(head: RequestHead): void {
    this.parser.pause();
    this.requests++;
    const plan = this.handler.plan(head, this);
    const exchange = new Exchange(this, head, plan);
    this.exchange = exchange;
    exchange.begin();
  }
  onBody(chunk: Buffer): void {
    this.exchange?.requestBody(chunk);
  }
  onMessageEnd(): void {
    this.exchange?.requestEnd();
  }

  /** The exchange is over: the next request, or the end of the connection. */
  /**
   * The proxy drains this side, or this connection: no new request on it after the current one.
   */
  get closing(): boolean {
    return this.drainRequested || this.handler.draining?.() === true;
  }

  /** Ends the connection now if no request is in flight on it (a drain starts). */
  closeIfIdle(): void {
    if (this.exchange === null && !this.closed) this.socket.end();
  }

  /** This connection alone drains: ended now when idle, else once its request is answered. */
  drain(): void {
    this.drainRequested = true;
    this.closeIfIdle();
  }

  exchangeDone(ex: Exchange, keepAlive: boolean): void {
    if (this.exchange !== ex) return;
    this.exchange = null;
    ex.settleMirrors();
    this.handler.finished(ex.record(), this);
    if (this.closed) return;
    if (!keepAlive || this.ended || this.closing) {
      this.socket.end();
      return;
    }
    this.parser.resume();
  }

  /** Hands the raw socket (and bytes already read past the head) to a tunnel. */
  takeForTunnel(): Buffer | null {
    this.socket.removeAllListeners('data');
    this.socket.removeAllListeners('end');
    this.socket.removeListener('timeout', this.onIdle);
    return this.parser.takeRest();
  }

  recordTunnel(ex: Exchange): void {
    if (this.exchange !== ex) return;
    this.exchange = null;
    this.handler.finished(ex.record(), this);
  }
}

function writeLocal(socket: net.Socket, reply: LocalReply, close: boolean, head: boolean): number {
  const length = Buffer.byteLength(reply.body);
  let extra = '';
  if (reply.headers !== undefined) {
    for (let i = 0; i < reply.headers.length; i += 2) {
      extra += `${reply.headers[i] as string}: ${reply.headers[i + 1] as string}\r\n`;
    }
  }
  const headText =
    `HTTP/1.1 ${reply.status} ${STATUS_CODES[reply.status] ?? 'Unknown'}\r\n` +
    `content-length: ${length}\r\ncontent-type: text/plain\r\n${extra}` +
    (close ? 'connection: close\r\n' : '') +
    '\r\n';
  if (socket.destroyed) return 0;
  const body = head ? '' : reply.body;
  const data =
    typeof body === 'string'
      ? headText + body
      : Buffer.concat([Buffer.from(headText, 'latin1'), body]);
  if (close) socket.end(data);
  else socket.write(data);
  return head ? 0 : length;
}

const RESPONSE_REMOVE = new Set<string>();

/**
 * A response head and body bytes up to this size, read together, are copied into one buffer and
 * written once (one TLS record, no corked write list); a larger body goes after the head.
 */
const MERGED_BODY_BYTES = 16 * 1024;

/** One request and its response. */
export class Exchange implements ConnectionEvents {
  get upstreamSocket(): net.Socket | null {
    return this.upstream?.socket ?? null;
  }

  private readonly startNs = process.hrtime.bigint();
  private readonly plan: ExchangePlan | LocalReply;
  /** The route's policies around the request (null for a local answer). */
  private readonly policy: ExchangePolicy | null;
  private upstream: UpstreamConnection | null = null;
  private reusedConnection = false;
  private cancelDial: (() => void) | null = null;
  /** Body chunks kept for a retry, or waiting for the connection. */
  private body: Buffer[] = [];
  private bodyBytes = 0;
  private replayable = true;
  private requestComplete = false;
  private responseStarted = false;
  private responseHead: ResponseHead | null = null;
  /** The response head, not written yet: it leaves with the body bytes read with it. */
  private headText: string | null = null;
  private closeDownstream = false;
  private status = 0;
  private readonly flags: ResponseFlag[] = [];
  private requestBytes = 0;
  private responseBytes = 0;
  private done = false;
  private upgraded = false;
  private downstreamPaused = false;
  /** The copies of this request being sent (a route's mirrors), or null. */
  private mirrors: Http1Mirror[] | null = null;

  constructor(
    private readonly down: Http1Downstream,
    private readonly head: RequestHead,
    plan: ExchangePlan | LocalReply,
  ) {
    this.plan = plan;
    this.policy = plan.kind === 'local' ? null : new ExchangePolicy(plan, this);
    if (plan.kind === 'local') {
      this.flags.push(...plan.flags);
      this.status = plan.status;
    }
  }

  /**
   * Starts the exchange, once the downstream holds it: an answer made at once (no healthy
   * upstream, an overflow) must find it there to be recorded.
   */
  begin(): void {
    const plan = this.plan;
    // An upgrade is not copied: its bytes after the answer are not HTTP.
    if (plan.kind === 'forward' && plan.mirrors !== undefined && this.head.upgrade === null) {
      const options = mirrorOptions(plan);
      this.mirrors = plan.mirrors.map(
        (target) => new Http1Mirror(target, mirrorHeadText(this.head, plan, target), options),
      );
    }
    this.policy?.begin(
      this.flags,
      () => this.done,
      () => this.attempt(),
    );
  }

  record(): ExchangeRecord {
    return {
      head: this.head,
      plan: this.plan,
      endpoint: this.policy?.endpoint ?? null,
      status: this.status,
      flags: this.flags,
      startNs: this.startNs,
      durationMs: Number(process.hrtime.bigint() - this.startNs) / 1e6,
      requestBytes: this.requestBytes,
      responseBytes: this.responseBytes,
      attempts: this.policy?.attempts ?? 0,
    };
  }

  // --- the request, from the downstream parser --------------------------------------------

  requestBody(chunk: Buffer): void {
    this.requestBytes += chunk.length;
    const mirrors = this.mirrors;
    if (mirrors !== null) for (const m of mirrors) m.write(chunk);
    if (this.plan.kind === 'local' || this.done) return;
    const up = this.upstream;
    if (this.replayable || up === null) {
      this.body.push(chunk);
      this.bodyBytes += chunk.length;
      if (this.bodyBytes > RETRY_BUFFER_BYTES) {
        this.replayable = false;
        // More than the buffer while waiting for a connection: stop reading the client.
        if (up === null) this.pauseDownstream();
      }
    }
    if (up !== null) {
      if (!up.socket.write(chunk)) this.backpressure(up);
      if (!this.replayable) this.body = [];
    }
  }

  requestEnd(): void {
    this.requestComplete = true;
    const mirrors = this.mirrors;
    if (mirrors !== null) for (const m of mirrors) m.end();
    if (this.plan.kind === 'local') this.finishLocal(this.plan);
  }

  /** The exchange is over: a copy of a request that did not come whole is dropped. */
  settleMirrors(): void {
    const mirrors = this.mirrors;
    if (mirrors !== null) for (const m of mirrors) m.requestOver();
  }

  private pauseDownstream(): void {
    if (!this.downstreamPaused) {
      this.downstreamPaused = true;
      this.down.socket.pause();
    }
  }

  private resumeDownstream(): void {
    if (this.downstreamPaused) {
      this.downstreamPaused = false;
      this.down.socket.resume();
    }
  }

  private backpressure(up: UpstreamConnection): void {
    this.pauseDownstream();
    up.socket.once('drain', () => this.resumeDownstream());
  }

  private finishLocal(reply: LocalReply): void {
    if (this.done) return;
    this.done = true;
    const close = this.head.close || this.down.closing;
    this.responseBytes = writeLocal(this.down.socket, reply, close, this.head.method === 'HEAD');
    this.down.exchangeDone(this, !close);
  }

  // --- attempts ---------------------------------------------------------------------------

  private attempt(): void {
    if (this.done) return;
    const policy = this.policy as ExchangePolicy;
    const endpoint = policy.next();
    if (endpoint === null) return;
    const { plan } = policy;
    const breaker = plan.breaker;
    const key = breaker === undefined ? endpoint.key : breaker.poolKey(endpoint.key);
    const pooled = this.down.pool.take(key, plan.maxConnectionDurationMs);
    // No ready connection and no room to wait: answered at once.
    if (!policy.admit(endpoint, pooled !== null)) return;
    policy.open(endpoint);
    if (pooled !== null) {
      this.send(pooled, true);
      return;
    }
    if (breaker === undefined) {
      const pool = this.down.pool;
      if (pool.mayDial(key)) {
        this.connect(plan, endpoint, key, null);
        return;
      }
      // Enough connections are being opened to this endpoint: the first that comes free, or
      // room to open one, is this request's (a burst makes no handshake per waiting request).
      const paced: ConnectionWaiter = {
        wake: (conn) => {
          this.cancelDial = null;
          if (this.done) {
            // Over meanwhile: what it was given goes to the next request waiting.
            if (conn === null) pool.passOn(key);
            else conn.release();
            return;
          }
          if (conn === null) this.connect(plan, endpoint, key, null);
          else this.send(conn, true);
        },
      };
      pool.wait(key, paced);
      this.cancelDial = () => pool.cancelWait(key, paced);
      return;
    }
    if (breaker.mayConnect(this.down.pool.openCount(key))) {
      this.connect(plan, endpoint, key, breaker);
      return;
    }
    // Pending: the next connection to this endpoint that comes free, or room to open one.
    const waiter: Waiter<UpstreamConnection> = {
      key,
      wake: (conn) => {
        this.cancelDial = null;
        if (conn === null) {
          this.connect(plan, endpoint, key, breaker);
          return;
        }
        breaker.leave();
        this.send(conn, true);
      },
    };
    breaker.wait(waiter);
    this.cancelDial = () => {
      breaker.cancel(waiter);
      breaker.leave();
    };
  }

  /** Opens a connection for the current attempt (counted by the breaker, if any, from now). */
  private connect(
    plan: ExchangePlan,
    endpoint: UpstreamEndpoint,
    key: string,
    breaker: CircuitBreaker<UpstreamConnection> | null,
  ): void {
    breaker?.connectionOpened();
    const unslot = (): void => {
      if (breaker === null) return;
      breaker.connectionClosed();
      breaker.pump();
    };
    const pool = this.down.pool;
    pool.dialStarted(key);
    let dialing = true;
    const dialEnded = (): void => {
      if (!dialing) return;
      dialing = false;
      pool.dialEnded(key);
    };
    const cancel = dial(
      {
        endpoint,
        alpn: plan.alpn,
        tls: plan.tls,
        connectTimeoutMs: plan.connectTimeoutMs,
        tune: plan.tune,
      },
      (err, socket) => {
        this.cancelDial = null;
        dialEnded();
        breaker?.leave();
        if (this.done) {
          socket?.destroy();
          unslot();
          return;
        }
        if (err !== null || socket === null) {
          unslot();
          const kind = (err as DialFailure).kind;
          this.attemptFailed(kind === 'connect-failure' ? 'connect-failure' : 'tls', err, 0);
          return;
        }
        const conn = pool.adopt(socket, key, breaker);
        conn.idleTimeoutMs = plan.upstreamIdleTimeoutMs;
        this.send(conn, false);
      },
    );
    this.cancelDial =
      breaker === null
        ? () => {
            cancel();
            dialEnded();
          }
        : () => {
            cancel();
            dialEnded();
            breaker.leave();
            unslot();
          };
  }

  private send(up: UpstreamConnection, reused: boolean): void {
    const policy = this.policy as ExchangePolicy;
    const plan = policy.plan;
    const endpoint = policy.endpoint as UpstreamEndpoint;
    this.upstream = up;
    this.reusedConnection = reused;
    up.lease(this);
    up.parser.requestMethod = this.head.method;
    const h = this.head;
    const only = endpoint.identity !== null ? plan.addHeadersMeshed : plan.addHeadersPlain;
    const add =
      only === undefined
        ? plan.attemptCountHeader
          ? [plan.addHeaders, attemptCountLine(policy.attempts)]
          : [plan.addHeaders]
        : plan.attemptCountHeader
          ? [plan.addHeaders, only, attemptCountLine(policy.attempts)]
          : [plan.addHeaders, only];
    const connection = h.upgrade !== null ? 'upgrade' : h.versionMinor === 0 ? 'keep-alive' : null;
    const text =
      `${h.method} ${plan.target ?? h.target} HTTP/1.${h.versionMinor}\r\n` +
      forwardHeaderLines(h, {
        remove: plan.removeHeaders,
        add,
        connection,
        upgrade: h.upgrade,
      }) +
      '\r\n';
    const socket = up.socket;
    // Body bytes that came in the same read as the head follow it in the same write.
    const bodyToCome =
      (h.contentLength > 0 || h.chunked) &&
      !this.requestComplete &&
      this.down.holdUntilRead(socket);
    if (this.body.length === 0) {
      socket.write(text, 'latin1');
    } else {
      if (!bodyToCome) socket.cork();
      socket.write(text, 'latin1');
      for (const chunk of this.body) socket.write(chunk);
      if (!bodyToCome) socket.uncork();
    }
    if (!this.replayable) this.body = [];
    this.resumeDownstream();
    if (socket.writableNeedDrain) this.backpressure(up);
  }

  private attemptFailed(
    reason: 'connect-failure' | 'reset' | 'timeout' | 'tls' | 'protocol-error',
    err: Error | null,
    received: number,
  ): void {
    const policy = this.policy as ExchangePolicy;
    const endpoint = policy.endpoint;
    policy.close(
      err === null ? { kind: 'failure', reason } : { kind: 'failure', reason, detail: err.message },
    );
    this.upstream = null;
    const condition = retriableFailure(policy.plan.retries.retryOn, reason);
    // A request that failed on a reused keep-alive connection before any byte came back may
    // have met a connection the peer was closing: it is retried once on a new connection.
    const stale =
      reason === 'reset' &&
      this.reusedConnection &&
      received === 0 &&
      isIdempotent(this.head.method);
    if (!this.responseStarted && this.replayable) {
      if (stale) {
        if (endpoint !== null) policy.untry(endpoint);
        this.reusedConnection = false;
        this.attempt();
        return;
      }
      // The retry budget's word last (a retry it refuses is not made: the failure goes on).
      if (condition && policy.mayRetry()) {
        this.reusedConnection = false;
        this.retryAfterBackoff(policy);
        return;
      }
    }
    const flag = failureFlag(reason);
    if (policy.attempts > 1 && condition) this.flags.push('URX');
    if (this.responseStarted) {
      this.flags.push(flag);
      this.abort(null);
      return;
    }
    const why =
      reason === 'reset'
        ? 'connection termination'
        : reason === 'tls'
          ? 'TLS error'
          : reason === 'protocol-error'
            ? 'protocol error'
            : 'connection failure';
    const detail = err !== null && reason === 'tls' ? `, ${err.message}` : '';
    if (reason === 'timeout') this.fail(504, 'upstream request timeout', flag);
    else this.fail(reason === 'protocol-error' ? 502 : 503, resetReply(`${why}${detail}`), flag);
  }

  /** Envoy's backoff: a random wait up to base x 2^(retries so far - 1), capped at 10 x base. */
  private retryAfterBackoff(policy: ExchangePolicy): void {
    const base = policy.plan.retries.backoffBaseMs ?? 25;
    const ceiling = Math.min(base * 2 ** Math.max(0, policy.attempts - 1), base * 10);
    const wait = Math.floor(Math.random() * ceiling);
    if (wait <= 0) {
      this.attempt();
      return;
    }
    policy.after(wait, () => this.attempt());
  }

  /** The current attempt ran out of its per-try time: it fails as a timeout (maybe retried). */
  onTryTimeout(): void {
    if (this.done || this.responseStarted || this.policy?.attemptOpen !== true) return;
    this.cancelDial?.();
    this.cancelDial = null;
    const up = this.upstream;
    this.upstream = null;
    up?.discard();
    this.attemptFailed('timeout', null, 0);
  }

  /** Answers the request from the proxy (an attempt's failure, no endpoint, an overflow). */
  fail(status: number, text: string, flag: ResponseFlag): void {
    if (this.done) return;
    this.flags.push(flag);
    this.policy?.clear();
    this.status = status;
    this.done = true;
    this.resumeDownstream();
    const close = this.head.close || !this.requestComplete || this.down.closing;
    this.responseBytes = writeLocal(
      this.down.socket,
      localReply(status, text, [], flag === 'UO' ? OVERLOADED_HEADER : undefined),
      close,
      this.head.method === 'HEAD',
    );
    this.down.exchangeDone(this, !close);
  }

  /** The route timeout passed. */
  onTimeout(): void {
    this.giveUp('UT', 504, 'upstream request timeout', 'timeout');
  }

  /**
   * The rest of the request cannot be framed (a malformed chunked body, after its head went on).
   * As Envoy: a 400 that closes the connection (flag DPE). The upstream connection, holding a
   * partial request, is dropped.
   */
  requestMalformed(): void {
    this.giveUp('DPE', 400, 'bad request', 'reset');
  }

  /** Ends the exchange with `flag`: a local reply if no response has begun, else a cut one. */
  private giveUp(
    flag: ResponseFlag,
    status: number,
    text: string,
    reason: 'timeout' | 'reset',
  ): void {
    if (this.done) return;
    if (this.responseStarted) {
      this.flags.push(flag);
      this.abort(null);
      return;
    }
    this.dropUpstream(reason);
    this.fail(status, text, flag);
  }

  /** The attempt in flight, dialing or sent, is given up and its connection discarded. */
  private dropUpstream(reason: 'timeout' | 'reset'): void {
    this.cancelDial?.();
    this.cancelDial = null;
    const up = this.upstream;
    this.upstream = null;
    up?.discard();
    this.policy?.close({ kind: 'failure', reason });
  }

  // --- the response, from the upstream connection -----------------------------------------

  onHead(head: ResponseHead): void {
    const policy = this.policy as ExchangePolicy;
    const up = this.upstream as UpstreamConnection;
    const status = head.statusCode;
    if (status >= 100 && status < 200 && status !== 101) {
      // Informational: on to the client (a 100 Continue it waits for), then the real response.
      if (!this.down.closed) this.down.socket.write(responseHeadText(head, null), 'latin1');
      return;
    }
    if (status === 101 && this.head.upgrade !== null) {
      up.parser.pause();
      this.responseHead = head;
      this.status = 101;
      this.responseStarted = true;
      this.upgraded = true;
      return;
    }
    // A retriable status, and the whole request kept: try again.
    if (
      !this.responseStarted &&
      this.replayable &&
      this.requestComplete &&
      retriableStatus(policy.plan.retries, status) &&
      policy.mayRetry()
    ) {
      policy.close({ kind: 'response', status });
      this.upstream = null;
      up.discard();
      this.retryAfterBackoff(policy);
      return;
    }
    this.responseHead = head;
    this.status = status;
    this.responseStarted = true;
    const keep = !this.head.close && !head.close && !this.down.closing;
    // A close-delimited body can only be delimited by closing the client connection.
    const closeDelimited =
      head.contentLength === -1 &&
      !head.chunked &&
      this.head.method !== 'HEAD' &&
      status !== 204 &&
      status !== 304;
    this.closeDownstream = !keep || closeDelimited;
    const connection = this.closeDownstream
      ? 'close'
      : this.head.versionMinor === 0
        ? 'keep-alive'
        : null;
    if (!this.down.closed) {
      const changes = (this.plan as ExchangePlan).responseHeaders;
      this.headText = responseHeadText(head, connection, false, changes);
    }
  }

  onBody(chunk: Buffer): void {
    this.responseBytes += chunk.length;
    if (this.down.closed) return;
    const head = this.headText;
    let data = chunk;
    if (head !== null) {
      this.headText = null;
      if (chunk.length <= MERGED_BODY_BYTES) {
        data = Buffer.allocUnsafe(head.length + chunk.length);
        data.write(head, 0, 'latin1');
        chunk.copy(data, head.length);
      } else {
        this.down.socket.write(head, 'latin1');
      }
    }
    if (!this.down.socket.write(data)) {
      const up = this.upstream;
      if (up !== null) {
        up.socket.pause();
        this.down.socket.once('drain', () => up.socket.resume());
      }
    }
  }

  /** The end of a read from the upstream: a head that came without body bytes goes now. */
  onReadDone(): void {
    const head = this.headText;
    if (head === null) return;
    this.headText = null;
    if (!this.down.closed) this.down.socket.write(head, 'latin1');
  }

  onMessageEnd(): void {
    if (this.upgraded) {
      this.startTunnel();
      return;
    }
    if (this.responseHead === null) return; // the end of a 1xx
    this.onReadDone();
    const up = this.upstream as UpstreamConnection;
    const plan = this.plan as ExchangePlan;
    this.policy?.close({ kind: 'response', status: this.status });
    this.policy?.clear();
    this.upstream = null;
    this.done = true;
    // The connection is reusable when the server did not close it and it got the whole request.
    const spent =
      (plan.maxRequestsPerConnection !== undefined &&
        up.requests >= plan.maxRequestsPerConnection) ||
      (plan.maxConnectionDurationMs !== undefined &&
        performance.now() - up.openedAt >= plan.maxConnectionDurationMs);
    if (!this.responseHead.close && this.requestComplete && !up.closed && !spent) up.release();
    else up.discard();
    // The server answered before the request ended: the rest of its body cannot be told from
    // a next request, so the client's connection closes.
    if (!this.requestComplete) this.closeDownstream = true;
    this.down.exchangeDone(this, !this.closeDownstream);
  }

  onUpstreamClose(err: Error | null): void {
    if (this.done || this.upgraded) return;
    const received = this.upstream?.received ?? 0;
    // A response that cannot be read is Envoy's protocol error (502, flag UPE), not a reset.
    this.attemptFailed(err instanceof Http1ParseError ? 'protocol-error' : 'reset', err, received);
  }

  // --- ends -------------------------------------------------------------------------------

  /** The client went away. */
  downstreamClosed(): void {
    this.settleMirrors();
    if (this.done) return;
    this.abort('DC');
  }

  abort(flag: ResponseFlag | null): void {
    if (this.done) return;
    this.done = true;
    this.headText = null;
    if (flag !== null) this.flags.push(flag);
    if (flag === 'DC' && !this.responseStarted) this.status = 0;
    this.policy?.clear();
    this.dropUpstream('reset');
    this.down.socket.destroy();
    this.down.exchangeDone(this, false);
  }

  private startTunnel(): void {
    const up = this.upstream as UpstreamConnection;
    this.policy?.clear();
    this.done = true;
    this.upstream = null;
    this.policy?.close({ kind: 'response', status: 101 });
    const upSocket = up.socket;
    const upRest = up.parser.takeRest();
    // The connection leaves the pool for good: it now carries the upgraded protocol.
    up.detach();
    const downSocket = this.down.socket;
    const downRest = this.down.takeForTunnel();
    downSocket.write(
      responseHeadText(this.responseHead as ResponseHead, 'upgrade', true),
      'latin1',
    );
    if (upRest !== null) downSocket.write(upRest);
    if (downRest !== null) upSocket.write(downRest);
    pipeBoth(downSocket, upSocket, this.down.idleTimeoutMs);
    this.down.recordTunnel(this);
  }
}

/** `x-envoy-attempt-count` for the first attempts, made once. */
const ATTEMPT_COUNT_LINES: readonly (readonly string[])[] = Array.from({ length: 8 }, (_, i) => [
  'x-envoy-attempt-count',
  String(i),
]);

const attemptCountLine = (attempt: number): readonly string[] =>
  ATTEMPT_COUNT_LINES[attempt] ?? ['x-envoy-attempt-count', String(attempt)];

/**
 * The head of a copy of `h` for a mirror: the plan's header changes, the host with `-shadow`
 * (after a rewrite of it), on a connection that closes after the answer.
 */
function mirrorHeadText(h: RequestHead, plan: ExchangePlan, target: MirrorTarget): string {
  let host = h.host ?? '';
  const add: string[] = [];
  const lines = plan.addHeaders;
  for (let i = 0; i < lines.length; i += 2) {
    const name = lines[i] as string;
    if (name.toLowerCase() === 'host') host = lines[i + 1] as string;
    else add.push(name, lines[i + 1] as string);
  }
  const only = target.endpoint.identity !== null ? target.addHeadersMeshed : plan.addHeadersPlain;
  return (
    `${h.method} ${plan.target ?? h.target} HTTP/1.${h.versionMinor}\r\n` +
    forwardHeaderLines(h, {
      remove: new Set([...plan.removeHeaders, 'host']),
      add: [add, only ?? [], ['host', shadowHost(host)]],
      connection: 'close',
    }) +
    '\r\n'
  );
}

function isIdempotent(method: string): boolean {
  return (
    method === 'GET' ||
    method === 'HEAD' ||
    method === 'OPTIONS' ||
    method === 'PUT' ||
    method === 'DELETE' ||
    method === 'TRACE'
  );
}

function responseHeadText(
  head: ResponseHead,
  connection: string | null,
  upgrade = false,
  changes?: HeaderChanges,
): string {
  return (
    `HTTP/1.1 ${head.statusCode} ${head.reason}\r\n` +
    forwardHeaderLines(head, {
      remove: changes?.remove ?? RESPONSE_REMOVE,
      ...(changes === undefined ? {} : { add: [changes.add] }),
      connection,
      upgrade: upgrade ? head.upgrade : null,
    }) +
    '\r\n'
  );
}

/** Bytes both ways between two sockets, with half-close, until both are done. */
export function pipeBoth(a: net.Socket, b: net.Socket, idleTimeoutMs: number): void {
  a.pipe(b);
  b.pipe(a);
  const destroyBoth = (): void => {
    a.destroy();
    b.destroy();
  };
  a.on('error', destroyBoth);
  b.on('error', destroyBoth);
  if (idleTimeoutMs > 0) {
    // As opaque TCP: no byte either way for that long (`a` reads one way and writes the other).
    a.setTimeout(idleTimeoutMs);
    a.once('timeout', destroyBoth);
  }
  a.on('close', () => {
    if (!b.destroyed && b.writableEnded && b.readableEnded) b.destroy();
  });
  b.on('close', () => {
    if (!a.destroyed && a.writableEnded && a.readableEnded) a.destroy();
  });
}
