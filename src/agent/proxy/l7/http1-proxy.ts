// HTTP/1.1 through the proxy: one `Http1Downstream` per client connection, one `Exchange` per
// request. The request head is parsed and re-written (hop-by-hop headers dropped, the proxy's
// headers added); bodies pass through as the bytes that came, framing included, with
// backpressure both ways. Upstream connections come from a keep-alive pool. What differs between
// the outbound and the inbound side (where a request goes, which headers change, what is
// recorded) is the `Http1Handler`'s; the mechanics are here.
//
// Retries happen only while nothing has reached the client and the request body was small
// enough to be kept (RETRY_BUFFER_BYTES); a request whose body streamed past it is not retried.

import type net from 'node:net';
import type { MeshService, RetryPolicy } from '../../../api/mesh';
import type { UpstreamEndpoint } from '../core/endpoints';
import type { MooringAlpn } from '../core/identity';
import type { SpanContext } from '../core/trace-context';
import { dial, type DialFailure } from '../l4/dial';
import type { TlsContexts } from '../l4/tls';
import {
  forwardHeaderLines,
  Http1ParseError,
  RequestParser,
  type ParserHandler,
  type RequestHead,
  type ResponseHead,
} from './http1-codec';
import type { ConnectionPool, ConnectionEvents, UpstreamConnection } from './pool';

/** Request bodies up to this size are kept for a retry (Envoy keeps up to its buffer limit). */
export const RETRY_BUFFER_BYTES = 64 * 1024;

/** Envoy's response flags (the access log's %RESPONSE_FLAGS%). */
export type ResponseFlag =
  | 'UH' // no healthy upstream
  | 'UF' // upstream connection failure
  | 'UC' // upstream connection termination
  | 'UT' // upstream request timeout
  | 'URX' // retry limit exceeded
  | 'NR' // no route
  | 'NC' // no cluster: the route's destination is not known
  | 'DC' // downstream connection termination
  | 'UO' // upstream overflow (circuit breaker)
  | 'FI' // fault injected: abort
  | 'DI' // fault injected: delay
  | 'UAEX'; // (unused) external authorization

export interface LocalReply {
  readonly kind: 'local';
  readonly status: number;
  readonly body: string;
  readonly flags: ResponseFlag[];
  readonly headers?: readonly string[];
}

/** How one request is sent. The handler makes it from the head; the exchange runs it. */
export interface ExchangePlan {
  readonly kind: 'forward';
  /** Picks the endpoint of an attempt; `tried` holds the endpoints of earlier attempts. */
  pick(tried: ReadonlySet<UpstreamEndpoint>): UpstreamEndpoint | null;
  /** The ALPN between sidecars for a meshed endpoint. */
  readonly alpn: MooringAlpn;
  readonly tls: TlsContexts | null;
  readonly connectTimeoutMs: number;
  /** Lowercase header names to drop from the request. */
  readonly removeHeaders: ReadonlySet<string>;
  /** Header lines to add to the request ([name, value, ...]). */
  readonly addHeaders: readonly string[];
  /** Header lines added to the request only when the endpoint is meshed (peer metadata). */
  readonly addHeadersMeshed?: readonly string[];
  readonly retries: RetryPolicy;
  readonly timeoutMs: number | null;
  /** Set `x-envoy-attempt-count` on each attempt (Istio does on outbound). */
  readonly attemptCountHeader: boolean;
  /** Called after each attempt with its outcome (outlier detection). */
  onAttempt?(endpoint: UpstreamEndpoint, outcome: AttemptOutcome): void;
  /** Whether the retry budget has room for one more retry (counted when it has). */
  canRetry?(): boolean;
  /** Called once when the exchange is over (the handler's `finished` calls it). */
  onDone?(): void;
  /** Fault injection: wait this long before the request goes out (flag DI). */
  readonly delayMs?: number;
  /** The request target sent upstream, when a route rewrote it. */
  readonly target?: string;
  /** DestinationRule `connectionPool.http.maxRequestsPerConnection`: then a new connection. */
  readonly maxRequestsPerConnection?: number;
  /** The destination service (outbound), for the handler's records. */
  readonly service?: MeshService;
  /** This sidecar's span of the request, and its `x-request-id`, for the handler's records. */
  readonly span?: SpanContext;
  readonly requestId?: string;
}

export type AttemptOutcome =
  | { readonly kind: 'response'; readonly status: number }
  | {
      readonly kind: 'failure';
      readonly reason: 'connect-failure' | 'reset' | 'timeout' | 'tls' | 'refused-stream';
      /** What the socket or TLS said, when known (a debug log line). */
      readonly detail?: string;
    };

/** What the handler learns when an exchange is over (metrics, access log). */
export interface ExchangeRecord {
  readonly head: RequestHead;
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
  /** True while the proxy drains this side: each response closes its connection. */
  draining?(): boolean;
}

const STATUS_TEXT: Record<number, string> = {
  400: 'Bad Request',
  403: 'Forbidden',
  404: 'Not Found',
  408: 'Request Timeout',
  431: 'Request Header Fields Too Large',
  500: 'Internal Server Error',
  502: 'Bad Gateway',
  503: 'Service Unavailable',
  504: 'Gateway Timeout',
};

export const localReply = (
  status: number,
  body: string,
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
  closed = false;
  /** Requests served on this connection. */
  requests = 0;

  constructor(
    readonly socket: net.Socket,
    private readonly handler: Http1Handler,
    readonly pool: ConnectionPool,
    /** The connection's own facts, for the handler (peer identity, original destination...). */
    readonly info: Readonly<Record<string, unknown>>,
    first: Buffer | null,
  ) {
    socket.on('data', (chunk: Buffer) => this.onData(chunk));
    socket.on('end', () => this.onEnd());
    socket.on('close', () => this.onClose());
    socket.on('error', () => socket.destroy());
    if (first !== null && first.length > 0) this.onData(first);
    // The socket may have been paused while its first bytes were sniffed.
    socket.resume();
  }

  private onData(chunk: Buffer): void {
    // What one read produces for the upstream leaves in one write.
    const up = this.exchange?.upstreamSocket ?? null;
    up?.cork();
    try {
      this.parser.execute(chunk);
    } catch (err) {
      this.parseFailed(err as Error);
    } finally {
      up?.uncork();
    }
  }

  private parseFailed(err: Error): void {
    const tooLarge = err instanceof Http1ParseError && err.tooLarge;
    if (this.exchange !== null) {
      this.exchange.abort('DC');
      this.socket.destroy();
      return;
    }
    writeLocal(
      this.socket,
      localReply(tooLarge ? 431 : 400, tooLarge ? 'headers too large' : 'bad request'),
      true,
      false,
    );
  }

  private onEnd(): void {
    this.ended = true;
    try {
      this.parser.finish();
    } catch {
      // A request cut in the middle: the exchange learns it from 'close'.
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
    this.exchange = new Exchange(this, head, plan);
  }
  onBody(chunk: Buffer): void {
    this.exchange?.requestBody(chunk);
  }
  onMessageEnd(): void {
    this.exchange?.requestEnd();
  }

  /** The exchange is over: the next request, or the end of the connection. */
  /** The proxy drains this side: no new request on this connection after the current one. */
  get closing(): boolean {
    return this.handler.draining?.() === true;
  }

  /** Ends the connection now if no request is in flight on it (a drain starts). */
  closeIfIdle(): void {
    if (this.exchange === null && !this.closed) this.socket.end();
  }

  exchangeDone(ex: Exchange, keepAlive: boolean): void {
    if (this.exchange !== ex) return;
    this.exchange = null;
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
    return this.parser.takeRest();
  }

  recordTunnel(ex: Exchange): void {
    if (this.exchange !== ex) return;
    this.exchange = null;
    this.handler.finished(ex.record(), this);
  }
}

function writeLocal(socket: net.Socket, reply: LocalReply, close: boolean, head: boolean): number {
  const body = head ? '' : reply.body;
  let extra = '';
  if (reply.headers !== undefined) {
    for (let i = 0; i < reply.headers.length; i += 2) {
      extra += `${reply.headers[i] as string}: ${reply.headers[i + 1] as string}\r\n`;
    }
  }
  const text =
    `HTTP/1.1 ${reply.status} ${STATUS_TEXT[reply.status] ?? 'Unknown'}\r\n` +
    `content-length: ${Buffer.byteLength(reply.body)}\r\ncontent-type: text/plain\r\n${extra}` +
    (close ? 'connection: close\r\n' : '') +
    `\r\n${body}`;
  if (socket.destroyed) return 0;
  if (close) socket.end(text);
  else socket.write(text);
  return Buffer.byteLength(body);
}

const RESPONSE_REMOVE = new Set<string>();

/** One request and its response. */
export class Exchange implements ConnectionEvents {
  get downstreamSocket(): net.Socket {
    return this.down.socket;
  }

  get upstreamSocket(): net.Socket | null {
    return this.upstream?.socket ?? null;
  }

  private readonly startNs = process.hrtime.bigint();
  private readonly plan: ExchangePlan | LocalReply;
  private readonly tried = new Set<UpstreamEndpoint>();
  /** The endpoint of the current (or last) attempt. */
  private endpoint: UpstreamEndpoint | null = null;
  /** The current attempt counts in `endpoint.active`. */
  private attemptOpen = false;
  private upstream: UpstreamConnection | null = null;
  private reusedConnection = false;
  private cancelDial: (() => void) | null = null;
  private attempts = 0;
  /** Body chunks kept for a retry, or waiting for the connection. */
  private body: Buffer[] = [];
  private bodyBytes = 0;
  private replayable = true;
  private requestComplete = false;
  private responseStarted = false;
  private responseHead: ResponseHead | null = null;
  private closeDownstream = false;
  private status = 0;
  private readonly flags: ResponseFlag[] = [];
  private requestBytes = 0;
  private responseBytes = 0;
  private done = false;
  private timeout: NodeJS.Timeout | null = null;
  /** The current attempt's own timeout (the route's per-try timeout). */
  private tryTimer: NodeJS.Timeout | null = null;
  /** A fault delay or a retry's backoff, before the next attempt. */
  private retryTimer: NodeJS.Timeout | null = null;
  private upgraded = false;
  private downstreamPaused = false;

  constructor(
    private readonly down: Http1Downstream,
    private readonly head: RequestHead,
    plan: ExchangePlan | LocalReply,
  ) {
    this.plan = plan;
    if (plan.kind === 'local') {
      this.flags.push(...plan.flags);
      this.status = plan.status;
      return;
    }
    if (plan.delayMs !== undefined && plan.delayMs > 0) {
      // The fault filter holds the request before the router: the route's timeout starts after.
      this.flags.push('DI');
      this.retryTimer = setTimeout(() => {
        this.retryTimer = null;
        this.start(plan);
      }, plan.delayMs);
      return;
    }
    this.start(plan);
  }

  private start(plan: ExchangePlan): void {
    if (this.done) return;
    if (plan.timeoutMs !== null && plan.timeoutMs > 0) {
      this.timeout = setTimeout(() => this.onTimeout(), plan.timeoutMs);
    }
    this.attempt();
  }

  record(): ExchangeRecord {
    return {
      head: this.head,
      plan: this.plan,
      endpoint: this.endpoint,
      status: this.status,
      flags: this.flags,
      startNs: this.startNs,
      durationMs: Number(process.hrtime.bigint() - this.startNs) / 1e6,
      requestBytes: this.requestBytes,
      responseBytes: this.responseBytes,
      attempts: this.attempts,
    };
  }

  // --- the request, from the downstream parser --------------------------------------------

  requestBody(chunk: Buffer): void {
    this.requestBytes += chunk.length;
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
    if (this.plan.kind === 'local') this.finishLocal(this.plan);
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
    const plan = this.plan as ExchangePlan;
    const endpoint = plan.pick(this.tried);
    if (endpoint === null) {
      this.fail(503, 'no healthy upstream', this.attempts === 0 ? 'UH' : 'URX');
      return;
    }
    this.attempts++;
    this.endpoint = endpoint;
    this.tried.add(endpoint);
    endpoint.active++;
    endpoint.attempts++;
    this.attemptOpen = true;
    const perTry = plan.retries.perTryTimeoutMs;
    if (perTry !== undefined && perTry > 0) {
      this.tryTimer = setTimeout(() => this.onTryTimeout(), perTry);
    }
    const pooled = this.down.pool.take(endpoint.key);
    if (pooled !== null) {
      this.send(pooled, true);
      return;
    }
    this.cancelDial = dial(
      { endpoint, alpn: plan.alpn, tls: plan.tls, connectTimeoutMs: plan.connectTimeoutMs },
      (err, socket) => {
        this.cancelDial = null;
        if (this.done) {
          socket?.destroy();
          return;
        }
        if (err !== null || socket === null) {
          const kind = (err as DialFailure).kind;
          this.attemptFailed(kind === 'connect-failure' ? 'connect-failure' : 'tls', err, 0);
          return;
        }
        this.send(this.down.pool.adopt(socket, endpoint.key), false);
      },
    );
  }

  /** The current attempt is over: it no longer counts as in flight. */
  private closeAttempt(outcome: AttemptOutcome): void {
    if (this.tryTimer !== null) {
      clearTimeout(this.tryTimer);
      this.tryTimer = null;
    }
    if (!this.attemptOpen) return;
    this.attemptOpen = false;
    const endpoint = this.endpoint as UpstreamEndpoint;
    endpoint.active--;
    if (outcome.kind === 'failure') endpoint.failures++;
    (this.plan as ExchangePlan).onAttempt?.(endpoint, outcome);
  }

  private send(up: UpstreamConnection, reused: boolean): void {
    const plan = this.plan as ExchangePlan;
    const endpoint = this.endpoint as UpstreamEndpoint;
    this.upstream = up;
    this.reusedConnection = reused;
    up.lease(this);
    up.parser.requestMethod = this.head.method;
    const h = this.head;
    let add = plan.addHeaders;
    if (
      (endpoint.identity !== null && plan.addHeadersMeshed !== undefined) ||
      plan.attemptCountHeader
    ) {
      const lines = [...plan.addHeaders];
      if (endpoint.identity !== null && plan.addHeadersMeshed !== undefined)
        lines.push(...plan.addHeadersMeshed);
      if (plan.attemptCountHeader) lines.push('x-envoy-attempt-count', String(this.attempts));
      add = lines;
    }
    const connection = h.upgrade !== null ? 'upgrade' : h.versionMinor === 0 ? 'keep-alive' : null;
    const text =
      `${h.method} ${plan.target ?? h.target} HTTP/1.${h.versionMinor}\r\n` +
      forwardHeaderLines(h.headers, {
        remove: plan.removeHeaders,
        add,
        connection,
        upgrade: h.upgrade,
      }) +
      '\r\n';
    const socket = up.socket;
    socket.cork();
    socket.write(text, 'latin1');
    for (const chunk of this.body) socket.write(chunk);
    socket.uncork();
    if (!this.replayable) this.body = [];
    this.resumeDownstream();
    if (socket.writableNeedDrain) this.backpressure(up);
  }

  private attemptFailed(
    reason: 'connect-failure' | 'reset' | 'timeout' | 'tls',
    err: Error | null,
    received: number,
  ): void {
    const plan = this.plan as ExchangePlan;
    const endpoint = this.endpoint;
    this.closeAttempt(
      err === null ? { kind: 'failure', reason } : { kind: 'failure', reason, detail: err.message },
    );
    this.upstream = null;
    const retryOn = plan.retries.retryOn;
    const any = (...conds: string[]): boolean => conds.some((c) => retryOn.includes(c));
    const condition =
      reason === 'connect-failure' || reason === 'tls'
        ? any('connect-failure', '5xx', 'gateway-error')
        : reason === 'reset'
          ? any('reset', '5xx', 'gateway-error')
          : any('5xx', 'gateway-error', 'reset');
    // A request that failed on a reused keep-alive connection before any byte came back may
    // have met a connection the peer was closing: it is retried once on a new connection.
    const stale =
      reason === 'reset' &&
      this.reusedConnection &&
      received === 0 &&
      isIdempotent(this.head.method);
    if (!this.responseStarted && this.replayable) {
      if (stale) {
        if (endpoint !== null) this.tried.delete(endpoint);
        this.reusedConnection = false;
        this.attempt();
        return;
      }
      if (condition && this.attempts <= plan.retries.attempts && this.mayRetry(plan)) {
        this.reusedConnection = false;
        this.retryAfterBackoff(plan);
        return;
      }
    }
    const flag: ResponseFlag = reason === 'reset' ? 'UC' : reason === 'timeout' ? 'UT' : 'UF';
    if (this.attempts > 1 && condition) this.flags.push('URX');
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
          : 'connection failure';
    const detail = err !== null && reason === 'tls' ? `, ${err.message}` : '';
    if (reason === 'timeout') this.fail(504, 'upstream request timeout', flag);
    else
      this.fail(
        503,
        `upstream connect error or disconnect/reset before headers. reset reason: ${why}${detail}`,
        flag,
      );
  }

  /** The retry budget's word (a retry it refuses is not made: the failure goes to the client). */
  private mayRetry(plan: ExchangePlan): boolean {
    return plan.canRetry?.() ?? true;
  }

  /** Envoy's backoff: a random wait up to base x 2^(retries so far - 1), capped at 10 x base. */
  private retryAfterBackoff(plan: ExchangePlan): void {
    const base = plan.retries.backoffBaseMs ?? 25;
    const ceiling = Math.min(base * 2 ** Math.max(0, this.attempts - 1), base * 10);
    const wait = Math.floor(Math.random() * ceiling);
    if (wait <= 0) {
      this.attempt();
      return;
    }
    this.retryTimer = setTimeout(() => {
      this.retryTimer = null;
      this.attempt();
    }, wait);
  }

  /** The current attempt ran out of its per-try time: it fails as a timeout (maybe retried). */
  private onTryTimeout(): void {
    this.tryTimer = null;
    if (this.done || this.responseStarted || !this.attemptOpen) return;
    this.cancelDial?.();
    this.cancelDial = null;
    const up = this.upstream;
    this.upstream = null;
    up?.discard();
    this.attemptFailed('timeout', null, 0);
  }

  private fail(status: number, text: string, flag: ResponseFlag): void {
    if (this.done) return;
    this.flags.push(flag);
    this.clearTimeout();
    this.status = status;
    this.done = true;
    this.resumeDownstream();
    const close = this.head.close || !this.requestComplete || this.down.closing;
    this.responseBytes = writeLocal(
      this.down.socket,
      localReply(status, text),
      close,
      this.head.method === 'HEAD',
    );
    this.down.exchangeDone(this, !close);
  }

  private onTimeout(): void {
    this.timeout = null;
    if (this.done) return;
    if (this.responseStarted) {
      this.flags.push('UT');
      this.abort(null);
      return;
    }
    this.cancelDial?.();
    this.cancelDial = null;
    const up = this.upstream;
    this.upstream = null;
    up?.discard();
    this.closeAttempt({ kind: 'failure', reason: 'timeout' });
    this.fail(504, 'upstream request timeout', 'UT');
  }

  private clearTimeout(): void {
    if (this.timeout !== null) {
      clearTimeout(this.timeout);
      this.timeout = null;
    }
    if (this.retryTimer !== null) {
      clearTimeout(this.retryTimer);
      this.retryTimer = null;
    }
  }

  // --- the response, from the upstream connection -----------------------------------------

  onHead(head: ResponseHead): void {
    const plan = this.plan as ExchangePlan;
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
      this.attempts <= plan.retries.attempts &&
      retriableStatus(plan.retries, status) &&
      this.mayRetry(plan)
    ) {
      this.closeAttempt({ kind: 'response', status });
      this.upstream = null;
      up.discard();
      this.retryAfterBackoff(plan);
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
    if (!this.down.closed) this.down.socket.write(responseHeadText(head, connection), 'latin1');
  }

  onBody(chunk: Buffer): void {
    this.responseBytes += chunk.length;
    if (this.down.closed) return;
    if (!this.down.socket.write(chunk)) {
      const up = this.upstream;
      if (up !== null) {
        up.socket.pause();
        this.down.socket.once('drain', () => up.socket.resume());
      }
    }
  }

  onMessageEnd(): void {
    if (this.upgraded) {
      this.startTunnel();
      return;
    }
    if (this.responseHead === null) return; // the end of a 1xx
    const up = this.upstream as UpstreamConnection;
    const plan = this.plan as ExchangePlan;
    this.closeAttempt({ kind: 'response', status: this.status });
    this.clearTimeout();
    this.upstream = null;
    this.done = true;
    // The connection is reusable when the server did not close it and it got the whole request.
    const spent =
      plan.maxRequestsPerConnection !== undefined && up.requests >= plan.maxRequestsPerConnection;
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
    this.attemptFailed('reset', err, received);
  }

  // --- ends -------------------------------------------------------------------------------

  /** The client went away. */
  downstreamClosed(): void {
    if (this.done) return;
    this.abort('DC');
  }

  abort(flag: ResponseFlag | null): void {
    if (this.done) return;
    this.done = true;
    if (flag !== null) this.flags.push(flag);
    if (flag === 'DC' && !this.responseStarted) this.status = 0;
    this.clearTimeout();
    this.cancelDial?.();
    this.cancelDial = null;
    const up = this.upstream;
    this.upstream = null;
    up?.discard();
    this.closeAttempt({ kind: 'failure', reason: 'reset' });
    this.down.socket.destroy();
    this.down.exchangeDone(this, false);
  }

  private startTunnel(): void {
    const up = this.upstream as UpstreamConnection;
    this.clearTimeout();
    this.done = true;
    this.upstream = null;
    this.closeAttempt({ kind: 'response', status: 101 });
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
    pipeBoth(downSocket, upSocket);
    this.down.recordTunnel(this);
  }
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

/** Whether a response status calls for a retry under a policy (Envoy's retry_on). */
export function retriableStatus(p: RetryPolicy, status: number): boolean {
  for (const cond of p.retryOn) {
    switch (cond) {
      case '5xx':
        if (status >= 500) return true;
        break;
      case 'gateway-error':
        if (status === 502 || status === 503 || status === 504) return true;
        break;
      case 'retriable-4xx':
        if (status === 409) return true;
        break;
      case 'retriable-status-codes':
        if (p.retriableStatusCodes?.includes(status) === true) return true;
        break;
      default:
        break;
    }
  }
  return false;
}

function responseHeadText(head: ResponseHead, connection: string | null, upgrade = false): string {
  return (
    `HTTP/1.1 ${head.statusCode} ${head.reason}\r\n` +
    forwardHeaderLines(head.headers, {
      remove: RESPONSE_REMOVE,
      connection,
      upgrade: upgrade ? head.upgrade : null,
    }) +
    '\r\n'
  );
}

/** Bytes both ways between two sockets, with half-close, until both are done. */
export function pipeBoth(a: net.Socket, b: net.Socket): void {
  a.pipe(b);
  b.pipe(a);
  const destroyBoth = (): void => {
    a.destroy();
    b.destroy();
  };
  a.on('error', destroyBoth);
  b.on('error', destroyBoth);
  a.on('close', () => {
    if (!b.destroyed && b.writableEnded && b.readableEnded) b.destroy();
  });
  b.on('close', () => {
    if (!a.destroyed && a.writableEnded && a.readableEnded) a.destroy();
  });
}
