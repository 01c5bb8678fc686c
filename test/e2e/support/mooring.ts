// `mooring serve --kubeconfig` (cluster mode) as a child process of an e2e test, and the small
// clients the tests need: HTTPS with the trust bundle pinned, metrics, CSRs made with openssl,
// service-account tokens from TokenRequest.
import { execFile, spawn } from 'node:child_process';
import { X509Certificate } from 'node:crypto';
import * as fs from 'node:fs';
import * as http from 'node:http';
import * as https from 'node:https';
import * as os from 'node:os';
import * as path from 'node:path';
import { freePorts, REPO_ROOT, tailFile, type ControlPlane } from '../harness/control-plane';
import { kubectl, kubectlJson } from '../harness/kube';
import { CA_LEASE } from '../../../src/constants';

/** The CLI under test: $MOORING_E2E_BIN, else bin/mooring.js (which runs dist/). */
export function mooringBin(): string {
  return process.env.MOORING_E2E_BIN ?? path.join(REPO_ROOT, 'bin', 'mooring.js');
}

export function requireBuild(): void {
  const main = path.join(path.dirname(mooringBin()), '..', 'dist', 'cli', 'main.js');
  if (process.env.MOORING_E2E_BIN === undefined && !fs.existsSync(main)) {
    throw new Error(
      `${main} is missing: build first (make build, or npx tsc -p tsconfig.build.json)`,
    );
  }
}

export const delay = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** Polls `probe` until it returns a value other than undefined, or fails after `ms`. */
export async function waitFor<T>(
  what: string,
  probe: () => Promise<T | undefined>,
  ms = 20_000,
): Promise<T> {
  const deadline = Date.now() + ms;
  let last: unknown;
  for (;;) {
    try {
      const value = await probe();
      if (value !== undefined) return value;
      last = 'not yet';
    } catch (err) {
      last = err instanceof Error ? err.message : err;
    }
    if (Date.now() > deadline)
      throw new Error(`timed out after ${ms} ms waiting for ${what} (last: ${String(last)})`);
    await delay(200);
  }
}

// --- HTTP ----------------------------------------------------------------------------------------

export interface Answer {
  readonly status: number;
  readonly body: string;
}

export function request(
  url: string,
  options: https.RequestOptions & { body?: string } = {},
): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const { body, ...opts } = options;
    const onResponse = (res: http.IncomingMessage): void => {
      let text = '';
      res.setEncoding('utf8');
      res.on('data', (chunk: string) => (text += chunk));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body: text }));
    };
    const req = url.startsWith('https:')
      ? https.request(url, { timeout: 10_000, ...opts }, onResponse)
      : http.request(url, { timeout: 10_000, ...opts }, onResponse);
    req.on('timeout', () => req.destroy(new Error(`timeout: ${url}`)));
    req.on('error', reject);
    req.end(body);
  });
}

export const pemsOf = (text: string): string[] =>
  text.match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g) ?? [];
export const bundleText = (pems: readonly string[]): string =>
  pems.map((p) => `${p.trim()}\n`).join('');

// --- the server --------------------------------------------------------------------------------

export interface MooringServer {
  /** `https://127.0.0.1:PORT` */
  readonly url: string;
  readonly port: number;
  readonly adminUrl: string;
  readonly logPath: string;
  readonly configPath: string;
  readonly pid: number;
  /** GET /v1/trust-bundle, verified against the bundle it answers (bootstrap, then pinned). */
  trustBundle(): Promise<string[]>;
  /** A counter or gauge of /metrics, summed over the series whose labels include `labels`. */
  metric(name: string, labels?: Readonly<Record<string, string>>): Promise<number>;
  /** POST JSON over HTTPS, the server verified against `ca`. */
  post(
    pathname: string,
    body: unknown,
    headers: Readonly<Record<string, string>>,
    ca: string,
  ): Promise<Answer>;
  stop(): Promise<void>;
  exited(): string | undefined;
}

export interface MooringOptions {
  /** Mooring's namespace (POD_NAMESPACE). Must exist. */
  readonly namespace: string;
  /** The configuration file's content (JSON); cluster.namespace is set to `namespace`. */
  readonly config?: Record<string, unknown>;
  readonly env?: Readonly<Record<string, string>>;
  readonly readyTimeoutMs?: number;
  /** The kubeconfig the server runs with; default the control plane's admin. */
  readonly kubeconfig?: string;
  /** The address both ports listen on; default 127.0.0.1 (a node's Pods need its hostIP). */
  readonly listenHost?: string;
  /** Leave the server running when this process exits (make cluster-up). */
  readonly persistent?: boolean;
  /** The HTTPS and admin ports; default two free ones. */
  readonly ports?: readonly [number, number];
}

const children = new Set<number>();
process.on('exit', () => {
  for (const pid of children) {
    try {
      process.kill(-pid, 'SIGKILL');
    } catch {
      // gone
    }
  }
});

/** Test configuration: short rotation steps, so that a rotation completes within a test. */
export function testConfig(
  namespace: string,
  extra: Record<string, unknown> = {},
): Record<string, unknown> {
  const base: Record<string, unknown> = {
    server: { logLevel: 'info', shutdownGraceSeconds: 1 },
    ca: { rotation: { checkIntervalSeconds: 1, propagationDelaySeconds: 4 } },
    cluster: { namespace },
  };
  return deepMerge(base, extra);
}

function deepMerge(
  a: Record<string, unknown>,
  b: Record<string, unknown>,
): Record<string, unknown> {
  const out: Record<string, unknown> = { ...a };
  for (const [k, v] of Object.entries(b)) {
    const prev = out[k];
    out[k] =
      typeof v === 'object' &&
      v !== null &&
      !Array.isArray(v) &&
      typeof prev === 'object' &&
      prev !== null
        ? deepMerge(prev as Record<string, unknown>, v as Record<string, unknown>)
        : v;
  }
  return out;
}

/**
 * Starts `mooring serve --kubeconfig` on free ports (of 127.0.0.1 by default), waits for /readyz.
 * A free port can be taken by a test running beside this one before the server binds it: then
 * it starts again on other ports (unless the caller chose them).
 */
export async function startMooring(
  cp: ControlPlane,
  options: MooringOptions,
): Promise<MooringServer> {
  for (let attempt = 1; ; attempt++) {
    try {
      return await startMooringOnce(cp, options);
    } catch (err) {
      const raced = (err as Error).message.includes('EADDRINUSE');
      if (!raced || options.ports !== undefined || attempt === 3) throw err;
    }
  }
}

async function startMooringOnce(cp: ControlPlane, options: MooringOptions): Promise<MooringServer> {
  requireBuild();
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'mooring-cluster-'));
  const [port, adminPort] = options.ports ?? (await freePorts(2));
  if (port === undefined || adminPort === undefined) throw new Error('no free ports');
  const configPath = path.join(dir, 'config.json');
  fs.writeFileSync(
    configPath,
    JSON.stringify(options.config ?? testConfig(options.namespace), null, 2),
  );
  const logPath = path.join(dir, 'serve.log');
  const host = options.listenHost ?? '127.0.0.1';
  const fd = fs.openSync(logPath, 'a');
  const child = spawn(
    process.execPath,
    [
      mooringBin(),
      ...['serve', '--kubeconfig', options.kubeconfig ?? cp.kubeconfigPath, '--config', configPath],
      ...['--listen', `${host}:${port}`, '--admin-listen', `${host}:${adminPort}`],
    ],
    {
      detached: true,
      stdio: ['ignore', fd, fd],
      env: { ...process.env, POD_NAMESPACE: options.namespace, ...options.env },
    },
  );
  fs.closeSync(fd);
  const pid = child.pid;
  if (pid === undefined) throw new Error('could not start mooring serve');
  if (options.persistent !== true) children.add(pid);
  let exited: string | undefined;
  const done = new Promise<void>((resolve) =>
    child.on('exit', (code, signal) => {
      exited = signal ?? `exit code ${String(code)}`;
      children.delete(pid);
      resolve();
    }),
  );
  child.unref();
  const kill = (signal: NodeJS.Signals): void => {
    try {
      process.kill(-pid, signal);
    } catch {
      // gone
    }
  };
  let stopping: Promise<void> | undefined;
  const stop = (): Promise<void> => {
    stopping ??= (async () => {
      if (exited === undefined) {
        kill('SIGTERM');
        const timer = setTimeout(() => kill('SIGKILL'), 10_000);
        await done;
        clearTimeout(timer);
      }
      if (process.env.KEEP_E2E_LOGS === undefined) fs.rmSync(dir, { recursive: true, force: true });
    })();
    return stopping;
  };
  const url = `https://${host}:${port}`;
  const adminUrl = `http://${host}:${adminPort}`;

  const trustBundle = async (): Promise<string[]> => {
    const parse = (a: Answer): string[] => {
      if (a.status !== 200) throw new Error(`GET /v1/trust-bundle: HTTP ${a.status} ${a.body}`);
      return (JSON.parse(a.body) as { trustBundle: string[] }).trustBundle;
    };
    const unverified = parse(
      await request(`${url}/v1/trust-bundle`, { rejectUnauthorized: false }),
    );
    return parse(await request(`${url}/v1/trust-bundle`, { ca: bundleText(unverified) }));
  };

  const metric = async (
    name: string,
    labels: Readonly<Record<string, string>> = {},
  ): Promise<number> => {
    const answer = await request(`${adminUrl}/metrics`);
    let sum = 0;
    for (const line of answer.body.split('\n')) {
      if (!line.startsWith(name)) continue;
      const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})? ([0-9.eE+-]+)$/.exec(line);
      if (m === null || m[1] !== name) continue;
      const labelText = m[2] ?? '';
      if (Object.entries(labels).every(([k, v]) => labelText.includes(`${k}="${v}"`)))
        sum += Number(m[3]);
    }
    return sum;
  };

  const post = (
    pathname: string,
    body: unknown,
    headers: Readonly<Record<string, string>>,
    ca: string,
  ): Promise<Answer> =>
    request(`${url}${pathname}`, {
      method: 'POST',
      ca,
      headers: { 'content-type': 'application/json', ...headers },
      body: JSON.stringify(body),
    });

  try {
    const deadline = Date.now() + (options.readyTimeoutMs ?? 30_000);
    for (;;) {
      if (exited !== undefined) throw new Error(`mooring serve exited (${exited})`);
      const ready = await request(`${adminUrl}/readyz`, { timeout: 2000 }).catch(() => undefined);
      if (ready?.status === 200) break;
      if (Date.now() > deadline) throw new Error('mooring serve was not ready in time');
      await delay(200);
    }
  } catch (err) {
    const log = tailFile(logPath, 60);
    await stop();
    throw new Error(`${(err as Error).message}\n--- mooring serve log ---\n${log}`, {
      cause: err,
    });
  }
  return {
    url,
    port,
    adminUrl,
    logPath,
    configPath,
    pid,
    trustBundle,
    metric,
    post,
    stop,
    exited: () => exited,
  };
}

// --- the mooring CLI -------------------------------------------------------------------------------

export function runMooring(
  args: readonly string[],
  env: Readonly<Record<string, string>> = {},
): Promise<{ code: number; stdout: string; stderr: string }> {
  requireBuild();
  return new Promise((resolve) => {
    execFile(
      process.execPath,
      [mooringBin(), ...args],
      { env: { ...process.env, ...env } },
      (err, stdout, stderr) => {
        const code = err === null ? 0 : typeof err.code === 'number' ? err.code : 1;
        resolve({ code, stdout, stderr });
      },
    );
  });
}

// --- certificates with openssl ---------------------------------------------------------------------

function run(bin: string, args: readonly string[], input?: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = execFile(bin, args, (err, stdout, stderr) => {
      if (err) reject(new Error(`${bin} ${args.join(' ')}: ${err.message}\n${stderr}`));
      else resolve(stdout);
    });
    // openssl may exit before it reads stdin (it needs none here): the write then fails with
    // EPIPE, and the exit code is what tells success from failure.
    child.stdin?.on('error', () => undefined);
    child.stdin?.end(input ?? '');
  });
}

export interface KeyAndCsr {
  readonly keyPem: string;
  readonly csrPem: string;
}

/** An ECDSA P-256 key and a CSR (CN `subject`), with the given URI SANs. */
export async function makeCsr(
  uris: readonly string[] = [],
  dnsNames: readonly string[] = [],
): Promise<KeyAndCsr> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'mooring-csr-'));
  try {
    const key = path.join(dir, 'key.pem');
    const csr = path.join(dir, 'csr.pem');
    const sans = [...uris.map((u) => `URI:${u}`), ...dnsNames.map((d) => `DNS:${d}`)];
    await run('openssl', [
      ...['req', '-new', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes'],
      ...['-keyout', key, '-out', csr, '-subj', '/CN=workload'],
      ...(sans.length > 0 ? ['-addext', `subjectAltName=${sans.join(',')}`] : []),
    ]);
    return { keyPem: fs.readFileSync(key, 'utf8'), csrPem: fs.readFileSync(csr, 'utf8') };
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

/** `openssl verify -x509_strict` of a chain (leaf first) against a bundle; resolves to stdout. */
export async function opensslVerify(
  chain: readonly string[],
  bundle: readonly string[],
): Promise<string> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'mooring-verify-'));
  try {
    const [leaf, ...intermediates] = chain;
    if (leaf === undefined) throw new Error('empty chain');
    fs.writeFileSync(path.join(dir, 'leaf.pem'), leaf);
    fs.writeFileSync(path.join(dir, 'bundle.pem'), bundleText(bundle));
    const untrusted = intermediates.length > 0 ? ['-untrusted', path.join(dir, 'chain.pem')] : [];
    if (intermediates.length > 0)
      fs.writeFileSync(path.join(dir, 'chain.pem'), bundleText(intermediates));
    return await run('openssl', [
      'verify',
      '-x509_strict',
      '-CAfile',
      path.join(dir, 'bundle.pem'),
      ...untrusted,
      path.join(dir, 'leaf.pem'),
    ]);
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

/** The SANs of a PEM certificate, as Node prints them (`URI:spiffe://..., DNS:...`). */
export const sansOf = (pem: string): string => new X509Certificate(pem).subjectAltName ?? '';

/** True when `cert` was signed by one of `bundle` (the chain's last element against the roots). */
export function issuedByOneOf(
  cert: string,
  bundle: readonly string[],
): X509Certificate | undefined {
  const c = new X509Certificate(cert);
  return bundle
    .map((p) => new X509Certificate(p))
    .find((root) => c.checkIssued(root) && c.verify(root.publicKey));
}

// --- Kubernetes helpers ----------------------------------------------------------------------------

/** A Pod that never runs here (no kubelet) but exists: what a bound token is bound to. */
export async function createIdlePod(
  cp: ControlPlane,
  namespace: string,
  name: string,
  serviceAccount = 'default',
  labels: Record<string, string> = {},
): Promise<{ uid: string }> {
  const pod = (await kubectlJson(
    cp,
    ['create', '-f', '-'],
    JSON.stringify({
      apiVersion: 'v1',
      kind: 'Pod',
      metadata: { name, namespace, labels },
      spec: {
        serviceAccountName: serviceAccount,
        containers: [{ name: 'app', image: 'registry.invalid/app:1' }],
      },
    }),
  )) as { metadata: { uid: string } };
  return { uid: pod.metadata.uid };
}

/** `kubectl create token`: a TokenRequest for the service account. */
export async function tokenFor(
  cp: ControlPlane,
  namespace: string,
  serviceAccount: string,
  options: {
    audience?: string;
    pod?: { name: string; uid: string };
    durationSeconds?: number;
  } = {},
): Promise<string> {
  const args = ['create', 'token', serviceAccount, '-n', namespace];
  if (options.audience !== undefined) args.push('--audience', options.audience);
  if (options.pod !== undefined) {
    args.push(
      '--bound-object-kind',
      'Pod',
      '--bound-object-name',
      options.pod.name,
      '--bound-object-uid',
      options.pod.uid,
    );
  }
  if (options.durationSeconds !== undefined) args.push('--duration', `${options.durationSeconds}s`);
  return (await kubectl(cp, args)).trim();
}

/** A kubeconfig for the same cluster that authenticates with `token`. */
export function kubeconfigWithToken(
  cp: ControlPlane,
  token: string,
  dir: string,
  name: string,
): string {
  const file = path.join(dir, `${name}.kubeconfig`);
  const config = {
    apiVersion: 'v1',
    kind: 'Config',
    clusters: [
      {
        name: 'e2e',
        cluster: {
          server: cp.server,
          'certificate-authority-data': Buffer.from(cp.caCertPem).toString('base64'),
        },
      },
    ],
    users: [{ name, user: { token } }],
    contexts: [{ name, context: { cluster: 'e2e', user: name } }],
    'current-context': name,
  };
  fs.writeFileSync(file, JSON.stringify(config), { mode: 0o600 });
  return file;
}

/** A unique lowercase suffix for namespace names. */
export const suffix = (): string => Math.random().toString(36).slice(2, 8);

/** The holderIdentity of the CA's rotation Lease in `namespace`, undefined while none holds it. */
export async function rotationLeaseHolder(
  cp: Pick<ControlPlane, 'kubeconfigPath'>,
  namespace: string,
): Promise<string | undefined> {
  const lease = (await kubectlJson(cp, ['get', 'lease', CA_LEASE, '-n', namespace])) as {
    spec?: { holderIdentity?: string };
  };
  return lease.spec?.holderIdentity ?? undefined;
}
