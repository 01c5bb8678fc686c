// What the outbound and the inbound side do with an HTTP request (for HTTP/1.1 here; HTTP/2 uses
// the same decisions). Outbound: route by the mesh (first matching rule, weighted destination,
// balancer), mutual TLS to a meshed endpoint with the peer metadata header, Istio's retries,
// `reporter="source"` metrics. Inbound: to the app on the port the client asked for, the
// caller's identity in `x-forwarded-client-cert`, `reporter="destination"` metrics.

import { randomUUID } from 'node:crypto';
import type http2 from 'node:http2';
import type net from 'node:net';
import type {
  ConnectionPoolPolicy,
  ConsistentHash,
  HeaderOperations,
  MeshService,
  RouteMirror,
  TcpKeepalive,
  TrafficPolicy,
  WorkloadInfo,
} from '../../api/mesh';
import { decide } from './core/authorization';
import { authenticate, type RequestAuth } from './core/jwt';
import { CircuitBreaker, clusterKey, NO_LIMIT, poolLimits } from './core/circuit-breaker';
import {
  hash32,
  pickByHash,
  pickEndpoint,
  type EndpointSet,
  type Random,
  type UpstreamEndpoint,
} from './core/endpoints';
import { ALPN, xfccValue, type MooringAlpn } from './core/identity';
import {
  DEFAULT_LOAD_BALANCER,
  effectivePolicy,
  type MeshIndex,
  type Target,
} from './core/mesh-index';
import { PEER_HEADER, parsePeerHeader, peerHeaderValue } from './core/peer';
import { clusterName, hostPort, type RequestFacts } from './core/request-facts';
import { recordOutcome } from './core/outlier';
import { RetryBudget } from './core/retry-budget';
import {
  corsFor,
  redirectLocation,
  rewritePath,
  routeRequest,
  type RequestView,
  type RouteReplyDecision,
} from './core/route';
import {
  noTraceHeaders,
  propagationHeaders,
  readH2TraceHeaders,
  readTraceHeaders,
  TRACE_HEADERS,
  type SpanContext,
  type TraceHeaders,
} from './core/trace-context';
import type { TlsContexts } from './l4/tls';
import { forwardPlan, type HeaderChanges } from './l7/exchange-plan';
import { headerValue, type RequestHead } from './l7/http1-codec';
import {
  flagsText,
  localReply,
  type AttemptFailure,
  type AttemptOutcome,
  type ExchangePlan,
  type ExchangeRecord,
  type Http1Downstream,
  type Http1Handler,
  type LocalReply,
} from './l7/http1-proxy';
import type { H2Handler, H2Record } from './l7/http2-proxy';
import type { MirrorTarget } from './l7/mirror';
import type { UpstreamConnection } from './l7/pool';
import { Edge, UNKNOWN, UNKNOWN_PEER, type IstioMetrics, type PeerLabels } from './metrics';
import type { ProxyTelemetry } from './telemetry/telemetry';

export const XFCC_HEADER = 'x-forwarded-client-cert';
export const REQUEST_ID_HEADER = 'x-request-id';

/** What the handlers read of the proxy's state on each request. */
export interface HandlerContext {
  index(): MeshIndex | null;
  tls(): TlsContexts | null;
  readonly random: Random;
  nowMs(): number;
  readonly metrics: IstioMetrics;
  readonly connectTimeoutMs: number;
  /** The tuning of an upstream socket for a rule's TCP keepalive (one function per setting). */
  keepalive(k: TcpKeepalive): (socket: net.Socket) => void;
  /** Own workload metadata, encoded once per configuration (peer header value prefix). */
  ownPeerValue(): string;
  ownWorkload(): WorkloadInfo | null;
  ownIdentity(): string | null;
  /** The proxy is draining its inbound side: every response closes its connection. */
  draining(): boolean;
  /** Requests in flight, both directions (a drain waits for them). */
  readonly load: { requests: number };
  /** Tracing and the access log. */
  readonly telemetry: ProxyTelemetry;
  /** Outlier detection ejected an endpoint until `untilMs` (for a log line). */
  onEjection?(service: MeshService, endpoint: UpstreamEndpoint, untilMs: number): void;
  /**
   * An attempt to an endpoint failed (connect, TLS, reset, timeout), retried or not: a debug log
   * line. Absent unless the log level shows it, so the request path makes no closure for it.
   */
  readonly onAttemptFailure?: (
    service: MeshService,
    endpoint: UpstreamEndpoint,
    failure: AttemptFailure,
  ) => void;
}

/**
 * The `x-request-id` (made when absent) and this sidecar's span, added to `add` with the trace
 * headers of the next hop, its B3 ones to `b3` (the incoming ones are in the remove sets).
 */
function traceRequest(
  telemetry: ProxyTelemetry,
  th: TraceHeaders,
  add: string[],
  b3: string[] = add,
): { span: SpanContext; requestId: string } {
  let requestId = th.requestId;
  if (requestId === null) {
    requestId = randomUUID();
    add.push(REQUEST_ID_HEADER, requestId);
  }
  const span = telemetry.open(th);
  propagationHeaders(span, add, b3);
  return { span, requestId };
}

export const principalOf = (p: PeerLabels): string | null =>
  p.principal === UNKNOWN ? null : p.principal;
export const remoteOf = (socket: {
  remoteAddress?: string | undefined;
  remotePort?: number | undefined;
}): string | null =>
  socket.remoteAddress === undefined
    ? null
    : hostPort(socket.remoteAddress, socket.remotePort ?? 0);

/** What one request tells, for its span and its access log line. */
function requestFacts(
  telemetry: ProxyTelemetry,
  edge: Edge,
  direction: 'outbound' | 'inbound',
  port: number,
  r: {
    readonly status: number;
    readonly grpcStatus: string;
    readonly flags: string;
    readonly durationMs: number;
    readonly requestBytes: number;
    readonly responseBytes: number;
    readonly endpoint: UpstreamEndpoint | null;
  },
  req: {
    readonly protocol: 'HTTP/1.1' | 'HTTP/2';
    /** null for a request whose head could not be read. */
    readonly method: string | null;
    readonly path: string | null;
    readonly authority: string | null;
    readonly requestId: string | null;
    readonly userAgent: string | null;
    readonly downstreamRemote: string | null;
  },
): RequestFacts {
  const service = edge.labels.service === UNKNOWN ? null : edge.labels.service;
  return {
    direction,
    startMs: telemetry.nowMs() - r.durationMs,
    durationMs: r.durationMs,
    protocol: req.protocol,
    method: req.method,
    path: req.path,
    authority: req.authority,
    status: r.status,
    grpcStatus: r.grpcStatus,
    flags: r.flags,
    bytesReceived: r.requestBytes,
    bytesSent: r.responseBytes,
    requestId: req.requestId,
    userAgent: req.userAgent,
    upstreamHost: r.endpoint === null ? null : hostPort(r.endpoint.address, r.endpoint.port),
    upstreamCluster: clusterName(direction, port, service),
    downstreamRemote: req.downstreamRemote,
    sourcePrincipal: principalOf(edge.labels.source),
    destinationPrincipal: principalOf(edge.labels.destination),
    service,
    port,
    mtls: edge.labels.security === 'mutual_tls',
  };
}

const planSpan = (plan: ExchangePlan | LocalReply): SpanContext | null =>
  plan.kind === 'forward' ? (plan.span ?? null) : null;

/** What an edge's key is made of, in order (unused parts null). */
type EdgeParts = [unknown, unknown, unknown, unknown, unknown];

/**
 * The edges of one configuration by key: a new configuration starts afresh. The last edge found
 * is kept with the parts its key was made of: requests in a row between the same two workloads
 * (the usual case) find it by comparing those parts, without making and hashing the key's text
 * (a peer's metadata header is a few hundred characters).
 */
class EdgeCache {
  private edges = new Map<string, Edge>();
  private version = -1;
  private last: Edge | null = null;
  private lastParts: EdgeParts = [null, null, null, null, null];

  /** The last edge found, if it was for these parts in this configuration. */
  recall(version: number, a: unknown, b: unknown, c: unknown, d: unknown, e: unknown): Edge | null {
    const p = this.lastParts;
    return version === this.version &&
      a === p[0] &&
      b === p[1] &&
      c === p[2] &&
      d === p[3] &&
      e === p[4]
      ? this.last
      : null;
  }

  /** The edge of `key`, made by `make` the first time; kept as the last one, for these parts. */
  find(version: number, key: string, parts: EdgeParts, make: () => Edge): Edge {
    if (version !== this.version) {
      this.edges = new Map();
      this.version = version;
    }
    let edge = this.edges.get(key);
    if (edge === undefined) this.edges.set(key, (edge = make()));
    this.last = edge;
    this.lastParts = parts;
    return edge;
  }
}

/** The metrics of one request, either HTTP version; its flags' text. */
function countRequest(
  metrics: IstioMetrics,
  edge: Edge,
  r: ExchangeRecord | H2Record,
  grpcStatus: string,
): string {
  const flags = flagsText(r.flags);
  metrics.request(edge, r.status, grpcStatus, flags, r.durationMs, r.requestBytes, r.responseBytes);
  return flags;
}

/** An HTTP/1.1 request's metrics, and its span and access log line when telemetry wants them. */
function recordHttp1(
  metrics: IstioMetrics,
  telemetry: ProxyTelemetry,
  r: ExchangeRecord,
  down: Http1Downstream,
  edge: Edge,
  direction: 'outbound' | 'inbound',
  port: number,
): void {
  const flags = countRequest(metrics, edge, r, '');
  const span = planSpan(r.plan);
  if (!telemetry.wants(span, direction)) return;
  const head = r.head;
  const th = head === null ? noTraceHeaders() : readTraceHeaders(head.headers);
  telemetry.finished(
    span,
    requestFacts(
      telemetry,
      edge,
      direction,
      port,
      { ...r, grpcStatus: '', flags },
      {
        protocol: 'HTTP/1.1',
        method: head === null ? null : head.method,
        path: head === null ? null : requestView(head).path,
        authority: head === null ? null : head.host,
        requestId: (r.plan.kind === 'forward' ? r.plan.requestId : undefined) ?? th.requestId,
        userAgent: th.userAgent,
        downstreamRemote: remoteOf(down.socket),
      },
    ),
  );
}

export function peerLabels(w: WorkloadInfo | null, principal: string | null): PeerLabels {
  if (w === null && principal === null) return UNKNOWN_PEER;
  return {
    workload: w?.name ?? UNKNOWN,
    namespace: w?.namespace ?? UNKNOWN,
    principal: principal ?? UNKNOWN,
    app: w?.app ?? UNKNOWN,
    version: w?.version ?? UNKNOWN,
  };
}

/** A view of a request head for the routing core. */
export function requestView(head: RequestHead): RequestView {
  let path = head.target;
  if (!path.startsWith('/')) {
    // absolute-form (`http://host/path`): route on its path.
    const m = /^[a-zA-Z][a-zA-Z0-9+.-]*:\/\/[^/]*(\/.*)?$/.exec(path);
    path = m?.[1] ?? '/';
  }
  return {
    method: head.method,
    path,
    header: (name) =>
      name === ':authority' || name === 'host' ? head.host : headerValue(head.headers, name),
  };
}

// --------------------------------------------------------------------------------------------

export interface OutboundInfo {
  readonly target: Target;
  /** The app's address on this connection (consistent hashing's `useSourceIp`). */
  readonly source: string;
}

const OUTBOUND_REMOVE: ReadonlySet<string> = new Set([
  PEER_HEADER,
  'x-envoy-attempt-count',
  ...TRACE_HEADERS,
]);
const NO_RETRIES = Object.freeze({ attempts: 0, retryOn: Object.freeze([] as string[]) });

/**
 * A route's request header operations (and an authority rewrite) as the headers to drop and the
 * lines to add: `set` replaces, `add` appends, `remove` drops. null: nothing changes.
 */
export function requestHeaderChanges(
  ops: HeaderOperations | undefined,
  authority: string | undefined,
): { remove: ReadonlySet<string>; add: string[] } | null {
  if (ops === undefined && authority === undefined) return null;
  const changes = headerChanges(ops, OUTBOUND_REMOVE);
  if (authority !== undefined) {
    changes.remove.add('host');
    changes.add.push('host', authority);
  }
  return changes;
}

/** `set` replaces, `add` appends, `remove` drops; `base` names are dropped too. */
function headerChanges(
  ops: HeaderOperations | undefined,
  base: Iterable<string>,
): { remove: Set<string>; add: string[] } {
  const remove = new Set(base);
  const add: string[] = [];
  for (const { name, value } of ops?.set ?? []) {
    remove.add(name);
    add.push(name, value);
  }
  for (const name of ops?.remove ?? []) remove.add(name);
  for (const { name, value } of ops?.add ?? []) add.push(name, value);
  return { remove, add };
}

/** A route's response header operations, made once per configuration's rule. */
const RESPONSE_CHANGES = new WeakMap<HeaderOperations, HeaderChanges>();
function responseHeaderChanges(ops: HeaderOperations | undefined): HeaderChanges | undefined {
  if (ops === undefined) return undefined;
  let changes = RESPONSE_CHANGES.get(ops);
  if (changes === undefined) RESPONSE_CHANGES.set(ops, (changes = headerChanges(ops, [])));
  return changes;
}

/** A route's own answer, as Envoy's: a redirect (its Location) or a direct response; no flag. */
function routeReply(d: RouteReplyDecision, view: RequestView, port: number): LocalReply {
  const r = d.reply;
  if (r.kind === 'direct') {
    return localReply(r.status, r.encoding === 'base64' ? Buffer.from(r.body, 'base64') : r.body);
  }
  return localReply(r.status, '', [], ['location', redirectLocation(r, view, d.match, port)]);
}

/**
 * What a request is hashed on under `consistentHash`, as Envoy takes it (null: nothing to hash,
 * any endpoint); a cookie with a TTL that the request lacks is made here and set on the answer.
 */
export function hashKey(
  ch: ConsistentHash,
  view: RequestView,
  source: string,
  random: () => number,
): { value: string | null; setCookie?: readonly [string, string] } {
  if (ch.header !== undefined) return { value: view.header(ch.header) };
  if (ch.sourceIp === true) return { value: source };
  if (ch.queryParameter !== undefined) {
    const q = view.path.indexOf('?');
    if (q === -1) return { value: null };
    return { value: new URLSearchParams(view.path.slice(q + 1)).get(ch.queryParameter) };
  }
  const cookie = ch.cookie;
  if (cookie === undefined) return { value: null };
  const found = cookieValue(view.header('cookie'), cookie.name);
  if (found !== null || cookie.ttlMs === undefined) return { value: found };
  let made = '';
  for (let i = 0; i < 4; i++)
    made += Math.floor(random() * 0x10000)
      .toString(16)
      .padStart(4, '0');
  const attributes = [
    `${cookie.name}="${made}"`,
    ...(cookie.ttlMs > 0 ? [`Max-Age=${Math.floor(cookie.ttlMs / 1000)}`] : []),
    `Path=${cookie.path ?? '/'}`,
    'HttpOnly',
  ];
  return { value: made, setCookie: ['set-cookie', attributes.join('; ')] };
}

/**
 * How a request's endpoint is picked from `set` (a retry passes the endpoints it tried): by the
 * policy's balancer, or by its consistent hash when the request has the value to hash (and the
 * cookie to set on the answer when one was made for it).
 */
function endpointPicker(
  set: EndpointSet,
  policy: TrafficPolicy,
  view: RequestView,
  source: string,
  random: Random,
  nowMs: () => number,
): {
  pick: (tried: ReadonlySet<UpstreamEndpoint>) => UpstreamEndpoint | null;
  setCookie?: readonly [string, string];
} {
  const lb = policy.loadBalancer ?? DEFAULT_LOAD_BALANCER;
  const balanced = (tried: ReadonlySet<UpstreamEndpoint>): UpstreamEndpoint | null =>
    pickEndpoint(set, lb, random, nowMs(), tried.size === 0 ? null : tried);
  if (policy.consistentHash === undefined) return { pick: balanced };
  const key = hashKey(policy.consistentHash, view, source, random);
  const cookie = key.setCookie === undefined ? {} : { setCookie: key.setCookie };
  if (key.value === null) return { pick: balanced, ...cookie };
  const hash = hash32(key.value);
  return {
    pick: (tried) => pickByHash(set, hash, random, nowMs(), tried.size === 0 ? null : tried),
    ...cookie,
  };
}

/** A cookie's value in a Cookie header (quotes taken off), or null. */
function cookieValue(header: string | null, name: string): string | null {
  if (header === null) return null;
  for (const part of header.split(/[;,]/)) {
    const eq = part.indexOf('=');
    if (eq === -1 || part.slice(0, eq).trim() !== name) continue;
    const v = part.slice(eq + 1).trim();
    return v.length >= 2 && v.startsWith('"') && v.endsWith('"') ? v.slice(1, -1) : v;
  }
  return null;
}

/**
 * `changes` with more lines added, replacing the app's own of those names with `replace` (a new
 * object: the rule's own is shared).
 */
function withLines(
  changes: HeaderChanges | undefined,
  lines: readonly string[],
  replace = false,
): HeaderChanges {
  let remove = changes?.remove ?? new Set<string>();
  if (replace) {
    const more = new Set(remove);
    for (let i = 0; i < lines.length; i += 2) more.add(lines[i] as string);
    remove = more;
  }
  return { remove, add: [...(changes?.add ?? []), ...lines] };
}

/** What both sides hold: the proxy's context, the edges of this configuration, the telemetry. */
abstract class HttpSide {
  /** Edges (metric labels) by who talks to whom, for this configuration. */
  protected readonly edges = new EdgeCache();
  readonly metrics: IstioMetrics;

  constructor(protected readonly ctx: HandlerContext) {
    this.metrics = ctx.metrics;
  }

  get telemetry(): ProxyTelemetry {
    return this.ctx.telemetry;
  }

  /** A request the proxy answered itself, its head unreadable: counted as any other. */
  refused(r: ExchangeRecord, down: Http1Downstream): void {
    this.count(r, down);
  }

  /** A request's metrics, span and access log line. */
  protected abstract count(r: ExchangeRecord, down: Http1Downstream): void;
}

export class OutboundHttp extends HttpSide implements Http1Handler {
  private readonly budgets = new Map<string, RetryBudget>();
  /** Exchanges retrying now, by destination service (connectionPool.http.maxRetries). */
  private readonly retrying = new Map<string, number>();
  /** Circuit breakers by cluster (kept across configurations: their counts stay true). */
  private readonly breakers = new Map<string, CircuitBreaker<UpstreamConnection>>();

  /** An HTTP/2 stream planned here has ended. */
  requestDone(plan?: ExchangePlan | LocalReply): void {
    this.ctx.load.requests--;
    if (plan?.kind === 'forward') plan.onDone?.();
  }

  plan(head: RequestHead, down: Http1Downstream): ExchangePlan | LocalReply {
    const info = down.info as unknown as OutboundInfo;
    return this.planRequest(info, requestView(head), readTraceHeaders(head.headers), ALPN.http1);
  }

  /** Where a request to `target` goes, for either HTTP version. */
  planRequest(
    info: OutboundInfo,
    view: RequestView,
    th: TraceHeaders,
    alpn: MooringAlpn,
  ): ExchangePlan | LocalReply {
    const target = info.target;
    this.ctx.load.requests++;
    const index = this.ctx.index();
    if (index === null) return localReply(503, 'no mesh configuration yet', ['UH']);
    const add: string[] = [];
    // B3 goes only to an endpoint outside the mesh: the next sidecar reads traceparent, and makes
    // the app's trace headers itself.
    const b3: string[] = [];
    const { span, requestId } = traceRequest(this.ctx.telemetry, th, add, b3);
    // A Pod's own address is dialled as it is; a ServiceEntry host of resolution NONE is routed,
    // to the address the app dialled (Envoy's ORIGINAL_DST cluster).
    const original =
      target.kind === 'endpoint' && target.service.entry?.resolution === 'NONE'
        ? target.endpoint
        : null;
    if (target.kind === 'endpoint' && original === null) {
      const endpoint = target.endpoint;
      return forwardPlan({
        pick: () => endpoint,
        alpn,
        tls: this.ctx.tls(),
        connectTimeoutMs: this.ctx.connectTimeoutMs,
        removeHeaders: OUTBOUND_REMOVE,
        addHeaders: add,
        addHeadersMeshed: [
          PEER_HEADER,
          peerHeaderValue(this.ctx.ownPeerValue(), target.service.hostname),
        ],
        addHeadersPlain: b3,
        retries: NO_RETRIES,
        timeoutMs: null,
        attemptCountHeader: true,
        service: target.service,
        span,
        requestId,
      });
    }
    const random = this.ctx.random;
    const decision = routeRequest(
      index.current(target.service),
      target.port.port,
      view,
      random,
      (key) => index.service(key),
    );
    if (decision === null) return localReply(404, '', ['NR']);
    if (decision.kind === 'failure') {
      return localReply(decision.status, decision.reason, [decision.status === 503 ? 'NC' : 'NR']);
    }
    if (decision.kind === 'reply') return routeReply(decision, view, target.port.port);
    // Fault injection, as Envoy's fault filter: the abort first, then the delay.
    const fault = decision.fault;
    if (fault?.abort !== undefined && random() * 100 < fault.abort.percent) {
      const reply = localReply(fault.abort.httpStatus, 'fault filter abort', ['FI']);
      const grpcStatus = fault.abort.grpcStatus;
      return grpcStatus === undefined ? reply : { ...reply, grpcStatus };
    }
    const delayMs =
      fault?.delay !== undefined && random() * 100 < fault.delay.percent
        ? fault.delay.fixedDelayMs
        : 0;
    const set =
      original !== null && decision.service.key === target.service.key
        ? { endpoints: [original], next: 0 }
        : index.endpointSet(decision.service, decision.port, decision.subset);
    const policy = effectivePolicy(decision.service, decision.subset, decision.port);
    const now = this.ctx.nowMs();
    const budget = this.budget(decision.service.key);
    budget.request(now);
    const serviceKey = decision.service.key;
    const http = policy.connectionPool?.http;
    const maxRetries = http?.maxRetries;
    // Envoy's circuit breaker on retries: at most maxRetries exchanges retrying at once.
    let retrying = false;
    const canRetry = (): boolean => {
      if (!retrying) {
        if (maxRetries !== undefined && (this.retrying.get(serviceKey) ?? 0) >= maxRetries) {
          return false;
        }
        if (!budget.tryRetry(nowMs())) return false;
        retrying = true;
        this.retrying.set(serviceKey, (this.retrying.get(serviceKey) ?? 0) + 1);
        return true;
      }
      return budget.tryRetry(nowMs());
    };
    const onDone = (): void => {
      if (!retrying) return;
      retrying = false;
      const left = (this.retrying.get(serviceKey) ?? 1) - 1;
      if (left <= 0) this.retrying.delete(serviceKey);
      else this.retrying.set(serviceKey, left);
    };
    const outlier = policy.outlierDetection;
    const breaker = this.breaker(
      decision.service,
      decision.port,
      decision.subset,
      policy.connectionPool,
    );
    const nowMs = (): number => this.ctx.nowMs();
    const onFailure = this.ctx.onAttemptFailure;
    const headers = requestHeaderChanges(decision.requestHeaders, decision.rewrite?.authority);
    const rewrite = decision.rewrite;
    let responseHeaders = responseHeaderChanges(decision.rule?.responseHeaders);
    const cors = decision.rule?.cors;
    if (cors !== undefined) {
      const answer = corsFor(cors, view);
      if (answer?.kind === 'preflight') return localReply(200, '', [], answer.headers);
      if (answer !== null) responseHeaders = withLines(responseHeaders, answer.headers, true);
    }
    const mirrors =
      decision.rule?.mirrors === undefined
        ? undefined
        : this.mirrorTargets(index, decision.rule.mirrors, target.port.port);
    const { pick, setCookie } = endpointPicker(set, policy, view, info.source, random, nowMs);
    if (setCookie !== undefined) responseHeaders = withLines(responseHeaders, setCookie);
    return forwardPlan({
      pick,
      alpn,
      tls: this.ctx.tls(),
      connectTimeoutMs: policy.connectionPool?.tcp?.connectTimeoutMs ?? this.ctx.connectTimeoutMs,
      removeHeaders: headers === null ? OUTBOUND_REMOVE : headers.remove,
      addHeaders: headers === null ? add : [...headers.add, ...add],
      addHeadersMeshed: [
        PEER_HEADER,
        peerHeaderValue(this.ctx.ownPeerValue(), decision.service.hostname),
      ],
      addHeadersPlain: b3,
      retries: decision.retries,
      timeoutMs: decision.timeoutMs,
      attemptCountHeader: true,
      onAttempt:
        outlier === undefined && onFailure === undefined
          ? undefined
          : (endpoint: UpstreamEndpoint, outcome: AttemptOutcome) => {
              if (outcome.kind === 'failure') onFailure?.(decision.service, endpoint, outcome);
              if (outlier === undefined) return;
              const d = recordOutcome(endpoint, set.endpoints, outlier, outcome, nowMs());
              if (d.ejected) this.ctx.onEjection?.(decision.service, endpoint, d.until ?? 0);
            },
      canRetry,
      onDone,
      delayMs: delayMs > 0 ? delayMs : undefined,
      target:
        rewrite === undefined ||
        (rewrite.prefix === undefined &&
          rewrite.fullPath === undefined &&
          rewrite.regex === undefined)
          ? undefined
          : rewritePath(view.path, decision.match, rewrite),
      maxRequestsPerConnection: http?.maxRequestsPerConnection,
      responseHeaders,
      maxConnectionDurationMs: policy.connectionPool?.tcp?.maxConnectionDurationMs,
      tune:
        policy.connectionPool?.tcp?.keepalive === undefined
          ? undefined
          : this.ctx.keepalive(policy.connectionPool.tcp.keepalive),
      upstreamIdleTimeoutMs: http?.idleTimeoutMs,
      breaker,
      mirrors,
      service: decision.service,
      span,
      requestId,
    });
  }

  /**
   * Where this request's copies go: each mirror drawn by its percentage, to an endpoint of its
   * destination picked by that destination's balancer. A mirror to a Service the mesh does not
   * know, or with no endpoint, is left out (the request itself goes on).
   */
  private mirrorTargets(
    index: MeshIndex,
    mirrors: readonly RouteMirror[],
    requestPort: number,
  ): MirrorTarget[] | undefined {
    let out: MirrorTarget[] | undefined;
    for (const m of mirrors) {
      if (this.ctx.random() * 100 >= m.percent) continue;
      const service = index.service(m.service);
      if (service === null) continue;
      const port = m.port ?? requestPort;
      const lb = effectivePolicy(service, m.subset, port).loadBalancer ?? DEFAULT_LOAD_BALANCER;
      const set = index.endpointSet(service, port, m.subset);
      const endpoint = pickEndpoint(set, lb, this.ctx.random, this.ctx.nowMs());
      if (endpoint === null) continue;
      (out ??= []).push({
        endpoint,
        addHeadersMeshed: [PEER_HEADER, peerHeaderValue(this.ctx.ownPeerValue(), service.hostname)],
      });
    }
    return out;
  }

  /**
   * The circuit breaker of a cluster under its current limits, or undefined when the policy sets
   * none (a breaker left from an earlier rule then lets its waiting requests go).
   */
  breaker(
    service: MeshService,
    port: number,
    subset: string | undefined,
    pool: ConnectionPoolPolicy | undefined,
  ): CircuitBreaker<UpstreamConnection> | undefined {
    const limits = poolLimits(pool);
    if (limits === null && this.breakers.size === 0) return undefined;
    const key = clusterKey(service.key, port, subset);
    let breaker = this.breakers.get(key);
    if (breaker === undefined) {
      if (limits === null) return undefined;
      this.breakers.set(key, (breaker = new CircuitBreaker(key, limits)));
      return breaker;
    }
    const now = limits ?? { maxConnections: NO_LIMIT, maxPending: NO_LIMIT };
    if (
      now.maxConnections !== breaker.limits.maxConnections ||
      now.maxPending !== breaker.limits.maxPending
    ) {
      breaker.limits = now;
      breaker.pump();
    }
    return limits === null ? undefined : breaker;
  }

  /** The retry budget of a destination service (kept across configurations). */
  private budget(serviceKey: string): RetryBudget {
    let budget = this.budgets.get(serviceKey);
    if (budget === undefined) this.budgets.set(serviceKey, (budget = new RetryBudget()));
    return budget;
  }

  finished(r: ExchangeRecord, down: Http1Downstream): void {
    this.ctx.load.requests--;
    if (r.plan.kind === 'forward') r.plan.onDone?.();
    this.count(r, down);
  }

  protected count(r: ExchangeRecord, down: Http1Downstream): void {
    const { target } = down.info as unknown as OutboundInfo;
    const service = (r.plan.kind === 'forward' ? r.plan.service : undefined) ?? target.service;
    const edge = this.edge(r.endpoint, service);
    recordHttp1(this.metrics, this.ctx.telemetry, r, down, edge, 'outbound', target.port.port);
  }

  edge(
    endpoint: UpstreamEndpoint | null,
    service: MeshService,
    protocol: 'http' | 'grpc' = 'http',
  ): Edge {
    const version = this.ctx.index()?.version ?? -1;
    const known = this.edges.recall(version, endpoint, service, protocol, null, null);
    if (known !== null) return known;
    const key = `${endpoint?.key ?? '-'}|${service.key}|${protocol}`;
    const parts: EdgeParts = [endpoint, service, protocol, null, null];
    return this.edges.find(
      version,
      key,
      parts,
      () =>
        new Edge({
          reporter: 'source',
          source: peerLabels(this.ctx.ownWorkload(), this.ctx.ownIdentity()),
          destination:
            endpoint === null ? UNKNOWN_PEER : peerLabels(endpoint.workload, endpoint.identity),
          service: service.hostname,
          serviceName: service.name,
          serviceNamespace: service.namespace,
          protocol,
          security: endpoint?.identity != null ? 'mutual_tls' : 'none',
        }),
    );
  }
}

// --------------------------------------------------------------------------------------------

export interface InboundInfo {
  /** The app's address and port: the connection's original destination. */
  readonly app: UpstreamEndpoint;
  /** The verified peer's SPIFFE ID, or null for plain text. */
  readonly peer: string | null;
  /** The connection's source address. */
  readonly source: string;
}

/** Envoy's answer to a request its RBAC filter refuses. */
const ACCESS_DENIED = 'RBAC: access denied';

/**
 * The workload's AuthorizationPolicies on one inbound request or connection (`request` null: an
 * opaque TCP connection): null when it may go on, else the policy that refused it ('' when no
 * ALLOW policy matched).
 */
export function inboundRefusal(
  index: MeshIndex | null,
  info: InboundInfo,
  request: RequestView | null,
  auth: RequestAuth | null = null,
): string | null {
  const compiled = index?.authorization ?? null;
  if (compiled === null) return null;
  const decision = decide(compiled, {
    peer: info.peer,
    sourceIp: info.source,
    destinationIp: info.app.address,
    destinationPort: info.app.port,
    request,
    auth,
  });
  return decision.allowed ? null : (decision.policy ?? '');
}

const INBOUND_REMOVE: ReadonlySet<string> = new Set([XFCC_HEADER, PEER_HEADER, ...TRACE_HEADERS]);

/** INBOUND_REMOVE and these headers, made once for each list. */
const removing = new Map<string, ReadonlySet<string>>();
function inboundRemoveWith(names: readonly string[]): ReadonlySet<string> {
  if (names.length === 0) return INBOUND_REMOVE;
  const key = names.join('\n');
  let set = removing.get(key);
  if (set === undefined) {
    set = new Set([...INBOUND_REMOVE, ...names]);
    if (removing.size > 64) removing.clear();
    removing.set(key, set);
  }
  return set;
}

/** Envoy's challenge for a refused token (RFC 6750). */
const bearerChallenge = (view: RequestView): string => {
  const q = view.path.indexOf('?');
  const path = q === -1 ? view.path : view.path.slice(0, q);
  return `Bearer realm="http://${view.header('host') ?? ''}${path}", error="invalid_token"`;
};

export class InboundHttp extends HttpSide implements Http1Handler {
  draining(): boolean {
    return this.ctx.draining();
  }

  /** An HTTP/2 stream planned here has ended. */
  requestDone(): void {
    this.ctx.load.requests--;
  }

  plan(head: RequestHead, down: Http1Downstream): ExchangePlan | LocalReply {
    const info = down.info as unknown as InboundInfo;
    // A view of the head only for a workload with policies: none is made per request otherwise.
    const index = this.ctx.index();
    const view =
      index !== null && (index.authorization !== null || index.jwt !== null)
        ? requestView(head)
        : null;
    return this.planRequest(info, view, readTraceHeaders(head.headers));
  }

  /**
   * To the app, for either HTTP version, unless its JWT fails (401) or an AuthorizationPolicy
   * refuses it (403).
   */
  planRequest(
    info: InboundInfo,
    view: RequestView | null,
    th: TraceHeaders,
  ): ExchangePlan | LocalReply {
    this.ctx.load.requests++;
    const index = this.ctx.index();
    const add: string[] = [];
    let removeHeaders = INBOUND_REMOVE;
    let auth: RequestAuth | null = null;
    const jwt = index?.jwt ?? null;
    if (jwt !== null && view !== null) {
      const outcome = authenticate(jwt, view, this.ctx.nowMs());
      if (outcome.kind === 'failed') {
        return localReply(401, outcome.message, [], ['www-authenticate', bearerChallenge(view)]);
      }
      const remove =
        outcome.kind === 'verified' && outcome.remove !== null
          ? [...jwt.outputs, outcome.remove]
          : jwt.outputs;
      removeHeaders = inboundRemoveWith(remove);
      if (outcome.kind === 'verified') {
        auth = outcome.auth;
        add.push(...outcome.add);
      }
    }
    if (view !== null && inboundRefusal(index, info, view, auth) !== null) {
      return localReply(403, ACCESS_DENIED);
    }
    if (info.peer !== null) {
      const own = this.ctx.ownIdentity();
      if (own !== null) add.push(XFCC_HEADER, xfccValue(own, info.peer));
    }
    const { span, requestId } = traceRequest(this.ctx.telemetry, th, add);
    const app = info.app;
    return forwardPlan({
      pick: () => app,
      alpn: ALPN.http1,
      tls: null,
      connectTimeoutMs: this.ctx.connectTimeoutMs,
      removeHeaders,
      addHeaders: add,
      retries: NO_RETRIES,
      timeoutMs: null,
      attemptCountHeader: false,
      span,
      requestId,
    });
  }

  finished(r: ExchangeRecord, down: Http1Downstream): void {
    this.ctx.load.requests--;
    this.count(r, down);
  }

  protected count(r: ExchangeRecord, down: Http1Downstream): void {
    const info = down.info as unknown as InboundInfo;
    const head = r.head;
    // Peer metadata only from a verified sidecar.
    const peerValue =
      info.peer === null || head === null ? null : headerValue(head.headers, PEER_HEADER);
    const edge = this.edge(info, peerValue, head === null ? null : head.host, 'http');
    recordHttp1(this.metrics, this.ctx.telemetry, r, down, edge, 'inbound', info.app.port);
  }

  edge(
    info: InboundInfo,
    peerValue: string | null,
    host: string | null,
    protocol: 'http' | 'grpc' | 'tcp',
  ): Edge {
    const index = this.ctx.index();
    const version = index?.version ?? -1;
    // The host names the service only without peer metadata.
    const hostPart = peerValue === null ? host : null;
    const port = info.app.port;
    const known = this.edges.recall(version, info.peer, peerValue, port, protocol, hostPart);
    if (known !== null) return known;
    const key = `${info.peer ?? '-'}|${peerValue ?? '-'}|${port}|${protocol}|${hostPart ?? ''}`;
    const parts: EdgeParts = [info.peer, peerValue, port, protocol, hostPart];
    return this.edges.find(version, key, parts, () => {
      const meta = peerValue === null ? null : parsePeerHeader(peerValue);
      const service = meta?.service ?? inboundService(index, port, host);
      const svc = service === null ? null : findService(index, service);
      const own = this.ctx.ownWorkload();
      return new Edge({
        reporter: 'destination',
        source: peerLabels(meta?.workload ?? null, info.peer),
        destination: peerLabels(own, info.peer !== null ? this.ctx.ownIdentity() : null),
        service: service ?? UNKNOWN,
        serviceName: svc?.name ?? UNKNOWN,
        serviceNamespace: svc?.namespace ?? own?.namespace ?? UNKNOWN,
        protocol,
        security: info.peer !== null ? 'mutual_tls' : 'none',
      });
    });
  }
}

function findService(index: MeshIndex | null, hostname: string): MeshService | null {
  if (index === null) return null;
  for (const s of index.state.services.values()) if (s.hostname === hostname) return s;
  return null;
}

/**
 * The service a plain-text request to this Pod's port was sent to: the only one of this Pod's
 * services with an endpoint on that port, else the one the Host header names.
 */
function inboundService(index: MeshIndex | null, port: number, host: string | null): string | null {
  if (index === null) return null;
  const own = index.state.proxy.pod;
  const found: MeshService[] = [];
  for (const s of index.state.services.values()) {
    if (s.namespace !== own.namespace) continue;
    for (const e of s.endpoints) {
      if (e.pod === own.name && Object.values(e.ports).includes(port)) {
        found.push(s);
        break;
      }
    }
  }
  if (found.length === 1) return (found[0] as MeshService).hostname;
  if (host !== null) {
    const name = host.replace(/:\d+$/, '');
    for (const s of found) {
      if (s.hostname === name || s.name === name || `${s.name}.${s.namespace}` === name)
        return s.hostname;
    }
  }
  return null;
}

export const flagsOf = flagsText;

// --------------------------------------------------------------------------------------------
// HTTP/2 and gRPC: the same decisions, per stream.

/** The request's facts from HTTP/2 headers. */
function h2Request(r: H2Record): {
  protocol: 'HTTP/2';
  method: string;
  path: string;
  authority: string | null;
  requestId: string | null;
  userAgent: string | null;
  downstreamRemote: null;
} {
  const th = readH2TraceHeaders(r.headers);
  const authority = r.headers[':authority'];
  return {
    protocol: 'HTTP/2',
    method: String(r.headers[':method'] ?? 'GET'),
    path: String(r.headers[':path'] ?? '/'),
    authority: typeof authority === 'string' ? authority : null,
    requestId: (r.plan.kind === 'forward' ? r.plan.requestId : undefined) ?? th.requestId,
    userAgent: th.userAgent,
    downstreamRemote: null,
  };
}

/** An HTTP/2 stream's metrics, and its span and access log line when telemetry wants them. */
function recordH2(
  metrics: IstioMetrics,
  telemetry: ProxyTelemetry,
  r: H2Record,
  edge: Edge,
  direction: 'outbound' | 'inbound',
  port: number,
): void {
  const flags = countRequest(metrics, edge, r, r.grpcStatus);
  const span = planSpan(r.plan);
  if (telemetry.wants(span, direction)) {
    telemetry.finished(
      span,
      requestFacts(telemetry, edge, direction, port, { ...r, flags }, h2Request(r)),
    );
  }
}

export class OutboundH2 implements H2Handler {
  constructor(private readonly http: OutboundHttp) {}

  plan(
    view: RequestView,
    headers: http2.IncomingHttpHeaders,
    info: unknown,
  ): ExchangePlan | LocalReply {
    return this.http.planRequest(info as OutboundInfo, view, readH2TraceHeaders(headers), ALPN.h2);
  }

  finished(r: H2Record, info: unknown): void {
    this.http.requestDone(r.plan);
    const service =
      (r.plan.kind === 'forward' ? r.plan.service : undefined) ??
      (info as OutboundInfo).target.service;
    const edge = this.http.edge(r.endpoint, service, r.grpc ? 'grpc' : 'http');
    const port = (info as OutboundInfo).target.port.port;
    recordH2(this.http.metrics, this.http.telemetry, r, edge, 'outbound', port);
  }
}

export class InboundH2 implements H2Handler {
  constructor(private readonly http: InboundHttp) {}

  plan(
    view: RequestView,
    headers: http2.IncomingHttpHeaders,
    info: unknown,
  ): ExchangePlan | LocalReply {
    return this.http.planRequest(info as InboundInfo, view, readH2TraceHeaders(headers));
  }

  finished(r: H2Record, info: unknown): void {
    this.http.requestDone();
    const inbound = info as InboundInfo;
    const peerValue = inbound.peer === null ? null : r.headers[PEER_HEADER];
    const authority = r.headers[':authority'] ?? null;
    const edge = this.http.edge(
      inbound,
      typeof peerValue === 'string' ? peerValue : null,
      typeof authority === 'string' ? authority : null,
      r.grpc ? 'grpc' : 'http',
    );
    recordH2(this.http.metrics, this.http.telemetry, r, edge, 'inbound', inbound.app.port);
  }
}
