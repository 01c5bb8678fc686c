// The proxy's lookup tables, compiled once per configuration (pure): the request path only reads
// them. Envoy's listeners -> routes -> clusters -> endpoints, in Mooring's words:
//
//   destination `ip:port` -> a service port (a ClusterIP) or one endpoint (a Pod IP)
//   service key           -> the service (its routes and destination policy)
//   (service, port, subset) -> an EndpointSet, built on first use and kept
//
// Endpoint records are carried over from the previous index by key, so that a push keeps the
// in-flight counts and outlier-detection state of endpoints that did not change.

import type {
  LoadBalancer,
  MeshService,
  MeshState,
  MtlsMode,
  Protocol,
  ServicePort,
  TlsPolicy,
  TrafficPolicy,
} from '../../../api/mesh';
import {
  newUpstreamEndpoint,
  recordKey,
  type DialAs,
  type EndpointSet,
  type UpstreamEndpoint,
} from './endpoints';
import { inCidr } from '../../../ip';
import { hostMatches } from '../../../mesh/hosts';
import { compileAuthorization, type CompiledAuthorization } from './authorization';
import { compileJwt, type CompiledJwt } from './jwt';
import { localityGroups } from './locality';
import { routesForThisProxy } from './route';
import type { Sniffed } from './sniff';

export interface ServiceTarget {
  readonly kind: 'service';
  readonly service: MeshService;
  readonly port: ServicePort;
}

export interface EndpointTarget {
  readonly kind: 'endpoint';
  readonly service: MeshService;
  readonly port: ServicePort;
  readonly endpoint: UpstreamEndpoint;
}

export type Target = ServiceTarget | EndpointTarget;

/** ServiceEntry hosts without an address on one port: matched by what the connection says. */
interface PortEntries {
  /** `tls` ports: by the ClientHello's server name. */
  readonly sni: ServiceTarget[];
  /** HTTP ports: by the first request's Host. */
  readonly http: ServiceTarget[];
  /** A TCP port (or one of unknown protocol): every connection the others do not take. */
  any: ServiceTarget | null;
}

/** The exact host first, then the longest wildcard that takes `name`. */
function byHost(targets: readonly ServiceTarget[], name: string): ServiceTarget | null {
  let best: ServiceTarget | null = null;
  for (const t of targets) {
    const host = t.service.hostname;
    if (host === name) return t;
    if (hostMatches(host, name) && (best === null || host.length > best.service.hostname.length)) {
      best = t;
    }
  }
  return best;
}

/** `ip:port` with IPv6 in brackets: the key of a destination. */
export const addressKey = (address: string, port: number): string =>
  address.includes(':') ? `[${address.toLowerCase()}]:${port}` : `${address}:${port}`;

/**
 * The traffic policy of requests to a service port, optionally of a subset, as Istio merges it:
 * the subset's settings over the host's, each level's `portLevelSettings` for this port over
 * that level's own. The balancer (simple or consistent hash) is one setting.
 */
export function effectivePolicy(
  service: MeshService,
  subset: string | undefined,
  port?: number,
): TrafficPolicy {
  const host = service.policy?.trafficPolicy ?? {};
  const sub =
    subset === undefined
      ? undefined
      : service.policy?.subsets?.find((s) => s.name === subset)?.trafficPolicy;
  // The common case, no subset and no port-level settings: the host's own object.
  if (sub === undefined && host.portLevelSettings === undefined) return host;
  const base = atPort(host, port);
  return sub === undefined ? base : overlay(base, atPort(sub, port));
}

function atPort(policy: TrafficPolicy, port: number | undefined): TrafficPolicy {
  const own =
    port === undefined ? undefined : policy.portLevelSettings?.find((p) => p.port === port);
  return own === undefined ? policy : overlay(policy, own);
}

function overlay(base: TrafficPolicy, top: TrafficPolicy): TrafficPolicy {
  const balancer = top.loadBalancer !== undefined || top.consistentHash !== undefined ? top : base;
  return {
    loadBalancer: balancer.loadBalancer,
    consistentHash: balancer.consistentHash,
    connectionPool: top.connectionPool ?? base.connectionPool,
    outlierDetection: top.outlierDetection ?? base.outlierDetection,
    tls: top.tls ?? base.tls,
    localityLb: top.localityLb ?? base.localityLb,
  };
}

export const DEFAULT_LOAD_BALANCER: LoadBalancer = 'LEAST_REQUEST';

/** How a DestinationRule's `tls` has the proxy dial (none, or ISTIO_MUTUAL: the mesh's way). */
function dialAs(tls: TlsPolicy | undefined): DialAs {
  if (tls === undefined || tls.mode === 'ISTIO_MUTUAL') return 'mesh';
  return tls.mode === 'DISABLE' ? 'plain' : tls;
}

export class MeshIndex {
  readonly version: number;
  private readonly byDestination = new Map<string, Target>();
  private readonly sets = new Map<string, EndpointSet>();
  /** The same sets without a subset, by service object and port. */
  private readonly setsByService = new Map<MeshService, Map<number, EndpointSet>>();
  private readonly records = new Map<string, UpstreamEndpoint>();
  /** The previous configuration's records: a record made on demand keeps its counters. */
  private readonly previousRecords: Map<string, UpstreamEndpoint> | null;
  private readonly inboundProtocols = new Map<number, Protocol>();
  /** ServiceEntry CIDRs wider than one address: checked when no address matched. */
  private readonly subnets: { readonly cidr: string; readonly target: ServiceTarget }[] = [];
  /** ServiceEntry hosts without address, by port. */
  private readonly portEntries = new Map<number, PortEntries>();

  /** The configuration as this proxy applies it (its source-conditioned matches resolved). */
  readonly state: MeshState;
  /** The workload's AuthorizationPolicies, compiled; null: none (nothing to check). */
  readonly authorization: CompiledAuthorization | null;
  /** The workload's RequestAuthentications, compiled; null: none (no token is looked at). */
  readonly jwt: CompiledJwt | null;

  constructor(received: MeshState, previous: MeshIndex | null = null) {
    const state = routesForThisProxy(received);
    this.state = state;
    this.version = state.version;
    const old = previous?.records ?? null;
    this.previousRecords = old;
    for (const service of state.services.values()) {
      for (const port of service.ports) {
        const target: ServiceTarget = { kind: 'service', service, port };
        for (const address of service.addresses) {
          this.byDestination.set(addressKey(address, port.port), target);
        }
        if (service.entry !== undefined) this.indexEntry(target);
        for (const e of service.endpoints) {
          const epPort = e.ports[String(port.port)];
          if (epPort === undefined) continue;
          const record = this.record(e, epPort, old);
          const key = addressKey(e.address, epPort);
          // A ClusterIP wins over a Pod IP; the first service owning a Pod IP wins. An entry's
          // endpoints are reached through its hosts only (Istio has no listener at their address).
          if (service.entry === undefined && !this.byDestination.has(key)) {
            this.byDestination.set(key, { kind: 'endpoint', service, port, endpoint: record });
          }
        }
      }
    }
    for (const p of state.proxy.inbound.ports ?? []) this.inboundProtocols.set(p.port, p.protocol);
    this.authorization = compileAuthorization(state.proxy.inbound.authorization);
    this.jwt = compileJwt(state.proxy.inbound.jwt);
  }

  /** A ServiceEntry's port: by its CIDRs, or, without any address, by its port. */
  private indexEntry(target: ServiceTarget): void {
    const { service, port } = target;
    for (const cidr of service.entry?.subnets ?? []) this.subnets.push({ cidr, target });
    if (service.addresses.length > 0 || (service.entry?.subnets?.length ?? 0) > 0) return;
    let entries = this.portEntries.get(port.port);
    if (entries === undefined) {
      entries = { sni: [], http: [], any: null };
      this.portEntries.set(port.port, entries);
    }
    if (port.tls === true) entries.sni.push(target);
    else if (port.protocol === 'http' || port.protocol === 'unknown') entries.http.push(target);
    // The first entry of a TCP port takes the port (Istio: it must not be shared).
    if (port.tls !== true && port.protocol !== 'http') entries.any ??= target;
  }

  /** The record of endpoint `e` at `port` dialled as `as`, kept from `old` when it was there. */
  private record(
    e: MeshService['endpoints'][number],
    port: number,
    old: Map<string, UpstreamEndpoint> | null,
    as: DialAs = 'mesh',
  ): UpstreamEndpoint {
    const key = recordKey(e, port, as);
    let record = this.records.get(key);
    if (record !== undefined) return record;
    record = old?.get(key);
    if (record !== undefined) {
      record.ready = e.ready;
    } else {
      record = newUpstreamEndpoint(e, port, as);
    }
    this.records.set(key, record);
    return record;
  }

  /**
   * What a redirected connection to `address:port` reaches, or null (outside the mesh, or a
   * ServiceEntry host matched by what the connection says: `byPort`).
   */
  lookup(address: string, port: number): Target | null {
    let target = this.byDestination.get(addressKey(address, port));
    if (target === undefined && this.subnets.length > 0) {
      target = this.subnets.find(
        (s) => s.target.port.port === port && inCidr(address, s.cidr),
      )?.target;
    }
    if (target === undefined) return null;
    return target.kind === 'service' ? this.dialled(target, address, port) : target;
  }

  /** True when ServiceEntry hosts without address listen on `port` (sniff, then `byPort`). */
  hasPortEntries(port: number): boolean {
    return this.portEntries.has(port);
  }

  /**
   * The ServiceEntry host without address a connection to `address:port` reaches, from its first
   * bytes: a ClientHello's server name, an HTTP request's Host (`host`), else the port's TCP
   * entry; null: none (passthrough).
   */
  byPort(address: string, port: number, kind: Sniffed, host: string | null): Target | null {
    const entries = this.portEntries.get(port);
    if (entries === undefined) return null;
    let target: ServiceTarget | null = null;
    if (kind.kind === 'tls' && kind.serverName !== null) {
      target = byHost(entries.sni, kind.serverName.toLowerCase());
    } else if (kind.kind === 'http1' && host !== null) {
      target = byHost(entries.http, host);
    }
    target ??= entries.any;
    return target === null ? null : this.dialled(target, address, port);
  }

  /**
   * A ServiceEntry host of resolution NONE is dialled where the app dialled: one endpoint, the
   * original destination (plain text unless a DestinationRule originates TLS).
   */
  private dialled(target: ServiceTarget, address: string, port: number): Target {
    if (target.service.entry?.resolution !== 'NONE') return target;
    const { service } = target;
    const e = {
      address,
      ports: { [String(target.port.port)]: port },
      ready: true,
      identity: null,
      workload: null,
      pod: null,
    };
    const as = dialAs(effectivePolicy(service, undefined, target.port.port).tls);
    return {
      kind: 'endpoint',
      service,
      port: target.port,
      endpoint: newUpstreamEndpoint(e, port, as),
    };
  }

  service(key: string): MeshService | null {
    return this.state.services.get(key) ?? null;
  }

  /**
   * `service` as this configuration has it (by key): a connection kept alive, or accepted just
   * before an update, was matched under an older one; its next request follows the current
   * routes, policy and endpoints, as Envoy's do. Itself when this configuration has it no more.
   */
  current(service: MeshService): MeshService {
    return this.state.services.get(service.key) ?? service;
  }

  /**
   * The endpoints of a service port (by service port number), optionally of one subset, as this
   * configuration has them: `service` may come from an older one (a connection accepted before
   * the last update), and its key alone counts. A service this configuration no longer has gets
   * an empty set, not cached.
   */
  endpointSet(service: MeshService, servicePort: number, subset?: string): EndpointSet {
    // Without a subset (most requests), found by the service object and the port: no key text
    // is made and hashed for each request.
    const byPort = subset === undefined ? this.setsByService.get(service) : undefined;
    let set = byPort?.get(servicePort);
    if (set !== undefined) return set;
    const key = `${service.key}|${servicePort}|${subset ?? ''}`;
    set = this.sets.get(key) ?? this.newEndpointSet(service, servicePort, subset, key);
    if (set !== undefined && subset === undefined) {
      if (byPort === undefined) this.setsByService.set(service, new Map([[servicePort, set]]));
      else byPort.set(servicePort, set);
    }
    return set ?? { endpoints: [], next: 0 };
  }

  /** A set made and kept under `key`; undefined for a service this configuration has not. */
  private newEndpointSet(
    service: MeshService,
    servicePort: number,
    subset: string | undefined,
    key: string,
  ): EndpointSet | undefined {
    const current = this.state.services.get(service.key);
    if (current === undefined) return undefined;
    const endpoints: UpstreamEndpoint[] = [];
    // Each endpoint's locality, when this proxy knows its own (else no locality balancing).
    const caller = this.state.proxy.locality;
    const localities: { record: UpstreamEndpoint; locality: string }[] | null =
      caller === undefined ? null : [];
    const policy = effectivePolicy(current, subset, servicePort);
    const as = dialAs(policy.tls);
    for (const e of current.endpoints) {
      const port = e.ports[String(servicePort)];
      if (port === undefined) continue;
      if (subset !== undefined && e.subsets?.includes(subset) !== true) continue;
      // The records of the mesh's dial are made with the index; another dial's on demand.
      const record =
        as === 'mesh'
          ? this.records.get(recordKey(e, port, as))
          : this.record(e, port, this.previousRecords, as);
      if (record === undefined) continue;
      endpoints.push(record);
      localities?.push({ record, locality: e.locality ?? '' });
    }
    const groups =
      localities === null
        ? undefined
        : localityGroups(localities, {
            caller,
            setting: policy.localityLb,
            outlierDetection: policy.outlierDetection,
            preferClose: current.preferClose === true,
          });
    const set = { endpoints, next: 0, ...(groups === undefined ? {} : { groups }) };
    this.sets.set(key, set);
    return set;
  }

  /** The inbound mTLS mode of a port of this Pod. */
  inboundMode(port: number): MtlsMode {
    const inbound = this.state.proxy.inbound;
    return inbound.portMtls?.[String(port)] ?? inbound.mtlsMode;
  }

  /** The declared protocol of a port of this Pod ('unknown': sniff). */
  inboundProtocol(port: number): Protocol {
    return this.inboundProtocols.get(port) ?? 'unknown';
  }

  /** The endpoint sets balanced over so far under this configuration, for the config dump. */
  endpointSets(): IterableIterator<[string, EndpointSet]> {
    return this.sets.entries();
  }

  /** Every endpoint record, for the config dump. */
  endpointRecords(): IterableIterator<UpstreamEndpoint> {
    return this.records.values();
  }
}
