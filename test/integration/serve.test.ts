// `mooring serve` in local mode, composed in-process on 127.0.0.1:0 (startServer, the same code
// the command runs): real TLS pinned to the trust bundle, real CA, openssl verification,
// serving-certificate hot reload, readiness, CA store changes from another process.

import { execFileSync } from 'node:child_process';
import { X509Certificate } from 'node:crypto';
import { chmodSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { Agent } from 'node:https';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { applyPatch, type Operation } from 'fast-json-patch';
import { openLocalCA } from '../../src/adapters/local-ca';
import type { ModeBuilder } from '../../src/server/mode';
import { buildLocalMode, startServer, type RunningServer } from '../../src/server/server';
import { validateConfig } from '../../src/config/validate';
import { LogSink } from '../http/helpers';
import { csrPem } from '../unit/ca/fixtures';
import { injectorUnderTest } from '../http/injector-under-test';
import { httpGet, httpsCall, waitFor } from './serve-helpers';

const FIXTURES = join(__dirname, '..', 'fixtures', 'admission');

function tempDir(): string {
  return mkdtempSync(join(tmpdir(), 'mooring-serve-'));
}

function writeConfig(dir: string, config: unknown): string {
  const path = join(dir, 'config.json');
  writeFileSync(path, JSON.stringify(config));
  return path;
}

async function start(
  dir: string,
  config: unknown = {},
  buildMode?: ModeBuilder,
  sink = new LogSink(),
) {
  const server = await startServer(
    {
      config: writeConfig(dir, config),
      dataDir: join(dir, 'store'),
      listen: '127.0.0.1:0',
      adminListen: '127.0.0.1:0',
    },
    {
      env: {},
      logDestination: sink,
      injectPod: injectorUnderTest(),
      ...(buildMode === undefined ? {} : { buildMode }),
    },
  );
  return { server, sink };
}

const bundleOf = (server: RunningServer): string => server.mode.certificates.trustBundle().join('');

describe('mooring serve (local mode, in-process)', () => {
  let dir: string;
  let server: RunningServer;
  let sink: LogSink;

  beforeAll(async () => {
    dir = tempDir();
    ({ server, sink } = await start(dir));
  });
  afterAll(async () => {
    await server.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it('is ready on the admin port and serves /healthz and /metrics', async () => {
    const adminPort = server.adminAddress?.port ?? 0;
    expect((await httpGet(adminPort, '/readyz')).status).toBe(200);
    expect((await httpGet(adminPort, '/healthz')).status).toBe(200);
    const metrics = await httpGet(adminPort, '/metrics');
    expect(metrics.body).toContain('mooring_ca_root_expiry_timestamp_seconds{');
    expect(metrics.body).toContain('mooring_serving_certificate_expiry_timestamp_seconds{serial=');
    expect(metrics.body).toContain('process_resident_memory_bytes');
  });

  it('serves TLS with a certificate of its own CA for localhost and 127.0.0.1', async () => {
    const ca = bundleOf(server);
    for (const host of ['127.0.0.1', 'localhost']) {
      const res = await httpsCall({
        port: server.webhookAddress.port,
        ca,
        method: 'GET',
        path: '/v1/trust-bundle',
        host,
      });
      expect(res.status).toBe(200);
      const peer = res.socket.getPeerX509Certificate();
      expect(peer?.subjectAltName).toContain('DNS:localhost');
      expect(peer?.subjectAltName).toContain('IP Address:127.0.0.1');
      expect(peer?.checkIssued(new X509Certificate(ca))).toBe(true);
    }
  });

  it('issues a certificate for an openssl CSR over pinned TLS that openssl verifies -x509_strict', async () => {
    const ca = bundleOf(server);
    const key = join(dir, 'vm.key');
    const csr = execFileSync(
      'openssl',
      [
        'req',
        '-new',
        '-newkey',
        'ec',
        '-pkeyopt',
        'ec_paramgen_curve:P-256',
        '-nodes',
        '-keyout',
        key,
        '-subj',
        '/',
      ],
      { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] },
    );
    const adminToken = readFileSync(join(dir, 'store', 'admin-token'), 'utf8').trim();
    const res = await httpsCall({
      port: server.webhookAddress.port,
      ca,
      method: 'POST',
      path: '/v1/admin/certificates',
      headers: { 'content-type': 'application/json', authorization: `Bearer ${adminToken}` },
      body: JSON.stringify({ csr, spiffeId: 'spiffe://cluster.local/vm/db-1' }),
    });
    expect(res.status).toBe(200);
    const answer = JSON.parse(res.body) as { certificateChain: string[]; trustBundle: string[] };
    writeFileSync(join(dir, 'leaf.pem'), answer.certificateChain[0] ?? '');
    writeFileSync(join(dir, 'bundle.pem'), answer.trustBundle.join(''));
    const out = execFileSync(
      'openssl',
      ['verify', '-x509_strict', '-CAfile', join(dir, 'bundle.pem'), join(dir, 'leaf.pem')],
      {
        encoding: 'utf8',
      },
    );
    expect(out).toMatch(/leaf.pem: OK/);
    // The root in <data-dir>/root-cert.pem (what the README tells users to pin) is the same bundle.
    expect(readFileSync(join(dir, 'store', 'root-cert.pem'), 'utf8')).toContain(
      answer.trustBundle[0]?.trim() ?? 'missing',
    );
  });

  it('answers an AdmissionReview over the same pinned TLS with a patch that applies', async () => {
    const body = readFileSync(join(FIXTURES, 'pod-create-deployment.json'), 'utf8');
    const review = JSON.parse(body) as { request: { uid: string; object: unknown } };
    const res = await httpsCall({
      port: server.webhookAddress.port,
      ca: bundleOf(server),
      method: 'POST',
      path: '/inject',
      headers: { 'content-type': 'application/json' },
      body,
    });
    expect(res.status).toBe(200);
    const { response } = JSON.parse(res.body) as {
      response: { uid: string; allowed: boolean; patch: string };
    };
    expect(response.uid).toBe(review.request.uid);
    expect(response.allowed).toBe(true);
    const ops = JSON.parse(Buffer.from(response.patch, 'base64').toString('utf8')) as Operation[];
    expect(() => applyPatch(structuredClone(review.request.object), ops, true)).not.toThrow();
    const line = sink.withMessage('admission review').find((l) => l.uid === review.request.uid);
    expect(line).toMatchObject({ namespace: 'shop', pod: 'web-7d4b9c6f5d-', decision: 'injected' });
  });

  it('refuses a TLS client that does not trust our CA (the certificate is really ours)', async () => {
    const foreign = execFileSync(
      'openssl',
      [
        'req',
        '-x509',
        '-newkey',
        'ec',
        '-pkeyopt',
        'ec_paramgen_curve:P-256',
        '-nodes',
        '-keyout',
        join(dir, 'f.key'),
        '-subj',
        '/CN=x',
        '-days',
        '1',
      ],
      { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] },
    );
    await expect(
      httpsCall({
        port: server.webhookAddress.port,
        ca: foreign,
        method: 'GET',
        path: '/v1/trust-bundle',
      }),
    ).rejects.toThrow(/self[- ]signed|unable to verify|unable to get local issuer/i);
  });
});

describe('serving certificate hot reload', () => {
  it('renews before expiry: a kept-alive connection keeps working, a new one sees the new serial', async () => {
    const dir = tempDir();
    // 8 s certificates renewed after 25% of their life: a renewal every 2 s.
    const { server, sink } = await start(dir, {
      ca: { servingCertLifetimeSeconds: 8, servingCertRenewFraction: 0.25 },
    });
    try {
      const ca = bundleOf(server);
      const agent = new Agent({ keepAlive: true, maxSockets: 1 });
      const call = (a: Agent | false) =>
        httpsCall({
          port: server.webhookAddress.port,
          ca,
          method: 'GET',
          path: '/v1/trust-bundle',
          agent: a,
        });

      const first = await call(agent);
      expect(first.status).toBe(200);
      const firstSerial = server.reloader.current()?.serialNumber;
      expect(first.serial.toUpperCase()).toBe(firstSerial?.toUpperCase());

      const renewed = await waitFor('a renewal', () => {
        const now = server.reloader.current()?.serialNumber;
        return now !== undefined && now !== firstSerial ? now : undefined;
      });
      const kept = await call(agent);
      expect(kept.status).toBe(200);
      expect(kept.reusedSocket).toBe(true);
      expect(kept.socket).toBe(first.socket);
      expect(kept.serial).toBe(first.serial);

      const fresh = await call(false);
      expect(fresh.status).toBe(200);
      expect(fresh.serial.toUpperCase()).not.toBe(first.serial.toUpperCase());
      expect([
        renewed.toUpperCase(),
        server.reloader.current()?.serialNumber.toUpperCase(),
      ]).toContain(fresh.serial.toUpperCase());
      expect(sink.withMessage('serving certificate installed').length).toBeGreaterThanOrEqual(2);
      agent.destroy();
    } finally {
      await server.close();
      rmSync(dir, { recursive: true, force: true });
    }
  }, 30_000);
});

describe('readiness', () => {
  it('answers /readyz 503 while the CA loads, then 200; and 503 again once shutting down', async () => {
    const dir = tempDir();
    let release: () => void = () => undefined;
    const gate = new Promise<void>((r) => {
      release = r;
    });
    const slowLocal: ModeBuilder = async (ctx) => {
      await gate;
      return buildLocalMode(ctx);
    };
    const sink = new LogSink();
    const starting = start(dir, {}, slowLocal, sink);
    // The admin port opens first: Fastify logs its address.
    const adminPort = await waitFor('the admin port', () => {
      const match = sink.raw
        .map((r) => /http:\/\/127\.0\.0\.1:(\d+)/.exec(r)?.[1])
        .find((p) => p !== undefined);
      return match === undefined ? undefined : Number(match);
    });
    const before = await httpGet(adminPort, '/readyz');
    expect(before.status).toBe(503);
    expect(JSON.parse(before.body)).toMatchObject({
      code: 'CA_ERR_NOT_READY',
      checks: { caLoaded: false, servingCertificate: false },
    });
    expect((await httpGet(adminPort, '/healthz')).status).toBe(200);
    release();
    const { server } = await starting;
    expect((await httpGet(adminPort, '/readyz')).status).toBe(200);
    server.close().catch(() => undefined);
    expect(server.readiness().ready).toBe(false);
    await server.closed;
    rmSync(dir, { recursive: true, force: true });
  }, 30_000);

  it('shows a tokens.json broken while it runs: /readyz 503 naming it, workloads told the kind of problem', async () => {
    const dir = tempDir();
    const store = join(dir, 'store');
    mkdirSync(store, { recursive: true, mode: 0o700 });
    const tokens = join(store, 'tokens.json');
    writeFileSync(tokens, '{"tok-web": {"namespace": "shop", "serviceAccount": "web"}}', {
      mode: 0o600,
    });
    const { server } = await start(dir);
    const adminPort = server.adminAddress?.port ?? 0;
    const workloadCall = () =>
      httpsCall({
        port: server.webhookAddress.port,
        ca: bundleOf(server),
        method: 'POST',
        path: '/v1/certificates',
        headers: { authorization: 'Bearer tok-web', 'content-type': 'application/json' },
        body: JSON.stringify({ csr: csrPem() }),
      });
    try {
      expect((await httpGet(adminPort, '/readyz')).status).toBe(200);
      expect((await workloadCall()).status).toBe(200);

      chmodSync(tokens, 0o644);
      const notReady = await waitFor('/readyz 503', async () => {
        const res = await httpGet(adminPort, '/readyz');
        return res.status === 503 ? res : undefined;
      });
      const body = JSON.parse(notReady.body) as {
        message: string;
        checks: Record<string, boolean>;
      };
      expect(body.checks).toMatchObject({ caLoaded: true, workloadTokens: false });
      expect(body.message).toContain('workloadTokens (tokens.json is unsafe:');
      expect(body.message).toContain(`mode is 0644: run chmod 600 ${tokens}`);
      const refused = await workloadCall();
      expect(refused.status).toBe(503);
      expect(JSON.parse(refused.body)).toEqual({
        code: 'CA_ERR_NOT_READY',
        message:
          "the certificate authority is not ready: every workload token is refused: the server's " +
          'tokens.json is unsafe (its mode, owner or type would let someone else read or write it)',
      });

      writeFileSync(tokens, '{"tok-web": ', { mode: 0o600 });
      chmodSync(tokens, 0o600);
      await waitFor('the invalid file named', async () => {
        const res = await httpGet(adminPort, '/readyz');
        return res.body.includes('tokens.json is invalid') ? res : undefined;
      });
      expect(JSON.parse((await workloadCall()).body).message).toContain(
        "the server's tokens.json is invalid",
      );

      writeFileSync(tokens, '{"tok-web": {"namespace": "shop", "serviceAccount": "web"}}');
      await waitFor('/readyz 200 again', async () =>
        (await httpGet(adminPort, '/readyz')).status === 200 ? true : undefined,
      );
      expect((await workloadCall()).status).toBe(200);
    } finally {
      await server.close();
      rmSync(dir, { recursive: true, force: true });
    }
  }, 30_000);

  it('answers every one of concurrent admin requests that arrive the moment it is ready', async () => {
    // The stress run's finding: 15 of 16 admin requests refused with "there is no admin-token"
    // right after every start, while /readyz already said ready.
    const dir = tempDir();
    const { server } = await start(dir);
    try {
      expect(server.readiness().ready).toBe(true);
      const token = readFileSync(join(dir, 'store', 'admin-token'), 'utf8').trim();
      const csr = csrPem();
      const answers = await Promise.all(
        Array.from({ length: 16 }, () =>
          httpsCall({
            port: server.webhookAddress.port,
            ca: bundleOf(server),
            method: 'POST',
            path: '/v1/admin/certificates',
            headers: { 'content-type': 'application/json', authorization: `Bearer ${token}` },
            body: JSON.stringify({ csr, spiffeId: 'spiffe://cluster.local/vm/db-1' }),
          }),
        ),
      );
      expect(answers.map((a) => a.status)).toEqual(Array.from({ length: 16 }, () => 200));
    } finally {
      await server.close();
      rmSync(dir, { recursive: true, force: true });
    }
  }, 30_000);
});

describe('CA store changes made by another process', () => {
  it('picks up a root rotation done on the same data dir (as `mooring ca rotate` does)', async () => {
    const dir = tempDir();
    const { server } = await start(dir, { ca: { rotation: { checkIntervalSeconds: 1 } } });
    try {
      expect(server.mode.certificates.trustBundle()).toHaveLength(1);
      const config = validateConfig({ server: { dataDir: join(dir, 'store') } });
      const other = await openLocalCA({ config, dataDir: join(dir, 'store'), create: false });
      await other.authority.rotate();
      const ca = bundleOf(server);
      const bundle = await waitFor('the new root in the served bundle', async () => {
        const res = await httpsCall({
          port: server.webhookAddress.port,
          ca,
          method: 'GET',
          path: '/v1/trust-bundle',
        });
        const roots = (JSON.parse(res.body) as { trustBundle: string[] }).trustBundle;
        return roots.length === 2 ? roots : undefined;
      });
      expect(bundle).toEqual([...other.authority.trustBundle()]);
    } finally {
      await server.close();
      rmSync(dir, { recursive: true, force: true });
    }
  }, 30_000);
});
