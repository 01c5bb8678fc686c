// What an exchange is asked to do, for either HTTP version: the plan a handler makes for one
// request (where it goes, which headers change, the route's policies), or the answer the proxy
// gives itself; Envoy's response flags; what an attempt ended with.

import type net from 'node:net';
import type { MeshService, RetryPolicy } from '../../../api/mesh';
import type { CircuitBreaker } from '../core/circuit-breaker';
import type { UpstreamEndpoint } from '../core/endpoints';
import type { MooringAlpn } from '../core/identity';
import type { AttemptFailure as RetryAttemptFailure } from '../core/retry';
import type { SpanContext } from '../core/trace-context';
import type { TlsContexts } from '../l4/tls';
import type { UpstreamConnection } from './pool';

/** Envoy's response flags (the access log's %RESPONSE_FLAGS%). */
export type ResponseFlag =
  | 'UH' // no healthy upstream
  | 'UF' // upstream connection failure
  | 'UC' // upstream connection termination
  | 'UPE' // upstream protocol error: a response that cannot be read
  | 'UT' // upstream request timeout
  | 'URX' // retry limit exceeded
  | 'NR' // no route
  | 'NC' // no cluster: the route's destination is not known
  | 'DC' // downstream connection termination
  | 'DPE' // downstream protocol error: the request could not be framed
  | 'UO' // upstream overflow (circuit breaker)
  | 'FI' // fault injected: abort
  | 'DI' // fault injected: delay
  | 'UAEX'; // (unused) external authorization

/** Header operations as a head re-write takes them: names dropped, lines added (name, value...). */
export interface HeaderChanges {
  readonly remove: ReadonlySet<string>;
  readonly add: readonly string[];
}

export interface LocalReply {
  readonly kind: 'local';
  readonly status: number;
  /** Text (UTF-8), or bytes as they are (a direct response's `body.bytes`). */
  readonly body: string | Buffer;
  readonly flags: ResponseFlag[];
  readonly headers?: readonly string[];
  /** For a gRPC request: this status (else one made from `status`). */
  readonly grpcStatus?: number;
}

/** Where one copy of a request goes (a route's mirror, l7/mirror.ts). */
export interface MirrorTarget {
  readonly endpoint: UpstreamEndpoint;
  /** Header lines added when the endpoint is meshed (the peer metadata for its service). */
  readonly addHeadersMeshed: readonly string[];
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
  /** Header lines added only when the endpoint is outside the mesh (B3's trace headers). */
  readonly addHeadersPlain?: readonly string[];
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
  /** The route's response header operations: the headers dropped and the lines added. */
  readonly responseHeaders?: HeaderChanges;
  /** DestinationRule `connectionPool.tcp.maxConnectionDuration`: older connections take no request. */
  readonly maxConnectionDurationMs?: number;
  /** DestinationRule `connectionPool.http.idleTimeout` of the connections this plan opens (0: never). */
  readonly upstreamIdleTimeoutMs?: number;
  /** Called with each upstream socket this plan opens once TCP is up (tcpKeepalive). */
  readonly tune?: (socket: net.Socket) => void;
  /**
   * The cluster's circuit breaker (`connectionPool.tcp.maxConnections`,
   * `http.http1MaxPendingRequests`); absent when the rule sets neither (nothing is counted).
   */
  readonly breaker?: CircuitBreaker<UpstreamConnection>;
  /** Copies of the request to send too (the route's mirrors drawn for this request). */
  readonly mirrors?: readonly MirrorTarget[];
  /** The destination service (outbound), for the handler's records. */
  readonly service?: MeshService;
  /** This sidecar's span of the request, and its `x-request-id`, for the handler's records. */
  readonly span?: SpanContext;
  readonly requestId?: string;
}

/**
 * An ExchangePlan with every field present (undefined when unused), always in the same order:
 * the plans of every route and side then share one shape, so that V8 reads their fields from one
 * place in the exchanges that run them, instead of looking each field up among many shapes.
 */
export function forwardPlan(p: Omit<ExchangePlan, 'kind'>): ExchangePlan {
  return {
    kind: 'forward',
    pick: p.pick,
    alpn: p.alpn,
    tls: p.tls,
    connectTimeoutMs: p.connectTimeoutMs,
    removeHeaders: p.removeHeaders,
    addHeaders: p.addHeaders,
    addHeadersMeshed: p.addHeadersMeshed,
    addHeadersPlain: p.addHeadersPlain,
    retries: p.retries,
    timeoutMs: p.timeoutMs,
    attemptCountHeader: p.attemptCountHeader,
    onAttempt: p.onAttempt,
    canRetry: p.canRetry,
    onDone: p.onDone,
    delayMs: p.delayMs,
    target: p.target,
    maxRequestsPerConnection: p.maxRequestsPerConnection,
    responseHeaders: p.responseHeaders,
    maxConnectionDurationMs: p.maxConnectionDurationMs,
    upstreamIdleTimeoutMs: p.upstreamIdleTimeoutMs,
    tune: p.tune,
    breaker: p.breaker,
    mirrors: p.mirrors,
    service: p.service,
    span: p.span,
    requestId: p.requestId,
  };
}

/** An attempt that failed before any answer. */
export interface AttemptFailure {
  readonly kind: 'failure';
  readonly reason: RetryAttemptFailure;
  /** What the socket or TLS said, when known (a debug log line). */
  readonly detail?: string;
}

export type AttemptOutcome =
  { readonly kind: 'response'; readonly status: number } | AttemptFailure;
