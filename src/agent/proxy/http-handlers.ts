// What the outbound and the inbound side do with an HTTP request (for HTTP/1.1 here; HTTP/2 uses
// the same decisions). Outbound: route by the mesh (first matching rule, weighted destination,
// balancer), mutual TLS to a meshed endpoint with the peer metadata header, Istio's retries,
// `reporter="source"` metrics. Inbound: to the app on the port the client asked for, the
// caller's identity in `x-forwarded-client-cert`, `reporter="destination"` metrics.

import { randomUUID } from 'node:crypto';
import type http2 from 'node:http2';
import type { MeshService, WorkloadInfo } from '../../api/mesh';
import { pickEndpoint, type Random, type UpstreamEndpoint } from './core/endpoints';
import { ALPN, xfccValue, type MooringAlpn } from './core/identity';
import {
  DEFAULT_LOAD_BALANCER,
  effectivePolicy,
  type MeshIndex,
  type Target,
} from './core/mesh-index';
import { PEER_HEADER, parsePeerHeader, peerHeaderValue } from './core/peer';
import { routeRequest, type RequestView } from './core/route';
import type { TlsContexts } from './l4/tls';
import { headerValue, type RequestHead } from './l7/http1-codec';
import {
  flagsText,
  localReply,
  type ExchangePlan,
  type ExchangeRecord,
  type Http1Downstream,
  type Http1Handler,
  type LocalReply,
} from './l7/http1-proxy';
import type { H2Handler, H2Record } from './l7/http2-proxy';
import { Edge, UNKNOWN, UNKNOWN_PEER, type IstioMetrics, type PeerLabels } from './metrics';

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
  /** Own workload metadata, encoded once per configuration (peer header value prefix). */
  ownPeerValue(): string;
  ownWorkload(): WorkloadInfo | null;
  ownIdentity(): string | null;
  /** The proxy is draining its inbound side: every response closes its connection. */
  draining(): boolean;
  /** Requests in flight, both directions (a drain waits for them). */
  readonly load: { requests: number };
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
}

const OUTBOUND_REMOVE: ReadonlySet<string> = new Set([PEER_HEADER, 'x-envoy-attempt-count']);
const NO_RETRIES = Object.freeze({ attempts: 0, retryOn: Object.freeze([] as string[]) });

export class OutboundHttp implements Http1Handler {
  /** Edges by endpoint and service, for this configuration. */
  private edges = new Map<string, Edge>();
  private edgesVersion = -1;
  readonly metrics: IstioMetrics;

  constructor(private readonly ctx: HandlerContext) {
    this.metrics = ctx.metrics;
  }

  /** An HTTP/2 stream planned here has ended. */
  requestDone(): void {
    this.ctx.load.requests--;
  }

  plan(head: RequestHead, down: Http1Downstream): ExchangePlan | LocalReply {
    const { target } = down.info as unknown as OutboundInfo;
    const hasId = headerValue(head.headers, REQUEST_ID_HEADER) !== null;
    return this.planRequest(target, requestView(head), hasId, ALPN.http1);
  }

  /** Where a request to `target` goes, for either HTTP version. */
  planRequest(
    target: Target,
    view: RequestView,
    hasRequestId: boolean,
    alpn: MooringAlpn,
  ): ExchangePlan | LocalReply {
    this.ctx.load.requests++;
    const index = this.ctx.index();
    if (index === null) return localReply(503, 'no mesh configuration yet', ['UH']);
    const add: string[] = [];
    if (!hasRequestId) add.push(REQUEST_ID_HEADER, randomUUID());
    const base = {
      kind: 'forward' as const,
      alpn,
      tls: this.ctx.tls(),
      connectTimeoutMs: this.ctx.connectTimeoutMs,
      removeHeaders: OUTBOUND_REMOVE,
      addHeaders: add,
      attemptCountHeader: true,
    };
    if (target.kind === 'endpoint') {
      const endpoint = target.endpoint;
      return {
        ...base,
        addHeadersMeshed: [
          PEER_HEADER,
          peerHeaderValue(this.ctx.ownPeerValue(), target.service.hostname),
        ],
        pick: () => endpoint,
        retries: NO_RETRIES,
        timeoutMs: null,
        service: target.service,
      };
    }
    const decision = routeRequest(target.service, target.port.port, view, this.ctx.random, (key) =>
      index.service(key),
    );
    if (decision === null) return localReply(404, '', ['NR']);
    const set = index.endpointSet(decision.service, decision.port, decision.subset);
    const lb =
      effectivePolicy(decision.service, decision.subset).loadBalancer ?? DEFAULT_LOAD_BALANCER;
    const random = this.ctx.random;
    const now = this.ctx.nowMs();
    return {
      ...base,
      addHeadersMeshed: [
        PEER_HEADER,
        peerHeaderValue(this.ctx.ownPeerValue(), decision.service.hostname),
      ],
      pick: (tried) => pickEndpoint(set, lb, random, now, tried.size === 0 ? null : tried),
      retries: decision.retries,
      timeoutMs: decision.timeoutMs,
      service: decision.service,
    };
  }

  finished(r: ExchangeRecord, down: Http1Downstream): void {
    this.ctx.load.requests--;
    const { target } = down.info as unknown as OutboundInfo;
    const service = (r.plan.kind === 'forward' ? r.plan.service : undefined) ?? target.service;
    const edge = this.edge(r.endpoint, service);
    this.ctx.metrics.request(
      edge,
      r.status,
      '',
      flagsText(r.flags),
      r.durationMs,
      r.requestBytes,
      r.responseBytes,
    );
  }

  edge(
    endpoint: UpstreamEndpoint | null,
    service: MeshService,
    protocol: 'http' | 'grpc' = 'http',
  ): Edge {
    const index = this.ctx.index();
    const version = index?.version ?? -1;
    if (version !== this.edgesVersion) {
      this.edges = new Map();
      this.edgesVersion = version;
    }
    const key = `${endpoint?.key ?? '-'}|${service.key}|${protocol}`;
    let edge = this.edges.get(key);
    if (edge === undefined) {
      edge = new Edge({
        reporter: 'source',
        source: peerLabels(this.ctx.ownWorkload(), this.ctx.ownIdentity()),
        destination:
          endpoint === null ? UNKNOWN_PEER : peerLabels(endpoint.workload, endpoint.identity),
        service: service.hostname,
        serviceName: service.name,
        serviceNamespace: service.namespace,
        protocol,
        security: endpoint?.identity != null ? 'mutual_tls' : 'none',
      });
      this.edges.set(key, edge);
    }
    return edge;
  }
}

// --------------------------------------------------------------------------------------------

export interface InboundInfo {
  /** The app's address and port: the connection's original destination. */
  readonly app: UpstreamEndpoint;
  /** The verified peer's SPIFFE ID, or null for plain text. */
  readonly peer: string | null;
}

const INBOUND_REMOVE: ReadonlySet<string> = new Set([XFCC_HEADER, PEER_HEADER]);

export class InboundHttp implements Http1Handler {
  draining(): boolean {
    return this.ctx.draining();
  }

  private edges = new Map<string, Edge>();
  private edgesVersion = -1;
  readonly metrics: IstioMetrics;

  constructor(private readonly ctx: HandlerContext) {
    this.metrics = ctx.metrics;
  }

  /** An HTTP/2 stream planned here has ended. */
  requestDone(): void {
    this.ctx.load.requests--;
  }

  plan(head: RequestHead, down: Http1Downstream): ExchangePlan {
    const info = down.info as unknown as InboundInfo;
    return this.planRequest(info, headerValue(head.headers, REQUEST_ID_HEADER) !== null);
  }

  /** To the app, for either HTTP version. */
  planRequest(info: InboundInfo, hasRequestId: boolean): ExchangePlan {
    this.ctx.load.requests++;
    const add: string[] = [];
    if (info.peer !== null) {
      const own = this.ctx.ownIdentity();
      if (own !== null) add.push(XFCC_HEADER, xfccValue(own, info.peer));
    }
    if (!hasRequestId) add.push(REQUEST_ID_HEADER, randomUUID());
    const app = info.app;
    return {
      kind: 'forward',
      alpn: ALPN.http1,
      tls: null,
      connectTimeoutMs: this.ctx.connectTimeoutMs,
      removeHeaders: INBOUND_REMOVE,
      addHeaders: add,
      attemptCountHeader: false,
      pick: () => app,
      retries: NO_RETRIES,
      timeoutMs: null,
    };
  }

  finished(r: ExchangeRecord, down: Http1Downstream): void {
    this.ctx.load.requests--;
    const info = down.info as unknown as InboundInfo;
    // Peer metadata only from a verified sidecar.
    const peerValue = info.peer === null ? null : headerValue(r.head.headers, PEER_HEADER);
    const edge = this.edge(info, peerValue, r.head.host, 'http');
    this.ctx.metrics.request(
      edge,
      r.status,
      '',
      flagsText(r.flags),
      r.durationMs,
      r.requestBytes,
      r.responseBytes,
    );
  }

  edge(
    info: InboundInfo,
    peerValue: string | null,
    host: string | null,
    protocol: 'http' | 'grpc' | 'tcp',
  ): Edge {
    const index = this.ctx.index();
    const version = index?.version ?? -1;
    if (version !== this.edgesVersion) {
      this.edges = new Map();
      this.edgesVersion = version;
    }
    const key = `${info.peer ?? '-'}|${peerValue ?? '-'}|${info.app.port}|${protocol}|${peerValue === null ? (host ?? '') : ''}`;
    let edge = this.edges.get(key);
    if (edge === undefined) {
      const meta = peerValue === null ? null : parsePeerHeader(peerValue);
      const service = meta?.service ?? inboundService(index, info.app.port, host);
      const svc = service === null ? null : findService(index, service);
      const own = this.ctx.ownWorkload();
      edge = new Edge({
        reporter: 'destination',
        source: peerLabels(meta?.workload ?? null, info.peer),
        destination: peerLabels(own, info.peer !== null ? this.ctx.ownIdentity() : null),
        service: service ?? UNKNOWN,
        serviceName: svc?.name ?? UNKNOWN,
        serviceNamespace: svc?.namespace ?? own?.namespace ?? UNKNOWN,
        protocol,
        security: info.peer !== null ? 'mutual_tls' : 'none',
      });
      this.edges.set(key, edge);
    }
    return edge;
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

const h2HasRequestId = (h: http2.IncomingHttpHeaders): boolean =>
  h[REQUEST_ID_HEADER] !== undefined;

export class OutboundH2 implements H2Handler {
  constructor(private readonly http: OutboundHttp) {}

  plan(
    view: RequestView,
    headers: http2.IncomingHttpHeaders,
    info: unknown,
  ): ExchangePlan | LocalReply {
    return this.http.planRequest(
      (info as OutboundInfo).target,
      view,
      h2HasRequestId(headers),
      ALPN.h2,
    );
  }

  finished(r: H2Record, info: unknown): void {
    this.http.requestDone();
    const service =
      (r.plan.kind === 'forward' ? r.plan.service : undefined) ??
      (info as OutboundInfo).target.service;
    const edge = this.http.edge(r.endpoint, service, r.grpc ? 'grpc' : 'http');
    this.http.metrics.request(
      edge,
      r.status,
      r.grpcStatus,
      flagsText(r.flags),
      r.durationMs,
      r.requestBytes,
      r.responseBytes,
    );
  }
}

export class InboundH2 implements H2Handler {
  constructor(private readonly http: InboundHttp) {}

  plan(_view: RequestView, headers: http2.IncomingHttpHeaders, info: unknown): ExchangePlan {
    return this.http.planRequest(info as InboundInfo, h2HasRequestId(headers));
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
    this.http.metrics.request(
      edge,
      r.status,
      r.grpcStatus,
      flagsText(r.flags),
      r.durationMs,
      r.requestBytes,
      r.responseBytes,
    );
  }
}
