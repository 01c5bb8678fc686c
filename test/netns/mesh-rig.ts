// A small mesh in network namespaces, for the data-plane tests (run as root: `make netns`).
//
//   hub   br0 10.77.0.1/24: the bridge every Pod is plugged into, and `mooring serve --mesh-dir`
//         (the CA and the mesh push) listening on 10.77.0.1:8443
//   <pod> eth0 10.77.0.N/24, default route via 10.77.0.1; a meshed Pod runs `mooring iptables`
//         (the rules of mooring-init, as root), then `mooring agent` as UID/GID 1337 with every
//         capability dropped (mooring-proxy), then its app as UID 1000
//
// Nothing here leaves the machine: the addresses exist only inside these namespaces, and the
// hub has no route out. The mesh is what the test writes into the server's --mesh-dir:
// Kubernetes objects (Service, EndpointSlice, Pod, PeerAuthentication...), built with the
// helpers at the end of this file.

import { spawn, type ChildProcess } from 'node:child_process';
import {
  chmodSync,
  chownSync,
  copyFileSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  rmSync,
  writeFileSync,
} from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { stringify } from 'yaml';
import {
  checkPreconditions,
  killAll,
  MOORING,
  must,
  NODE,
  PREFIX,
  removeLeftovers,
  ROOT,
  run,
  type Result,
} from './support';
import { PROXY_NODE_OPTIONS } from '../../src/constants';

export const HUB_IP = '10.77.0.1';

/** In the hub: 127.0.0.1:<port> relayed to a Unix socket (argv: port, socket). */
const RELAY = `
const net = require('net');
const [port, socket] = [Number(process.argv[1]), process.argv[2]];
net.createServer((c) => {
  const up = net.connect(socket);
  c.pipe(up).pipe(c);
  c.on('error', () => up.destroy());
  up.on('error', () => c.destroy());
}).listen(port, '127.0.0.1');`;
export const SERVER_URL = `https://${HUB_IP}:8443`;
export const ECHO = join(ROOT, '.cache/echo-build/echo.js');
export const PROXY_USER = [
  '--reuid=1337',
  '--regid=1337',
  '--clear-groups',
  '--inh-caps=-all',
  '--bounding-set=-all',
  '--no-new-privs',
];
export const APP_USER = [
  '--reuid=1000',
  '--regid=1000',
  '--clear-groups',
  '--inh-caps=-all',
  '--bounding-set=-all',
  '--no-new-privs',
];

/**
 * What every rig test needs first: root, the tools, a fresh build, the echo app, no namespaces
 * left by a killed run, and a repository the agents (UID 1337) and apps (UID 1000) can read.
 */
export async function prepareRig(tools: readonly string[]): Promise<void> {
  await checkPreconditions(
    ['ip', 'iptables', 'setpriv', 'curl', ...tools],
    [
      ['src/agent/agent.ts', 'dist/agent/agent.js'],
      ['src/agent/proxy/sidecar.ts', 'dist/agent/proxy/sidecar.js'],
    ],
  );
  if (!existsSync(ECHO))
    throw new Error(`${ECHO} is missing: run \`make netns\` (it compiles the echo app)`);
  await removeLeftovers();
  chmodSync(ROOT, 0o755);
}

export interface PodSpec {
  readonly name: string;
  readonly ip: string;
  readonly namespace?: string;
  readonly serviceAccount?: string;
  /** Runs mooring-init's rules and the agent (mooring-proxy). */
  readonly meshed: boolean;
  readonly labels?: Record<string, string>;
  /** Extra flags of `mooring iptables` (e.g. excluded ports). */
  readonly iptables?: readonly string[];
  /** Extra flags of the agent. */
  readonly agentArgs?: readonly string[];
  /** The app's environment (the echo app by default: ECHO_* ports). */
  readonly appEnv?: Record<string, string>;
  /** false: no app. */
  readonly app?: boolean;
  /** The agent's token (local mode: `token-<name>`, listed in tokens.json). */
  readonly token?: string;
  /** Annotations of the Pod object in the mesh (e.g. `proxy.mooring.dev/access-log`). */
  readonly annotations?: Record<string, string>;
}

export interface Pod {
  readonly spec: PodSpec;
  readonly ns: string;
  readonly namespace: string;
  readonly serviceAccount: string;
  readonly dir: string;
  agent: ChildProcess | null;
  app: ChildProcess | null;
  /** `agent`: everything the agent printed; `agentStdout`: its stdout alone (the access log). */
  readonly logs: { agent: string; agentStdout: string; app: string };
}

export interface RigOptions {
  /** The server's configuration file (`mooring serve --config`), e.g. `{ mesh: { accessLog: true } }`. */
  readonly config?: object;
}

export interface HttpAnswer {
  status?: number;
  headers?: Record<string, string>;
  body?: string;
  error?: string;
}

/** MeshRig.http's client: argv url, method, headers (JSON), body. */
const HTTP_SCRIPT = `
const http = require('http');
const [url, method, headers, body] = [process.argv[1], process.argv[2], JSON.parse(process.argv[3]), process.argv[4]];
const req = http.request(url, { method, headers, agent: false }, (res) => {
  let text = '';
  res.on('data', (d) => (text += d));
  res.on('end', () => console.log(JSON.stringify({ status: res.statusCode, headers: res.headers, body: text })));
});
req.on('error', (e) => console.log(JSON.stringify({ error: e.code || e.message })));
req.setTimeout(10000, () => req.destroy(new Error('TIMEOUT')));
req.end(body);`;

export class MeshRig {
  readonly hub: string;
  readonly pods = new Map<string, Pod>();
  readonly dir: string;
  readonly dataDir: string;
  readonly meshDir: string;
  private server: ChildProcess | null = null;
  private relay: net.Server | null = null;
  private clusterBundle: string | null = null;
  private readonly children: ChildProcess[] = [];
  serverLog = '';
  private index = 0;

  constructor(readonly id: string) {
    this.hub = `${PREFIX}${process.pid}-${id}-hub`;
    this.dir = mkdtempSync(join(tmpdir(), `mooring-rig-${id}-`));
    chmodSync(this.dir, 0o755);
    this.dataDir = join(this.dir, 'data');
    this.meshDir = join(this.dir, 'mesh');
    mkdirSync(this.dataDir, { mode: 0o700 });
    mkdirSync(this.meshDir);
  }

  /** The hub namespace, its bridge, and the server (the CA and the mesh push). */
  async start(
    tokens: Record<string, { namespace: string; serviceAccount: string }>,
    options: RigOptions = {},
  ): Promise<void> {
    await this.startHub();
    writeFileSync(join(this.dataDir, 'tokens.json'), JSON.stringify(tokens), { mode: 0o600 });
    const configFile = join(this.dir, 'server.json');
    const { config } = options;
    if (config !== undefined) writeFileSync(configFile, JSON.stringify(config), { mode: 0o600 });
    await this.startServer(
      [
        ...['--data-dir', this.dataDir, '--mesh-dir', this.meshDir],
        ...(config === undefined ? [] : ['--config', configFile]),
      ],
      {},
    );
  }

  /**
   * Cluster mode: `mooring serve --kubeconfig` in the hub, its apiserver (on this machine's
   * 127.0.0.1, which a namespace cannot reach) relayed through a Unix socket to the same port on
   * the hub's 127.0.0.1. The Pods' tokens and trust bundle come from the caller (TokenRequest,
   * the mooring-ca-root-cert ConfigMap), as the kubelet would mount them.
   */
  async startCluster(options: {
    readonly apiPort: number;
    readonly kubeconfig: string;
    readonly config: object;
    readonly namespace: string;
    readonly bundle: () => Promise<string>;
  }): Promise<void> {
    await this.startHub();
    const socket = join(this.dir, 'apiserver.sock');
    this.relay = net
      .createServer((c) => {
        const up = net.connect(options.apiPort, '127.0.0.1');
        c.pipe(up).pipe(c);
        c.on('error', () => up.destroy());
        up.on('error', () => c.destroy());
      })
      .listen(socket);
    await new Promise((resolve) => this.relay?.once('listening', resolve));
    this.spawnLogged(
      ['ip', 'netns', 'exec', this.hub, NODE, '-e', RELAY, String(options.apiPort), socket],
      (t) => (this.serverLog += t),
    );
    const configFile = join(this.dir, 'server.json');
    writeFileSync(configFile, JSON.stringify(options.config));
    await this.startServer(['--kubeconfig', options.kubeconfig, '--config', configFile], {
      POD_NAMESPACE: options.namespace,
    });
    this.clusterBundle = await options.bundle();
  }

  private async startHub(): Promise<void> {
    await must('ip', ['netns', 'add', this.hub]);
    await this.ip(this.hub, 'link', 'set', 'lo', 'up');
    // A bridge takes the lowest MAC of its ports unless given one: each Pod plugged in later would
    // change it, and the Pods' ARP entries for the hub would go stale mid-connection.
    await this.ip(this.hub, 'link', 'add', 'br0', 'address', '02:00:0a:4d:00:01', 'type', 'bridge');
    await this.ip(this.hub, 'addr', 'add', `${HUB_IP}/24`, 'dev', 'br0');
    await this.ip(this.hub, 'link', 'set', 'br0', 'up');
  }

  private async startServer(flags: readonly string[], env: Record<string, string>): Promise<void> {
    const envArgs = Object.entries(env).map(([k, v]) => `${k}=${v}`);
    this.server = this.spawnLogged(
      [
        ...['ip', 'netns', 'exec', this.hub, 'env', ...envArgs, NODE, MOORING, 'serve'],
        ...['--listen', `${HUB_IP}:8443`, '--admin-listen', '127.0.0.1:9090', ...flags],
      ],
      (t) => (this.serverLog += t),
    );
    await this.waitFor(
      'the server ready',
      async () =>
        (await this.exec(this.hub, ['curl', '-sf', 'http://127.0.0.1:9090/readyz'])).code === 0,
    );
  }

  /** The trust bundle as the server has it now (root-cert.pem of its data directory). */
  bundle(): string {
    if (this.clusterBundle !== null) return this.clusterBundle;
    return readFileSync(join(this.dataDir, 'root-cert.pem'), 'utf8');
  }

  /** A Pod: its namespace, plugged into the bridge; for a meshed one, the rules and the agent. */
  async addPod(spec: PodSpec): Promise<Pod> {
    const n = ++this.index;
    const ns = `${PREFIX}${process.pid}-${this.id}-${spec.name}`.slice(0, 60);
    const dir = join(this.dir, spec.name);
    mkdirSync(dir, { mode: 0o755 });
    const pod: Pod = {
      spec,
      ns,
      namespace: spec.namespace ?? 'default',
      serviceAccount: spec.serviceAccount ?? spec.name,
      dir,
      agent: null,
      app: null,
      logs: { agent: '', agentStdout: '', app: '' },
    };
    this.pods.set(spec.name, pod);
    await must('ip', ['netns', 'add', ns]);
    const veth = `v${process.pid % 10000}${this.id.slice(0, 3)}${n}`.slice(0, 15);
    await this.ip(
      this.hub,
      'link',
      'add',
      veth,
      'type',
      'veth',
      'peer',
      'name',
      'eth0',
      'netns',
      ns,
    );
    await this.ip(this.hub, 'link', 'set', veth, 'master', 'br0', 'up');
    await this.ip(ns, 'link', 'set', 'lo', 'up');
    await this.ip(ns, 'addr', 'add', `${spec.ip}/24`, 'dev', 'eth0');
    await this.ip(ns, 'link', 'set', 'eth0', 'up');
    await this.ip(ns, 'route', 'add', 'default', 'via', HUB_IP);
    if (spec.meshed) {
      const rules = await this.exec(ns, [NODE, MOORING, 'iptables', ...(spec.iptables ?? [])]);
      if (rules.code !== 0)
        throw new Error(`mooring iptables failed in ${spec.name}: ${rules.stderr}`);
      this.startAgent(pod);
    }
    if (spec.app !== false) await this.startApp(pod);
    return pod;
  }

  startAgent(pod: Pod, extra: readonly string[] = []): void {
    const token = pod.spec.token ?? `token-${pod.spec.name}`;
    const files = {
      token: join(pod.dir, 'token'),
      root: join(pod.dir, 'root-cert.pem'),
      out: join(pod.dir, 'certs'),
    };
    writeFileSync(files.token, `${token}\n`, { mode: 0o644 });
    writeFileSync(files.root, this.bundle(), { mode: 0o644 });
    mkdirSync(files.out, { recursive: true });
    chownSync(files.out, 1337, 1337);
    pod.logs.agent = '';
    pod.logs.agentStdout = '';
    pod.agent = this.spawnLogged(
      [
        'ip',
        'netns',
        'exec',
        pod.ns,
        'setpriv',
        ...PROXY_USER,
        // As in its injected container: with a young generation of V8's default size (up to 16
        // MiB) and a live heap of 12 MiB, V8 keeps starting full collections under load (25 in 10
        // s at 1,000 requests/s, measured in `make demo`), which no Pod sees.
        'env',
        `NODE_OPTIONS=${PROXY_NODE_OPTIONS}`,
        NODE,
        MOORING,
        'agent',
        '--ca-url',
        SERVER_URL,
        '--token-file',
        files.token,
        '--root-cert',
        files.root,
        '--out-dir',
        files.out,
        '--pod-name',
        pod.spec.name,
        '--pod-namespace',
        pod.namespace,
        '--pod-ip',
        pod.spec.ip,
        '--root-poll-interval',
        '200ms',
        '--drain',
        '2s',
        ...(pod.spec.agentArgs ?? []),
        ...extra,
      ],
      (t) => (pod.logs.agent += t),
      (t) => (pod.logs.agentStdout += t),
    );
  }

  /** Waits until the agent's readiness (15021) says 200. */
  async waitReady(name: string, timeoutMs = 30_000): Promise<void> {
    const pod = this.pod(name);
    await this.waitFor(
      `${name}'s agent ready`,
      async () =>
        (await this.exec(pod.ns, ['curl', '-sf', 'http://127.0.0.1:15021/healthz/ready'])).code ===
        0,
      timeoutMs,
      () => pod.logs.agent,
    );
  }

  /** Copies the server's bundle to the Pod's root file, as the kubelet updates a ConfigMap volume. */
  refreshBundle(name: string): void {
    const pod = this.pod(name);
    const tmp = join(pod.dir, 'root-cert.pem.new');
    writeFileSync(tmp, this.bundle(), { mode: 0o644 });
    copyFileSync(tmp, join(pod.dir, 'root-cert.pem'));
  }

  private async startApp(pod: Pod): Promise<void> {
    const env = {
      POD_NAME: pod.spec.name,
      ECHO_HTTP_PORT: '8080',
      ECHO_CONTROL_PORT: '8081',
      ECHO_GRPC_PORT: '50051',
      ECHO_TCP_PORT: '9000',
      ...pod.spec.appEnv,
    };
    const envArgs = Object.entries(env).map(([k, v]) => `${k}=${v}`);
    pod.app = this.spawnLogged(
      ['ip', 'netns', 'exec', pod.ns, 'setpriv', ...APP_USER, 'env', ...envArgs, NODE, ECHO],
      (t) => (pod.logs.app += t),
    );
    await this.waitFor(
      `${pod.spec.name}'s app`,
      async () =>
        (await this.exec(pod.ns, ['curl', '-sf', 'http://127.0.0.1:8081/healthz'])).code === 0,
    );
  }

  /** Writes one file of the mesh directory (YAML of the given objects); the server re-reads it. */
  writeMesh(file: string, objects: readonly object[]): void {
    const path = join(this.meshDir, file);
    writeFileSync(`${path}.tmp`, objects.map((o) => stringify(o)).join('---\n'));
    copyFileSync(`${path}.tmp`, path);
    rmSync(`${path}.tmp`);
  }

  removeMesh(file: string): void {
    rmSync(join(this.meshDir, file), { force: true });
  }

  pod(name: string): Pod {
    const pod = this.pods.get(name);
    if (pod === undefined) throw new Error(`no Pod ${name}`);
    return pod;
  }

  /** Runs a command in a namespace (as root unless `user` gives setpriv flags). */
  exec(
    ns: string,
    command: readonly string[],
    user: readonly string[] = [],
    timeout = 30_000,
  ): Promise<Result> {
    const cmd = user.length === 0 ? command : ['setpriv', ...user, ...command];
    return run('ip', ['netns', 'exec', ns, ...cmd], timeout);
  }

  /** Runs a Node script in a Pod as its app's user (UID 1000): the app's own outgoing traffic. */
  async node(
    name: string,
    script: string,
    args: readonly string[] = [],
    timeout = 30_000,
  ): Promise<string> {
    const r = await this.exec(this.pod(name).ns, [NODE, '-e', script, ...args], APP_USER, timeout);
    if (r.code !== 0) throw new Error(`script in ${name} failed (${r.code}): ${r.stderr}`);
    return r.stdout;
  }

  /**
   * An HTTP/1.1 request made by a Pod's app (UID 1000: through its sidecar when meshed), a new
   * connection each; a connection error is `{error}`, never a throw.
   */
  async http(
    name: string,
    url: string,
    opts: { method?: string; headers?: Record<string, string>; body?: string } = {},
  ): Promise<HttpAnswer> {
    const method = opts.method ?? (opts.body === undefined ? 'GET' : 'POST');
    const args = [url, method, JSON.stringify(opts.headers ?? {})];
    if (opts.body !== undefined) args.push(opts.body);
    return JSON.parse(await this.node(name, HTTP_SCRIPT, args)) as HttpAnswer;
  }

  /** The proxy's /config_dump (127.0.0.1:15000 in the Pod). */
  async configDump(name: string): Promise<Record<string, unknown>> {
    const r = await this.exec(this.pod(name).ns, [
      'curl',
      '-sf',
      'http://127.0.0.1:15000/config_dump',
    ]);
    if (r.code !== 0) throw new Error(`no config dump from ${name}: ${r.stderr}`);
    return JSON.parse(r.stdout) as Record<string, unknown>;
  }

  /** The proxy's /memory (127.0.0.1:15000 in the Pod). */
  async memory(name: string): Promise<Record<string, unknown>> {
    const r = await this.exec(this.pod(name).ns, ['curl', '-sf', 'http://127.0.0.1:15000/memory']);
    if (r.code !== 0) throw new Error(`no /memory from ${name}: ${r.stderr}`);
    return JSON.parse(r.stdout) as Record<string, unknown>;
  }

  /** The proxy's Istio metrics (15090 in the Pod). */
  async stats(name: string): Promise<string> {
    const r = await this.exec(this.pod(name).ns, [
      'curl',
      '-sf',
      'http://127.0.0.1:15090/stats/prometheus',
    ]);
    if (r.code !== 0) throw new Error(`no stats from ${name}: ${r.stderr}`);
    return r.stdout;
  }

  async waitFor(
    what: string,
    probe: () => Promise<boolean>,
    timeoutMs = 30_000,
    log?: () => string,
  ): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (Date.now() < deadline) {
      try {
        if (await probe()) return;
      } catch {
        // not yet
      }
      await new Promise((r) => setTimeout(r, 100));
    }
    throw new Error(
      `timed out waiting for ${what}\n--- server log ---\n${this.serverLog.slice(-3000)}${log ? `\n--- log ---\n${log().slice(-3000)}` : ''}`,
    );
  }

  /** Starts a command; everything it prints goes to `sink`, its stdout also to `stdoutSink`. */
  spawnLogged(
    command: readonly string[],
    sink: (text: string) => void,
    stdoutSink?: (text: string) => void,
  ): ChildProcess {
    const [file, ...args] = command as [string, ...string[]];
    const child = spawn(file, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    child.stdout?.on('data', (d: Buffer) => {
      sink(d.toString());
      stdoutSink?.(d.toString());
    });
    child.stderr?.on('data', (d: Buffer) => sink(d.toString()));
    this.children.push(child);
    return child;
  }

  /**
   * Starts tcpdump on a Pod's eth0 (as root: the rig's directory is private; every packet handed
   * over at once, which a SIGINT would otherwise drop); `stop()` answers what it saw (`-A -nn`).
   */
  async capture(name: string, filter: readonly string[]): Promise<{ stop(): Promise<string> }> {
    const file = join(this.dir, `${name}-${Date.now()}.pcap`);
    let log = '';
    const tcpdump = this.spawnLogged(
      [
        ...['ip', 'netns', 'exec', this.pod(name).ns, 'tcpdump', '-i', 'eth0', '-Z', 'root'],
        ...['--immediate-mode', '-U', '-w', file, ...filter],
      ],
      (t) => (log += t),
    );
    await this.waitFor('tcpdump listening', () => Promise.resolve(log.includes('listening on')));
    return {
      stop: async () => {
        await new Promise((r) => setTimeout(r, 300));
        tcpdump.kill('SIGINT');
        await new Promise((r) => tcpdump.once('exit', r));
        return (await run('tcpdump', ['-r', file, '-A', '-nn'])).stdout;
      },
    };
  }

  /** Sends a signal to the agent of a Pod and waits for its exit code. */
  async stopAgent(name: string, signal: NodeJS.Signals = 'SIGTERM'): Promise<number | null> {
    const pod = this.pod(name);
    const agent = pod.agent;
    if (agent === null || agent.exitCode !== null) return agent?.exitCode ?? null;
    const exited = new Promise<number | null>((resolve) =>
      agent.once('exit', (code) => resolve(code)),
    );
    // `ip netns exec` and setpriv exec the agent: the child's pid is the agent itself.
    agent.kill(signal);
    return exited;
  }

  async stop(): Promise<void> {
    await killAll(this.children);
    await new Promise((resolve) =>
      this.relay === null ? resolve(null) : this.relay.close(resolve),
    );
    for (const pod of this.pods.values()) await run('ip', ['netns', 'del', pod.ns]);
    await run('ip', ['netns', 'del', this.hub]);
    rmSync(this.dir, { recursive: true, force: true });
  }

  private async ip(ns: string, ...args: string[]): Promise<void> {
    await must('ip', ['-n', ns, ...args]);
  }
}

// --- Kubernetes objects of the mesh directory -----------------------------------------------

export interface PortSpec {
  readonly name: string;
  readonly port: number;
  readonly targetPort: number;
  readonly appProtocol?: string;
}

export function serviceObject(
  name: string,
  clusterIP: string,
  ports: readonly PortSpec[],
  selector: Record<string, string>,
  namespace = 'default',
): object {
  return {
    apiVersion: 'v1',
    kind: 'Service',
    metadata: { name, namespace },
    spec: {
      clusterIP,
      selector,
      ports: ports.map((p) => ({
        name: p.name,
        port: p.port,
        targetPort: p.targetPort,
        ...(p.appProtocol ? { appProtocol: p.appProtocol } : {}),
      })),
    },
  };
}

export function sliceObject(
  service: string,
  ports: readonly PortSpec[],
  pods: readonly Pod[],
  namespace = 'default',
): object {
  return {
    apiVersion: 'discovery.k8s.io/v1',
    kind: 'EndpointSlice',
    metadata: {
      name: `${service}-1`,
      namespace,
      labels: { 'kubernetes.io/service-name': service },
    },
    addressType: 'IPv4',
    endpoints: pods.map((p) => ({
      addresses: [p.spec.ip],
      conditions: { ready: true },
      targetRef: { kind: 'Pod', name: p.spec.name, namespace: p.namespace },
    })),
    ports: ports.map((p) => ({ name: p.name, port: p.targetPort, protocol: 'TCP' })),
  };
}

export function podObject(pod: Pod): object {
  return {
    apiVersion: 'v1',
    kind: 'Pod',
    metadata: {
      name: pod.spec.name,
      namespace: pod.namespace,
      labels: { app: pod.spec.name, ...pod.spec.labels },
      annotations: {
        ...(pod.spec.meshed
          ? {
              'mooring.dev/status':
                '{"initContainers":["mooring-init"],"containers":["mooring-proxy"]}',
            }
          : {}),
        ...pod.spec.annotations,
      },
    },
    spec: { serviceAccountName: pod.serviceAccount, containers: [{ name: 'app', image: 'echo' }] },
    status: { podIP: pod.spec.ip, podIPs: [{ ip: pod.spec.ip }] },
  };
}

export function peerAuthentication(
  name: string,
  mode: string,
  namespace = 'default',
  selector?: Record<string, string>,
  portLevel?: Record<number, string>,
): object {
  return {
    apiVersion: 'security.istio.io/v1',
    kind: 'PeerAuthentication',
    metadata: { name, namespace },
    spec: {
      ...(selector ? { selector: { matchLabels: selector } } : {}),
      mtls: { mode },
      ...(portLevel
        ? {
            portLevelMtls: Object.fromEntries(
              Object.entries(portLevel).map(([p, m]) => [p, { mode: m }]),
            ),
          }
        : {}),
    },
  };
}
