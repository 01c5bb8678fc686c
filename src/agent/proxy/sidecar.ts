// The sidecar proxy: the outbound (15001) and inbound (15006) listeners and what happens to each
// redirected connection, per the data-plane contract (PRODUCT.md).
//
// Outbound: the original destination names a service port (ClusterIP) or an endpoint (Pod IP)
// of the mesh -> routed by the proxy (HTTP per request, TCP per connection), mutual TLS to a
// meshed endpoint; anything else passes through untouched.
// Inbound: a ClientHello offering a Mooring ALPN is mutual TLS from a sidecar (the client chain
// must lead to the trust bundle); anything else is plain text, accepted unless the port's
// PeerAuthentication mode is STRICT. Traffic reaches the app on its original address and port.

import type http2 from 'node:http2';
import net from 'node:net';
import tls from 'node:tls';
import {
  meshConfigDump,
  type ConnectionPoolPolicy,
  type MeshService,
  type MeshState,
  type Protocol,
  type TcpKeepalive,
  type WorkloadInfo,
} from '../../api/mesh';
import {
  newUpstreamEndpoint,
  hash32,
  pickByHash,
  pickEndpoint,
  type Random,
  type UpstreamEndpoint,
} from './core/endpoints';
import { ALPN, MOORING_ALPNS, offersMooring, peerSpiffeId } from './core/identity';
import type { CircuitBreaker } from './core/circuit-breaker';
import {
  DEFAULT_LOAD_BALANCER,
  effectivePolicy,
  MeshIndex,
  type ServiceTarget,
  type Target,
} from './core/mesh-index';
import { tcpRoute, type TcpConnectionFacts } from './core/route';
import { encodeWorkload, MAX_PEER_LINE, PEER_LINE_PREFIX, decodeWorkload } from './core/peer';
import { clusterName, hostPort } from './core/request-facts';
import { headComplete, requestHost, sniff, type Sniffed } from './core/sniff';
import { dial } from './l4/dial';
import { relayTcp, type TcpReport } from './l4/tcp';
import { createTlsContexts, MESH_TLS, type TlsContexts, type WorkloadCredentials } from './l4/tls';
import { Http1Downstream } from './l7/http1-proxy';
import { ConnectionPool } from './l7/pool';
import {
  InboundHttp,
  inboundRefusal,
  OutboundHttp,
  peerLabels,
  principalOf,
  remoteOf,
  type HandlerContext,
  type InboundInfo,
  type OutboundInfo,
  InboundH2,
  OutboundH2,
} from './http-handlers';
import { H2SessionPool } from './l7/h2-sessions';
import { serveH2 } from './l7/http2-proxy';
import { Edge, UNKNOWN, UNKNOWN_PEER, type IstioMetrics } from './metrics';
import { ProxyTelemetry } from './telemetry/telemetry';

export interface OriginalDestination {
  readonly address: string;
  readonly port: number;
  readonly family: 4 | 6;
}

export type OriginalDestinationFn = (socket: net.Socket) => OriginalDestination | null;

export interface ProxyLog {
  debug(obj: object, msg: string): void;
  info(obj: object, msg: string): void;
  warn(obj: object, msg: string): void;
  error(obj: object, msg: string): void;
  /** Pino's: a line of that level would be written. */
  isLevelEnabled?(level: string): boolean;
}

export interface SidecarDeps {
  readonly log: ProxyLog;
  readonly originalDestination: OriginalDestinationFn;
  readonly random: Random;
  /** Milliseconds, for ejection times (Date.now in production). */
  readonly nowMs: () => number;
  readonly metrics: IstioMetrics;
  /** Tracing and the access log (default: configured by the mesh, access log on stdout). */
  readonly telemetry?: ProxyTelemetry;
  /**
   * Sets TCP keepalive on an upstream socket (a DestinationRule's tcpKeepalive): the agent's
   * addon sets all three settings; without it, Node's setKeepAlive sets the idle time only.
   */
  readonly tcpKeepalive?: (socket: net.Socket, k: TcpKeepalive) => void;
}

/** Node's own keepalive: the idle time (interval 1 s and 10 probes are Node's, not the rule's). */
const nodeKeepalive = (socket: net.Socket, k: TcpKeepalive): void => {
  socket.setKeepAlive(true, (k.timeS ?? 0) * 1000);
};

export interface SidecarOptions {
  readonly outboundPort: number;
  readonly inboundPort: number;
  /** null: every address (`::` dual stack, or `0.0.0.0` without IPv6). */
  readonly listenHost: string | null;
  /** Istio's default connect timeout is 10 s. */
  readonly connectTimeoutMs: number;
  /** Time allowed for a sidecar's TLS handshake. */
  readonly handshakeTimeoutMs: number;
  /** Ports of the proxy and agent themselves: a redirected connection to one is a loop. */
  readonly ownPorts: readonly number[];
  /**
   * A client connection with no request in flight (HTTP), or no byte either way (opaque TCP, an
   * upgraded connection), for this long is closed. Envoy's idle timeouts: 1 hour by default.
   */
  readonly idleTimeoutMs?: number;
}

export const SIDECAR_DEFAULTS = {
  connectTimeoutMs: 10_000,
  handshakeTimeoutMs: 10_000,
  idleTimeoutMs: 3_600_000,
  protocolDetectionTimeoutMs: 100,
} as const;

/** Idle keep-alive connections: to a sidecar (ours, long-lived) and to an app (Node's own
 * servers close idle connections after 5 s, so we let go first). */
const POOL_IDLE_MS = { sidecar: 60_000, app: 4_000 };

/** What a connection's tcp and tls routes read of it, once its first bytes are sniffed. */
const tcpFacts = (destination: string, kind: Sniffed): Omit<TcpConnectionFacts, 'source'> => ({
  destination,
  serverName: kind.kind === 'tls' ? kind.serverName : null,
});

interface ProxyCounters {
  outbound: number;
  inbound: number;
  passthrough: number;
  inboundMtls: number;
  /** Of those, resumed from a TLS session ticket (no certificate exchanged). */
  inboundMtlsResumed: number;
  inboundPlaintext: number;
  refusedPlaintext: number;
  refusedHandshake: number;
  refusedIdentity: number;
  /** Opaque TCP connections an AuthorizationPolicy refused (HTTP requests get a 403, counted as such). */
  refusedAuthorization: number;
  /** Outbound connections closed under REGISTRY_ONLY (Istio's BlackHoleCluster). */
  blackHole: number;
  loops: number;
  noOriginalDestination: number;
}

export class Sidecar {
  private index: MeshIndex | null = null;
  private tlsContexts: TlsContexts | null = null;
  private ownPeer = '';
  private outboundServer: net.Server | null = null;
  private inboundServer: net.Server | null = null;
  private readonly outboundPool = new ConnectionPool({
    idleTimeoutMs: POOL_IDLE_MS.sidecar,
    maxIdlePerKey: 64,
  });
  private readonly inboundPool = new ConnectionPool({
    idleTimeoutMs: POOL_IDLE_MS.app,
    maxIdlePerKey: 64,
  });
  private readonly outboundHttp: OutboundHttp;
  private readonly inboundHttp: InboundHttp;
  private readonly outboundH2: OutboundH2;
  private readonly inboundH2: InboundH2;
  private readonly outboundH2Pool = new H2SessionPool();
  private readonly inboundH2Pool = new H2SessionPool();
  private readonly appEndpoints = new Map<string, UpstreamEndpoint>();
  private readonly open = new Set<net.Socket>();
  private inboundDraining = false;
  /** What a drain waits for: HTTP requests and TCP connections in flight. */
  private readonly load = { requests: 0, tcp: 0 };
  /** Inbound HTTP/1.1 connections and HTTP/2 sessions, closed when the drain starts. */
  private readonly inboundHttp1 = new Set<Http1Downstream>();
  private readonly inboundSessions = new Set<http2.ServerHttp2Session>();
  /**
   * Plain-text inbound connections, by socket: their port, and how each ends when that port
   * turns STRICT (HTTP drains, opaque TCP closes), as Envoy drains a filter chain removed.
   */
  private readonly plaintextInbound = new Map<net.Socket, { port: number; stop: () => void }>();
  readonly telemetry: ProxyTelemetry;
  readonly counters: ProxyCounters = {
    outbound: 0,
    inbound: 0,
    passthrough: 0,
    inboundMtls: 0,
    inboundMtlsResumed: 0,
    inboundPlaintext: 0,
    refusedPlaintext: 0,
    refusedHandshake: 0,
    refusedIdentity: 0,
    refusedAuthorization: 0,
    blackHole: 0,
    loops: 0,
    noOriginalDestination: 0,
  };

  /**
   * At debug level only (read at each failure: /logging may change it at run time): one log line
   * per failed upstream attempt (HTTP or TCP).
   */
  private readonly onAttemptFailure: HandlerContext['onAttemptFailure'];
  private readonly idleTimeoutMs: number;
  /** The socket tuning of each keepalive setting (one function per rule's setting, kept). */
  private readonly keepaliveTuners = new WeakMap<TcpKeepalive, (socket: net.Socket) => void>();
  private readonly keepalive = (k: TcpKeepalive): ((socket: net.Socket) => void) => {
    let tune = this.keepaliveTuners.get(k);
    if (tune === undefined) {
      const set = this.deps.tcpKeepalive ?? nodeKeepalive;
      tune = (socket) => set(socket, k);
      this.keepaliveTuners.set(k, tune);
    }
    return tune;
  };

  constructor(
    private readonly deps: SidecarDeps,
    private readonly options: SidecarOptions,
  ) {
    this.idleTimeoutMs = options.idleTimeoutMs ?? SIDECAR_DEFAULTS.idleTimeoutMs;
    const log = deps.log;
    if (log.isLevelEnabled !== undefined) {
      this.onAttemptFailure = (service, endpoint, failure) => {
        if (log.isLevelEnabled?.('debug') !== true) return;
        log.debug(
          {
            service: service.key,
            endpoint: `${endpoint.address}:${endpoint.port}`,
            reason: failure.reason,
            detail: failure.detail,
          },
          'upstream attempt failed',
        );
      };
    }
    this.telemetry = deps.telemetry ?? new ProxyTelemetry();
    const ctx: HandlerContext = {
      index: () => this.index,
      tls: () => this.tlsContexts,
      random: deps.random,
      nowMs: deps.nowMs,
      metrics: deps.metrics,
      connectTimeoutMs: options.connectTimeoutMs,
      keepalive: this.keepalive,
      ownPeerValue: () => this.ownPeer,
      ownWorkload: () => this.index?.state.proxy.workload ?? null,
      ownIdentity: () => this.tlsContexts?.spiffeId ?? this.index?.state.proxy.identity ?? null,
      draining: () => this.inboundDraining,
      load: this.load,
      telemetry: this.telemetry,
      onEjection: (service, endpoint, untilMs) =>
        this.deps.log.info(
          {
            service: service.key,
            endpoint: `${endpoint.address}:${endpoint.port}`,
            ejections: endpoint.ejections,
            ejectedForMs: Math.max(0, untilMs - deps.nowMs()),
          },
          'outlier detection ejected an endpoint',
        ),
      ...(this.onAttemptFailure === undefined ? {} : { onAttemptFailure: this.onAttemptFailure }),
    };
    this.outboundHttp = new OutboundHttp(ctx);
    this.inboundHttp = new InboundHttp(ctx);
    this.outboundH2 = new OutboundH2(this.outboundHttp);
    this.inboundH2 = new InboundH2(this.inboundHttp);
  }

  // --- state ------------------------------------------------------------------------------

  setMesh(state: MeshState): void {
    const index = new MeshIndex(state, this.index);
    this.index = index;
    for (const [socket, { port, stop }] of this.plaintextInbound) {
      if (index.inboundMode(port) !== 'STRICT') continue;
      this.plaintextInbound.delete(socket);
      stop();
    }
    this.ownPeer = encodeWorkload(state.proxy.workload);
    this.telemetry.configure(state.settings, state.proxy);
    this.deps.metrics.configure(state.proxy.metricOverrides);
  }

  mesh(): MeshIndex | null {
    return this.index;
  }

  /** A new certificate or trust bundle: new handshakes use it, open connections keep theirs. */
  setCredentials(credentials: WorkloadCredentials, now: Date): void {
    this.tlsContexts = createTlsContexts(credentials, now);
    this.credentialsPem = {
      key: credentials.keyPem,
      cert: credentials.chainPem,
      ca: [...credentials.roots],
      ...MESH_TLS,
    };
    this.tlsServer?.setSecureContext(this.credentialsPem);
    this.deps.log.info(
      {
        spiffeId: credentials.spiffeId,
        roots: credentials.roots.length,
        fingerprint: this.tlsContexts.fingerprint,
      },
      'proxy credentials updated',
    );
  }

  credentials(): TlsContexts | null {
    return this.tlsContexts;
  }

  /** Ready to carry traffic: both listeners, a certificate and a configuration. */
  ready(): boolean {
    return (
      this.outboundServer !== null &&
      this.inboundServer !== null &&
      this.tlsContexts !== null &&
      this.index !== null
    );
  }

  // --- listeners --------------------------------------------------------------------------

  async start(): Promise<{ outbound: net.AddressInfo; inbound: net.AddressInfo }> {
    this.outboundServer = await this.listen(this.options.outboundPort, (s) => this.onOutbound(s));
    this.inboundServer = await this.listen(this.options.inboundPort, (s) => this.onInbound(s));
    return {
      outbound: this.outboundServer.address() as net.AddressInfo,
      inbound: this.inboundServer.address() as net.AddressInfo,
    };
  }

  private async listen(port: number, handler: (s: net.Socket) => void): Promise<net.Server> {
    const hosts = this.options.listenHost !== null ? [this.options.listenHost] : ['::', '0.0.0.0'];
    let lastError: Error | null = null;
    for (const host of hosts) {
      const server = net.createServer({ allowHalfOpen: true, noDelay: true }, (socket) => {
        this.open.add(socket);
        socket.once('close', () => this.open.delete(socket));
        handler(socket);
      });
      try {
        await new Promise<void>((resolve, reject) => {
          server.once('error', reject);
          server.listen({ host, port, ipv6Only: false }, () => {
            server.removeListener('error', reject);
            resolve();
          });
        });
        return server;
      } catch (err) {
        lastError = err as Error;
        // No IPv6 in this network namespace: listen on IPv4 only.
        if (
          (err as NodeJS.ErrnoException).code !== 'EAFNOSUPPORT' &&
          (err as NodeJS.ErrnoException).code !== 'EADDRNOTAVAIL'
        )
          break;
      }
    }
    throw lastError ?? new Error(`cannot listen on port ${port}`);
  }

  /**
   * The drain's first step: inbound stops accepting; kept-alive HTTP/1.1 connections close once
   * their request is answered (idle ones at once), HTTP/2 sessions get a GOAWAY and finish their
   * streams. Outbound keeps working: the app may still be finishing its own requests.
   */
  drainInbound(): void {
    this.inboundDraining = true;
    this.inboundServer?.close();
    for (const c of this.inboundHttp1) c.closeIfIdle();
    for (const s of this.inboundSessions) s.close();
  }

  /** HTTP requests and TCP connections in flight (the drain ends when none is left). */
  inFlight(): number {
    return this.load.requests + this.load.tcp;
  }

  private serveInboundHttp1(
    socket: net.Socket,
    info: InboundInfo,
    first: Buffer | null,
  ): Http1Downstream {
    const conn = new Http1Downstream(
      socket,
      this.inboundHttp,
      this.inboundPool,
      info as unknown as Record<string, unknown>,
      first,
      this.idleTimeoutMs,
    );
    this.inboundHttp1.add(conn);
    socket.once('close', () => this.inboundHttp1.delete(conn));
    if (this.inboundDraining) conn.closeIfIdle();
    return conn;
  }

  private serveOutboundHttp1(socket: net.Socket, first: Buffer | null, target: Target): void {
    const info: OutboundInfo = { target, source: socket.remoteAddress ?? '' };
    new Http1Downstream(
      socket,
      this.outboundHttp,
      this.outboundPool,
      info as unknown as Record<string, unknown>,
      first,
      this.idleTimeoutMs,
    );
  }

  private serveOutboundH2(socket: net.Socket, first: Buffer | null, target: Target): void {
    const info: OutboundInfo = { target, source: socket.remoteAddress ?? '' };
    serveH2(socket, first, this.outboundH2, this.outboundH2Pool, info, this.idleTimeoutMs);
  }

  private serveInboundH2(
    socket: net.Socket,
    first: Buffer | null,
    info: InboundInfo,
  ): http2.ServerHttp2Session {
    const session = serveH2(
      socket,
      first,
      this.inboundH2,
      this.inboundH2Pool,
      info,
      this.idleTimeoutMs,
    );
    this.inboundSessions.add(session);
    session.once('close', () => this.inboundSessions.delete(session));
    if (this.inboundDraining) session.close();
    return session;
  }

  async close(): Promise<void> {
    this.inboundDraining = true;
    const closing = [this.outboundServer, this.inboundServer].map(
      (s) => new Promise<void>((resolve) => (s === null ? resolve() : s.close(() => resolve()))),
    );
    for (const s of this.open) s.destroy();
    this.outboundPool.closeIdle();
    this.inboundPool.closeIdle();
    this.outboundH2Pool.close();
    this.inboundH2Pool.close();
    await Promise.all([...closing, this.telemetry.close()]);
  }

  /** Connections open through the proxy (both directions). */
  openConnections(): number {
    return this.open.size;
  }

  // --- outbound ---------------------------------------------------------------------------

  private isOwn(dst: { address: string; port: number }): boolean {
    if (!this.options.ownPorts.includes(dst.port)) return false;
    const podIp = this.index?.state.proxy.pod.ip ?? null;
    return (
      dst.address === podIp ||
      dst.address === '127.0.0.1' ||
      dst.address === '::1' ||
      podIp === null
    );
  }

  private onOutbound(socket: net.Socket): void {
    this.counters.outbound++;
    const dst = this.redirectedTo(socket);
    if (dst === null) return;
    if (this.isOwn(dst)) {
      this.counters.loops++;
      socket.destroy();
      return;
    }
    const index = this.index;
    const target = index?.lookup(dst.address, dst.port) ?? null;
    if (target !== null) {
      this.dispatchOutbound(socket, target, target.port.protocol, dst.address);
    } else if (index?.hasPortEntries(dst.port) === true) {
      this.outboundByPort(socket, dst);
    } else {
      this.passthrough(socket, dst, null);
    }
  }

  /**
   * A connection to an address the mesh does not know, on a port where ServiceEntry hosts
   * without address listen: what it says (a server name, a Host) picks one, or it passes through.
   */
  private outboundByPort(socket: net.Socket, dst: OriginalDestination): void {
    const then = (first: Buffer, kind: Sniffed): void => {
      const host = kind.kind === 'http1' ? requestHost(first) : null;
      const target = this.index?.byPort(dst.address, dst.port, kind, host) ?? null;
      if (target === null) {
        this.passthrough(socket, dst, first);
      } else if (kind.kind === 'http1' && target.port.protocol !== 'tcp') {
        this.serveOutboundHttp1(socket, first, target);
      } else if (kind.kind === 'http2' && target.port.protocol !== 'tcp') {
        this.serveOutboundH2(socket, first, target);
      } else {
        this.outboundTcp(socket, target, first, tcpFacts(dst.address, kind));
      }
    };
    // An HTTP request is read up to the end of its head, for its Host.
    this.sniffFirst(
      socket,
      this.detectionTimeoutMs(),
      then,
      (buf, kind) => kind.kind !== 'http1' || headComplete(buf),
    );
  }

  /** `destination`: the connection's original destination address. */
  private dispatchOutbound(
    socket: net.Socket,
    target: Target,
    protocol: Protocol,
    destination: string,
  ): void {
    switch (protocol) {
      case 'http':
      case 'http2':
      case 'grpc':
        // A port declared HTTP carries the version its client speaks, as it came (as Linkerd
        // does): HTTP/2 from the first byte to a port declared http (a gRPC client to a misnamed
        // port), HTTP/1.1 to one declared http2 or grpc (curl). Anything else is the declared
        // version's to refuse.
        this.sniffFirst(socket, this.options.handshakeTimeoutMs, (first, kind) => {
          const h2 = kind.kind === 'http2' || (kind.kind !== 'http1' && protocol !== 'http');
          if (h2) this.serveOutboundH2(socket, first, target);
          else this.serveOutboundHttp1(socket, first, target);
        });
        return;
      case 'tcp':
        // A Service with tls routes: its clients' ClientHello names the server they route on.
        if (
          target.kind === 'service' &&
          this.index?.current(target.service).tlsRoutes !== undefined
        ) {
          this.sniffFirst(socket, this.detectionTimeoutMs(), (first, kind) =>
            this.outboundTcp(socket, target, first, tcpFacts(destination, kind)),
          );
          return;
        }
        this.outboundTcp(socket, target, null, { destination });
        return;
      default:
        this.sniffFirst(socket, this.detectionTimeoutMs(), (first, kind) => {
          if (kind.kind === 'http1') {
            this.serveOutboundHttp1(socket, first, target);
          } else if (kind.kind === 'http2') {
            this.serveOutboundH2(socket, first, target);
          } else {
            this.outboundTcp(socket, target, first, tcpFacts(destination, kind));
          }
        });
    }
  }

  private detectionTimeoutMs(): number {
    return (
      this.index?.state.settings.protocolDetectionTimeoutMs ??
      SIDECAR_DEFAULTS.protocolDetectionTimeoutMs
    );
  }

  /**
   * Where an opaque TCP connection to a Service goes: the Service port itself, or the destination
   * a VirtualService's tcp route draws (another port, a subset, another Service). null: a route to
   * a Service this configuration does not have.
   */
  private tcpCluster(
    index: MeshIndex,
    target: ServiceTarget,
    conn: TcpConnectionFacts,
  ): { service: MeshService; port: number; subset: string | undefined } | null {
    const own = index.current(target.service);
    const routed = tcpRoute(own, target.port.port, this.deps.random, conn);
    if (routed === null) return { service: own, port: target.port.port, subset: undefined };
    const service = routed.service === own.key ? own : index.service(routed.service);
    if (service === null) return null;
    return { service, port: routed.port ?? target.port.port, subset: routed.subset };
  }

  /** `conn`: what a VirtualService's tcp and tls routes match on (the source is the socket's). */
  private outboundTcp(
    socket: net.Socket,
    target: Target,
    first: Buffer | null,
    conn: Omit<TcpConnectionFacts, 'source'>,
  ): void {
    const index = this.index as MeshIndex;
    let endpoint: UpstreamEndpoint | null;
    let breaker: CircuitBreaker | undefined;
    // A DestinationRule's connectionPool.tcp, for a Service's address.
    let tcpPool: ConnectionPoolPolicy['tcp'];
    // The Service the connection goes to: the target's, or a VirtualService's tcp route's.
    let destination = target.service;
    if (target.kind === 'endpoint') {
      endpoint = target.endpoint;
    } else {
      const cluster = this.tcpCluster(index, target, {
        ...conn,
        ...(socket.remoteAddress === undefined ? {} : { source: socket.remoteAddress }),
      });
      if (cluster === null) {
        // A tcp route to a Service the mesh does not know: Envoy's missing cluster.
        this.tcpRefused(socket, target, 'NC');
        return;
      }
      const { service, port, subset } = cluster;
      destination = service;
      const policy = effectivePolicy(service, subset, port);
      tcpPool = policy.connectionPool?.tcp;
      breaker = this.outboundHttp.breaker(service, port, subset, policy.connectionPool);
      if (breaker !== undefined && !breaker.mayConnectTcp()) {
        // Envoy's TCP proxy: beyond maxConnections a new connection is closed at once (UO).
        this.tcpRefused(socket, target, 'UO');
        return;
      }
      const set = index.endpointSet(service, port, subset);
      const lb = policy.loadBalancer ?? DEFAULT_LOAD_BALANCER;
      // Consistent hashing of TCP has the source address only to hash on (Envoy's TCP proxy).
      endpoint =
        policy.consistentHash?.sourceIp === true
          ? pickByHash(set, hash32(socket.remoteAddress ?? ''), this.deps.random, this.deps.nowMs())
          : pickEndpoint(set, lb, this.deps.random, this.deps.nowMs());
    }
    const edge = this.outboundHttp.edge(endpoint, destination);
    const tcpEdge = new Edge({ ...edge.labels, protocol: 'tcp' });
    if (endpoint === null) {
      this.deps.metrics.tcpOpened(tcpEdge);
      this.deps.metrics.tcpClosed(tcpEdge);
      socket.destroy();
      return;
    }
    const chosen = endpoint;
    chosen.active++;
    chosen.attempts++;
    breaker?.connectionOpened();
    const done = (): void => {
      chosen.active--;
      if (breaker === undefined) return;
      // Room for a request of the same cluster waiting for an HTTP connection (a sniffed port).
      breaker.connectionClosed();
      breaker.pump();
    };
    socket.pause();
    dial(
      {
        endpoint: chosen,
        alpn: ALPN.tcp,
        tls: this.tlsContexts,
        connectTimeoutMs: tcpPool?.connectTimeoutMs ?? this.options.connectTimeoutMs,
        ...(tcpPool?.keepalive === undefined ? {} : { tune: this.keepalive(tcpPool.keepalive) }),
      },
      (err, upstream) => {
        if (err !== null || upstream === null) {
          chosen.failures++;
          done();
          this.onAttemptFailure?.(target.service, chosen, {
            kind: 'failure',
            reason: err?.kind === 'connect-failure' ? 'connect-failure' : 'tls',
            ...(err === null ? {} : { detail: err.message }),
          });
          this.deps.metrics.tcpOpened(tcpEdge);
          this.deps.metrics.tcpClosed(tcpEdge);
          socket.destroy();
          return;
        }
        if (socket.destroyed) {
          done();
          upstream.destroy();
          return;
        }
        if (chosen.identity !== null) upstream.write(`${PEER_LINE_PREFIX}${this.ownPeer}\n`);
        this.deps.metrics.tcpOpened(tcpEdge);
        this.load.tcp++;
        relayTcp(
          socket,
          upstream,
          first,
          this.tcpReport(tcpEdge, 'outbound', target.port.port, chosen, socket, done),
          true,
          tcpPool?.idleTimeoutMs ?? this.idleTimeoutMs,
          tcpPool?.maxConnectionDurationMs,
        );
        socket.resume();
      },
    );
  }

  /** A TCP connection the proxy closes at once: counted opened and closed, logged with `flags`. */
  private tcpRefused(socket: net.Socket, target: Target, flags: string): void {
    const edge = new Edge({
      ...this.outboundHttp.edge(null, target.service).labels,
      protocol: 'tcp',
    });
    this.deps.metrics.tcpOpened(edge);
    this.load.tcp++;
    this.tcpReport(edge, 'outbound', target.port.port, null, socket, undefined, flags).closed();
    socket.destroy();
  }

  private passthrough(socket: net.Socket, dst: OriginalDestination, first: Buffer | null): void {
    const state = this.index?.state;
    const policy = state?.proxy.outboundTrafficPolicy ?? state?.settings.outboundTrafficPolicy;
    if (policy === 'REGISTRY_ONLY') {
      // Istio's BlackHoleCluster: the connection is counted, and closed.
      this.counters.blackHole++;
      const edge = this.outsideEdge('BlackHoleCluster');
      this.deps.metrics.tcpOpened(edge);
      this.deps.metrics.tcpClosed(edge);
      this.deps.log.debug(
        { address: dst.address, port: dst.port },
        'REGISTRY_ONLY: outbound connection to a destination outside the mesh closed',
      );
      socket.destroy();
      return;
    }
    this.counters.passthrough++;
    socket.pause();
    this.relayPlain(socket, dst, first, this.outsideEdge('PassthroughCluster'), 'outbound');
  }

  /**
   * Plain TCP to `dst` (a passthrough destination, or the app behind the inbound side): the
   * client's bytes relayed once it connects, Istio's TCP metrics and access log for the
   * connection; a failed connect counts as a connection opened and closed.
   */
  private relayPlain(
    socket: net.Socket,
    dst: { readonly address: string; readonly port: number },
    first: Buffer | null,
    edge: Edge,
    direction: 'outbound' | 'inbound',
  ): void {
    const upstream = net.connect({
      host: dst.address,
      port: dst.port,
      allowHalfOpen: true,
      noDelay: true,
    });
    upstream.once('error', () => {
      this.deps.metrics.tcpOpened(edge);
      this.deps.metrics.tcpClosed(edge);
      socket.destroy();
      upstream.destroy();
    });
    upstream.once('connect', () => {
      upstream.removeAllListeners('error');
      this.deps.metrics.tcpOpened(edge);
      this.load.tcp++;
      const report = this.tcpReport(edge, direction, dst.port, dst, socket);
      // The plain-text side: the client going out, the app coming in.
      relayTcp(socket, upstream, first, report, direction === 'outbound', this.idleTimeoutMs);
      socket.resume();
    });
  }

  private readonly outsideEdges = new Map<string, { version: number; edge: Edge }>();

  /** The metrics' edge of a connection to a destination outside the mesh, by Istio's cluster. */
  private outsideEdge(cluster: 'PassthroughCluster' | 'BlackHoleCluster'): Edge {
    const version = this.index?.version ?? -1;
    const cached = this.outsideEdges.get(cluster);
    if (cached?.version === version) return cached.edge;
    const own = this.index?.state.proxy.workload ?? null;
    const edge = new Edge({
      reporter: 'source',
      source: peerLabels(own, this.tlsContexts?.spiffeId ?? null),
      destination: UNKNOWN_PEER,
      service: cluster,
      serviceName: cluster,
      serviceNamespace: UNKNOWN,
      protocol: 'tcp',
      security: 'none',
    });
    this.outsideEdges.set(cluster, { version, edge });
    return edge;
  }

  // --- inbound ----------------------------------------------------------------------------

  private onInbound(socket: net.Socket): void {
    this.counters.inbound++;
    const dst = this.redirectedTo(socket);
    if (dst === null) return;
    if (this.options.ownPorts.includes(dst.port)) {
      this.counters.loops++;
      socket.destroy();
      return;
    }
    const index = this.index;
    const mode = index?.inboundMode(dst.port) ?? 'PERMISSIVE';
    const protocol = index?.inboundProtocol(dst.port) ?? 'unknown';
    const app = this.appEndpoint(dst);
    if (mode === 'DISABLE') {
      this.inboundPlaintext(socket, app, protocol, null, null);
      return;
    }
    // Wait for the client's first bytes. A plain-text client of a server-first protocol sends
    // nothing: after the detection timeout it is taken as plain TCP (never under STRICT).
    const waitMs =
      mode === 'STRICT'
        ? this.options.handshakeTimeoutMs
        : protocol === 'tcp' || protocol === 'unknown'
          ? this.detectionTimeoutMs()
          : this.options.handshakeTimeoutMs;
    this.sniffFirst(socket, waitMs, (first, kind) => {
      if (kind.kind === 'tls' && offersMooring(kind.alpn)) {
        this.inboundMtls(socket, first, app);
        return;
      }
      // The mode when the bytes came: a port that turned STRICT meanwhile refuses them too.
      if ((this.index?.inboundMode(dst.port) ?? 'PERMISSIVE') === 'STRICT') {
        this.counters.refusedPlaintext++;
        this.deps.log.debug({ port: dst.port }, 'STRICT: plain-text connection refused');
        socket.destroy();
        return;
      }
      this.inboundPlaintext(socket, app, protocol, first, kind);
    });
  }

  private appEndpoint(dst: OriginalDestination): UpstreamEndpoint {
    const key = `${dst.address}|${dst.port}`;
    let e = this.appEndpoints.get(key);
    if (e === undefined) {
      e = newUpstreamEndpoint(
        { address: dst.address, ports: {}, ready: true, identity: null, workload: null, pod: null },
        dst.port,
        'plain',
      );
      this.appEndpoints.set(key, e);
    }
    return e;
  }

  private inboundPlaintext(
    socket: net.Socket,
    app: UpstreamEndpoint,
    protocol: Protocol,
    first: Buffer | null,
    sniffed: Sniffed | null,
  ): void {
    this.counters.inboundPlaintext++;
    const info: InboundInfo = { app, peer: null, source: socket.remoteAddress ?? '' };
    const kind =
      sniffed?.kind ??
      (protocol === 'http'
        ? 'http1'
        : protocol === 'http2' || protocol === 'grpc'
          ? 'http2'
          : 'other');
    let stop: () => void;
    if (kind === 'http1' && protocol !== 'tcp') {
      const conn = this.serveInboundHttp1(socket, info, first);
      stop = () => conn.drain();
    } else if (kind === 'http2' && protocol !== 'tcp') {
      const session = this.serveInboundH2(socket, first, info);
      stop = () => session.close();
    } else {
      this.inboundTcp(socket, app, first, null, null);
      stop = () => socket.destroy();
    }
    this.plaintextInbound.set(socket, { port: app.port, stop });
    socket.once('close', () => this.plaintextInbound.delete(socket));
  }

  /**
   * The TLS server of the inbound side. It never listens: the inbound listener hands it each
   * connection that opened with a Mooring ClientHello. Node's tls.Server checks the client
   * chain against the bundle and refuses an unverified one; we check the SPIFFE ID.
   */
  private mtlsServer(): tls.Server {
    if (this.tlsServer !== null) return this.tlsServer;
    const server = tls.createServer({
      requestCert: true,
      rejectUnauthorized: true,
      ALPNProtocols: [...MOORING_ALPNS],
      handshakeTimeout: this.options.handshakeTimeoutMs,
      allowHalfOpen: true,
      ...MESH_TLS,
    });
    if (this.credentialsPem !== null) server.setSecureContext(this.credentialsPem);
    server.on('tlsClientError', (err: Error) => {
      this.counters.refusedHandshake++;
      this.deps.log.debug({ err: err.message }, 'inbound mTLS handshake refused');
    });
    server.on('secureConnection', (socket: tls.TLSSocket) => this.onMtls(socket));
    this.tlsServer = server;
    return server;
  }

  private tlsServer: tls.Server | null = null;
  private credentialsPem: tls.SecureContextOptions | null = null;
  /** The app endpoint of each connection in its handshake, by the client's address and port. */
  private readonly tlsApps = new Map<string, UpstreamEndpoint>();

  private inboundMtls(raw: net.Socket, first: Buffer, app: UpstreamEndpoint): void {
    const contexts = this.tlsContexts;
    if (contexts === null || this.index === null) {
      // No certificate yet: a sidecar cannot be answered (never in plain text).
      this.counters.refusedHandshake++;
      raw.destroy();
      return;
    }
    const server = this.mtlsServer();
    raw.pause();
    raw.unshift(first);
    const key = `${raw.remoteAddress}|${raw.remotePort}`;
    this.tlsApps.set(key, app);
    raw.once('close', () => this.tlsApps.delete(key));
    server.emit('connection', raw);
  }

  private onMtls(socket: tls.TLSSocket): void {
    const index = this.index;
    const app = this.tlsApps.get(`${socket.remoteAddress}|${socket.remotePort}`);
    socket.on('error', () => socket.destroy());
    if (index === null || app === undefined) {
      socket.destroy();
      return;
    }
    const peer = peerSpiffeId(
      socket.getPeerCertificate().subjectaltname,
      index.state.settings.trustDomain,
    );
    if (!peer.ok) {
      this.counters.refusedIdentity++;
      this.deps.log.debug({ reason: peer.reason }, 'inbound mTLS: peer identity refused');
      socket.destroy();
      return;
    }
    this.counters.inboundMtls++;
    if (socket.isSessionReused()) this.counters.inboundMtlsResumed++;
    const info: InboundInfo = { app, peer: peer.id, source: socket.remoteAddress ?? '' };
    switch (socket.alpnProtocol) {
      case ALPN.http1:
        this.serveInboundHttp1(socket, info, null);
        return;
      case ALPN.h2:
        this.serveInboundH2(socket, null, info);
        return;
      default:
        this.readPeerLine(socket, (workload, rest) =>
          this.inboundTcp(socket, app, rest, peer.id, workload),
        );
    }
  }

  /** The TCP preamble of a sidecar: `MOORING-PEER <encoded workload>\n`. */
  private readPeerLine(
    socket: net.Socket,
    then: (workload: WorkloadInfo | null, rest: Buffer | null) => void,
  ): void {
    let buffered: Buffer | null = null;
    const onData = (chunk: Buffer): void => {
      buffered = buffered === null ? chunk : Buffer.concat([buffered, chunk]);
      const nl = buffered.indexOf(0x0a);
      if (nl === -1) {
        if (buffered.length > MAX_PEER_LINE) socket.destroy();
        return;
      }
      socket.removeListener('data', onData);
      socket.pause();
      const line = buffered.toString('latin1', 0, nl);
      const rest = buffered.subarray(nl + 1);
      const workload = line.startsWith(PEER_LINE_PREFIX)
        ? decodeWorkload(line.slice(PEER_LINE_PREFIX.length))
        : null;
      if (!line.startsWith(PEER_LINE_PREFIX)) {
        socket.destroy();
        return;
      }
      then(workload, rest.length > 0 ? rest : null);
    };
    socket.on('data', onData);
  }

  private inboundTcp(
    socket: net.Socket,
    app: UpstreamEndpoint,
    first: Buffer | null,
    peer: string | null,
    workload: WorkloadInfo | null,
  ): void {
    socket.pause();
    const index = this.index;
    const own = index?.state.proxy.workload ?? null;
    const edge = new Edge({
      reporter: 'destination',
      source: peerLabels(workload, peer),
      destination: peerLabels(own, peer !== null ? (this.tlsContexts?.spiffeId ?? null) : null),
      service: UNKNOWN,
      serviceName: UNKNOWN,
      serviceNamespace: own?.namespace ?? UNKNOWN,
      protocol: 'tcp',
      security: peer !== null ? 'mutual_tls' : 'none',
    });
    const refusal = inboundRefusal(index, { app, peer, source: socket.remoteAddress ?? '' }, null);
    if (refusal !== null) {
      // Counted as a connection opened and closed, as Envoy's RBAC network filter leaves it.
      this.counters.refusedAuthorization++;
      this.deps.metrics.tcpOpened(edge);
      this.deps.metrics.tcpClosed(edge);
      this.deps.log.debug(
        { port: app.port, policy: refusal === '' ? null : refusal },
        refusal === ''
          ? 'inbound TCP refused: no ALLOW AuthorizationPolicy matches'
          : 'inbound TCP refused by a DENY AuthorizationPolicy',
      );
      socket.destroy();
      return;
    }
    this.relayPlain(socket, app, first, edge, 'inbound');
  }

  // --- helpers ----------------------------------------------------------------------------

  /** Istio's TCP metrics of one connection, and its access log line when it closes. */
  private tcpReport(
    edge: Edge,
    direction: 'outbound' | 'inbound',
    port: number,
    upstream: { readonly address: string; readonly port: number } | null,
    client: net.Socket,
    onClose?: () => void,
    flags = '-',
  ): TcpReport {
    const startMs = this.telemetry.nowMs();
    let sent = 0;
    let received = 0;
    return {
      bytes: (s, r) => {
        sent += s;
        received += r;
        this.deps.metrics.tcpBytes(edge, s, r);
      },
      closed: () => {
        onClose?.();
        this.load.tcp--;
        this.deps.metrics.tcpClosed(edge);
        if (!this.telemetry.logs(direction)) return;
        const l = edge.labels;
        const service = l.service === UNKNOWN ? null : l.service;
        const now = this.telemetry.nowMs();
        this.telemetry.finished(null, {
          direction,
          startMs,
          durationMs: now - startMs,
          protocol: 'TCP',
          method: null,
          path: null,
          authority: null,
          status: 0,
          grpcStatus: '',
          flags,
          bytesReceived: received,
          bytesSent: sent,
          requestId: null,
          userAgent: null,
          upstreamHost: upstream === null ? null : hostPort(upstream.address, upstream.port),
          upstreamCluster:
            service === 'PassthroughCluster' ? service : clusterName(direction, port, service),
          downstreamRemote: remoteOf(client),
          sourcePrincipal: principalOf(l.source),
          destinationPrincipal: principalOf(l.destination),
          service,
          port,
          mtls: l.security === 'mutual_tls',
        });
      },
    };
  }

  /**
   * Where an accepted connection was redirected from; null, the connection closed, for a direct
   * connection to the listener (nothing to proxy to).
   */
  private redirectedTo(socket: net.Socket): OriginalDestination | null {
    socket.on('error', () => socket.destroy());
    const dst = this.originalDestination(socket);
    if (dst === null) {
      this.counters.noOriginalDestination++;
      socket.destroy();
    }
    return dst;
  }

  private originalDestination(socket: net.Socket): OriginalDestination | null {
    try {
      return this.deps.originalDestination(socket);
    } catch (err) {
      this.deps.log.warn({ err: (err as Error).message }, 'cannot read the original destination');
      return null;
    }
  }

  /**
   * Reads the client's first bytes until `sniff` knows what they are (and, with `enough`, until
   * it says they are enough), or `timeoutMs` passes with nothing (a server-first protocol:
   * `other`, no bytes). The bytes read are handed on.
   */
  private sniffFirst(
    socket: net.Socket,
    timeoutMs: number,
    then: (first: Buffer, kind: Sniffed) => void,
    enough?: (buffered: Buffer, kind: Sniffed) => boolean,
  ): void {
    let buffered: Buffer = Buffer.alloc(0);
    let done = false;
    // What the bytes so far are, while `enough` waits for more of them.
    let known: Sniffed = { kind: 'other' };
    const finish = (kind: Sniffed): void => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      socket.removeListener('data', onData);
      socket.removeListener('end', onEnd);
      socket.pause();
      then(buffered, kind);
    };
    const onData = (chunk: Buffer): void => {
      buffered = buffered.length === 0 ? chunk : Buffer.concat([buffered, chunk]);
      const kind = sniff(buffered);
      if (kind.kind === 'more') return;
      known = kind;
      if (enough === undefined || enough(buffered, kind)) finish(kind);
    };
    const onEnd = (): void => finish(known);
    const timer = setTimeout(() => finish(known), timeoutMs);
    socket.on('data', onData);
    socket.once('end', onEnd);
  }

  /** The proxy's state for `/config_dump` (its `mesh` part as the server's debug view has it). */
  configDump(): Record<string, unknown> {
    const index = this.index;
    return {
      source: 'proxy',
      ready: this.ready(),
      tls:
        this.tlsContexts === null
          ? null
          : {
              spiffeId: this.tlsContexts.spiffeId,
              fingerprint: this.tlsContexts.fingerprint,
              since: this.tlsContexts.since,
            },
      mesh: index === null ? null : meshConfigDump(index.state),
      endpoints:
        index === null
          ? []
          : [...index.endpointRecords()].map((e) => ({
              address: e.address,
              port: e.port,
              identity: e.identity,
              ready: e.ready,
              active: e.active,
              attempts: e.attempts,
              failures: e.failures,
              ejectedUntil: e.ejectedUntil === 0 ? null : new Date(e.ejectedUntil).toISOString(),
              ejections: e.ejections,
            })),
      endpointSets:
        index === null
          ? {}
          : Object.fromEntries(
              [...index.endpointSets()].map(([key, set]) => [
                key,
                set.groups === undefined
                  ? set.endpoints.map((e) => `${e.address}:${e.port}`)
                  : {
                      [set.groups.kind === 'priority' ? 'priorities' : 'localities']:
                        set.groups.sets.map((g, i) => ({
                          locality: set.groups?.localities[i],
                          ...(set.groups?.weights === undefined
                            ? {}
                            : { weight: set.groups.weights[i] }),
                          endpoints: g.endpoints.map((e) => `${e.address}:${e.port}`),
                        })),
                    },
              ]),
            ),
      connections: {
        open: this.open.size,
        outboundPool: this.outboundPool.stats(),
        inboundPool: this.inboundPool.stats(),
        counters: { ...this.counters },
      },
    };
  }
}
