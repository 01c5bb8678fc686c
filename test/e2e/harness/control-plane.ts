// A real Kubernetes control plane for end-to-end tests: etcd and kube-apiserver on 127.0.0.1,
// built by build-control-plane.sh into .cache/bin. No controller-manager, no scheduler, no
// kubelet: objects are stored and admitted (webhooks, ServiceAccount admission, RBAC,
// TokenRequest/TokenReview), never run. Use createNamespace() from ./kube to get a namespace with
// its `default` ServiceAccount, which no controller creates here.
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import * as fs from 'node:fs';
import * as http from 'node:http';
import * as https from 'node:https';
import * as os from 'node:os';
import * as path from 'node:path';
import { freePorts, spawnLogged, tailFile, trackProcesses, waitUntil } from './processes';

export { freePorts, tailFile, waitUntil, type Proc } from './processes';

// This file is test/e2e/harness/ of the repository, or .cache/harness/test/e2e/harness/ when
// compiled for make cluster-up.
const compiledIn = path.resolve(__dirname, '..', '..', '..');
export const REPO_ROOT =
  path.basename(path.dirname(compiledIn)) === '.cache'
    ? path.resolve(compiledIn, '..', '..')
    : compiledIn;
export const DEFAULT_BIN_DIR = path.join(REPO_ROOT, '.cache', 'bin');

/** The issuer of service-account tokens, and the audience of tokens meant for the apiserver. */
export const SERVICE_ACCOUNT_ISSUER = 'https://kubernetes.default.svc.cluster.local';
export const SERVICE_CLUSTER_IP_RANGE = '10.96.0.0/24';
export const ADMIN_USER = 'mooring-e2e-admin';

export interface ControlPlaneOptions {
  /** Where kube-apiserver and etcd are; default `.cache/bin` of the repository. */
  readonly binDir?: string;
  /** How long to wait for etcd and then for the apiserver's /readyz; default 90 s. */
  readonly startTimeoutMs?: number;
  /**
   * More kube-apiserver flags, appended last (a repeated flag wins); a function gets the CA first
   * (to sign, say, the apiserver's kubelet client certificate) and is awaited.
   */
  readonly extraApiServerArgs?:
    | readonly string[]
    | ((pki: {
        readonly caCert: string;
        readonly caKey: string;
        readonly dir: string;
      }) => Promise<readonly string[]>);
  /**
   * The IPv4 address the apiserver listens on, advertises and has in its serving certificate;
   * default 127.0.0.1. The node harness (./node.ts) uses its host-side address, which the
   * kubelet in the node's network namespace can reach.
   */
  readonly address?: string;
  /** Leave the temporary directory (certificates, logs) on stop(), for debugging. */
  readonly keepTmpDir?: boolean;
  /**
   * Leave etcd and the apiserver running when this process exits (make cluster-up); stop() still
   * stops them. Default: they are killed with this process.
   */
  readonly persistent?: boolean;
}

export interface ControlPlane {
  /** `https://127.0.0.1:PORT` */
  readonly server: string;
  /** An admin kubeconfig (token in group system:masters, CA pinned). */
  readonly kubeconfigPath: string;
  /** The CA that signed the apiserver's serving certificate; also its client CA. */
  readonly caCertPem: string;
  readonly caCertPath: string;
  readonly caKeyPath: string;
  /** Bearer token of user `mooring-e2e-admin`, group `system:masters`. */
  readonly adminToken: string;
  readonly tmpDir: string;
  readonly pids: { readonly etcd: number; readonly apiserver: number };
  readonly logPaths: { readonly etcd: string; readonly apiserver: string };
  /** Kills both process groups and removes tmpDir. Safe to call more than once. */
  stop(): Promise<void>;
}

// ---------------------------------------------------------------------------------------------
// Small helpers.

export function run(bin: string, args: readonly string[], cwd: string): Promise<string> {
  return new Promise((resolve, reject) => {
    execFile(bin, args, { cwd }, (err, stdout, stderr) => {
      if (err) reject(new Error(`${bin} ${args.join(' ')} failed: ${err.message}\n${stderr}`));
      else resolve(stdout);
    });
  });
}

interface HttpAnswer {
  readonly status: number;
  readonly body: string;
}

function httpGet(url: string, opts: https.RequestOptions): Promise<HttpAnswer> {
  return new Promise((resolve, reject) => {
    const onResponse = (res: http.IncomingMessage): void => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (chunk: string) => (body += chunk));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
    };
    // No keep-alive: a pooled socket would outlive the probe and hold the event loop.
    const options = { ...opts, agent: false, timeout: 2_000 };
    const req = url.startsWith('https:')
      ? https.get(url, options, onResponse)
      : http.get(url, options, onResponse);
    req.on('timeout', () => req.destroy(new Error('timeout')));
    req.on('error', reject);
  });
}

// ---------------------------------------------------------------------------------------------
// Certificates and credentials, made with openssl.

interface Pki {
  readonly caCert: string;
  readonly caKey: string;
  readonly servingCert: string;
  readonly servingKey: string;
  readonly saKey: string;
  readonly saPub: string;
}

async function makePki(dir: string, address: string): Promise<Pki> {
  const p = (name: string): string => path.join(dir, name);
  const ec = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes'];
  await run(
    'openssl',
    [
      ...['req', '-x509', ...ec, '-keyout', p('ca.key'), '-out', p('ca.crt'), '-days', '2'],
      ...['-subj', '/CN=mooring-e2e-ca', '-addext', 'basicConstraints=critical,CA:TRUE'],
      ...['-addext', 'keyUsage=critical,keyCertSign,cRLSign'],
    ],
    dir,
  );
  await run(
    'openssl',
    ['req', '-new', ...ec, '-keyout', p('apiserver.key'), '-out', p('apiserver.csr')].concat([
      '-subj',
      '/CN=kube-apiserver',
    ]),
    dir,
  );
  fs.writeFileSync(
    p('apiserver.ext'),
    [
      'basicConstraints=critical,CA:FALSE',
      'keyUsage=critical,digitalSignature',
      'extendedKeyUsage=serverAuth',
      `subjectAltName=IP:127.0.0.1${address === '127.0.0.1' ? '' : `,IP:${address}`},` +
        'DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,' +
        'DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local',
      '',
    ].join('\n'),
  );
  await run(
    'openssl',
    [
      ...['x509', '-req', '-in', p('apiserver.csr'), '-CA', p('ca.crt'), '-CAkey', p('ca.key')],
      ...['-CAcreateserial', '-days', '2', '-extfile', p('apiserver.ext')],
      ...['-out', p('apiserver.crt')],
    ],
    dir,
  );
  await run(
    'openssl',
    ['genpkey', '-algorithm', 'RSA', '-pkeyopt', 'rsa_keygen_bits:2048', '-out', p('sa.key')],
    dir,
  );
  await run('openssl', ['pkey', '-in', p('sa.key'), '-pubout', '-out', p('sa.pub')], dir);
  return {
    caCert: p('ca.crt'),
    caKey: p('ca.key'),
    servingCert: p('apiserver.crt'),
    servingKey: p('apiserver.key'),
    saKey: p('sa.key'),
    saPub: p('sa.pub'),
  };
}

function kubeconfig(server: string, caPem: string, token: string): string {
  const config = {
    apiVersion: 'v1',
    kind: 'Config',
    clusters: [
      {
        name: 'mooring-e2e',
        cluster: { server, 'certificate-authority-data': Buffer.from(caPem).toString('base64') },
      },
    ],
    users: [{ name: ADMIN_USER, user: { token } }],
    contexts: [
      {
        name: 'mooring-e2e',
        context: { cluster: 'mooring-e2e', user: ADMIN_USER, namespace: 'default' },
      },
    ],
    'current-context': 'mooring-e2e',
  };
  // JSON is YAML: kubectl, client-go and @kubernetes/client-node all read it.
  return JSON.stringify(config, null, 2) + '\n';
}

// ---------------------------------------------------------------------------------------------

function requireBinary(binDir: string, name: string): string {
  const bin = path.join(binDir, name);
  try {
    fs.accessSync(bin, fs.constants.X_OK);
  } catch {
    throw new Error(
      `${bin} is missing: build the control plane first ` +
        '(`make control-plane` or `bash test/e2e/harness/build-control-plane.sh`)',
    );
  }
  return bin;
}

export function apiServerArgs(o: {
  readonly etcdUrl: string;
  readonly port: number;
  readonly pki: Pki;
  readonly tokenFile: string;
  readonly certDir: string;
  readonly address?: string;
}): string[] {
  return [
    `--etcd-servers=${o.etcdUrl}`,
    `--bind-address=${o.address ?? '127.0.0.1'}`,
    `--advertise-address=${o.address ?? '127.0.0.1'}`,
    `--secure-port=${o.port}`,
    `--cert-dir=${o.certDir}`,
    `--tls-cert-file=${o.pki.servingCert}`,
    `--tls-private-key-file=${o.pki.servingKey}`,
    `--client-ca-file=${o.pki.caCert}`,
    `--token-auth-file=${o.tokenFile}`,
    '--anonymous-auth=false',
    '--authorization-mode=Node,RBAC',
    `--service-account-issuer=${SERVICE_ACCOUNT_ISSUER}`,
    `--service-account-key-file=${o.pki.saPub}`,
    `--service-account-signing-key-file=${o.pki.saKey}`,
    `--api-audiences=${SERVICE_ACCOUNT_ISSUER}`,
    `--service-cluster-ip-range=${SERVICE_CLUSTER_IP_RANGE}`,
    // The defaults already include these; named so that nobody turns them off by accident.
    '--enable-admission-plugins=NamespaceLifecycle,ServiceAccount,MutatingAdmissionWebhook,' +
      'ValidatingAdmissionWebhook',
    '--allow-privileged=true',
    // No Endpoints for the `kubernetes` Service: 127.0.0.1 is not a valid endpoint address.
    '--endpoint-reconciler-type=none',
    '--profiling=false',
    '--v=1',
  ];
}

export async function startControlPlane(opts: ControlPlaneOptions = {}): Promise<ControlPlane> {
  const binDir = opts.binDir ?? DEFAULT_BIN_DIR;
  const etcdBin = requireBinary(binDir, 'etcd');
  const apiserverBin = requireBinary(binDir, 'kube-apiserver');
  const keepTmpDir = opts.keepTmpDir ?? false;
  const address = opts.address ?? '127.0.0.1';
  const deadline = Date.now() + (opts.startTimeoutMs ?? 90_000);

  const tmpDir = fs.mkdtempSync(path.join(os.tmpdir(), 'mooring-e2e-'));
  // Stopped in reverse order: the apiserver first, so that it does not log etcd errors while it
  // goes down. A persistent control plane (make cluster-up) outlives this process.
  const { procs, stop } = trackProcesses(tmpDir, keepTmpDir, 10_000, {
    persistent: opts.persistent === true,
  });

  const logPaths = {
    etcd: path.join(tmpDir, 'etcd.log'),
    apiserver: path.join(tmpDir, 'kube-apiserver.log'),
  };
  try {
    // openssl runs while etcd starts; awaited (and its failure reported) below.
    const pki = makePki(tmpDir, address);
    pki.catch(() => undefined);
    const [clientPort, peerPort, apiPort] = await freePorts(3);
    if (clientPort === undefined || peerPort === undefined || apiPort === undefined) {
      throw new Error('could not reserve three ports');
    }

    const etcdUrl = `http://127.0.0.1:${clientPort}`;
    const peerUrl = `http://127.0.0.1:${peerPort}`;
    const etcd = spawnLogged(
      'etcd',
      etcdBin,
      [
        '--name=e2e',
        `--data-dir=${path.join(tmpDir, 'etcd-data')}`,
        `--listen-client-urls=${etcdUrl}`,
        `--advertise-client-urls=${etcdUrl}`,
        `--listen-peer-urls=${peerUrl}`,
        `--initial-advertise-peer-urls=${peerUrl}`,
        `--initial-cluster=e2e=${peerUrl}`,
        '--initial-cluster-state=new',
        // Throw-away data: no fsync makes writes much faster.
        '--unsafe-no-fsync',
        '--log-level=warn',
      ],
      logPaths.etcd,
    );
    procs.push(etcd);

    const { caCert, caKey } = await pki;
    const caCertPem = fs.readFileSync(caCert, 'utf8');
    const adminToken = randomBytes(32).toString('hex');
    const tokenFile = path.join(tmpDir, 'tokens.csv');
    fs.writeFileSync(tokenFile, `${adminToken},${ADMIN_USER},${ADMIN_USER},"system:masters"\n`, {
      mode: 0o600,
    });

    await waitUntil('etcd /health', etcd, deadline, async () => {
      const answer = await httpGet(`${etcdUrl}/health`, {});
      return answer.status === 200 && answer.body.includes('"true"');
    });

    const extra = opts.extraApiServerArgs ?? [];
    const apiserver = spawnLogged(
      'kube-apiserver',
      apiserverBin,
      [
        ...apiServerArgs({
          etcdUrl,
          port: apiPort,
          pki: await pki,
          tokenFile,
          certDir: path.join(tmpDir, 'apiserver-certs'),
          address,
        }),
        ...(typeof extra === 'function' ? await extra({ caCert, caKey, dir: tmpDir }) : extra),
      ],
      logPaths.apiserver,
    );
    procs.push(apiserver);

    const server = `https://${address}:${apiPort}`;
    await waitUntil('kube-apiserver /readyz', apiserver, deadline, async () => {
      const answer = await httpGet(`${server}/readyz`, {
        ca: caCertPem,
        headers: { authorization: `Bearer ${adminToken}` },
      });
      return answer.status === 200;
    });

    const kubeconfigPath = path.join(tmpDir, 'kubeconfig');
    fs.writeFileSync(kubeconfigPath, kubeconfig(server, caCertPem, adminToken), { mode: 0o600 });

    return {
      server,
      kubeconfigPath,
      caCertPem,
      caCertPath: caCert,
      caKeyPath: caKey,
      adminToken,
      tmpDir,
      pids: { etcd: etcd.pid, apiserver: apiserver.pid },
      logPaths,
      stop,
    };
  } catch (err) {
    const message = err instanceof Error ? err.message : String(err);
    const apiserverTail = tailFile(logPaths.apiserver);
    const etcdTail = tailFile(logPaths.etcd, 20);
    await stop();
    throw new Error(
      `the e2e control plane did not start: ${message}\n` +
        `--- kube-apiserver log (tail) ---\n${apiserverTail || '(empty)'}\n` +
        `--- etcd log (tail) ---\n${etcdTail || '(empty)'}`,
      { cause: err },
    );
  }
}
