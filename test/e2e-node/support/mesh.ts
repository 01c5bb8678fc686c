// What the node tests share: one node cluster with Mooring per test file, and the few verbs a
// test of real Pods needs. Shaped so that a test of the data plane is a few lines:
//
//   const env = useMeshCluster();
//   const ns = await meshNamespace(env);
//   const server = await deployEcho(env, ns, 'server');
//   const client = await deployEcho(env, ns, 'client');
//   const answer = await httpFrom(env, client.pods[0]!, `http://${server.clusterIP}:8080/hello`);
//   expect(echoed(answer).headers['x-forwarded-client-cert']).toContain(spiffeId(ns, 'client'));
//
// The echo app (echo/echo.ts) listens on 8080 (HTTP), 8081 (the same, for the test: excluded
// from the inbound capture of meshed Pods), 50051 (gRPC) and 9000 (TCP echo).
import * as fs from 'node:fs';
import * as path from 'node:path';
import { createNamespace, kubectl, kubectlJson } from '../../e2e/harness/kube';
import { startNodeCluster, type NodeCluster } from '../../e2e/harness/node';
import { installMooring, MOORING_NAMESPACE } from '../../e2e/harness/node-mooring';
import { request, suffix, waitFor, type MooringServer } from '../../e2e/support/mooring';
import type { MeshConfigDump } from '../../../src/api/mesh';
import { MOUNT_PATH } from '../../../src/constants';

export const ECHO_PORTS = { http: 8080, control: 8081, grpc: 50051, tcp: 9000 } as const;
export const TRUST_DOMAIN = 'cluster.local';

export interface MeshEnv {
  readonly cluster: NodeCluster;
  readonly mooring: MooringServer;
}
/** What the helpers below need: a cluster, with or without Mooring. */
export type ClusterEnv = Pick<MeshEnv, 'cluster'>;

/**
 * A node cluster with Mooring for the test file: started in beforeAll, torn down in afterAll
 * (and by the harness's exit handler when the run dies). Read `env.cluster` inside tests.
 */
export function useMeshCluster(mooringConfig: Record<string, unknown> = {}): MeshEnv {
  const env = {} as { cluster: NodeCluster; mooring: MooringServer };
  beforeAll(async () => {
    env.cluster = await startNodeCluster();
    env.mooring = await installMooring(env.cluster, { config: mooringConfig });
  }, 300_000);
  afterAll(async () => {
    if (process.env.KEEP_E2E_LOGS !== undefined && env.cluster !== undefined) {
      const keep = fs.mkdtempSync('/tmp/mooring-node-logs-');
      for (const file of [...Object.values(env.cluster.logPaths), env.mooring?.logPath]) {
        if (file !== undefined && fs.existsSync(file))
          fs.copyFileSync(file, path.join(keep, path.basename(file)));
      }
      process.stderr.write(`node logs kept in ${keep}\n`);
    }
    await env.mooring?.stop();
    await env.cluster?.stop();
  }, 120_000);
  return env;
}

export const spiffeId = (ns: string, serviceAccount: string): string =>
  `spiffe://${TRUST_DOMAIN}/ns/${ns}/sa/${serviceAccount}`;

/** A new namespace labelled for injection (mooring.dev/inject=enabled). */
export async function meshNamespace(env: ClusterEnv, prefix = 'mesh'): Promise<string> {
  const ns = `${prefix}-${suffix()}`;
  await createNamespace(env.cluster.controlPlane, ns, { 'mooring.dev/inject': 'enabled' });
  return ns;
}

/** A new namespace outside the mesh. */
export async function plainNamespace(env: ClusterEnv, prefix = 'plain'): Promise<string> {
  const ns = `${prefix}-${suffix()}`;
  await createNamespace(env.cluster.controlPlane, ns);
  return ns;
}

// --- objects --------------------------------------------------------------------------------

export interface ContainerStatus {
  name: string;
  ready?: boolean;
  started?: boolean;
  restartCount?: number;
  state?: {
    running?: { startedAt: string };
    terminated?: { exitCode: number; reason?: string; startedAt?: string; finishedAt?: string };
    waiting?: { reason?: string };
  };
}

export interface Pod {
  metadata: {
    name: string;
    namespace: string;
    uid: string;
    labels?: Record<string, string>;
    annotations?: Record<string, string>;
    deletionTimestamp?: string;
  };
  spec: {
    serviceAccountName?: string;
    initContainers?: Record<string, unknown>[];
    containers: Record<string, unknown>[];
  };
  status: {
    phase?: string;
    podIP?: string;
    conditions?: { type: string; status: string }[];
    initContainerStatuses?: ContainerStatus[];
    containerStatuses?: ContainerStatus[];
  };
}

export const isReady = (pod: Pod): boolean =>
  (pod.status.conditions ?? []).some((c) => c.type === 'Ready' && c.status === 'True');

export const statusOf = (pod: Pod, container: string): ContainerStatus | undefined =>
  [...(pod.status.initContainerStatuses ?? []), ...(pod.status.containerStatuses ?? [])].find(
    (s) => s.name === container,
  );

export async function getPod(env: ClusterEnv, ns: string, name: string): Promise<Pod> {
  return (await kubectlJson(env.cluster.controlPlane, ['get', 'pod', name, '-n', ns])) as Pod;
}

export async function listPods(env: ClusterEnv, ns: string, selector: string): Promise<Pod[]> {
  const list = (await kubectlJson(env.cluster.controlPlane, [
    ...['get', 'pods', '-n', ns, '-l', selector],
  ])) as { items: Pod[] };
  return list.items;
}

/** Polls a Pod until `predicate` holds (default 120 s); the last state is in the error. */
export async function waitForPod(
  env: ClusterEnv,
  ns: string,
  name: string,
  what: string,
  predicate: (pod: Pod) => boolean,
  ms = 120_000,
): Promise<Pod> {
  let last: Pod | undefined;
  try {
    return await waitFor(
      `${ns}/${name}: ${what}`,
      async () => {
        last = await getPod(env, ns, name);
        return predicate(last) ? last : undefined;
      },
      ms,
    );
  } catch (err) {
    throw new Error(`${(err as Error).message}\nlast status: ${JSON.stringify(last?.status)}`, {
      cause: err,
    });
  }
}

/** `kubectl apply` of objects given as values. */
export async function apply(env: ClusterEnv, ns: string, ...objects: object[]): Promise<void> {
  await kubectl(
    env.cluster.controlPlane,
    ['apply', '-n', ns, '-f', '-'],
    JSON.stringify({ apiVersion: 'v1', kind: 'List', items: objects }),
  );
}

export interface EchoOptions {
  readonly replicas?: number;
  /**
   * The `app` label and the Service's name; default the Deployment's name. Several Deployments
   * of one app (one per `version` label) share its Service.
   */
  readonly app?: string;
  /** Service account of the Pods (created here); default the Deployment's name. */
  readonly serviceAccount?: string;
  readonly labels?: Record<string, string>;
  readonly annotations?: Record<string, string>;
  readonly env?: Record<string, string>;
  /** Probes of the echo container (readinessProbe, livenessProbe, startupProbe). */
  readonly probes?: Record<string, unknown>;
  /** More containers of the echo image (other ports through their env). */
  readonly extraContainers?: Record<string, unknown>[];
  readonly terminationGracePeriodSeconds?: number;
  /**
   * A preStop sleep of the echo container (the kubelet's own sleep action): the app keeps
   * serving that long after its Pod starts terminating, as a graceful server does while the
   * mesh takes its endpoint out.
   */
  readonly preStopSleepSeconds?: number;
}

/** The echo container of the test image, with the downward API's Pod name, Ready once it listens. */
export function echoContainer(
  env: ClusterEnv,
  name = 'echo',
  vars: Record<string, string> = {},
): Record<string, unknown> {
  return {
    name,
    image: env.cluster.images.echo,
    imagePullPolicy: 'Never',
    env: [
      { name: 'POD_NAME', valueFrom: { fieldRef: { fieldPath: 'metadata.name' } } },
      ...Object.entries(vars).map(([k, v]) => ({ name: k, value: v })),
    ],
    ports: [
      { name: 'http', containerPort: ECHO_PORTS.http },
      { name: 'grpc', containerPort: ECHO_PORTS.grpc },
      { name: 'tcp', containerPort: ECHO_PORTS.tcp },
    ],
    // Ready means listening (Node takes a moment to start).
    readinessProbe: {
      httpGet: { path: '/healthz', port: Number(vars.ECHO_HTTP_PORT ?? ECHO_PORTS.http) },
      periodSeconds: 1,
    },
  };
}

export interface Echo {
  readonly name: string;
  readonly namespace: string;
  /** The Service's ClusterIP (reachable from meshed Pods only: no kube-proxy here). */
  readonly clusterIP: string;
  /** The Pods once the Deployment is available. */
  readonly pods: Pod[];
}

/**
 * A Deployment of the echo app and its Service (ports http 8080, grpc 50051, tcp 9000), waited
 * for until every replica is available. The test's own port 8081 is excluded from the capture.
 */
export async function deployEcho(
  env: ClusterEnv,
  ns: string,
  name: string,
  o: EchoOptions = {},
): Promise<Echo> {
  const sa = o.serviceAccount ?? name;
  const app = o.app ?? name;
  const labels = { app, ...o.labels };
  const selector = Object.entries(labels)
    .map(([k, v]) => `${k}=${v}`)
    .join(',');
  await apply(
    env,
    ns,
    { apiVersion: 'v1', kind: 'ServiceAccount', metadata: { name: sa } },
    {
      apiVersion: 'apps/v1',
      kind: 'Deployment',
      metadata: { name },
      spec: {
        replicas: o.replicas ?? 1,
        selector: { matchLabels: labels },
        template: {
          metadata: {
            labels,
            annotations: {
              'traffic.mooring.dev/exclude-inbound-ports': String(ECHO_PORTS.control),
              ...o.annotations,
            },
          },
          spec: {
            serviceAccountName: sa,
            terminationGracePeriodSeconds: o.terminationGracePeriodSeconds ?? 30,
            containers: [
              {
                ...echoContainer(env, 'echo', o.env),
                ...o.probes,
                ...(o.preStopSleepSeconds === undefined
                  ? {}
                  : { lifecycle: { preStop: { sleep: { seconds: o.preStopSleepSeconds } } } }),
              },
              ...(o.extraContainers ?? []),
            ],
          },
        },
      },
    },
    {
      apiVersion: 'v1',
      kind: 'Service',
      metadata: { name: app },
      spec: {
        selector: { app },
        ports: [
          { name: 'http', port: ECHO_PORTS.http, appProtocol: 'http' },
          { name: 'grpc', port: ECHO_PORTS.grpc, appProtocol: 'grpc' },
          { name: 'tcp', port: ECHO_PORTS.tcp, appProtocol: 'tcp' },
        ],
      },
    },
  );
  await kubectl(env.cluster.controlPlane, [
    ...['rollout', 'status', `deployment/${name}`, '-n', ns, '--timeout=180s'],
  ]);
  const svc = (await kubectlJson(env.cluster.controlPlane, ['get', 'service', app, '-n', ns])) as {
    spec: { clusterIP: string };
  };
  const pods = (await listPods(env, ns, selector)).filter(
    (p) => p.metadata.deletionTimestamp === undefined,
  );
  return { name, namespace: ns, clusterIP: svc.spec.clusterIP, pods };
}

// --- talking to the echo app ------------------------------------------------------------------

async function control(
  pod: Pod,
  pathname: string,
  body?: unknown,
  port: number = ECHO_PORTS.control,
): Promise<unknown> {
  if (pod.status.podIP === undefined) throw new Error(`${pod.metadata.name} has no IP yet`);
  const answer = await request(`http://${pod.status.podIP}:${port}${pathname}`, {
    method: body === undefined ? 'GET' : 'POST',
    headers: { 'content-type': 'application/json' },
    ...(body === undefined ? {} : { body: JSON.stringify(body) }),
    timeout: 30_000,
  });
  if (answer.status !== 200 && answer.status !== 502)
    throw new Error(`${pathname} on ${pod.metadata.name}: HTTP ${answer.status} ${answer.body}`);
  return JSON.parse(answer.body) as unknown;
}

/** What the echo app answers to any other path: what it received. */
export interface Echoed {
  readonly pod: string;
  readonly method: string;
  readonly path: string;
  readonly headers: Record<string, string>;
  readonly body: string;
  readonly peer: { readonly address: string; readonly port: number };
}

export interface HttpAnswer {
  readonly status?: number;
  readonly headers?: Record<string, string>;
  readonly body?: string;
  readonly error?: string;
}

/** An HTTP/1.1 request made by the echo app in `from` (its Pod's traffic, captured or not). */
export function httpFrom(
  from: Pod,
  url: string,
  init: { method?: string; headers?: Record<string, string>; body?: string } = {},
): Promise<HttpAnswer> {
  return control(from, '/call', { url, ...init }) as Promise<HttpAnswer>;
}

/** The echo body of a successful answer. */
export function echoed(answer: HttpAnswer): Echoed {
  if (answer.status !== 200 || answer.body === undefined)
    throw new Error(`no echo: ${JSON.stringify(answer)}`);
  return JSON.parse(answer.body) as Echoed;
}

export interface RepeatAnswer {
  readonly sent: number;
  readonly ok: number;
  /** The first 20 failures: time since the start (ms), and the status or the error. */
  readonly failures: readonly { at: number; status?: number; error?: string }[];
  readonly byStatus: Record<string, number>;
  /** Answers per echo Pod and per ECHO_VERSION: a split or a rollout, counted. */
  readonly byPod: Record<string, number>;
  readonly byVersion: Record<string, number>;
}

/**
 * Requests made one after another by the echo app in `from` (a new connection each), for
 * `count` requests or `durationMs`: what a rolling update or a weighted split is measured with.
 */
export function repeatFrom(
  from: Pod,
  url: string,
  o: { count?: number; durationMs?: number; intervalMs?: number; headers?: Record<string, string> },
): Promise<RepeatAnswer> {
  return control(from, '/repeat', { url, ...o }) as Promise<RepeatAnswer>;
}

/**
 * A client loop in `from`: repeatFrom in chunks of `chunkMs`, one after another, until stop(),
 * which answers the sum (failure times from the start of the loop). What a rollout or a root
 * rotation is measured with, however long it takes.
 */
export function loopFrom(
  from: Pod,
  url: string,
  chunkMs = 5_000,
): { stop(): Promise<RepeatAnswer> } {
  const add = (a: Record<string, number>, b: Record<string, number>): Record<string, number> => {
    const out = { ...a };
    for (const [k, n] of Object.entries(b)) out[k] = (out[k] ?? 0) + n;
    return out;
  };
  let sum: RepeatAnswer = { sent: 0, ok: 0, failures: [], byStatus: {}, byPod: {}, byVersion: {} };
  const t0 = Date.now();
  let running = true;
  const done = (async () => {
    while (running) {
      const offset = Date.now() - t0;
      const chunk = await repeatFrom(from, url, { durationMs: chunkMs });
      sum = {
        sent: sum.sent + chunk.sent,
        ok: sum.ok + chunk.ok,
        failures: [...sum.failures, ...chunk.failures.map((f) => ({ ...f, at: f.at + offset }))],
        byStatus: add(sum.byStatus, chunk.byStatus),
        byPod: add(sum.byPod, chunk.byPod),
        byVersion: add(sum.byVersion, chunk.byVersion),
      };
    }
  })();
  // A failed control call ends the loop; stop() reports it (never an unhandled rejection).
  const ended = done.then(
    () => undefined,
    (err: unknown) => (err instanceof Error ? err : new Error(String(err))),
  );
  return {
    stop: async () => {
      running = false;
      const err = await ended;
      if (err !== undefined) throw err;
      return sum;
    },
  };
}

export interface GrpcAnswer {
  readonly response?: { pod: string; message: unknown; metadata: Record<string, unknown> };
  readonly error?: string;
  readonly code?: number;
}

/** A unary gRPC Echo call made by the echo app in `from` to `target` (host:port). */
export function grpcFrom(from: Pod, target: string, message: unknown = {}): Promise<GrpcAnswer> {
  return control(from, '/grpc-call', { target, message }) as Promise<GrpcAnswer>;
}

/**
 * Turns the echo app's health on or off, per protocol (its probes follow); `controlPort` picks
 * one of several echo containers of the Pod (ECHO_CONTROL_PORT).
 */
export async function setHealth(
  pod: Pod,
  health: { http?: boolean; grpc?: boolean; tcp?: boolean },
  controlPort: number = ECHO_PORTS.control,
): Promise<void> {
  await control(pod, '/admin/health', health, controlPort);
}

/** What the echo app got from ECHO_STARTUP_CHECK_URL when it started. */
export function startupCheck(pod: Pod): Promise<{ status?: number; error?: string }> {
  return control(pod, '/startup') as Promise<{ status?: number; error?: string }>;
}

// --- inside the sidecar -----------------------------------------------------------------------

/** Runs `node -e script` in a container of the Pod (the Mooring image has node); stdout. */
export function nodeIn(
  env: ClusterEnv,
  pod: Pod,
  container: string,
  script: string,
): Promise<string> {
  return kubectl(env.cluster.controlPlane, [
    ...['exec', pod.metadata.name, '-n', pod.metadata.namespace, '-c', container, '--'],
    ...['node', '-e', script],
  ]);
}

/**
 * An endpoint set the proxy balanced over, by `<ns>/<service>|<port>|<subset>`: its endpoints
 * (`address:port`), or its locality groups (priority levels, nearest first, or weighted).
 */
export type EndpointSetDump =
  | readonly string[]
  | {
      readonly [form in 'priorities' | 'localities']?: readonly {
        readonly locality: string;
        readonly weight?: number;
        readonly endpoints: readonly string[];
      }[];
    };

export interface ProxyConfigDump {
  readonly mesh: MeshConfigDump | null;
  /** Only the sets requests were balanced over since the last update. */
  readonly endpointSets: Readonly<Record<string, EndpointSetDump>>;
}

/** The proxy's own view of its configuration (GET 127.0.0.1:15000/config_dump, loopback only). */
export async function proxyConfig(env: ClusterEnv, pod: Pod): Promise<ProxyConfigDump> {
  const out = await nodeIn(
    env,
    pod,
    'mooring-proxy',
    `fetch('http://127.0.0.1:15000/config_dump').then((r) => r.text()).then((t) => process.stdout.write(t))`,
  );
  return JSON.parse(out) as ProxyConfigDump;
}

/** The files the agent wrote: its certificate chain and the trust bundle it uses. */
export async function agentFiles(
  env: ClusterEnv,
  pod: Pod,
): Promise<{ chain: string; roots: string }> {
  const dir = MOUNT_PATH.certs;
  const out = await nodeIn(
    env,
    pod,
    'mooring-proxy',
    `const fs = require('fs'); process.stdout.write(JSON.stringify({` +
      `chain: fs.readFileSync('${dir}/cert-chain.pem', 'utf8'),` +
      `roots: fs.readFileSync('${dir}/root-cert.pem', 'utf8')}))`,
  );
  return JSON.parse(out) as { chain: string; roots: string };
}

export { MOORING_NAMESPACE };
