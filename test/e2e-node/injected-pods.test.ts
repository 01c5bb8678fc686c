// Injected Pods really run on a node: Mooring's own image as mooring-init and mooring-proxy, the
// echo app held until the proxy (certificate and mesh configuration) is ready, the kubelet's
// probes answered through the agent, a Job whose calls go through its sidecar and that completes,
// a deleted Pod whose sidecar carries the app's calls to its last moment and then drains, a root
// rotation followed by the running agents with no request dropped between meshed Pods.
import { spawn } from 'node:child_process';
import { X509Certificate } from 'node:crypto';
import * as tls from 'node:tls';
import { kubectl, kubectlJson, kubectlPath } from '../e2e/harness/kube';
import {
  bundleText,
  issuedByOneOf,
  opensslVerify,
  pemsOf,
  runMooring,
  waitFor,
} from '../e2e/support/mooring';
import {
  agentFiles,
  apply,
  deployEcho,
  echoContainer,
  echoed,
  getPod,
  httpFrom,
  isReady,
  listPods,
  loopFrom,
  meshNamespace,
  MOORING_NAMESPACE,
  nodeIn,
  proxyConfig,
  repeatFrom,
  setHealth,
  spiffeId,
  startupCheck,
  statusOf,
  useMeshCluster,
  waitForPod,
  type Pod,
} from './support/mesh';

const env = useMeshCluster();

const names = (list: Record<string, unknown>[] | undefined): unknown[] =>
  (list ?? []).map((c) => c.name);

describe('an injected Deployment on a real node', () => {
  let ns: string;
  let pod: Pod;

  beforeAll(async () => {
    ns = await meshNamespace(env);
    const web = await deployEcho(env, ns, 'web', {
      // What the app sees of the proxy's readiness at its very first instant.
      env: { ECHO_STARTUP_CHECK_URL: 'http://127.0.0.1:15021/healthz/ready' },
    });
    pod = web.pods[0]!;
  }, 240_000);

  it('ran mooring-init to completion, then the native sidecar, then the app', () => {
    expect(names(pod.spec.initContainers)).toEqual(['mooring-init', 'mooring-proxy']);
    expect(pod.spec.initContainers?.[1]?.restartPolicy).toBe('Always');
    expect(pod.spec.initContainers?.[0]?.image).toBe(env.cluster.images.mooring);
    expect(pod.spec.initContainers?.[1]?.image).toBe(env.cluster.images.mooring);
    expect(statusOf(pod, 'mooring-init')?.state?.terminated).toMatchObject({
      exitCode: 0,
      reason: 'Completed',
    });
    expect(statusOf(pod, 'mooring-proxy')).toMatchObject({ ready: true, restartCount: 0 });
    expect(statusOf(pod, 'echo')).toMatchObject({ ready: true, restartCount: 0 });
    expect(isReady(pod)).toBe(true);
  });

  it('installed the redirect with the image’s iptables (the init container’s log, read through the kubelet)', async () => {
    const log = await kubectl(env.cluster.controlPlane, [
      ...['logs', pod.metadata.name, '-n', ns, '-c', 'mooring-init'],
    ]);
    const applied = log
      .split('\n')
      .filter((l) => l.includes('"iptables rules applied"'))
      .map((l) => JSON.parse(l) as { family: number; rules: number });
    expect(applied.map((a) => a.family).sort()).toEqual([4, 6]);
    for (const a of applied) expect(a.rules).toBeGreaterThan(0);
  });

  it('runs mooring-proxy as UID/GID 1337 and the app as the image’s non-root user', async () => {
    const ids = 'process.stdout.write(process.getuid() + ":" + process.getgid())';
    expect(await nodeIn(env, pod, 'mooring-proxy', ids)).toBe('1337:1337');
    expect(await nodeIn(env, pod, 'echo', ids)).toBe('65532:65532');
  });

  it('gave the proxy the certificate of its service account, chained to the trust bundle', async () => {
    const files = await agentFiles(env, pod);
    const chain = pemsOf(files.chain);
    const leaf = new X509Certificate(chain[0]!);
    expect(leaf.subjectAltName).toBe(`URI:${spiffeId(ns, 'web')}`);
    const bundle = await env.mooring.trustBundle();
    expect(pemsOf(files.roots)).toEqual(pemsOf(bundleText(bundle)));
    await expect(opensslVerify(chain, bundle)).resolves.toContain('OK');
  });

  it('held the app until the proxy was ready: its first look at 15021 saw 200', async () => {
    await expect(startupCheck(pod)).resolves.toMatchObject({ status: 200 });
  });
});

describe('the kubelet’s probes through the agent', () => {
  // Three echo containers, one per probe kind, each able to turn its own health off.
  const grpcVars = {
    ...{ ECHO_HTTP_PORT: '8180', ECHO_CONTROL_PORT: '8181' },
    ...{ ECHO_GRPC_PORT: '50151', ECHO_TCP_PORT: '9100', ECHO_GREET_PORT: '2625' },
  };
  const tcpVars = {
    ...{ ECHO_HTTP_PORT: '8280', ECHO_CONTROL_PORT: '8281' },
    ...{ ECHO_GRPC_PORT: '50251', ECHO_TCP_PORT: '9200', ECHO_GREET_PORT: '2725' },
  };
  const fast = { periodSeconds: 1, failureThreshold: 1, successThreshold: 1 };
  let ns: string;
  let pod: Pod;

  beforeAll(async () => {
    ns = await meshNamespace(env);
    const probed = await deployEcho(env, ns, 'probed', {
      annotations: { 'traffic.mooring.dev/exclude-inbound-ports': '8081,8181,8281' },
      probes: {
        readinessProbe: { httpGet: { path: '/healthz', port: 8080 }, ...fast },
        livenessProbe: { tcpSocket: { port: 9000 }, periodSeconds: 2, failureThreshold: 30 },
        startupProbe: { grpc: { port: 50051 }, periodSeconds: 1, failureThreshold: 120 },
      },
      extraContainers: [
        {
          ...echoContainer(env, 'grpc', grpcVars),
          ports: [],
          readinessProbe: { grpc: { port: 50151 }, ...fast },
        },
        {
          ...echoContainer(env, 'tcp', tcpVars),
          ports: [],
          readinessProbe: { tcpSocket: { port: 9200 }, ...fast },
        },
      ],
    });
    pod = probed.pods[0]!;
  }, 240_000);

  it('are rewritten to the agent on 15020, and the Pod is Ready through them', () => {
    const containers = pod.spec.containers as {
      name: string;
      readinessProbe?: { httpGet?: { port: number; path: string } };
      livenessProbe?: { httpGet?: { port: number; path: string } };
      startupProbe?: { httpGet?: { port: number; path: string } };
    }[];
    const rewritten = containers.flatMap((c) =>
      [c.readinessProbe, c.livenessProbe, c.startupProbe]
        .filter((p) => p !== undefined)
        .map((p) => ({ container: c.name, port: p.httpGet?.port, path: p.httpGet?.path })),
    );
    expect(rewritten).toHaveLength(5);
    for (const r of rewritten) {
      expect(r.port).toBe(15020);
      expect(r.path).toContain(`/app-health/${r.container}/`);
    }
    expect(isReady(pod)).toBe(true);
  });

  it.each([
    ['HTTP', 'echo', 8081, { http: false }, { http: true }],
    ['gRPC', 'grpc', 8181, { grpc: false }, { grpc: true }],
    ['TCP', 'tcp', 8281, { tcp: false }, { tcp: true }],
  ] as const)(
    'follow the app’s %s health: off makes the Pod NotReady, on makes it Ready again',
    async (_kind, container, controlPort, off, on) => {
      await setHealth(pod, off, controlPort);
      const notReady = await waitForPod(env, ns, pod.metadata.name, 'NotReady', (p) => !isReady(p));
      expect(statusOf(notReady, container)?.ready).toBe(false);
      await setHealth(pod, on, controlPort);
      const ready = await waitForPod(env, ns, pod.metadata.name, 'Ready again', isReady);
      // The liveness probe (TCP through the agent) never failed meanwhile.
      for (const name of ['echo', 'grpc', 'tcp']) {
        expect(statusOf(ready, name)?.restartCount).toBe(0);
      }
    },
    90_000,
  );
});

describe('Pods that end', () => {
  it('a Job with an injected Pod calls a Service through its sidecar, completes, and its sidecar stops with it', async () => {
    const ns = await meshNamespace(env);
    const server = await deployEcho(env, ns, 'server');
    // The Job's work: one call to the Service's ClusterIP (reachable only through the sidecar),
    // its answer on stdout, exit 0 only for a 200.
    const call =
      `require('http').get('http://${server.clusterIP}:8080/from-job', (res) => {` +
      `let b = ''; res.on('data', (d) => (b += d));` +
      `res.on('end', () => { console.log(b); process.exit(res.statusCode === 200 ? 0 : 1); });` +
      `}).on('error', (e) => { console.error(e.message); process.exit(2); });`;
    await apply(
      env,
      ns,
      { apiVersion: 'v1', kind: 'ServiceAccount', metadata: { name: 'job' } },
      {
        apiVersion: 'batch/v1',
        kind: 'Job',
        metadata: { name: 'once' },
        spec: {
          backoffLimit: 0,
          template: {
            spec: {
              serviceAccountName: 'job',
              restartPolicy: 'Never',
              containers: [
                {
                  ...echoContainer(env, 'work'),
                  command: ['/usr/local/bin/node', '-e', call],
                },
              ],
            },
          },
        },
      },
    );
    await kubectl(env.cluster.controlPlane, [
      ...['wait', '--for=condition=complete', 'job/once', '-n', ns, '--timeout=180s'],
    ]);
    const [jobPod] = await listPods(env, ns, 'job-name=once');
    expect(jobPod?.status.phase).toBe('Succeeded');
    expect(statusOf(jobPod!, 'work')?.state?.terminated?.exitCode).toBe(0);
    expect(statusOf(jobPod!, 'mooring-init')?.state?.terminated?.exitCode).toBe(0);
    // The call went through both sidecars: the server saw the Job's identity.
    const answer = await kubectl(env.cluster.controlPlane, [
      ...['logs', jobPod!.metadata.name, '-n', ns, '-c', 'work'],
    ]);
    const seen = JSON.parse(answer) as { path: string; headers: Record<string, string> };
    expect(seen.path).toBe('/from-job');
    expect(seen.headers['x-forwarded-client-cert']).toBe(
      `By=${spiffeId(ns, 'server')};URI=${spiffeId(ns, 'job')}`,
    );
    // The native sidecar was stopped by the kubelet once the app ended, and drained cleanly.
    expect(statusOf(jobPod!, 'mooring-proxy')?.state?.terminated?.exitCode).toBe(0);
  }, 240_000);

  it('a deleted Pod: its sidecar carries the app’s calls until the app has stopped, then drains, and the Pod is gone within its grace period', async () => {
    const ns = await meshNamespace(env);
    const grace = 30;
    const stopping = 6;
    const [server, drain] = await Promise.all([
      deployEcho(env, ns, 'server'),
      deployEcho(env, ns, 'drain', {
        terminationGracePeriodSeconds: grace,
        preStopSleepSeconds: stopping,
      }),
    ]);
    const target = drain.pods[0]!;
    // Every version of the Pod until it is gone, from a watch.
    const seen = watchPod(env, ns, target.metadata.name);
    const t0 = Date.now();
    await kubectl(env.cluster.controlPlane, [
      ...['delete', 'pod', target.metadata.name, '-n', ns, '--wait=false'],
    ]);
    // The Pod is terminating and its app still runs (its preStop sleep): a call it makes to a
    // ClusterIP, which only its sidecar can route, still goes out with its identity.
    await waitForPod(env, ns, target.metadata.name, 'terminating', (p) =>
      Boolean(p.metadata.deletionTimestamp),
    );
    const during = echoed(await httpFrom(target, `http://${server.clusterIP}:8080/while-stopping`));
    expect(during.path).toBe('/while-stopping');
    expect(during.headers['x-forwarded-client-cert']).toBe(
      `By=${spiffeId(ns, 'server')};URI=${spiffeId(ns, 'drain')}`,
    );
    await waitFor(
      'the Pod to be gone',
      async () => {
        const left = (await kubectlJson(env.cluster.controlPlane, [
          ...['get', 'pods', '-n', ns, '--field-selector', `metadata.name=${target.metadata.name}`],
        ])) as { items: unknown[] };
        return left.items.length === 0 ? true : undefined;
      },
      (grace + 30) * 1000,
    );
    const gone = (Date.now() - t0) / 1000;
    const versions = await seen.stop();
    expect(gone).toBeLessThan(grace);

    const last = [...versions].reverse();
    const app = last.map((p) => statusOf(p, 'echo')?.state?.terminated).find((t) => t);
    const proxy = last.map((p) => statusOf(p, 'mooring-proxy')?.state?.terminated).find((t) => t);
    expect(app?.exitCode).toBe(0);
    // Exit code 0: the agent ended by itself once its drain found nothing in flight, not
    // killed at the deadline (137).
    expect(proxy?.exitCode).toBe(0);
    // The native sidecar stopped after the app, never before it.
    const order = Date.parse(proxy!.finishedAt!) - Date.parse(app!.finishedAt!);
    expect(order).toBeGreaterThanOrEqual(0);
  }, 240_000);
});

describe('a root rotation while Pods run', () => {
  it('reaches the running agents, a new Pod gets a certificate of the new root, and no request between meshed Pods fails', async () => {
    const ns = await meshNamespace(env);
    const [rot, caller] = await Promise.all([
      deployEcho(env, ns, 'rot', { replicas: 2 }),
      // Its failed attempts (retried to another Pod, unseen by the app) in its log.
      deployEcho(env, ns, 'caller', { annotations: { 'proxy.mooring.dev/log-level': 'debug' } }),
    ]);
    const before = await env.mooring.trustBundle();
    expect(before).toHaveLength(1);
    // Calls from another meshed Pod to the rotated Pods' Service, one after another (a new
    // connection each, so a new mTLS handshake each), all through the rotation.
    const url = `http://${rot.clusterIP}:8080/rotation`;
    const loop = loopFrom(caller.pods[0]!, url);

    const rotated = await runMooring(
      [
        'ca',
        'rotate',
        '--kubeconfig',
        env.cluster.kubeconfigPath,
        '--config',
        env.mooring.configPath,
      ],
      { POD_NAMESPACE: MOORING_NAMESPACE },
    );
    expect(rotated.code).toBe(0);
    const both = await waitFor('two roots', async () => {
      const b = await env.mooring.trustBundle();
      return b.length === 2 ? b : undefined;
    });
    // PEMs as pemsOf gives them (no trailing newline), whatever their source.
    const newRoot = pemsOf(bundleText(both)).find((r) => !bundleText(before).includes(r))!;

    // Each running agent's trust bundle gains the new root (ConfigMap volume -> agent), and the
    // Pods stay Ready: nothing restarts.
    for (const p of rot.pods) {
      await waitFor(
        `the new root in ${p.metadata.name}'s agent`,
        async () => (pemsOf((await agentFiles(env, p)).roots).includes(newRoot) ? true : undefined),
        90_000,
      );
      const now = await getPod(env, ns, p.metadata.name);
      expect(isReady(now)).toBe(true);
      expect(statusOf(now, 'mooring-proxy')?.restartCount).toBe(0);
      // Its certificate (from the old root) still verifies against the new bundle.
      const files = await agentFiles(env, p);
      await expect(opensslVerify(pemsOf(files.chain), both)).resolves.toContain('OK');
    }

    // After the propagation delay the CA issues from the new root (its own serving certificate
    // first): a new Pod's agent gets such a certificate, over TLS verified with the new bundle.
    await waitFor(
      'the CA serving from the new root',
      async () => ((await servedBy(env.mooring.url, [newRoot])) === newRoot ? true : undefined),
      60_000,
    );
    await kubectl(env.cluster.controlPlane, ['scale', 'deployment/rot', '-n', ns, '--replicas=3']);
    await kubectl(env.cluster.controlPlane, [
      ...['rollout', 'status', 'deployment/rot', '-n', ns, '--timeout=180s'],
    ]);
    const newcomer = (await listPods(env, ns, 'app=rot')).find(
      (p) => !rot.pods.some((o) => o.metadata.name === p.metadata.name),
    )!;
    const chain = await waitFor(
      'a certificate of the new root',
      async () => {
        const c = pemsOf((await agentFiles(env, newcomer)).chain);
        return issuedByOneOf(c[c.length - 1]!, [newRoot]) !== undefined ? c : undefined;
      },
      60_000,
    );
    await expect(opensslVerify(chain, [newRoot])).resolves.toContain('OK');

    // The newcomer (new root) is called by the caller (old root) with both roots trusted: the
    // caller's agent must hold the new root first (the kubelet refreshes a ConfigMap volume
    // within about a minute, longer than this server's 4 s propagation delay; until then the
    // caller refuses the newcomer's chain, fail-closed, and its retries go to the old Pods).
    await waitFor(
      "the new root in the caller's agent",
      async () =>
        pemsOf((await agentFiles(env, caller.pods[0]!)).roots).includes(newRoot) ? true : undefined,
      90_000,
    );
    let last: unknown;
    await waitFor(
      'a call answered by the Pod of the new root',
      async () => {
        const some = await repeatFrom(caller.pods[0]!, url, { count: 10 });
        last = some;
        return (some.byPod[newcomer.metadata.name] ?? 0) > 0 ? true : undefined;
      },
      60_000,
    ).catch(async (err: unknown) => {
      // What the caller's proxy saw: per endpoint its attempts and failures, the sets it balanced
      // over; its log (debug: each failed attempt), the newcomer's.
      const dump = (await proxyConfig(env, caller.pods[0]!).catch((e: unknown) => String(e))) as {
        endpoints?: unknown;
        endpointSets?: unknown;
      };
      const logs = async (p: Pod) =>
        kubectl(env.cluster.controlPlane, [
          ...['logs', p.metadata.name, '-n', ns, '-c', 'mooring-proxy', '--tail=60'],
        ]).catch((e: unknown) => String(e));
      throw new Error(
        `${String(err)}\nlast calls: ${JSON.stringify(last)}\n` +
          `newcomer: ${newcomer.metadata.name} ${JSON.stringify(newcomer.status?.podIP)}\n` +
          `caller's endpoints: ${JSON.stringify(dump.endpoints ?? dump)}\n` +
          `caller's endpoint sets: ${JSON.stringify(dump.endpointSets)}\n` +
          `caller's log:\n${await logs(caller.pods[0]!)}\nnewcomer's log:\n${await logs(newcomer)}`,
      );
    });
    const calls = await loop.stop();
    expect(calls.failures).toEqual([]);
    expect(calls.ok).toBe(calls.sent);
    expect(calls.sent).toBeGreaterThan(50);
    expect(Object.keys(calls.byPod).sort()).toEqual(
      expect.arrayContaining(rot.pods.map((p) => p.metadata.name).sort()),
    );
  }, 510_000);
});

/** The root (of `roots`) that the server's certificate chains to, over a verified connection. */
function servedBy(url: string, roots: readonly string[]): Promise<string | undefined> {
  const { hostname, port } = new URL(url);
  return new Promise((resolve, reject) => {
    const socket = tls.connect(
      { host: hostname, port: Number(port), ca: bundleText(roots) },
      () => {
        const leaf = socket.getPeerX509Certificate();
        socket.end();
        resolve(roots.find((r) => leaf !== undefined && issuedByOneOf(leaf.toString(), [r])));
      },
    );
    socket.on('error', reject);
  });
}

/** Collects every version of a Pod from `kubectl get -w` until stop(). */
function watchPod(envRef: typeof env, ns: string, name: string): { stop(): Promise<Pod[]> } {
  const child = spawn(
    kubectlPath(),
    [
      ...['--kubeconfig', envRef.cluster.kubeconfigPath, 'get', 'pod', name, '-n', ns],
      ...['-w', '-o', 'json'],
    ],
    { stdio: ['ignore', 'pipe', 'ignore'] },
  );
  let text = '';
  child.stdout.setEncoding('utf8').on('data', (c: string) => (text += c));
  return {
    stop: async () => {
      child.kill();
      await new Promise((r) => child.on('close', r));
      return jsonValues(text) as Pod[];
    },
  };
}

/**
 * The JSON values of a stream of them one after another (kubectl's watch output), by bracket
 * depth outside strings; a last value cut short (kubectl killed while writing) is left out.
 */
function jsonValues(text: string): unknown[] {
  const values: unknown[] = [];
  let depth = 0;
  let start = -1;
  let inString = false;
  for (let i = 0; i < text.length; i++) {
    const c = text[i];
    if (inString) {
      if (c === '\\') i++;
      else if (c === '"') inString = false;
    } else if (c === '"') inString = true;
    else if (c === '{' || c === '[') {
      if (depth === 0) start = i;
      depth++;
    } else if (c === '}' || c === ']') {
      depth--;
      if (depth === 0) values.push(JSON.parse(text.slice(start, i + 1)));
    }
  }
  return values;
}
