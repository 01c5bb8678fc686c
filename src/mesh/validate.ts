// Raw Kubernetes objects (parsed YAML or JSON, from a file or the apiserver) into the checked
// forms of objects.ts. Every problem names the field (`spec.ports[1].port`) and what is wrong;
// an object with a problem is not used (its source reports it and keeps the last valid version),
// while a bad per-Pod proxy annotation only drops that annotation (a warning), so that a typo in
// a tuning knob never takes a Pod's identity out of the mesh.
// Pure: no I/O. Rules follow the apiserver's own validation where the model depends on them.

import { MTLS_MODES, type MtlsMode } from '../api/mesh';
import { STATUS_ANNOTATION } from '../constants';
import {
  MESH_API_VERSIONS,
  MESH_KINDS,
  nodeLocality,
  type ContainerPortSpec,
  type EndpointSliceObject,
  type MeshKind,
  type MeshObject,
  type Meta,
  type NodeObject,
  type PeerAuthenticationObject,
  type PeerAuthMode,
  type PodObject,
  type ServiceObject,
  type ServicePortSpec,
  type SliceEndpoint,
  type SlicePort,
} from './objects';
import { failClosedPolicy, readAuthorizationPolicy } from './authorization-validate';
import { readRequestAuthentication } from './request-authentication-validate';
import { readServiceEntry } from './service-entry-validate';
import { readSidecar } from './sidecar-validate';
import { readTelemetry } from './telemetry-validate';
import { readWorkloadEntry } from './workload-entry-validate';
import {
  readDestinationRule,
  readGatewayTcpRoute,
  readGatewayTlsRoute,
  readGrpcRoute,
  readHttpRoute,
  readVirtualService,
} from './traffic-validate';
import { Fields, isObject, isPort, type FieldProblem, type Json } from './fields';

export type { FieldProblem } from './fields';

/** Per-Pod overrides of the mesh's tracing and access log (PRODUCT.md "Observability"). */
export const TRACE_SAMPLING_ANNOTATION = 'proxy.mooring.dev/trace-sampling';
export const ACCESS_LOG_ANNOTATION = 'proxy.mooring.dev/access-log';
/** Istio's Service annotation that limits the namespaces a Service is visible in. */
export const EXPORT_TO_ANNOTATION = 'networking.istio.io/exportTo';
/** The EndpointSlice label naming its Service. */
export const SERVICE_NAME_LABEL = 'kubernetes.io/service-name';

/** What the object says it is, as far as it could be read. */
export interface ObjectIdentity {
  readonly apiVersion: string;
  readonly kind: string;
  readonly namespace: string;
  /** '' when the object has no usable name. */
  readonly name: string;
}

export type Validation =
  | {
      readonly status: 'valid';
      readonly object: MeshObject;
      /** Fields ignored (the object is used without them). */
      readonly warnings: readonly FieldProblem[];
    }
  | {
      readonly status: 'invalid';
      readonly identity: ObjectIdentity;
      readonly problems: readonly FieldProblem[];
      /**
       * What the mesh uses in its place, where dropping it would open what it closes (an
       * AuthorizationPolicy): sources use it whatever they held before.
       */
      readonly failClosed?: MeshObject;
    }
  /** A kind the mesh does not read (a Deployment in the same directory, say). */
  | { readonly status: 'ignored'; readonly identity: ObjectIdentity };

const DNS_LABEL = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/;
const DNS_1035_LABEL = /^[a-z]([-a-z0-9]*[a-z0-9])?$/;
const DNS_SUBDOMAIN = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/;
const IANA_SVC_NAME = /^(?=.*[a-z])[a-z0-9]([a-z0-9]|-(?!-))*$/;

export const isDnsLabel = (s: string): boolean => s.length <= 63 && DNS_LABEL.test(s);
export const isDnsSubdomain = (s: string): boolean => s.length <= 253 && DNS_SUBDOMAIN.test(s);

const IPV4 = /^(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)(\.(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)){3}$/;
const HEXTET = /^[0-9a-fA-F]{1,4}$/;

export function isIPv4(s: string): boolean {
  return IPV4.test(s);
}

/** An IPv6 address in text form (`::`, an embedded IPv4 tail, no zone). */
export function isIPv6(s: string): boolean {
  if (s.length < 2 || s.length > 45 || s.includes('%')) return false;
  const halves = s.split('::');
  if (halves.length > 2) return false;
  const groups = (text: string): string[] | null => (text === '' ? [] : text.split(':'));
  const head = groups(halves[0] ?? '');
  const tail = halves.length === 2 ? groups(halves[1] ?? '') : [];
  if (head === null || tail === null) return false;
  const all = [...head, ...tail];
  let width = 0;
  for (const [i, group] of all.entries()) {
    if (i === all.length - 1 && group.includes('.')) {
      if (!isIPv4(group)) return false;
      width += 2;
    } else if (HEXTET.test(group)) {
      width += 1;
    } else {
      return false;
    }
  }
  return halves.length === 2 ? width < 8 : width === 8;
}

export const isIP = (s: string): boolean => isIPv4(s) || isIPv6(s);

/** Kinds without a namespace (their `meta.namespace` is ''). */
const CLUSTER_SCOPED: ReadonlySet<string> = new Set<MeshKind>(['Node']);

function identityOf(raw: Json, defaultNamespace: string): ObjectIdentity {
  const metadata = isObject(raw.metadata) ? raw.metadata : {};
  const kind = typeof raw.kind === 'string' ? raw.kind : '';
  return {
    apiVersion: typeof raw.apiVersion === 'string' ? raw.apiVersion : '',
    kind,
    namespace: CLUSTER_SCOPED.has(kind)
      ? ''
      : typeof metadata.namespace === 'string' && metadata.namespace !== ''
        ? metadata.namespace
        : defaultNamespace,
    name: typeof metadata.name === 'string' ? metadata.name : '',
  };
}

function readMeta(raw: Json, kind: MeshKind, f: Fields, defaultNamespace: string): Meta {
  const metadata = f.object(raw.metadata, 'metadata') ?? {};
  const name = f.string(metadata.name, 'metadata.name') ?? '';
  if (name === '') {
    if (metadata.name === undefined || metadata.name === '') {
      f.problem('metadata.name', 'is required');
    }
  } else if (
    kind === 'Service' ? !(name.length <= 63 && DNS_1035_LABEL.test(name)) : !isDnsSubdomain(name)
  ) {
    f.problem(
      'metadata.name',
      kind === 'Service'
        ? `${JSON.stringify(name)} is not a DNS-1035 label (lowercase letters, digits and "-", starting with a letter)`
        : `${JSON.stringify(name)} is not a DNS subdomain (lowercase letters, digits, "-" and ".")`,
    );
  }
  const clusterScoped = CLUSTER_SCOPED.has(kind);
  const namespace = clusterScoped
    ? ''
    : f.string(metadata.namespace, 'metadata.namespace') || defaultNamespace;
  if (!clusterScoped && !isDnsLabel(namespace)) {
    f.problem('metadata.namespace', `${JSON.stringify(namespace)} is not a DNS label`);
  }
  const labels = f.stringMap(metadata.labels, 'metadata.labels');
  const created = f.string(metadata.creationTimestamp, 'metadata.creationTimestamp');
  if (created !== undefined && Number.isNaN(Date.parse(created))) {
    f.problem('metadata.creationTimestamp', 'must be an RFC 3339 time');
  }
  return { name, namespace, labels, creationTimestamp: created ?? null };
}

function annotationsOf(raw: Json, f: Fields): Record<string, string> {
  const metadata = isObject(raw.metadata) ? raw.metadata : {};
  return f.stringMap(metadata.annotations, 'metadata.annotations');
}

// --- Service -----------------------------------------------------------------------------------

const SERVICE_TYPES = ['ClusterIP', 'NodePort', 'LoadBalancer', 'ExternalName'] as const;

function readServicePort(raw: unknown, field: string, f: Fields): ServicePortSpec | null {
  const p = f.object(raw, field);
  if (p === undefined) {
    if (raw === undefined || raw === null) f.problem(field, 'must be an object');
    return null;
  }
  const name = f.string(p.name, `${field}.name`) ?? '';
  if (name !== '' && !isDnsLabel(name)) {
    f.problem(`${field}.name`, `${JSON.stringify(name)} is not a DNS label`);
  }
  if (!isPort(p.port)) {
    f.problem(`${field}.port`, 'must be a port number from 1 to 65535');
    return null;
  }
  let targetPort: number | string = p.port;
  if (p.targetPort !== undefined && p.targetPort !== null) {
    if (typeof p.targetPort === 'number') {
      if (isPort(p.targetPort)) targetPort = p.targetPort;
      else f.problem(`${field}.targetPort`, 'must be a port number from 1 to 65535 or a port name');
    } else if (typeof p.targetPort === 'string' && /^[0-9]+$/.test(p.targetPort)) {
      const n = Number(p.targetPort);
      if (isPort(n)) targetPort = n;
      else f.problem(`${field}.targetPort`, 'must be a port number from 1 to 65535 or a port name');
    } else if (
      typeof p.targetPort === 'string' &&
      p.targetPort.length <= 15 &&
      IANA_SVC_NAME.test(p.targetPort)
    ) {
      targetPort = p.targetPort;
    } else {
      f.problem(
        `${field}.targetPort`,
        `${JSON.stringify(p.targetPort)} is neither a port number nor a port name (at most 15 lowercase letters, digits and "-")`,
      );
    }
  }
  return {
    name,
    port: p.port,
    targetPort,
    protocol: f.protocol(p.protocol, `${field}.protocol`),
    appProtocol: f.string(p.appProtocol, `${field}.appProtocol`) ?? null,
  };
}

/** `networking.istio.io/exportTo`: comma-separated `.`, `*`, `~` or namespace names. */
export function parseExportTo(value: string | undefined): string[] | null {
  if (value === undefined) return null;
  const entries = value
    .split(',')
    .map((e) => e.trim())
    .filter((e) => e !== '');
  return entries.length === 0 ? null : entries;
}

function readService(raw: Json, f: Fields, meta: Meta): ServiceObject {
  const spec = f.object(raw.spec, 'spec') ?? {};
  const typeText = f.string(spec.type, 'spec.type') ?? 'ClusterIP';
  const type = SERVICE_TYPES.find((t) => t === typeText) ?? 'ClusterIP';
  if (!SERVICE_TYPES.includes(typeText as ServiceObject['type'])) {
    f.problem('spec.type', `must be one of ${SERVICE_TYPES.join(', ')}`);
  }
  const ports: ServicePortSpec[] = [];
  const rawPorts = f.array(spec.ports, 'spec.ports');
  for (const [i, p] of rawPorts.entries()) {
    const port = readServicePort(p, `spec.ports[${i}]`, f);
    if (port === null) continue;
    if (port.name === '' && rawPorts.length > 1) {
      f.problem(`spec.ports[${i}].name`, 'is required when the Service has more than one port');
    }
    if (ports.some((q) => q.name === port.name && port.name !== '')) {
      f.problem(`spec.ports[${i}].name`, `${JSON.stringify(port.name)} is used twice`);
    }
    if (ports.some((q) => q.port === port.port && q.protocol === port.protocol)) {
      f.problem(`spec.ports[${i}].port`, `${port.protocol} port ${port.port} is used twice`);
    }
    ports.push(port);
  }
  const clusterIP = f.string(spec.clusterIP, 'spec.clusterIP');
  const listed = f
    .array(spec.clusterIPs, 'spec.clusterIPs')
    .map((ip, i) => f.string(ip, `spec.clusterIPs[${i}]`));
  const clusterIPs: string[] = [];
  for (const [i, ip] of [clusterIP, ...listed].entries()) {
    if (ip === undefined || ip === '' || ip === 'None' || clusterIPs.includes(ip)) continue;
    if (!isIP(ip)) {
      f.problem(
        i === 0 ? 'spec.clusterIP' : `spec.clusterIPs[${i - 1}]`,
        `${JSON.stringify(ip)} is not an IP address`,
      );
    } else {
      clusterIPs.push(ip);
    }
  }
  const selector =
    spec.selector === undefined || spec.selector === null
      ? null
      : f.stringMap(spec.selector, 'spec.selector');
  const annotations = annotationsOf(raw, f);
  return {
    kind: 'Service',
    meta,
    type,
    clusterIPs,
    ports,
    selector: selector !== null && Object.keys(selector).length > 0 ? selector : null,
    exportTo: parseExportTo(annotations[EXPORT_TO_ANNOTATION]),
    preferClose: PREFER_CLOSE.includes(
      f.string(spec.trafficDistribution, 'spec.trafficDistribution') ?? '',
    ),
  };
}

/** `trafficDistribution` values that prefer the caller's own zone (Kubernetes 1.31 to 1.34). */
const PREFER_CLOSE = ['PreferClose', 'PreferSameZone', 'PreferSameNode'];

// --- EndpointSlice -----------------------------------------------------------------------------

const ADDRESS_TYPES = ['IPv4', 'IPv6', 'FQDN'] as const;

function readSliceEndpoint(
  raw: unknown,
  field: string,
  addressType: EndpointSliceObject['addressType'],
  namespace: string,
  f: Fields,
): SliceEndpoint | null {
  const e = f.object(raw, field);
  if (e === undefined) {
    f.problem(field, 'must be an object');
    return null;
  }
  const addresses: string[] = [];
  const rawAddresses = f.array(e.addresses, `${field}.addresses`);
  if (rawAddresses.length === 0) f.problem(`${field}.addresses`, 'needs at least one address');
  for (const [i, a] of rawAddresses.entries()) {
    const address = f.string(a, `${field}.addresses[${i}]`);
    if (address === undefined) continue;
    const ok =
      addressType === 'IPv4'
        ? isIPv4(address)
        : addressType === 'IPv6'
          ? isIPv6(address)
          : address !== '';
    if (!ok) {
      f.problem(
        `${field}.addresses[${i}]`,
        `${JSON.stringify(address)} is not an ${addressType} address`,
      );
    } else {
      addresses.push(address);
    }
  }
  const conditions = f.object(e.conditions, `${field}.conditions`) ?? {};
  const ready = f.boolean(conditions.ready, `${field}.conditions.ready`) ?? true;
  const serving = f.boolean(conditions.serving, `${field}.conditions.serving`) ?? ready;
  let targetRef: SliceEndpoint['targetRef'] = null;
  const ref = f.object(e.targetRef, `${field}.targetRef`);
  if (ref !== undefined) {
    const kind = f.string(ref.kind, `${field}.targetRef.kind`) ?? '';
    const name = f.string(ref.name, `${field}.targetRef.name`) ?? '';
    const ns = f.string(ref.namespace, `${field}.targetRef.namespace`) || namespace;
    if (name === '') f.problem(`${field}.targetRef.name`, 'is required');
    else targetRef = { kind, name, namespace: ns };
  }
  const nodeName = f.string(e.nodeName, `${field}.nodeName`) ?? '';
  const zone = f.string(e.zone, `${field}.zone`) ?? '';
  return {
    addresses,
    ready,
    serving,
    targetRef,
    nodeName: nodeName === '' ? null : nodeName,
    zone: zone === '' ? null : zone,
  };
}

function readEndpointSlice(raw: Json, f: Fields, meta: Meta): EndpointSliceObject {
  const typeText = f.string(raw.addressType, 'addressType');
  const addressType = ADDRESS_TYPES.find((t) => t === typeText) ?? 'IPv4';
  if (typeText === undefined) f.problem('addressType', 'is required (IPv4, IPv6 or FQDN)');
  else if (!ADDRESS_TYPES.includes(typeText as EndpointSliceObject['addressType'])) {
    f.problem('addressType', `must be IPv4, IPv6 or FQDN, not ${JSON.stringify(typeText)}`);
  }
  const endpoints = f
    .array(raw.endpoints, 'endpoints')
    .map((e, i) => readSliceEndpoint(e, `endpoints[${i}]`, addressType, meta.namespace, f))
    .filter((e): e is SliceEndpoint => e !== null);
  const ports: SlicePort[] = [];
  for (const [i, p] of f.array(raw.ports, 'ports').entries()) {
    const port = f.object(p, `ports[${i}]`);
    if (port === undefined) {
      f.problem(`ports[${i}]`, 'must be an object');
      continue;
    }
    const name = f.string(port.name, `ports[${i}].name`) ?? '';
    if (name !== '' && !isDnsLabel(name)) {
      f.problem(`ports[${i}].name`, `${JSON.stringify(name)} is not a DNS label`);
    }
    let number: number | null = null;
    if (port.port !== undefined && port.port !== null) {
      if (isPort(port.port)) number = port.port;
      else f.problem(`ports[${i}].port`, 'must be a port number from 1 to 65535');
    }
    ports.push({ name, port: number, protocol: f.protocol(port.protocol, `ports[${i}].protocol`) });
  }
  const serviceName = meta.labels[SERVICE_NAME_LABEL];
  return {
    kind: 'EndpointSlice',
    meta,
    serviceName: serviceName === undefined || serviceName === '' ? null : serviceName,
    addressType,
    endpoints,
    ports,
  };
}

// --- Pod ---------------------------------------------------------------------------------------

function readContainerPorts(containers: unknown[], field: string, f: Fields): ContainerPortSpec[] {
  const out: ContainerPortSpec[] = [];
  for (const [i, c] of containers.entries()) {
    const container = f.object(c, `${field}[${i}]`);
    if (container === undefined) continue;
    for (const [j, p] of f.array(container.ports, `${field}[${i}].ports`).entries()) {
      const at = `${field}[${i}].ports[${j}]`;
      const port = f.object(p, at);
      if (port === undefined) continue;
      if (!isPort(port.containerPort)) {
        f.problem(`${at}.containerPort`, 'must be a port number from 1 to 65535');
        continue;
      }
      const name = f.string(port.name, `${at}.name`) ?? null;
      if (name !== null && !(name.length <= 15 && IANA_SVC_NAME.test(name))) {
        f.problem(
          `${at}.name`,
          `${JSON.stringify(name)} is not a port name (at most 15 lowercase letters, digits and "-")`,
        );
      }
      out.push({
        name,
        containerPort: port.containerPort,
        protocol: f.protocol(port.protocol, `${at}.protocol`),
      });
    }
  }
  return out;
}

function readPod(raw: Json, f: Fields, meta: Meta): PodObject {
  const metadata = isObject(raw.metadata) ? raw.metadata : {};
  const annotations = annotationsOf(raw, f);
  const spec = f.object(raw.spec, 'spec') ?? {};
  const status = f.object(raw.status, 'status') ?? {};
  const saField =
    spec.serviceAccountName !== undefined ? 'spec.serviceAccountName' : 'spec.serviceAccount';
  const serviceAccount =
    f.string(spec.serviceAccountName ?? spec.serviceAccount, saField) || 'default';
  if (!isDnsSubdomain(serviceAccount)) {
    f.problem(saField, `${JSON.stringify(serviceAccount)} is not a DNS subdomain`);
  }
  let controller: PodObject['controller'] = null;
  for (const [i, o] of f.array(metadata.ownerReferences, 'metadata.ownerReferences').entries()) {
    const owner = f.object(o, `metadata.ownerReferences[${i}]`);
    if (owner === undefined) continue;
    const kind = f.string(owner.kind, `metadata.ownerReferences[${i}].kind`);
    const name = f.string(owner.name, `metadata.ownerReferences[${i}].name`);
    if (
      owner.controller === true &&
      controller === null &&
      kind !== undefined &&
      name !== undefined
    ) {
      controller = { kind, name };
    }
  }
  const ips: string[] = [];
  const podIP = f.string(status.podIP, 'status.podIP');
  const podIPs = f.array(status.podIPs, 'status.podIPs').map((p, i) => {
    const entry = f.object(p, `status.podIPs[${i}]`);
    return entry === undefined ? undefined : f.string(entry.ip, `status.podIPs[${i}].ip`);
  });
  for (const [i, ip] of [podIP, ...podIPs].entries()) {
    if (ip === undefined || ip === '' || ips.includes(ip)) continue;
    if (isIP(ip)) ips.push(ip);
    else
      f.problem(
        i === 0 ? 'status.podIP' : `status.podIPs[${i - 1}].ip`,
        `${JSON.stringify(ip)} is not an IP address`,
      );
  }
  const containerPorts = [
    ...readContainerPorts(f.array(spec.containers, 'spec.containers'), 'spec.containers', f),
    ...readContainerPorts(
      f.array(spec.initContainers, 'spec.initContainers'),
      'spec.initContainers',
      f,
    ),
  ];

  let traceSamplingPercent: number | null = null;
  const sampling = annotations[TRACE_SAMPLING_ANNOTATION];
  if (sampling !== undefined) {
    const n = Number(sampling.trim());
    if (sampling.trim() === '' || !Number.isFinite(n) || n < 0 || n > 100) {
      f.warn(
        `metadata.annotations.${TRACE_SAMPLING_ANNOTATION}`,
        `${JSON.stringify(sampling)} is not a percentage from 0 to 100: ignored`,
      );
    } else {
      traceSamplingPercent = n;
    }
  }
  let accessLog: boolean | null = null;
  const log = annotations[ACCESS_LOG_ANNOTATION];
  if (log !== undefined) {
    if (log === 'true' || log === 'false') accessLog = log === 'true';
    else
      f.warn(
        `metadata.annotations.${ACCESS_LOG_ANNOTATION}`,
        `${JSON.stringify(log)} is not "true" or "false": ignored`,
      );
  }
  const generateName = f.string(metadata.generateName, 'metadata.generateName');
  const nodeName = f.string(spec.nodeName, 'spec.nodeName') ?? '';
  const conditions = f.array(status.conditions, 'status.conditions');
  const readyCondition = conditions.find((c) => isObject(c) && c.type === 'Ready');
  const ready = readyCondition === undefined || (readyCondition as Json).status === 'True';
  return {
    kind: 'Pod',
    meta,
    generateName: generateName === undefined || generateName === '' ? null : generateName,
    controller,
    serviceAccount,
    meshed: annotations[STATUS_ANNOTATION] !== undefined,
    ips,
    containerPorts,
    traceSamplingPercent,
    accessLog,
    nodeName: nodeName === '' ? null : nodeName,
    ready,
  };
}

// --- Node --------------------------------------------------------------------------------------

function readNode(_raw: Json, _f: Fields, meta: Meta): NodeObject {
  return { kind: 'Node', meta, locality: nodeLocality(meta.labels) };
}

// --- PeerAuthentication ------------------------------------------------------------------------

const PEER_AUTH_MODES: readonly PeerAuthMode[] = ['UNSET', ...MTLS_MODES];

function readMode(value: unknown, field: string, f: Fields): PeerAuthMode {
  const mtls = f.object(value, field);
  if (mtls === undefined) return 'UNSET';
  if (mtls.mode === undefined || mtls.mode === null) return 'UNSET';
  const mode = PEER_AUTH_MODES.find((m) => m === mtls.mode);
  if (mode === undefined) {
    f.problem(
      `${field}.mode`,
      `must be one of ${PEER_AUTH_MODES.join(', ')}, not ${JSON.stringify(mtls.mode)}`,
    );
    return 'UNSET';
  }
  return mode;
}

function readPeerAuthentication(raw: Json, f: Fields, meta: Meta): PeerAuthenticationObject {
  const spec = f.object(raw.spec, 'spec') ?? {};
  const selectorObject = f.object(spec.selector, 'spec.selector');
  const matchLabels =
    selectorObject === undefined
      ? {}
      : f.stringMap(selectorObject.matchLabels, 'spec.selector.matchLabels');
  const selector = Object.keys(matchLabels).length > 0 ? matchLabels : null;
  const mode = readMode(spec.mtls, 'spec.mtls', f);
  const portLevel: Record<string, PeerAuthMode> = {};
  const ports = f.object(spec.portLevelMtls, 'spec.portLevelMtls');
  if (ports !== undefined) {
    if (Object.keys(ports).length === 0) {
      f.problem('spec.portLevelMtls', 'must list at least one port when it is given');
    }
    if (selector === null) {
      f.problem(
        'spec.portLevelMtls',
        'needs spec.selector: a mesh-wide or namespace-wide policy cannot have port-level mTLS',
      );
    }
    for (const [key, value] of Object.entries(ports)) {
      if (!/^[0-9]+$/.test(key) || !isPort(Number(key))) {
        f.problem(`spec.portLevelMtls.${key}`, 'the key must be a port number from 1 to 65535');
        continue;
      }
      if (!isObject(value)) {
        f.problem(`spec.portLevelMtls.${key}`, 'must be an object with "mode"');
        continue;
      }
      portLevel[String(Number(key))] = readMode(value, `spec.portLevelMtls.${key}`, f);
    }
  }
  return { kind: 'PeerAuthentication', meta, selector, mode, portLevel };
}

// --- entry point -------------------------------------------------------------------------------

const READERS: {
  readonly [K in MeshKind]: (raw: Json, f: Fields, meta: Meta) => MeshObject;
} = {
  Service: readService,
  EndpointSlice: readEndpointSlice,
  Pod: readPod,
  PeerAuthentication: readPeerAuthentication,
  AuthorizationPolicy: readAuthorizationPolicy,
  VirtualService: readVirtualService,
  DestinationRule: readDestinationRule,
  HTTPRoute: readHttpRoute,
  GRPCRoute: readGrpcRoute,
  TCPRoute: readGatewayTcpRoute,
  TLSRoute: readGatewayTlsRoute,
  ServiceEntry: readServiceEntry,
  RequestAuthentication: readRequestAuthentication,
  Sidecar: readSidecar,
  Node: readNode,
  Telemetry: readTelemetry,
  WorkloadEntry: readWorkloadEntry,
};

/**
 * Validates one raw object. `defaultNamespace` is the namespace of an object that names none
 * (`default`, as kubectl applies it).
 */
export function validateMeshObject(raw: unknown, defaultNamespace = 'default'): Validation {
  if (!isObject(raw)) {
    return {
      status: 'invalid',
      identity: { apiVersion: '', kind: '', namespace: defaultNamespace, name: '' },
      problems: [{ field: '', message: 'an object must be a YAML or JSON map' }],
    };
  }
  const identity = identityOf(raw, defaultNamespace);
  const kind = MESH_KINDS.find((k) => k === identity.kind);
  if (kind === undefined) {
    if (identity.kind === '') {
      return { status: 'invalid', identity, problems: [{ field: 'kind', message: 'is required' }] };
    }
    return { status: 'ignored', identity };
  }
  const f = new Fields();
  if (!MESH_API_VERSIONS[kind].includes(identity.apiVersion)) {
    f.problem(
      'apiVersion',
      `${JSON.stringify(identity.apiVersion)} is not read for ${kind}: use ${MESH_API_VERSIONS[kind].join(' or ')}`,
    );
  }
  const meta = readMeta(raw, kind, f, defaultNamespace);
  const problemsOfMeta = f.problems.length;
  const object = READERS[kind](raw, f, meta);
  if (f.problems.length > 0) {
    // An AuthorizationPolicy that names itself well stands in closed (authorization-validate.ts).
    const failClosed =
      kind === 'AuthorizationPolicy' && problemsOfMeta === 0
        ? failClosedPolicy(raw, meta, f.problems)
        : undefined;
    return {
      status: 'invalid',
      identity,
      problems: f.problems,
      ...(failClosed === undefined ? {} : { failClosed }),
    };
  }
  return { status: 'valid', object, warnings: f.warnings };
}

/** The mode a PeerAuthentication level gives, as the wire type (UNSET is resolved before). */
export const isMtlsMode = (mode: PeerAuthMode): mode is MtlsMode => mode !== 'UNSET';
