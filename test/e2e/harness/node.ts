// A real node for the end-to-end tests: the control plane of ./control-plane.ts plus a kubelet,
// kube-scheduler and kube-controller-manager (built by build-control-plane.sh --node), with
// Debian's containerd 1.6, runc and CNI plugins, all started here without systemd. Pods really
// run, from the images of hack/build-images.sh (imported into containerd at start).
//
// The node lives in a network namespace of its own (node-host.sh makes it): containerd, the
// kubelet, the scheduler, the controller-manager, the CNI bridge and the Pods' veths are inside,
// so the host gets no bridge, no iptables rule and no forwarding; a veth pair joins the two, and
// the namespace has no default route, so nothing a Pod sends leaves this machine. The apiserver
// listens on the host end of that veth (`hostIP`), which the kubelet and the Pods reach; so do
// servers a test runs on the host for the Pods (Mooring's webhook and CA: listen on `hostIP`).
// The host reaches the Pods' addresses through a route to `podCIDR`.
//
// What the machine needs, measured (issue 17): cgroup v1 and no systemd (kubelet
// failCgroupV1: false, cgroupDriver cgroupfs, under its own --cgroup-root); no CAP_SYS_RESOURCE
// (containerd restrict_oom_score_adj); the pause image imported under containerd's exact
// sandbox_image; the kernel settings the kubelet changes saved and restored (node-host.sh);
// the apiserver reaching the kubelet by IP only (--kubelet-preferred-address-types=InternalIP,
// the node's IP set explicitly): no name is ever looked up. containerd 1.6 is the last that
// kubelet 1.36 works with, and Debian bookworm has no containerd 2: both are pinned.
//
// No kube-proxy: a ClusterIP is reachable only through Mooring's proxy (which routes Services
// itself), so a test of the mesh can never pass because kube-proxy did the routing. Pods
// outside the mesh are reached by their own addresses.
import { execFile, execFileSync, spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import {
  DEFAULT_BIN_DIR,
  REPO_ROOT,
  run,
  startControlPlane,
  tailFile,
  waitUntil,
  type ControlPlane,
  type Proc,
} from './control-plane';
import { kubectlJson } from './kube';

const HOST_SCRIPT = path.join(REPO_ROOT, 'test', 'e2e', 'harness', 'node-host.sh');
export const IMAGES_FILE = path.join(REPO_ROOT, '.cache', 'images', 'images.json');
const CNI_BIN_DIR = '/usr/lib/cni';
const CNI_PLUGINS = ['bridge', 'host-local', 'loopback'];
const KUBELET_PORT = 10250;

/** The images hack/build-images.sh built, by role, and the OCI layout that holds them. */
export interface NodeImages {
  readonly mooring: string;
  readonly echo: string;
  readonly pause: string;
  readonly layout: string;
}

export interface NodeClusterOptions {
  readonly binDir?: string;
  /** Keep everything running when this process exits (make cluster-up); stopNodeSlot frees it. */
  readonly persistent?: boolean;
  /** Control plane, containerd, images, kubelet, node Ready; default 240 s. */
  readonly startTimeoutMs?: number;
  /** Progress lines (what is up, after how long); default none. */
  readonly log?: (line: string) => void;
}

export interface NodeCluster {
  readonly controlPlane: ControlPlane;
  /** Admin kubeconfig (the control plane's). */
  readonly kubeconfigPath: string;
  readonly slot: number;
  readonly nodeName: string;
  /** The host's end of the veth: the apiserver listens here; so must servers for the Pods. */
  readonly hostIP: string;
  /** The node's InternalIP (the kubelet's address), in the node's network namespace. */
  readonly nodeIP: string;
  readonly podCIDR: string;
  readonly netns: string;
  /** The slot's directory: configurations, logs, containerd's and the kubelet's data. */
  readonly dir: string;
  readonly images: NodeImages;
  readonly containerdSocket: string;
  readonly logPaths: {
    readonly containerd: string;
    readonly kubelet: string;
    readonly scheduler: string;
    readonly controllerManager: string;
  };
  /** Records a process started for this cluster, so that the teardown stops it too. */
  recordProcess(name: string, pid: number): void;
  /** Records a temporary directory (under /tmp/mooring-*) that the teardown removes. */
  recordDir(dir: string): void;
  /** Tears everything down (node-host.sh down). Safe to call more than once. */
  stop(): Promise<void>;
}

function readImages(): NodeImages {
  let text: string;
  try {
    text = fs.readFileSync(IMAGES_FILE, 'utf8');
  } catch {
    throw new Error(`${IMAGES_FILE} is missing: build the images first (make images)`);
  }
  return JSON.parse(text) as NodeImages;
}

function which(name: string): string {
  for (const dir of (process.env.PATH ?? '').split(':').concat(['/usr/sbin', '/sbin'])) {
    const candidate = path.join(dir, name);
    try {
      fs.accessSync(candidate, fs.constants.X_OK);
      return candidate;
    } catch {
      // next
    }
  }
  throw new Error(
    `${name} is not installed (apt-get install containerd runc containernetworking-plugins)`,
  );
}

function requireNodeTools(binDir: string): Record<string, string> {
  if (process.getuid?.() !== 0) throw new Error('the node harness needs root');
  const bins: Record<string, string> = {};
  for (const name of ['kubelet', 'kube-scheduler', 'kube-controller-manager']) {
    const bin = path.join(binDir, name);
    if (!fs.existsSync(bin)) {
      throw new Error(`${bin} is missing: build it first (make node-binaries)`);
    }
    bins[name] = bin;
  }
  for (const name of ['containerd', 'ctr', 'runc', 'nsenter', 'ip']) bins[name] = which(name);
  for (const plugin of CNI_PLUGINS) {
    if (!fs.existsSync(path.join(CNI_BIN_DIR, plugin))) {
      throw new Error(
        `${CNI_BIN_DIR}/${plugin} is missing (apt-get install containernetworking-plugins)`,
      );
    }
  }
  if (!fs.existsSync('/sys/fs/cgroup/memory')) {
    throw new Error('the node harness is made for cgroup v1 (no /sys/fs/cgroup/memory here)');
  }
  return bins;
}

/** The slot's addresses and names, as node-host.sh makes them. */
export function slotLayout(slot: number): {
  netns: string;
  nodeName: string;
  dir: string;
  hostIP: string;
  nodeIP: string;
  podCIDR: string;
  cgroupRoot: string;
} {
  return {
    netns: `mooring-node-${slot}`,
    nodeName: `mooring-node-${slot}`,
    dir: `/tmp/mooring-node-${slot}`,
    hostIP: `10.217.0.${4 * slot + 1}`,
    nodeIP: `10.217.0.${4 * slot + 2}`,
    podCIDR: `10.217.${slot + 1}.0/24`,
    cgroupRoot: `/mooring-node-${slot}`,
  };
}

function hostScript(args: readonly string[]): Promise<string> {
  return new Promise((resolve, reject) => {
    execFile(HOST_SCRIPT, args, { timeout: 120_000 }, (err, stdout, stderr) => {
      if (err) reject(new Error(`node-host.sh ${args.join(' ')}: ${err.message}\n${stderr}`));
      else resolve(stdout);
    });
  });
}

/** Tears slot N down from any state (what make cluster-down and a stale slot use). */
export function stopNodeSlot(slot: number): Promise<string> {
  return hostScript(['down', String(slot)]);
}

/** The process's start time (field 22 of /proc/PID/stat): node-host.sh signals no reused pid. */
function startTime(pid: number): string {
  const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
  return stat.slice(stat.lastIndexOf(')') + 2).split(' ')[19] ?? '';
}

// ---------------------------------------------------------------------------------------------
// Certificates for the node's components, signed by the control plane's CA with openssl.

interface Identity {
  readonly name: string;
  readonly subject: string;
  readonly usage: 'clientAuth' | 'serverAuth';
  readonly sans?: string;
}

async function signCertificate(dir: string, ca: { caCert: string; caKey: string }, id: Identity) {
  const p = (ext: string): string => path.join(dir, `${id.name}.${ext}`);
  await run(
    'openssl',
    ['req', '-new', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes'].concat([
      ...['-keyout', p('key'), '-out', p('csr'), '-subj', id.subject],
    ]),
    dir,
  );
  const ext = [
    'basicConstraints=critical,CA:FALSE',
    'keyUsage=critical,digitalSignature',
    `extendedKeyUsage=${id.usage}`,
    ...(id.sans === undefined ? [] : [`subjectAltName=${id.sans}`]),
    '',
  ].join('\n');
  fs.writeFileSync(p('ext'), ext);
  await run(
    'openssl',
    [
      ...['x509', '-req', '-in', p('csr'), '-CA', ca.caCert, '-CAkey', ca.caKey],
      ...['-set_serial', `0x${Date.now().toString(16)}${id.name.length}`, '-days', '2'],
      ...['-extfile', p('ext'), '-out', p('crt')],
    ],
    dir,
  );
  return { cert: p('crt'), key: p('key') };
}

function certKubeconfig(
  server: string,
  caCert: string,
  user: string,
  cert: { cert: string; key: string },
): string {
  return JSON.stringify(
    {
      apiVersion: 'v1',
      kind: 'Config',
      clusters: [{ name: 'e2e', cluster: { server, 'certificate-authority': caCert } }],
      users: [{ name: user, user: { 'client-certificate': cert.cert, 'client-key': cert.key } }],
      contexts: [{ name: 'e2e', context: { cluster: 'e2e', user } }],
      'current-context': 'e2e',
    },
    null,
    2,
  );
}

// ---------------------------------------------------------------------------------------------
// Configuration files.

function containerdConfig(dir: string, images: NodeImages, runc: string): string {
  const c = path.join(dir, 'containerd');
  const cri = 'plugins."io.containerd.grpc.v1.cri"';
  return `version = 2
root = "${c}/root"
state = "${c}/state"
disabled_plugins = ["io.containerd.internal.v1.opt", "io.containerd.snapshotter.v1.aufs",
  "io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.zfs",
  "io.containerd.snapshotter.v1.devmapper", "io.containerd.tracing.processor.v1.otlp"]

[grpc]
  address = "${c}/containerd.sock"
[ttrpc]
  address = "${c}/containerd.sock.ttrpc"

[${cri}]
  # Built locally (hack/build-images.sh) and imported under exactly this name.
  sandbox_image = "${images.pause}"
  # The sandbox has no CAP_SYS_RESOURCE: never lower a container's oom_score_adj below ours.
  restrict_oom_score_adj = true
  # The Pods' network namespaces under the state directory, not /var/run/netns.
  netns_mounts_under_state_dir = true
  disable_apparmor = true
  stream_server_address = "127.0.0.1"
  [${cri}.containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [${cri}.containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [${cri}.containerd.runtimes.runc.options]
        BinaryName = "${runc}"
        Root = "${c}/runc"
        SystemdCgroup = false
  [${cri}.cni]
    bin_dir = "${CNI_BIN_DIR}"
    conf_dir = "${dir}/cni/net.d"
    max_conf_num = 1
`;
}

function cniConfig(layout: ReturnType<typeof slotLayout>, dir: string): string {
  return JSON.stringify(
    {
      cniVersion: '1.0.0',
      name: layout.netns,
      plugins: [
        {
          type: 'bridge',
          bridge: 'mooring0',
          isGateway: true,
          // No masquerade: the Pods' addresses are routed, and no iptables rule is written.
          ipMasq: false,
          hairpinMode: true,
          ipam: {
            type: 'host-local',
            ranges: [[{ subnet: layout.podCIDR }]],
            routes: [{ dst: '0.0.0.0/0' }],
            dataDir: path.join(dir, 'cni', 'ipam'),
          },
        },
      ],
    },
    null,
    2,
  );
}

function kubeletConfig(
  layout: ReturnType<typeof slotLayout>,
  dir: string,
  caCert: string,
  serving: { cert: string; key: string },
): string {
  return JSON.stringify(
    {
      apiVersion: 'kubelet.config.k8s.io/v1beta1',
      kind: 'KubeletConfiguration',
      // This machine: cgroup v1, PID 1 is not systemd.
      failCgroupV1: false,
      cgroupDriver: 'cgroupfs',
      cgroupRoot: layout.cgroupRoot,
      containerRuntimeEndpoint: `unix://${dir}/containerd/containerd.sock`,
      address: layout.nodeIP,
      port: KUBELET_PORT,
      readOnlyPort: 0,
      healthzBindAddress: '127.0.0.1',
      tlsCertFile: serving.cert,
      tlsPrivateKeyFile: serving.key,
      authentication: {
        anonymous: { enabled: false },
        webhook: { enabled: true },
        x509: { clientCAFile: caCert },
      },
      authorization: { mode: 'Webhook' },
      clusterDomain: 'cluster.local',
      // No DNS server: Pods ask the node's own address, where nothing answers, and the kubelet
      // gets an empty resolv.conf; no query ever leaves the node's namespace.
      clusterDNS: [layout.nodeIP],
      resolvConf: path.join(dir, 'resolv.conf'),
      podLogsDir: path.join(dir, 'pod-logs'),
      failSwapOn: false,
      // ConfigMap volumes (the trust bundle) follow a change within this, not a minute.
      syncFrequency: '5s',
      // A shared machine: no eviction or image GC because someone else fills the disk.
      evictionHard: {
        'memory.available': '100Mi',
        'nodefs.available': '1%',
        'imagefs.available': '1%',
        'nodefs.inodesFree': '1%',
      },
      imageGCHighThresholdPercent: 100,
      imageGCLowThresholdPercent: 99,
      serializeImagePulls: false,
      shutdownGracePeriod: '0s',
      rotateCertificates: false,
      serverTLSBootstrap: false,
    },
    null,
    2,
  );
}

// ---------------------------------------------------------------------------------------------

// Slots this process owns, torn down synchronously if it exits first (a failed test included).
const ownedSlots = new Set<number>();
let exitHandlerInstalled = false;
function installExitHandler(): void {
  if (exitHandlerInstalled) return;
  exitHandlerInstalled = true;
  const downAll = (): void => {
    for (const slot of ownedSlots) {
      try {
        execFileSync(HOST_SCRIPT, ['down', String(slot)], { stdio: 'ignore', timeout: 120_000 });
      } catch {
        // Best effort on the way out; the next claim reclaims a stale slot anyway.
      }
    }
    ownedSlots.clear();
  };
  process.on('exit', downAll);
  for (const signal of ['SIGINT', 'SIGTERM'] as const) {
    process.once(signal, () => {
      downAll();
      process.kill(process.pid, signal);
    });
  }
}

interface NodeObject {
  status?: { conditions?: { type: string; status: string; message?: string }[] };
}

export async function startNodeCluster(opts: NodeClusterOptions = {}): Promise<NodeCluster> {
  const binDir = opts.binDir ?? DEFAULT_BIN_DIR;
  const bins = requireNodeTools(binDir);
  const images = readImages();
  const persistent = opts.persistent ?? false;
  const t0 = Date.now();
  const deadline = t0 + (opts.startTimeoutMs ?? 240_000);
  const log = (what: string): void =>
    opts.log?.(`${what} (${((Date.now() - t0) / 1000).toFixed(1)} s)`);

  const slot = Number(
    (await hostScript(['claim', persistent ? 'persistent' : String(process.pid)])).trim(),
  );
  if (!persistent) {
    ownedSlots.add(slot);
    installExitHandler();
  }
  const layout = slotLayout(slot);
  const { dir } = layout;
  log(`slot ${slot}: network namespace ${layout.netns}, Pods in ${layout.podCIDR}`);
  const procs: Proc[] = [];
  const recordProcess = (name: string, pid: number): void => {
    fs.appendFileSync(path.join(dir, 'pids'), `${name} ${pid} ${startTime(pid)}\n`);
  };
  const recordDir = (extra: string): void => {
    fs.appendFileSync(path.join(dir, 'remove-dirs'), `${extra}\n`);
  };
  const logPaths = {
    containerd: path.join(dir, 'containerd.log'),
    kubelet: path.join(dir, 'kubelet.log'),
    scheduler: path.join(dir, 'kube-scheduler.log'),
    controllerManager: path.join(dir, 'kube-controller-manager.log'),
  };
  const inNode = (name: string, bin: string, args: readonly string[], logPath: string): Proc => {
    const fd = fs.openSync(logPath, 'a');
    let child;
    try {
      child = spawn(
        bins.nsenter ?? 'nsenter',
        [`--net=/run/netns/${layout.netns}`, '--', bin, ...args],
        {
          detached: true,
          stdio: ['ignore', fd, fd],
        },
      );
    } finally {
      fs.closeSync(fd);
    }
    const pid = child.pid;
    if (pid === undefined) throw new Error(`could not start ${name}`);
    let status: string | undefined;
    const exited = new Promise<void>((resolve) =>
      child.on('exit', (code, signal) => {
        status = signal === null ? `exit code ${String(code)}` : `signal ${signal}`;
        resolve();
      }),
    );
    child.unref();
    recordProcess(name, pid);
    const proc: Proc = { name, pid, logPath, exited, exitCode: () => status };
    procs.push(proc);
    return proc;
  };

  let cp: ControlPlane | undefined;
  let stopped: Promise<void> | undefined;
  const stop = (): Promise<void> => {
    stopped ??= (async () => {
      await stopNodeSlot(slot);
      ownedSlots.delete(slot);
      await cp?.stop();
    })();
    return stopped;
  };

  try {
    for (const sub of ['containerd', 'cni/net.d', 'pki', 'kubelet', 'pod-logs']) {
      fs.mkdirSync(path.join(dir, sub), { recursive: true });
    }
    fs.writeFileSync(path.join(dir, 'resolv.conf'), '');
    fs.writeFileSync(
      path.join(dir, 'containerd', 'config.toml'),
      containerdConfig(dir, images, bins.runc ?? 'runc'),
    );
    fs.writeFileSync(path.join(dir, 'cni', 'net.d', '10-mooring.conflist'), cniConfig(layout, dir));

    // containerd and the images while the control plane starts.
    const containerdSocket = path.join(dir, 'containerd', 'containerd.sock');
    const containerd = inNode(
      'containerd',
      bins.containerd ?? 'containerd',
      ['--config', path.join(dir, 'containerd', 'config.toml')],
      logPaths.containerd,
    );
    const imported = (async () => {
      await waitUntil('containerd', [containerd], deadline, async () => {
        await run(bins.ctr ?? 'ctr', ['-a', containerdSocket, 'version'], dir);
        return true;
      });
      log('containerd up');
      await importImages(bins.ctr ?? 'ctr', containerdSocket, images.layout, dir);
      log('images imported');
    })();
    imported.catch(() => undefined);

    const pkiDir = path.join(dir, 'pki');
    let certs: Record<string, { cert: string; key: string }> = {};
    cp = await startControlPlane({
      binDir,
      address: layout.hostIP,
      persistent,
      startTimeoutMs: Math.max(deadline - Date.now(), 30_000),
      extraApiServerArgs: async (ca) => {
        const ids: Identity[] = [
          {
            name: 'apiserver-kubelet-client',
            subject: '/O=system:masters/CN=kube-apiserver-kubelet-client',
            usage: 'clientAuth',
          },
          {
            name: 'kubelet-client',
            subject: `/O=system:nodes/CN=system:node:${layout.nodeName}`,
            usage: 'clientAuth',
          },
          {
            name: 'kubelet-serving',
            subject: `/CN=${layout.nodeName}`,
            usage: 'serverAuth',
            sans: `IP:${layout.nodeIP},DNS:${layout.nodeName}`,
          },
          { name: 'scheduler', subject: '/CN=system:kube-scheduler', usage: 'clientAuth' },
          {
            name: 'controller-manager',
            subject: '/CN=system:kube-controller-manager',
            usage: 'clientAuth',
          },
        ];
        const signed = await Promise.all(ids.map((id) => signCertificate(pkiDir, ca, id)));
        certs = Object.fromEntries(ids.map((id, i) => [id.name, signed[i]!]));
        return [
          // The kubelet is reached by its InternalIP, never by a name (no DNS lookup).
          '--kubelet-preferred-address-types=InternalIP',
          `--kubelet-client-certificate=${certs['apiserver-kubelet-client']!.cert}`,
          `--kubelet-client-key=${certs['apiserver-kubelet-client']!.key}`,
          `--kubelet-certificate-authority=${ca.caCert}`,
        ];
      },
    });
    recordDir(cp.tmpDir);
    log(`control plane up: ${cp.server}`);
    recordProcess('etcd', cp.pids.etcd);
    recordProcess('kube-apiserver', cp.pids.apiserver);

    const kubeconfigFor = (name: string, user: string): string => {
      const file = path.join(dir, `${name}.kubeconfig`);
      fs.writeFileSync(file, certKubeconfig(cp!.server, cp!.caCertPath, user, certs[name]!));
      return file;
    };
    fs.writeFileSync(
      path.join(dir, 'kubelet.json'),
      kubeletConfig(layout, dir, cp.caCertPath, certs['kubelet-serving']!),
    );

    await imported;
    const kubelet = inNode(
      'kubelet',
      path.join(binDir, 'kubelet'),
      [
        `--config=${path.join(dir, 'kubelet.json')}`,
        `--kubeconfig=${kubeconfigFor('kubelet-client', `system:node:${layout.nodeName}`)}`,
        `--hostname-override=${layout.nodeName}`,
        `--node-ip=${layout.nodeIP}`,
        `--root-dir=${path.join(dir, 'kubelet')}`,
        '--v=1',
      ],
      logPaths.kubelet,
    );
    // What the scheduler and the controller-manager share: their identity, and their own HTTPS
    // port on the node's loopback only.
    const controllerArgs = (name: string, user: string): string[] => {
      const kubeconfig = kubeconfigFor(name, user);
      return [
        ...[`--kubeconfig=${kubeconfig}`, `--authentication-kubeconfig=${kubeconfig}`],
        ...[`--authorization-kubeconfig=${kubeconfig}`, '--bind-address=127.0.0.1'],
        ...['--leader-elect=false', '--v=1'],
      ];
    };
    const scheduler = inNode(
      'kube-scheduler',
      path.join(binDir, 'kube-scheduler'),
      controllerArgs('scheduler', 'system:kube-scheduler'),
      logPaths.scheduler,
    );
    const controllerManager = inNode(
      'kube-controller-manager',
      path.join(binDir, 'kube-controller-manager'),
      [
        ...controllerArgs('controller-manager', 'system:kube-controller-manager'),
        // Each controller with its own service account, as kubeadm runs it.
        '--use-service-account-credentials=true',
        `--service-account-private-key-file=${path.join(cp.tmpDir, 'sa.key')}`,
        // The kube-root-ca.crt ConfigMap of every namespace (kube-api-access volumes need it).
        `--root-ca-file=${cp.caCertPath}`,
      ],
      logPaths.controllerManager,
    );

    const running = [containerd, kubelet, scheduler, controllerManager];
    const cpRef = cp;
    await waitUntil(`node ${layout.nodeName} Ready`, running, deadline, async () => {
      const node = (await kubectlJson(cpRef, ['get', 'node', layout.nodeName])) as NodeObject;
      return (node.status?.conditions ?? []).some((c) => c.type === 'Ready' && c.status === 'True');
    });
    log(`node ${layout.nodeName} Ready`);
    // The controllers are up once the `default` ServiceAccount of `default` exists.
    await waitUntil('the ServiceAccount controller', running, deadline, async () => {
      await kubectlJson(cpRef, ['get', 'serviceaccount', 'default', '-n', 'default']);
      return true;
    });

    return {
      controlPlane: cp,
      kubeconfigPath: cp.kubeconfigPath,
      slot,
      nodeName: layout.nodeName,
      hostIP: layout.hostIP,
      nodeIP: layout.nodeIP,
      podCIDR: layout.podCIDR,
      netns: layout.netns,
      dir,
      images,
      containerdSocket,
      logPaths,
      recordProcess,
      recordDir,
      stop,
    };
  } catch (err) {
    const message = err instanceof Error ? err.message : String(err);
    const tails = Object.entries(logPaths)
      .map(([name, file]) => `--- ${name} (tail) ---\n${tailFile(file, 25) || '(empty)'}`)
      .join('\n');
    await stop().catch(() => undefined);
    throw new Error(`the e2e node did not start: ${message}\n${tails}`, { cause: err });
  }
}

/** The OCI layout of hack/build-images.sh, streamed into containerd's `k8s.io` namespace. */
async function importImages(ctr: string, socket: string, layout: string, cwd: string) {
  await new Promise<void>((resolve, reject) => {
    const tar = spawn('tar', ['-C', layout, '-cf', '-', '.'], {
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    const imp = spawn(ctr, ['-a', socket, '-n', 'k8s.io', 'images', 'import', '-'], {
      cwd,
      stdio: ['pipe', 'pipe', 'pipe'],
    });
    tar.stdout.pipe(imp.stdin);
    // ctr stops reading at the archive's end marker and may exit before tar has written its
    // last record's padding: that write then fails with EPIPE. ctr's exit code decides.
    imp.stdin.on('error', (err: NodeJS.ErrnoException) => {
      if (err.code !== 'EPIPE') reject(err);
    });
    let stderr = '';
    imp.stderr.setEncoding('utf8').on('data', (c: string) => (stderr += c));
    tar.stderr.setEncoding('utf8').on('data', (c: string) => (stderr += c));
    imp.on('error', reject);
    imp.on('close', (code) =>
      code === 0 ? resolve() : reject(new Error(`ctr images import: exit ${code}\n${stderr}`)),
    );
  });
}
