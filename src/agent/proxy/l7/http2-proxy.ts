// HTTP/2 and gRPC through the proxy, on node:http2: one server session per client connection,
// one upstream stream per request on a shared, multiplexed session per endpoint (mutual TLS with
// ALPN `mooring/h2` to a sidecar, h2c to an app). Headers, DATA and trailers pass through: a
// gRPC status in the trailers, or alone in a trailers-only response, reaches the client as sent.
// Decisions (where a stream goes, which headers change, retries) are the same plans as HTTP/1.1.

import http2 from 'node:http2';
import type net from 'node:net';
import { Duplex } from 'node:stream';
import { OVERLOADED_HEADER } from '../core/circuit-breaker';
import type { UpstreamEndpoint } from '../core/endpoints';
import { grpcRetriable, retriableFailure, retriableStatus } from '../core/retry';
import type { RequestView } from '../core/route';
import { ExchangePolicy, failureFlag, resetReply } from './exchange-policy';
import type { H2SessionPool } from './h2-sessions';
import { H2Mirror, mirrorOptions, shadowHost, type MirrorTarget } from './mirror';
import {
  RETRY_BUFFER_BYTES,
  type AttemptOutcome,
  type ExchangePlan,
  type LocalReply,
  type ResponseFlag,
} from './http1-proxy';

const { NGHTTP2_REFUSED_STREAM, NGHTTP2_CANCEL, NGHTTP2_INTERNAL_ERROR } = http2.constants;
const END_STREAM = 0x1;

/** Headers a proxy never forwards in HTTP/2 (connection-specific, RFC 9113 8.2.2). */
const CONNECTION_SPECIFIC = new Set([
  'connection',
  'keep-alive',
  'proxy-connection',
  'transfer-encoding',
  'upgrade',
]);

export interface H2Record {
  readonly headers: http2.IncomingHttpHeaders;
  readonly plan: ExchangePlan | LocalReply;
  readonly endpoint: UpstreamEndpoint | null;
  readonly status: number;
  /** The gRPC status (trailers, or a trailers-only response), '' when not gRPC. */
  readonly grpcStatus: string;
  readonly grpc: boolean;
  readonly flags: readonly ResponseFlag[];
  readonly durationMs: number;
  readonly requestBytes: number;
  readonly responseBytes: number;
}

export interface H2Handler {
  plan(
    view: RequestView,
    headers: http2.IncomingHttpHeaders,
    info: unknown,
  ): ExchangePlan | LocalReply;
  finished(record: H2Record, info: unknown): void;
}

/** A view of HTTP/2 request headers for the routing core. */
export function h2RequestView(h: http2.IncomingHttpHeaders): RequestView {
  return {
    method: String(h[':method'] ?? 'GET'),
    path: String(h[':path'] ?? '/'),
    header: (name) => {
      const v = name === 'host' ? (h[':authority'] ?? h.host) : h[name];
      if (v === undefined) return null;
      return Array.isArray(v) ? v.join(',') : String(v);
    },
  };
}

// ---------------------------------------------------------------------------------------------

/** Adds `lines` (name, value...) to HTTP/2 headers: a name already there gets one more value. */
function addHeaderLines(out: http2.OutgoingHttpHeaders, lines: readonly string[]): void {
  for (let i = 0; i < lines.length; i += 2) {
    const name = lines[i] as string;
    const value = lines[i + 1] as string;
    const had = out[name];
    out[name] = had === undefined ? value : [...(Array.isArray(had) ? had : [String(had)]), value];
  }
}

/**
 * The headers of a request as sent upstream: the plan's changes (and `only`, the lines for this
 * endpoint: meshed or not), connection-specific headers dropped.
 */
function upstreamHeaders(
  headers: http2.IncomingHttpHeaders,
  plan: ExchangePlan,
  only: readonly string[] | undefined,
): http2.OutgoingHttpHeaders {
  const out: http2.OutgoingHttpHeaders = {};
  for (const [name, value] of Object.entries(headers)) {
    if (value === undefined || CONNECTION_SPECIFIC.has(name) || plan.removeHeaders.has(name))
      continue;
    if (name === 'te' && value !== 'trailers') continue;
    out[name] = value;
  }
  const add = (lines: readonly string[]): void => {
    for (let i = 0; i < lines.length; i += 2) {
      const name = (lines[i] as string).toLowerCase();
      // An authority rewrite comes as `host`: HTTP/2 carries it in :authority.
      out[name === 'host' ? ':authority' : name] = lines[i + 1];
    }
  };
  if (plan.target !== undefined) out[':path'] = plan.target;
  add(plan.addHeaders);
  if (only !== undefined) add(only);
  return out;
}

/** A copy of a request to a mirror: its headers as sent upstream, the authority with -shadow. */
function h2Mirror(
  target: MirrorTarget,
  headers: http2.IncomingHttpHeaders,
  plan: ExchangePlan,
  pool: H2SessionPool,
): H2Mirror {
  const meshed = target.endpoint.identity !== null;
  const out = upstreamHeaders(
    headers,
    plan,
    meshed ? target.addHeadersMeshed : plan.addHeadersPlain,
  );
  out[':authority'] = shadowHost(String(out[':authority'] ?? headers.host ?? ''));
  delete out.host;
  return new H2Mirror(target, out, pool, mirrorOptions(plan));
}

/** Serves HTTP/2 on a client connection. `first`: bytes already read from it (sniffing). */
export function serveH2(
  socket: net.Socket,
  first: Buffer | null,
  handler: H2Handler,
  pool: H2SessionPool,
  info: unknown,
  /** No stream open and no frame for this long: the session is closed with a GOAWAY (0: never). */
  idleTimeoutMs: number,
): http2.ServerHttp2Session {
  const transport = first !== null && first.length > 0 ? prepend(socket, first) : socket;
  const session = http2.performServerHandshake(transport, { settings: { enablePush: false } });
  session.on('error', () => session.destroy());
  let open = 0;
  if (idleTimeoutMs > 0) {
    // Envoy's idle_timeout: a session quiet for that long, with no stream in flight.
    // (A callback given to setTimeout would be called once only: the listener stays.)
    session.setTimeout(idleTimeoutMs);
    session.on('timeout', () => {
      if (open === 0) session.close();
    });
  }
  session.on('stream', (stream, headers) => {
    open++;
    stream.once('close', () => open--);
    new H2Exchange(
      stream,
      headers,
      handler.plan(h2RequestView(headers), headers, info),
      handler,
      pool,
      info,
    );
  });
  socket.on('close', () => session.destroy());
  return session;
}

/**
 * A stream that yields `first` and then the socket's bytes: node:http2 reads from the socket's
 * handle and cannot see bytes already read, so a sniffed connection goes through this wrapper.
 */
function prepend(socket: net.Socket, first: Buffer): Duplex {
  const duplex = new Duplex({
    read() {
      socket.resume();
    },
    write(chunk: Buffer, _enc, cb) {
      socket.write(chunk, cb);
    },
    final(cb) {
      socket.end();
      cb();
    },
    destroy(err, cb) {
      socket.destroy();
      cb(err);
    },
  });
  duplex.push(first);
  socket.on('data', (d: Buffer) => {
    if (!duplex.push(d)) socket.pause();
  });
  socket.on('end', () => duplex.push(null));
  socket.on('close', () => duplex.destroy());
  socket.on('error', (err) => duplex.destroy(err));
  socket.resume();
  return duplex;
}

const RESET: AttemptOutcome = Object.freeze({ kind: 'failure', reason: 'reset' });

class H2Exchange {
  private readonly start = process.hrtime.bigint();
  /** The route's policies around the request (null for a local answer). */
  private readonly policy: ExchangePolicy | null;
  private upstream: http2.ClientHttp2Stream | null = null;
  private readonly body: Buffer[] = [];
  private bodyBytes = 0;
  private replayable = true;
  private requestEnded = false;
  private responded = false;
  private status = 0;
  private grpcStatus = '';
  private readonly flags: ResponseFlag[] = [];
  private requestBytes = 0;
  private responseBytes = 0;
  private done = false;
  private trailers: http2.IncomingHttpHeaders | null = null;
  private readonly grpc: boolean;
  /** The copies of this request being sent (a route's mirrors), or null. */
  private readonly mirrors: H2Mirror[] | null;

  constructor(
    private readonly down: http2.ServerHttp2Stream,
    private readonly headers: http2.IncomingHttpHeaders,
    private readonly plan: ExchangePlan | LocalReply,
    private readonly handler: H2Handler,
    private readonly pool: H2SessionPool,
    private readonly info: unknown,
  ) {
    this.policy = plan.kind === 'local' ? null : new ExchangePolicy(plan, this);
    const ct = headers['content-type'];
    this.grpc = typeof ct === 'string' && ct.startsWith('application/grpc');
    this.mirrors =
      plan.kind === 'forward' && plan.mirrors !== undefined
        ? plan.mirrors.map((target) => h2Mirror(target, headers, plan, pool))
        : null;
    down.on('data', (chunk: Buffer) => this.onRequestData(chunk));
    down.on('end', () => this.onRequestEnd());
    down.on('close', () => this.onDownstreamClose());
    down.on('error', () => {});
    if (plan.kind === 'local') {
      this.flags.push(...plan.flags);
      this.localReply(plan.status, plan.body, plan.headers, plan.grpcStatus);
      return;
    }
    this.policy?.begin(
      this.flags,
      () => this.done,
      () => this.attempt(),
    );
  }

  private onRequestData(chunk: Buffer): void {
    this.requestBytes += chunk.length;
    const mirrors = this.mirrors;
    if (mirrors !== null) for (const m of mirrors) m.write(chunk);
    if (this.done) return;
    if (this.replayable || this.upstream === null) {
      this.body.push(chunk);
      this.bodyBytes += chunk.length;
      if (this.bodyBytes > RETRY_BUFFER_BYTES) this.replayable = false;
    }
    const up = this.upstream;
    if (up !== null && !up.destroyed) {
      if (!up.write(chunk)) {
        this.down.pause();
        up.once('drain', () => this.down.resume());
      }
    }
  }

  private onRequestEnd(): void {
    this.requestEnded = true;
    const mirrors = this.mirrors;
    if (mirrors !== null) for (const m of mirrors) m.end();
    const up = this.upstream;
    if (up !== null && !up.destroyed) up.end();
  }

  private attempt(): void {
    if (this.done) return;
    const policy = this.policy as ExchangePolicy;
    const plan = policy.plan;
    const endpoint = policy.next();
    if (endpoint === null) return;
    const breaker = plan.breaker ?? null;
    // No session yet and no room to wait for it: answered at once.
    const ready = breaker === null || this.pool.has(breaker.poolKey(endpoint.key));
    if (!policy.admit(endpoint, ready)) return;
    const attempt = policy.open(endpoint);
    this.pool.get(
      endpoint,
      {
        alpn: plan.alpn,
        tls: plan.tls,
        connectTimeoutMs: plan.connectTimeoutMs,
        breaker,
        maxAgeMs: plan.maxConnectionDurationMs,
        idleTimeoutMs: plan.upstreamIdleTimeoutMs,
        tune: plan.tune,
      },
      (err, session) => {
        // Done, or this attempt already ended (its per-try timeout) and another one runs.
        if (this.done || attempt !== policy.attempts || !policy.attemptOpen) return;
        if (err !== null || session === null) {
          this.failedAttempt(err?.kind === 'connect-failure' ? 'connect-failure' : 'tls', err);
          return;
        }
        this.send(session);
      },
    );
  }

  private send(session: http2.ClientHttp2Session): void {
    const policy = this.policy as ExchangePolicy;
    const plan = policy.plan;
    const endpoint = policy.endpoint as UpstreamEndpoint;
    const only = endpoint.identity !== null ? plan.addHeadersMeshed : plan.addHeadersPlain;
    const out = upstreamHeaders(this.headers, plan, only);
    if (plan.attemptCountHeader) out['x-envoy-attempt-count'] = String(policy.attempts);
    let up: http2.ClientHttp2Stream;
    try {
      up = session.request(out, { endStream: this.requestEnded && this.body.length === 0 });
    } catch (err) {
      this.failedAttempt('reset', err as Error);
      return;
    }
    this.upstream = up;
    for (const chunk of this.body) up.write(chunk);
    if (!this.replayable) this.body.length = 0;
    if (this.requestEnded && !up.writableEnded) up.end();
    up.on('response', (headers, flags) => this.onResponse(up, headers, flags));
    up.on('trailers', (trailers: http2.IncomingHttpHeaders) => {
      this.trailers = trailers;
      const gs = trailers['grpc-status'];
      if (gs !== undefined) this.grpcStatus = String(gs);
    });
    up.on('data', (chunk: Buffer) => {
      this.responseBytes += chunk.length;
      if (!this.down.destroyed && !this.down.write(chunk)) {
        up.pause();
        this.down.once('drain', () => up.resume());
      }
    });
    up.on('end', () => this.onResponseEnd());
    up.on('close', () => this.onUpstreamClose(up));
    up.on('error', () => {});
  }

  private onResponse(
    up: http2.ClientHttp2Stream,
    headers: http2.IncomingHttpHeaders,
    flags: number,
  ): void {
    if (this.done || up !== this.upstream) return;
    const policy = this.policy as ExchangePolicy;
    const status = Number(headers[':status'] ?? 0);
    const endStream = (flags & END_STREAM) !== 0;
    const grpcStatus = headers['grpc-status'];
    // A trailers-only gRPC answer with a retriable status, or a retriable HTTP status: again.
    if (!this.responded && this.replayable && this.requestEnded) {
      const retries = policy.plan.retries;
      const grpcRetry =
        grpcStatus !== undefined && grpcRetriable(retries.retryOn, String(grpcStatus));
      if ((grpcRetry || retriableStatus(retries, status)) && policy.mayRetry()) {
        policy.close({ kind: 'response', status });
        this.upstream = null;
        up.close(NGHTTP2_CANCEL);
        this.attempt();
        return;
      }
    }
    this.status = status;
    if (grpcStatus !== undefined) this.grpcStatus = String(grpcStatus);
    this.responded = true;
    const out: http2.OutgoingHttpHeaders = {};
    const changes = policy.plan.responseHeaders;
    for (const [name, value] of Object.entries(headers)) {
      if (
        value === undefined ||
        CONNECTION_SPECIFIC.has(name) ||
        changes?.remove.has(name) === true
      )
        continue;
      out[name] = value;
    }
    if (changes !== undefined) addHeaderLines(out, changes.add);
    if (this.down.destroyed) return;
    if (endStream) {
      this.down.respond(out, { endStream: true });
      return;
    }
    this.down.respond(out, { waitForTrailers: true });
    this.down.on('wantTrailers', () => {
      const t: http2.OutgoingHttpHeaders = {};
      for (const [name, value] of Object.entries(this.trailers ?? {})) {
        if (value !== undefined) t[name] = value;
      }
      this.down.sendTrailers(t);
    });
  }

  private onResponseEnd(): void {
    if (this.done) return;
    if (!this.responded) return;
    if (!this.down.destroyed && !this.down.writableEnded) this.down.end();
  }

  private onUpstreamClose(up: http2.ClientHttp2Stream): void {
    if (up !== this.upstream || this.done) return;
    const code = up.rstCode ?? 0;
    if (this.responded) {
      this.policy?.close({ kind: 'response', status: this.status });
      if (code !== 0) {
        this.flags.push('UC');
        if (!this.down.destroyed) this.down.close(code);
      }
      this.finish();
      return;
    }
    // Reset before any response.
    this.failedAttempt(code === NGHTTP2_REFUSED_STREAM ? 'refused-stream' : 'reset', null);
  }

  /** The current attempt ran out of its per-try time: a timeout, retried like a reset. */
  onTryTimeout(): void {
    if (this.done || this.responded || this.policy?.attemptOpen !== true) return;
    const up = this.upstream;
    this.upstream = null;
    if (up !== null && !up.destroyed) up.close(NGHTTP2_CANCEL);
    this.failedAttempt('timeout', null);
  }

  private failedAttempt(
    reason: 'connect-failure' | 'tls' | 'reset' | 'refused-stream' | 'timeout',
    err: Error | null,
  ): void {
    const policy = this.policy as ExchangePolicy;
    policy.close(
      err === null ? { kind: 'failure', reason } : { kind: 'failure', reason, detail: err.message },
    );
    this.upstream = null;
    const condition = retriableFailure(policy.plan.retries.retryOn, reason);
    if (!this.responded && this.replayable && condition && policy.mayRetry()) {
      this.attempt();
      return;
    }
    if (policy.attempts > 1 && condition) this.flags.push('URX');
    if (reason === 'timeout') {
      this.fail(504, 'upstream request timeout', 'UT');
      return;
    }
    const why =
      reason === 'connect-failure'
        ? 'connection failure'
        : reason === 'tls'
          ? `TLS error${err !== null ? `, ${err.message}` : ''}`
          : reason === 'refused-stream'
            ? 'remote refused stream reset'
            : 'remote reset';
    this.fail(503, resetReply(why), failureFlag(reason));
  }

  /** The route timeout passed. */
  onTimeout(): void {
    if (this.done) return;
    this.flags.push('UT');
    const up = this.upstream;
    this.upstream = null;
    up?.close(NGHTTP2_CANCEL);
    this.policy?.close(RESET);
    if (this.responded) {
      if (!this.down.destroyed) this.down.close(NGHTTP2_INTERNAL_ERROR);
      this.finish();
      return;
    }
    this.localReply(504, 'upstream request timeout');
  }

  /** Answers the request from the proxy (an attempt's failure, no endpoint, an overflow). */
  fail(status: number, text: string, flag: ResponseFlag): void {
    this.flags.push(flag);
    // A circuit breaker's overflow says so to the client, as Envoy does.
    this.localReply(status, text, flag === 'UO' ? OVERLOADED_HEADER : undefined);
  }

  /**
   * Envoy's local replies; for gRPC, the status in a trailers-only answer (UNAVAILABLE, ...;
   * PERMISSION_DENIED for an AuthorizationPolicy's 403, UNAUTHENTICATED for a refused JWT's 401).
   */
  private localReply(
    status: number,
    text: string | Buffer,
    headers?: readonly string[],
    grpcStatus?: number,
  ): void {
    if (this.done) return;
    this.status = status;
    if (!this.down.destroyed && !this.down.headersSent) {
      const extra: http2.OutgoingHttpHeaders = {};
      const lines = headers ?? [];
      for (let i = 0; i + 1 < lines.length; i += 2) extra[lines[i] as string] = lines[i + 1];
      if (this.grpc) {
        this.grpcStatus =
          grpcStatus !== undefined
            ? String(grpcStatus)
            : status === 504
              ? '4'
              : status === 404
                ? '12'
                : status === 403
                  ? '7'
                  : status === 401
                    ? '16'
                    : '14';
        this.down.respond(
          {
            ':status': 200,
            'content-type': 'application/grpc',
            'grpc-status': this.grpcStatus,
            'grpc-message': typeof text === 'string' ? text : '',
            ...extra,
          },
          { endStream: true },
        );
      } else {
        this.down.respond({
          ':status': status,
          'content-type': 'text/plain',
          'content-length': Buffer.byteLength(text),
          ...extra,
        });
        this.down.end(text);
        this.responseBytes = Buffer.byteLength(text);
      }
    }
    this.finish();
  }

  private onDownstreamClose(): void {
    const mirrors = this.mirrors;
    if (mirrors !== null) for (const m of mirrors) m.requestOver();
    if (this.done) {
      return;
    }
    if (!this.responded || !this.down.writableFinished) {
      this.flags.push('DC');
      const up = this.upstream;
      this.upstream = null;
      up?.close(NGHTTP2_CANCEL);
      this.policy?.close(RESET);
    } else {
      this.policy?.close({ kind: 'response', status: this.status });
    }
    this.finish();
  }

  private finish(): void {
    if (this.done) return;
    this.done = true;
    this.policy?.clear();
    this.handler.finished(
      {
        headers: this.headers,
        plan: this.plan,
        endpoint: this.policy?.endpoint ?? null,
        status: this.status,
        grpcStatus: this.grpcStatus,
        grpc: this.grpc,
        flags: this.flags,
        durationMs: Number(process.hrtime.bigint() - this.start) / 1e6,
        requestBytes: this.requestBytes,
        responseBytes: this.responseBytes,
      },
      this.info,
    );
  }
}
