// Request mirroring (Istio's `mirror` and `mirrors`, the Gateway API's RequestMirror; Envoy's
// shadowing): a copy of a request goes to another endpoint, fire and forget. The copy gets the
// request's head (its `Host` / `:authority` with `-shadow` after the host name, as Envoy's) and
// its body as the client sends it; its answer is read and dropped. A copy never holds the
// request up: it does not slow the client down (past MIRROR_BUFFER_BYTES it waits for, it is
// given up), it is cut at the route's timeout (MIRROR_TIMEOUT_MS without one), and a request
// that does not come whole (the client went away) is not sent whole to the mirror either.

import type http2 from 'node:http2';
import type net from 'node:net';
import type { MooringAlpn } from '../core/identity';
import { dial } from '../l4/dial';
import type { TlsContexts } from '../l4/tls';
import type { ExchangePlan, MirrorTarget } from './exchange-plan';
import type { H2SessionPool } from './h2-sessions';

export type { MirrorTarget };

/** How a copy connects, and how long it may take (its route's timeout, else the default). */
export interface MirrorOptions {
  readonly alpn: MooringAlpn;
  readonly tls: TlsContexts | null;
  readonly connectTimeoutMs: number;
  readonly timeoutMs: number;
}

/** Bytes a copy may have waiting (its connection not open yet, or slower than the client). */
export const MIRROR_BUFFER_BYTES = 1024 * 1024;
/** A copy and its answer are cut after this long when the route sets no timeout. */
export const MIRROR_TIMEOUT_MS = 60_000;

/** How the copies of a request under `plan` connect, and the time they have. */
export function mirrorOptions(plan: ExchangePlan): MirrorOptions {
  return {
    alpn: plan.alpn,
    tls: plan.tls,
    connectTimeoutMs: plan.connectTimeoutMs,
    timeoutMs: plan.timeoutMs ?? MIRROR_TIMEOUT_MS,
  };
}

/** Envoy's shadow host: `-shadow` after the host name, before a port. */
export function shadowHost(authority: string): string {
  const m = /^(\[[^\]]*\]|[^:]*)(:\d+)?$/.exec(authority);
  return m === null ? `${authority}-shadow` : `${m[1] as string}-shadow${m[2] ?? ''}`;
}

/** What a copy is written on: an upstream connection (HTTP/1.1) or stream (HTTP/2). */
interface Wire {
  write(chunk: Buffer): unknown;
  readonly writableLength: number;
  destroy(): void;
}

/** One copy of one request, fed the request's body as it comes. */
export abstract class Mirror<W extends Wire = Wire> {
  private wire: W | null = null;
  /** Body bytes that came before the wire was open (copies: the exchange's chunks are slices). */
  private pending: Buffer[] = [];
  private pendingBytes = 0;
  private ended = false;
  private over = false;
  private cancelOpen: (() => void) | null = null;
  private readonly timer: NodeJS.Timeout;

  constructor(timeoutMs: number) {
    this.timer = setTimeout(() => this.drop(), timeoutMs);
    this.timer.unref();
  }

  /** Starts opening the wire; `opened` or `drop` follows. Returns how to cancel it. */
  protected abstract open(): () => void;
  /** The request is whole and its bytes all written on `wire`. */
  protected abstract finishRequest(wire: W): void;

  protected start(): void {
    this.cancelOpen = this.open();
  }

  protected opened(wire: W): void {
    this.cancelOpen = null;
    if (this.over) {
      wire.destroy();
      return;
    }
    this.wire = wire;
    for (const chunk of this.pending) wire.write(chunk);
    this.pending = [];
    if (this.ended) this.finishRequest(wire);
  }

  /** A chunk of the request's body. */
  write(chunk: Buffer): void {
    if (this.over) return;
    const wire = this.wire;
    if (wire === null) {
      this.pending.push(Buffer.from(chunk));
      this.pendingBytes += chunk.length;
      if (this.pendingBytes > MIRROR_BUFFER_BYTES) this.drop();
      return;
    }
    wire.write(chunk);
    if (wire.writableLength > MIRROR_BUFFER_BYTES) this.drop();
  }

  /** The request is whole. */
  end(): void {
    if (this.over || this.ended) return;
    this.ended = true;
    if (this.wire !== null) this.finishRequest(this.wire);
  }

  /** The request will not be whole: the copy is dropped unless it was. */
  requestOver(): void {
    if (!this.ended) this.drop();
  }

  /** The copy is over (its answer came, its wire closed, its time ran out, or given up). */
  drop(): void {
    if (this.over) return;
    this.over = true;
    clearTimeout(this.timer);
    this.cancelOpen?.();
    this.cancelOpen = null;
    this.pending = [];
    this.wire?.destroy();
  }
}

/**
 * A copy over HTTP/1.1 on a connection of its own that closes after the answer (`Connection:
 * close` is in `head`, the request head's text): a shadow's connection is never reused.
 */
export class Http1Mirror extends Mirror<net.Socket> {
  constructor(
    private readonly target: MirrorTarget,
    private readonly head: string,
    private readonly options: MirrorOptions,
  ) {
    super(options.timeoutMs);
    this.start();
  }

  protected open(): () => void {
    const { alpn, tls, connectTimeoutMs } = this.options;
    return dial({ endpoint: this.target.endpoint, alpn, tls, connectTimeoutMs }, (err, socket) => {
      if (err !== null || socket === null) {
        this.drop();
        return;
      }
      socket.on('error', () => {});
      socket.on('close', () => this.drop());
      // The answer is dropped; the peer ends the connection after it.
      socket.on('data', () => {});
      socket.on('end', () => this.drop());
      socket.write(this.head, 'latin1');
      this.opened(socket);
    });
  }

  protected finishRequest(): void {}
}

/** A copy over HTTP/2: a stream on the session pool's session to the endpoint. */
export class H2Mirror extends Mirror<http2.ClientHttp2Stream> {
  constructor(
    private readonly target: MirrorTarget,
    /** The copy's headers: the request's as sent upstream to this endpoint, `-shadow` host. */
    private readonly headers: http2.OutgoingHttpHeaders,
    private readonly pool: H2SessionPool,
    private readonly options: MirrorOptions,
  ) {
    super(options.timeoutMs);
    this.start();
  }

  protected open(): () => void {
    let cancelled = false;
    this.pool.get(this.target.endpoint, this.options, (err, session) => {
      if (cancelled) return;
      if (err !== null || session === null) {
        this.drop();
        return;
      }
      let stream: http2.ClientHttp2Stream;
      try {
        stream = session.request(this.headers);
      } catch {
        this.drop();
        return;
      }
      stream.on('error', () => {});
      stream.on('close', () => this.drop());
      // The answer is read and dropped.
      stream.resume();
      this.opened(stream);
    });
    return () => {
      cancelled = true;
    };
  }

  protected finishRequest(stream: http2.ClientHttp2Stream): void {
    stream.end();
  }
}
