// HTTP/2 and gRPC through the proxy, on node:http2: one server session per client connection,
// one upstream stream per request on a shared, multiplexed session per endpoint (mutual TLS with
// ALPN `mooring/h2` to a sidecar, h2c to an app). Headers, DATA and trailers pass through: a
// gRPC status in the trailers, or alone in a trailers-only response, reaches the client as sent.
// Decisions (where a stream goes, which headers change, retries) are the same plans as HTTP/1.1.

import http2 from 'node:http2';
import type net from 'node:net';
import { Duplex } from 'node:stream';
import type { UpstreamEndpoint } from '../core/endpoints';
import type { MooringAlpn } from '../core/identity';
import type { RequestView } from '../core/route';
import { dial, type DialFailure } from '../l4/dial';
import type { TlsContexts } from '../l4/tls';
import {
  retriableStatus,
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

/** One multiplexed session per upstream endpoint. */
export class H2SessionPool {
  private readonly sessions = new Map<string, http2.ClientHttp2Session>();
  private readonly waiting = new Map<
    string,
    ((err: DialFailure | null, s: http2.ClientHttp2Session | null) => void)[]
  >();

  get(
    endpoint: UpstreamEndpoint,
    alpn: MooringAlpn,
    tls: TlsContexts | null,
    connectTimeoutMs: number,
    cb: (err: DialFailure | null, session: http2.ClientHttp2Session | null) => void,
  ): void {
    const key = endpoint.key;
    const existing = this.sessions.get(key);
    if (existing !== undefined && !existing.closed && !existing.destroyed) {
      cb(null, existing);
      return;
    }
    const queue = this.waiting.get(key);
    if (queue !== undefined) {
      queue.push(cb);
      return;
    }
    this.waiting.set(key, [cb]);
    dial({ endpoint, alpn, tls, connectTimeoutMs }, (err, socket) => {
      const callbacks = this.waiting.get(key) ?? [];
      this.waiting.delete(key);
      if (err !== null || socket === null) {
        for (const c of callbacks) c(err, null);
        return;
      }
      const scheme = endpoint.identity === null ? 'http' : 'https';
      const host = endpoint.address.includes(':') ? `[${endpoint.address}]` : endpoint.address;
      const session = http2.connect(`${scheme}://${host}:${endpoint.port}`, {
        createConnection: () => socket,
        settings: { enablePush: false },
      });
      const forget = (): void => {
        if (this.sessions.get(key) === session) this.sessions.delete(key);
      };
      session.on('close', forget);
      session.on('goaway', forget);
      session.on('error', () => {
        forget();
        session.destroy();
      });
      session.unref();
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

// ---------------------------------------------------------------------------------------------

/** Serves HTTP/2 on a client connection. `first`: bytes already read from it (sniffing). */
export function serveH2(
  socket: net.Socket,
  first: Buffer | null,
  handler: H2Handler,
  pool: H2SessionPool,
  info: unknown,
): http2.ServerHttp2Session {
  const transport = first !== null && first.length > 0 ? prepend(socket, first) : socket;
  const session = http2.performServerHandshake(transport, { settings: { enablePush: false } });
  session.on('error', () => session.destroy());
  session.on('stream', (stream, headers) => {
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

const RETRY_BUFFER_BYTES = 64 * 1024;

class H2Exchange {
  private readonly start = process.hrtime.bigint();
  private readonly tried = new Set<UpstreamEndpoint>();
  private endpoint: UpstreamEndpoint | null = null;
  private attemptOpen = false;
  private attempts = 0;
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
  private timer: NodeJS.Timeout | null = null;
  /** The current attempt's per-try timeout. */
  private tryTimer: NodeJS.Timeout | null = null;
  /** A fault delay before the first attempt. */
  private delayTimer: NodeJS.Timeout | null = null;
  private trailers: http2.IncomingHttpHeaders | null = null;
  private readonly grpc: boolean;

  constructor(
    private readonly down: http2.ServerHttp2Stream,
    private readonly headers: http2.IncomingHttpHeaders,
    private readonly plan: ExchangePlan | LocalReply,
    private readonly handler: H2Handler,
    private readonly pool: H2SessionPool,
    private readonly info: unknown,
  ) {
    const ct = headers['content-type'];
    this.grpc = typeof ct === 'string' && ct.startsWith('application/grpc');
    down.on('data', (chunk: Buffer) => this.onRequestData(chunk));
    down.on('end', () => this.onRequestEnd());
    down.on('close', () => this.onDownstreamClose());
    down.on('error', () => {});
    if (plan.kind === 'local') {
      this.flags.push(...plan.flags);
      this.localReply(plan.status, plan.body);
      return;
    }
    if (plan.delayMs !== undefined && plan.delayMs > 0) {
      // The fault filter holds the request before the router: the route's timeout starts after.
      this.flags.push('DI');
      this.delayTimer = setTimeout(() => {
        this.delayTimer = null;
        this.begin(plan);
      }, plan.delayMs);
      return;
    }
    this.begin(plan);
  }

  private begin(plan: ExchangePlan): void {
    if (this.done) return;
    if (plan.timeoutMs !== null && plan.timeoutMs > 0) {
      this.timer = setTimeout(() => this.onTimeout(), plan.timeoutMs);
    }
    this.attempt();
  }

  private onRequestData(chunk: Buffer): void {
    this.requestBytes += chunk.length;
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
    const up = this.upstream;
    if (up !== null && !up.destroyed) up.end();
  }

  private attempt(): void {
    if (this.done) return;
    const plan = this.plan as ExchangePlan;
    const endpoint = plan.pick(this.tried);
    if (endpoint === null) {
      this.fail(503, 'no healthy upstream', this.attempts === 0 ? 'UH' : 'URX');
      return;
    }
    const attempt = ++this.attempts;
    this.endpoint = endpoint;
    this.tried.add(endpoint);
    endpoint.active++;
    endpoint.attempts++;
    this.attemptOpen = true;
    const perTry = plan.retries.perTryTimeoutMs;
    if (perTry !== undefined && perTry > 0) {
      this.tryTimer = setTimeout(() => this.onTryTimeout(), perTry);
    }
    this.pool.get(endpoint, plan.alpn, plan.tls, plan.connectTimeoutMs, (err, session) => {
      // Done, or this attempt already ended (its per-try timeout) and another one runs.
      if (this.done || attempt !== this.attempts || !this.attemptOpen) return;
      if (err !== null || session === null) {
        this.failedAttempt(err?.kind === 'connect-failure' ? 'connect-failure' : 'tls', err);
        return;
      }
      this.send(session);
    });
  }

  private closeAttempt(status: number | null, failure?: AttemptOutcome): void {
    if (this.tryTimer !== null) {
      clearTimeout(this.tryTimer);
      this.tryTimer = null;
    }
    if (!this.attemptOpen) return;
    this.attemptOpen = false;
    const endpoint = this.endpoint as UpstreamEndpoint;
    endpoint.active--;
    if (failure !== undefined || status === null) endpoint.failures++;
    (this.plan as ExchangePlan).onAttempt?.(
      endpoint,
      failure ??
        (status === null ? { kind: 'failure', reason: 'reset' } : { kind: 'response', status }),
    );
  }

  private send(session: http2.ClientHttp2Session): void {
    const plan = this.plan as ExchangePlan;
    const endpoint = this.endpoint as UpstreamEndpoint;
    const out: http2.OutgoingHttpHeaders = {};
    for (const [name, value] of Object.entries(this.headers)) {
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
    if (endpoint.identity !== null && plan.addHeadersMeshed !== undefined)
      add(plan.addHeadersMeshed);
    if (plan.attemptCountHeader) out['x-envoy-attempt-count'] = String(this.attempts);
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
    const plan = this.plan as ExchangePlan;
    const status = Number(headers[':status'] ?? 0);
    const endStream = (flags & END_STREAM) !== 0;
    const grpcStatus = headers['grpc-status'];
    // A trailers-only gRPC answer with a retriable status, or a retriable HTTP status: again.
    if (
      !this.responded &&
      this.replayable &&
      this.requestEnded &&
      this.attempts <= plan.retries.attempts
    ) {
      const grpcRetry =
        grpcStatus !== undefined && grpcRetriable(plan.retries.retryOn, String(grpcStatus));
      if ((grpcRetry || retriableStatus(plan.retries, status)) && (plan.canRetry?.() ?? true)) {
        this.closeAttempt(status);
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
    for (const [name, value] of Object.entries(headers)) {
      if (value === undefined || CONNECTION_SPECIFIC.has(name)) continue;
      out[name] = value;
    }
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
      this.closeAttempt(this.status);
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
  private onTryTimeout(): void {
    this.tryTimer = null;
    if (this.done || this.responded || !this.attemptOpen) return;
    const up = this.upstream;
    this.upstream = null;
    if (up !== null && !up.destroyed) up.close(NGHTTP2_CANCEL);
    this.failedAttempt('timeout', null);
  }

  private failedAttempt(
    reason: 'connect-failure' | 'tls' | 'reset' | 'refused-stream' | 'timeout',
    err: Error | null,
  ): void {
    const plan = this.plan as ExchangePlan;
    this.closeAttempt(
      null,
      err === null ? { kind: 'failure', reason } : { kind: 'failure', reason, detail: err.message },
    );
    this.upstream = null;
    const retryOn = plan.retries.retryOn;
    const any = (...c: string[]): boolean => c.some((x) => retryOn.includes(x));
    const condition =
      reason === 'connect-failure' || reason === 'tls'
        ? any('connect-failure', '5xx', 'gateway-error')
        : reason === 'refused-stream'
          ? any('refused-stream', '5xx', 'reset')
          : any('reset', '5xx', 'gateway-error');
    if (
      !this.responded &&
      this.replayable &&
      condition &&
      this.attempts <= plan.retries.attempts &&
      (plan.canRetry?.() ?? true)
    ) {
      this.attempt();
      return;
    }
    if (this.attempts > 1 && condition) this.flags.push('URX');
    if (reason === 'timeout') {
      this.fail(504, 'upstream request timeout', 'UT');
      return;
    }
    const flag: ResponseFlag = reason === 'reset' || reason === 'refused-stream' ? 'UC' : 'UF';
    const why =
      reason === 'connect-failure'
        ? 'connection failure'
        : reason === 'tls'
          ? `TLS error${err !== null ? `, ${err.message}` : ''}`
          : reason === 'refused-stream'
            ? 'remote refused stream reset'
            : 'remote reset';
    this.fail(
      503,
      `upstream connect error or disconnect/reset before headers. reset reason: ${why}`,
      flag,
    );
  }

  private onTimeout(): void {
    this.timer = null;
    if (this.done) return;
    this.flags.push('UT');
    const up = this.upstream;
    this.upstream = null;
    up?.close(NGHTTP2_CANCEL);
    this.closeAttempt(null);
    if (this.responded) {
      if (!this.down.destroyed) this.down.close(NGHTTP2_INTERNAL_ERROR);
      this.finish();
      return;
    }
    this.localReply(504, 'upstream request timeout');
  }

  private fail(status: number, text: string, flag: ResponseFlag): void {
    this.flags.push(flag);
    this.localReply(status, text);
  }

  /** Envoy's local replies; for gRPC, the status in a trailers-only answer (UNAVAILABLE, ...). */
  private localReply(status: number, text: string): void {
    if (this.done) return;
    this.status = status;
    if (!this.down.destroyed && !this.down.headersSent) {
      if (this.grpc) {
        this.grpcStatus = status === 504 ? '4' : status === 404 ? '12' : '14';
        this.down.respond(
          {
            ':status': 200,
            'content-type': 'application/grpc',
            'grpc-status': this.grpcStatus,
            'grpc-message': text,
          },
          { endStream: true },
        );
      } else {
        this.down.respond({
          ':status': status,
          'content-type': 'text/plain',
          'content-length': Buffer.byteLength(text),
        });
        this.down.end(text);
        this.responseBytes = Buffer.byteLength(text);
      }
    }
    this.finish();
  }

  private onDownstreamClose(): void {
    if (this.done) {
      return;
    }
    if (!this.responded || !this.down.writableFinished) {
      this.flags.push('DC');
      const up = this.upstream;
      this.upstream = null;
      up?.close(NGHTTP2_CANCEL);
      this.closeAttempt(null);
    } else {
      this.closeAttempt(this.status);
    }
    this.finish();
  }

  private finish(): void {
    if (this.done) return;
    this.done = true;
    if (this.timer !== null) clearTimeout(this.timer);
    if (this.tryTimer !== null) clearTimeout(this.tryTimer);
    if (this.delayTimer !== null) clearTimeout(this.delayTimer);
    this.handler.finished(
      {
        headers: this.headers,
        plan: this.plan,
        endpoint: this.endpoint,
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

/** Envoy's gRPC retry conditions on the `grpc-status` of a trailers-only answer. */
export function grpcRetriable(retryOn: readonly string[], status: string): boolean {
  switch (status) {
    case '1':
      return retryOn.includes('cancelled');
    case '4':
      return retryOn.includes('deadline-exceeded');
    case '8':
      return retryOn.includes('resource-exhausted');
    case '13':
      return retryOn.includes('internal');
    case '14':
      return retryOn.includes('unavailable');
    default:
      return false;
  }
}
