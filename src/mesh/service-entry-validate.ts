// Reading Istio's ServiceEntry (networking.istio.io v1, v1beta1) into a `ServiceEntryObject`:
// every field Mooring reads is checked and named when wrong; what it cannot do yet
// (an endpoint's `network`, `subjectAltNames`) is refused or
// warned of by name. Pure.

import { isIP } from 'node:net';
import type { Protocol } from '../api/mesh';
import { parseCidr } from '../ip';
import { isObject, isPort, type Fields, type Json } from './fields';
import { isDnsHost } from './hosts';
import { readLocality } from './locality';
import type { Meta, ServiceEntryEndpoint, ServiceEntryObject, ServiceEntryPort } from './objects';
import { readExportTo } from './traffic-validate';

const RESOLUTIONS = ['NONE', 'STATIC', 'DNS', 'DNS_ROUND_ROBIN'] as const;
const LOCATIONS = ['MESH_EXTERNAL', 'MESH_INTERNAL'] as const;

/** Istio's port protocols (pkg/config/protocol), as the proxy carries them. */
const PROTOCOLS: Readonly<Record<string, { readonly protocol: Protocol; readonly tls: boolean }>> =
  {
    HTTP: { protocol: 'http', tls: false },
    HTTP_PROXY: { protocol: 'http', tls: false },
    HTTP2: { protocol: 'http2', tls: false },
    GRPC: { protocol: 'grpc', tls: false },
    'GRPC-WEB': { protocol: 'http', tls: false },
    HTTPS: { protocol: 'tcp', tls: true },
    TLS: { protocol: 'tcp', tls: true },
    TCP: { protocol: 'tcp', tls: false },
    MONGO: { protocol: 'tcp', tls: false },
    MYSQL: { protocol: 'tcp', tls: false },
    REDIS: { protocol: 'tcp', tls: false },
  };

const SERVICE_ACCOUNT = /^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$/;

/** A workload's `serviceAccount` field (a service account's name), or null when unset. */
export function readServiceAccount(f: Fields, value: unknown, field: string): string | null {
  const name = f.string(value, field) ?? '';
  if (name === '') return null;
  if (!SERVICE_ACCOUNT.test(name)) {
    f.problem(field, `${JSON.stringify(name)} is not a service account name`);
  }
  return name;
}
const PORT_NAME = /^[a-zA-Z0-9]([-a-zA-Z0-9_.]*[a-zA-Z0-9])?$/;

export function readServiceEntry(raw: Json, f: Fields, meta: Meta): ServiceEntryObject {
  const spec = f.object(raw.spec, 'spec') ?? {};
  const selector = f.object(spec.workloadSelector, 'spec.workloadSelector');
  const selectorLabels =
    selector === undefined ? {} : f.stringMap(selector.labels, 'spec.workloadSelector.labels');
  const workloadSelector = Object.keys(selectorLabels).length === 0 ? null : selectorLabels;
  if (selector !== undefined && workloadSelector === null) {
    f.problem('spec.workloadSelector.labels', 'is required: the labels of the Pods it selects');
  }
  if (f.array(spec.subjectAltNames, 'spec.subjectAltNames').length > 0) {
    f.warn(
      'spec.subjectAltNames',
      "is not supported by Mooring yet: ignored (a MESH_INTERNAL endpoint's identity comes from its serviceAccount)",
    );
  }
  const resolutionText = f.string(spec.resolution, 'spec.resolution') ?? 'NONE';
  const resolutionName = RESOLUTIONS.find((r) => r === resolutionText);
  if (resolutionName === undefined) {
    f.problem(
      'spec.resolution',
      `must be one of ${RESOLUTIONS.join(', ')}, not ${JSON.stringify(resolutionText)}`,
    );
  }
  const resolution = resolutionName === 'DNS_ROUND_ROBIN' ? 'DNS' : (resolutionName ?? 'NONE');
  const locationText = f.string(spec.location, 'spec.location') ?? 'MESH_EXTERNAL';
  const location = LOCATIONS.find((l) => l === locationText);
  if (location === undefined) {
    f.problem(
      'spec.location',
      `must be MESH_EXTERNAL or MESH_INTERNAL, not ${JSON.stringify(locationText)}`,
    );
  }

  const hosts = readHosts(f, spec.hosts, resolution);
  const addresses: string[] = [];
  for (const [i, a] of f.array(spec.addresses, 'spec.addresses').entries()) {
    const text = f.string(a, `spec.addresses[${i}]`);
    if (text === undefined) continue;
    const cidr = parseCidr(text);
    if (cidr === undefined) {
      f.problem(`spec.addresses[${i}]`, `${JSON.stringify(text)} is not an IP address or a CIDR`);
    } else if (!addresses.includes(cidr)) {
      addresses.push(cidr);
    }
  }
  const ports = readPorts(f, spec.ports);
  const endpoints = readEndpoints(
    f,
    spec.endpoints,
    resolution,
    ports,
    location ?? 'MESH_EXTERNAL',
  );
  if (resolution === 'NONE' && endpoints.length > 0) {
    f.problem(
      'spec.endpoints',
      'must be empty with resolution NONE (connections go to the address the app dialled)',
    );
  }
  if (resolution === 'DNS' && endpoints.length === 0) {
    hosts.forEach((h, i) => {
      if (h.startsWith('*.'))
        f.problem(
          `spec.hosts[${i}]`,
          'a wildcard host cannot be resolved by DNS: list spec.endpoints, or use resolution NONE',
        );
    });
  }
  if (workloadSelector !== null) {
    if (endpoints.length > 0) {
      f.problem(
        'spec.endpoints',
        'must be empty with a workloadSelector (its Pods are the endpoints)',
      );
    }
    if (resolution !== 'STATIC') {
      f.problem(
        'spec.resolution',
        'must be STATIC with a workloadSelector (its Pods are the endpoints)',
      );
    }
  } else if (resolution === 'STATIC' && endpoints.length === 0) {
    f.warn('spec.endpoints', 'is empty: with resolution STATIC the hosts have no endpoint');
  }
  return {
    kind: 'ServiceEntry',
    meta,
    hosts,
    addresses,
    ports,
    location: location ?? 'MESH_EXTERNAL',
    resolution,
    endpoints,
    exportTo: readExportTo(f, spec.exportTo),
    workloadSelector,
  };
}

function readHosts(
  f: Fields,
  raw: unknown,
  resolution: ServiceEntryObject['resolution'],
): string[] {
  const hosts: string[] = [];
  const list = f.array(raw, 'spec.hosts');
  if (list.length === 0) f.problem('spec.hosts', 'is required: at least one host');
  for (const [i, h] of list.entries()) {
    const text = f.string(h, `spec.hosts[${i}]`);
    if (text === undefined) continue;
    const host = text.toLowerCase().replace(/\.$/, '');
    const field = `spec.hosts[${i}]`;
    if (!isDnsHost(host)) {
      f.problem(
        field,
        `${JSON.stringify(text)} is not a DNS name (a wildcard is "*." in front of one)`,
      );
      continue;
    }
    const parts = host.split('.');
    if (parts.length === 1 || (parts.length >= 3 && parts[2] === 'svc')) {
      f.problem(
        field,
        `${JSON.stringify(text)} names a Kubernetes Service: a ServiceEntry adds hosts the mesh does not learn from Kubernetes (use a fully qualified name outside .svc)`,
      );
      continue;
    }
    if (resolution === 'STATIC' && host.startsWith('*.')) {
      f.problem(field, 'a wildcard host needs resolution NONE or DNS');
      continue;
    }
    if (!hosts.includes(host)) hosts.push(host);
  }
  return hosts;
}

function readPorts(f: Fields, raw: unknown): ServiceEntryPort[] {
  const ports: ServiceEntryPort[] = [];
  const list = f.array(raw, 'spec.ports');
  if (list.length === 0) f.problem('spec.ports', 'is required: at least one port');
  for (const [i, p] of list.entries()) {
    const field = `spec.ports[${i}]`;
    const port = f.object(p, field);
    if (port === undefined) continue;
    if (!isPort(port.number)) {
      f.problem(`${field}.number`, 'must be a port number from 1 to 65535');
      continue;
    }
    const name = f.string(port.name, `${field}.name`) ?? '';
    if (name !== '' && !PORT_NAME.test(name)) {
      f.problem(`${field}.name`, `${JSON.stringify(name)} is not a port name`);
    }
    const protocolText = (f.string(port.protocol, `${field}.protocol`) ?? '').toUpperCase();
    if (protocolText === 'UDP') {
      f.warn(`${field}.protocol`, 'UDP is not carried by the proxy: the port is ignored');
      continue;
    }
    const known =
      protocolText === '' ? { protocol: 'unknown' as const, tls: false } : PROTOCOLS[protocolText];
    if (known === undefined) {
      f.problem(
        `${field}.protocol`,
        `must be one of ${Object.keys(PROTOCOLS).join(', ')}, not ${JSON.stringify(port.protocol)}`,
      );
      continue;
    }
    let targetPort: number | null = null;
    if (port.targetPort !== undefined && port.targetPort !== null) {
      if (isPort(port.targetPort)) targetPort = port.targetPort;
      else f.problem(`${field}.targetPort`, 'must be a port number from 1 to 65535');
    }
    if (ports.some((q) => q.number === port.number)) {
      f.problem(`${field}.number`, `${port.number} is listed twice`);
      continue;
    }
    if (name !== '' && ports.some((q) => q.name === name)) {
      f.problem(`${field}.name`, `${JSON.stringify(name)} is used twice`);
      continue;
    }
    ports.push({ number: port.number, name, ...known, targetPort });
  }
  return ports;
}

function readEndpoints(
  f: Fields,
  raw: unknown,
  resolution: ServiceEntryObject['resolution'],
  ports: readonly ServiceEntryPort[],
  location: ServiceEntryObject['location'],
): ServiceEntryEndpoint[] {
  const out: ServiceEntryEndpoint[] = [];
  for (const [i, e] of f.array(raw, 'spec.endpoints').entries()) {
    const field = `spec.endpoints[${i}]`;
    const endpoint = f.object(e, field);
    if (endpoint === undefined) continue;
    if (endpoint.network !== undefined && endpoint.network !== null && endpoint.network !== '') {
      f.warn(`${field}.network`, 'is not supported by Mooring yet: ignored');
    }
    const locality = readLocality(f, endpoint.locality, `${field}.locality`);
    const text = f.string(endpoint.address, `${field}.address`);
    let address: string | null = null;
    if (text === undefined || text === '') {
      f.problem(`${field}.address`, 'is required');
    } else if (text.startsWith('unix://')) {
      f.problem(`${field}.address`, 'a Unix domain socket is not supported');
    } else if (isIP(text) !== 0) {
      address = text.toLowerCase();
    } else if (resolution === 'DNS' && isDnsHost(text.toLowerCase()) && !text.startsWith('*')) {
      address = text.toLowerCase();
    } else {
      f.problem(
        `${field}.address`,
        resolution === 'DNS'
          ? `${JSON.stringify(text)} is not an IP address or a DNS name`
          : `${JSON.stringify(text)} is not an IP address (a DNS name needs resolution DNS)`,
      );
    }
    const endpointPorts: Record<string, number> = {};
    const rawPorts = f.object(endpoint.ports, `${field}.ports`) ?? {};
    for (const [name, value] of Object.entries(rawPorts)) {
      if (!isPort(value)) {
        f.problem(`${field}.ports.${name}`, 'must be a port number from 1 to 65535');
      } else if (!ports.some((p) => p.name === name)) {
        f.problem(`${field}.ports.${name}`, `names no port of spec.ports`);
      } else {
        endpointPorts[name] = value;
      }
    }
    const serviceAccount = readServiceAccount(
      f,
      endpoint.serviceAccount,
      `${field}.serviceAccount`,
    );
    if (serviceAccount !== null && location === 'MESH_EXTERNAL') {
      f.warn(
        `${field}.serviceAccount`,
        'is used with MESH_INTERNAL only (an endpoint outside the mesh has no mesh identity): ignored',
      );
    }
    const labels = isObject(endpoint.labels) ? f.stringMap(endpoint.labels, `${field}.labels`) : {};
    if (address === null) continue;
    out.push({
      address,
      ports: endpointPorts,
      labels,
      serviceAccount: location === 'MESH_EXTERNAL' ? null : serviceAccount,
      locality,
    });
  }
  return out;
}
