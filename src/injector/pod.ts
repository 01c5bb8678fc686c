// The part of a Kubernetes Pod the injector reads and writes, as a minimal structural type (the
// core does not import @kubernetes/client-node). Every object keeps the fields it does not name
// (index signatures), so that a Pod goes through injection without losing anything.

import { MooringError } from '../errors';

export interface ObjectMeta {
  name?: string;
  generateName?: string;
  namespace?: string;
  labels?: Record<string, string>;
  annotations?: Record<string, string>;
  managedFields?: unknown[];
  [key: string]: unknown;
}

export interface ContainerPort {
  containerPort: number;
  name?: string;
  protocol?: string;
  [key: string]: unknown;
}

export interface HTTPHeader {
  name: string;
  value: string;
}

export interface HTTPGetAction {
  path?: string;
  port: number | string;
  host?: string;
  scheme?: string;
  httpHeaders?: HTTPHeader[];
  [key: string]: unknown;
}

export interface TCPSocketAction {
  port: number | string;
  host?: string;
  [key: string]: unknown;
}

export interface GRPCAction {
  port: number;
  service?: string;
  [key: string]: unknown;
}

export interface Probe {
  httpGet?: HTTPGetAction;
  tcpSocket?: TCPSocketAction;
  grpc?: GRPCAction;
  exec?: { command?: string[] };
  initialDelaySeconds?: number;
  timeoutSeconds?: number;
  periodSeconds?: number;
  successThreshold?: number;
  failureThreshold?: number;
  [key: string]: unknown;
}

export interface EnvVar {
  name: string;
  value?: string;
  valueFrom?: unknown;
  [key: string]: unknown;
}

export interface VolumeMount {
  name: string;
  mountPath: string;
  readOnly?: boolean;
  [key: string]: unknown;
}

export interface Container {
  name: string;
  image?: string;
  command?: string[];
  args?: string[];
  ports?: ContainerPort[];
  env?: EnvVar[];
  livenessProbe?: Probe;
  readinessProbe?: Probe;
  startupProbe?: Probe;
  /** `Always` on an init container makes it a native sidecar. */
  restartPolicy?: string;
  volumeMounts?: VolumeMount[];
  [key: string]: unknown;
}

export interface Volume {
  name: string;
  [key: string]: unknown;
}

export interface PodSpec {
  containers: Container[];
  initContainers?: Container[];
  volumes?: Volume[];
  hostNetwork?: boolean;
  os?: { name?: string };
  [key: string]: unknown;
}

export interface Pod {
  apiVersion?: string;
  kind?: string;
  metadata?: ObjectMeta;
  spec: PodSpec;
  [key: string]: unknown;
}

type JsonObject = Record<string, unknown>;

export const isObject = (value: unknown): value is JsonObject =>
  typeof value === 'object' && value !== null && !Array.isArray(value);

function invalid(where: string, what: string): MooringError {
  return new MooringError('INJ_ERR_INPUT', `${where} ${what}`);
}

function checkNamedList(value: unknown, where: string, required: boolean): void {
  if (value === undefined || value === null) {
    if (required) throw invalid(where, 'must be a non-empty list');
    return;
  }
  if (!Array.isArray(value)) throw invalid(where, 'must be a list');
  if (required && value.length === 0) throw invalid(where, 'must be a non-empty list');
  value.forEach((item: unknown, i) => {
    if (!isObject(item) || typeof item.name !== 'string' || item.name === '') {
      throw invalid(`${where}[${i}]`, 'must be an object with a name');
    }
  });
}

function checkStringMap(value: unknown, where: string): void {
  if (value !== undefined && value !== null && !isObject(value))
    throw invalid(where, 'must be a map');
}

/**
 * Checks the shape the injector relies on (an object with `spec.containers`, named containers and
 * volumes, maps for labels and annotations). Anything else about the Pod is the API server's to
 * validate. Throws INJ_ERR_INPUT naming the first problem; `where` prefixes the paths.
 */
export function assertPod(value: unknown, where = 'the Pod'): asserts value is Pod {
  if (!isObject(value)) throw invalid(where, 'must be an object');
  if (value.metadata !== undefined && value.metadata !== null) {
    if (!isObject(value.metadata)) throw invalid(`${where}: metadata`, 'must be an object');
    checkStringMap(value.metadata.labels, `${where}: metadata.labels`);
    checkStringMap(value.metadata.annotations, `${where}: metadata.annotations`);
  }
  const spec = value.spec;
  if (!isObject(spec)) throw invalid(`${where}: spec`, 'must be an object');
  checkNamedList(spec.containers, `${where}: spec.containers`, true);
  checkNamedList(spec.initContainers, `${where}: spec.initContainers`, false);
  checkNamedList(spec.volumes, `${where}: spec.volumes`, false);
}

export const podLabels = (pod: Pod): Readonly<Record<string, unknown>> =>
  pod.metadata?.labels ?? {};

export const podAnnotations = (pod: Pod): Readonly<Record<string, unknown>> =>
  pod.metadata?.annotations ?? {};

/** The container's ports, tolerating a malformed `ports` (the API server validates it later). */
export const containerPorts = (container: Container): readonly ContainerPort[] =>
  Array.isArray(container.ports)
    ? container.ports.filter((p): p is ContainerPort => isObject(p))
    : [];
