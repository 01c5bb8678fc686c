// The CA routes through the real CA of local mode (src/adapters/local-ca): CSRs made with
// openssl, certificates verified with `openssl verify -x509_strict`, and every refusal of the
// CA asserted on status and code.

import { execFileSync } from 'node:child_process';
import { X509Certificate } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { FastifyInstance } from 'fastify';
import { openLocalCA, openLocalCredentials } from '../../src/adapters/local-ca';
import { validateConfig } from '../../src/config/validate';
import { buildWebhookApp, createMooringMetrics } from '../../src/http';
import { createLogger } from '../../src/observability/logger';
import { createRegistry } from '../../src/observability/metrics';
import { csrPem, ecSpkiWithCurve, withSpki } from '../unit/ca/fixtures';
import { fakeInjector, JSON_HEADERS, LogSink } from './helpers';

interface ChainAnswer {
  certificateChain: string[];
  trustBundle: string[];
  expiresAt: string;
}

const WORKLOAD_TOKEN = 'shop-web-token-5d1e';
let dir: string;
let app: FastifyInstance;
let adminToken: string;
let sink: LogSink;

function openssl(args: string[], input?: string): string {
  return execFileSync('openssl', args, {
    encoding: 'utf8',
    input,
    stdio: ['pipe', 'pipe', 'pipe'],
  });
}

/** A CSR made by openssl for a new key; `extra` adds e.g. -addext subjectAltName=... */
function opensslCsr(newkey: string[], extra: string[] = []): string {
  const key = join(dir, `k-${Math.random().toString(36).slice(2)}.pem`);
  return openssl(['req', '-new', ...newkey, '-nodes', '-keyout', key, '-subj', '/', ...extra]);
}
const P256 = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256'];
const RSA2048 = ['-newkey', 'rsa:2048'];

/** openssl verify -x509_strict of the leaf against the trust bundle, with the intermediates. */
function verify(answer: ChainAnswer, purpose = 'sslclient'): string {
  const [leaf, ...intermediates] = answer.certificateChain;
  writeFileSync(join(dir, 'leaf.pem'), leaf ?? '');
  writeFileSync(join(dir, 'bundle.pem'), answer.trustBundle.join(''));
  const untrusted = intermediates.length > 0 ? ['-untrusted', join(dir, 'chain.pem')] : [];
  if (intermediates.length > 0) writeFileSync(join(dir, 'chain.pem'), intermediates.join(''));
  return openssl([
    'verify',
    '-x509_strict',
    '-purpose',
    purpose,
    '-CAfile',
    join(dir, 'bundle.pem'),
    ...untrusted,
    join(dir, 'leaf.pem'),
  ]);
}

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'mooring-real-ca-'));
  const dataDir = join(dir, 'store');
  const config = validateConfig({ server: { dataDir } });
  const { authority } = await openLocalCA({ config, dataDir, create: true });
  writeFileSync(
    join(dataDir, 'tokens.json'),
    JSON.stringify({ [WORKLOAD_TOKEN]: { namespace: 'shop', serviceAccount: 'web' } }),
    { mode: 0o600 },
  );
  const credentials = await openLocalCredentials(dataDir);
  adminToken = credentials.adminToken;
  sink = new LogSink();
  const registry = createRegistry({ processMetrics: false });
  app = buildWebhookApp({
    logger: createLogger('info', sink),
    metrics: createMooringMetrics(registry, { caStatus: () => authority.status() }),
    bodyLimitBytes: config.server.bodyLimitBytes,
    failOpen: false,
    injectPod: fakeInjector,
    certificates: authority,
    authenticator: credentials.authenticator,
    adminAuthorizer: credentials.adminAuthorizer,
  });
});
afterAll(async () => {
  await app.close();
  rmSync(dir, { recursive: true, force: true });
});

const admin = (payload: unknown, token = adminToken) =>
  app.inject({
    method: 'POST',
    url: '/v1/admin/certificates',
    headers: { ...JSON_HEADERS, authorization: `Bearer ${token}` },
    payload: JSON.stringify(payload),
  });
const workload = (payload: unknown, token = WORKLOAD_TOKEN) =>
  app.inject({
    method: 'POST',
    url: '/v1/certificates',
    headers: { ...JSON_HEADERS, authorization: `Bearer ${token}` },
    payload: JSON.stringify(payload),
  });

describe('CA routes through the real CA', () => {
  it.each([
    ['ECDSA P-256', P256],
    ['RSA 2048', RSA2048],
  ])(
    'issues a certificate for an openssl-made %s CSR via the admin route that openssl verifies',
    async (_name, newkey) => {
      const spiffeId = 'spiffe://cluster.local/vm/db-1';
      const res = await admin({ csr: opensslCsr(newkey), spiffeId, ttlSeconds: 3600 });
      expect(res.statusCode).toBe(200);
      const answer = res.json<ChainAnswer>();
      expect(verify(answer)).toMatch(/: OK/);
      expect(verify(answer, 'sslserver')).toMatch(/: OK/);
      const leaf = new X509Certificate(answer.certificateChain[0] ?? '');
      expect(leaf.subjectAltName).toBe(`URI:${spiffeId}`);
      expect(leaf.ca).toBe(false);
      expect(Date.parse(answer.expiresAt)).toBe(Date.parse(leaf.validTo));
      expect(answer.expiresAt).toMatch(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$/);
      const lifetime = (Date.parse(leaf.validTo) - Date.now()) / 1000;
      expect(lifetime).toBeGreaterThan(3500);
      expect(lifetime).toBeLessThanOrEqual(3600);
    },
  );

  it('issues a workload its own SPIFFE ID from its tokens.json token, whatever it asks for', async () => {
    const res = await workload({ csr: opensslCsr(P256) });
    expect(res.statusCode).toBe(200);
    const answer = res.json<ChainAnswer>();
    expect(verify(answer)).toMatch(/: OK/);
    expect(new X509Certificate(answer.certificateChain[0] ?? '').subjectAltName).toBe(
      'URI:spiffe://cluster.local/ns/shop/sa/web',
    );
  });

  it('answers the trust bundle that verifies the issued certificates', async () => {
    const bundle = (await app.inject({ method: 'GET', url: '/v1/trust-bundle' })).json<{
      trustBundle: string[];
    }>();
    const answer = (await workload({ csr: opensslCsr(P256) })).json<ChainAnswer>();
    expect(bundle.trustBundle).toEqual(answer.trustBundle);
    expect(verify({ ...answer, trustBundle: bundle.trustBundle })).toMatch(/: OK/);
  });

  it.each<[string, () => unknown, 'admin' | 'workload', number, string]>([
    [
      'an unparsable CSR',
      () => ({ csr: 'not a csr', spiffeId: 'spiffe://cluster.local/vm/a' }),
      'admin',
      400,
      'CA_ERR_CSR',
    ],
    [
      'a PEM that is not a CSR',
      () => ({
        csr: '-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n-----END CERTIFICATE REQUEST-----\n',
      }),
      'workload',
      400,
      'CA_ERR_CSR',
    ],
    [
      'a wrongly signed CSR',
      () => ({ csr: tamperSignature(opensslCsr(P256)) }),
      'workload',
      400,
      'CA_ERR_CSR_SIGNATURE',
    ],
    [
      'a SPIFFE ID outside the trust domain',
      () => ({ csr: opensslCsr(P256), spiffeId: 'spiffe://evil.example/ns/shop/sa/web' }),
      'admin',
      400,
      'CA_ERR_SPIFFE_ID',
    ],
    [
      'a SPIFFE ID that is not one',
      () => ({ csr: opensslCsr(P256), spiffeId: 'https://cluster.local/x' }),
      'admin',
      400,
      'CA_ERR_SPIFFE_ID',
    ],
    [
      'a CSR with a foreign DNS SAN',
      () => ({ csr: opensslCsr(P256, ['-addext', 'subjectAltName=DNS:evil.example']) }),
      'workload',
      400,
      'CA_ERR_SAN',
    ],
    [
      "a CSR naming another workload's SPIFFE ID",
      () => ({
        csr: opensslCsr(P256, [
          '-addext',
          'subjectAltName=URI:spiffe://cluster.local/ns/bank/sa/vault',
        ]),
      }),
      'workload',
      400,
      'CA_ERR_SAN',
    ],
    [
      'a lifetime above the maximum',
      () => ({ csr: opensslCsr(P256), ttlSeconds: 604801 }),
      'workload',
      400,
      'CA_ERR_TTL',
    ],
    [
      'a lifetime above the maximum on the admin route',
      () => ({
        csr: opensslCsr(P256),
        spiffeId: 'spiffe://cluster.local/vm/a',
        ttlSeconds: 10 ** 12,
      }),
      'admin',
      400,
      'CA_ERR_TTL',
    ],
    [
      'an RSA 1024 key',
      () => ({ csr: opensslCsr(['-newkey', 'rsa:1024']) }),
      'workload',
      400,
      'CA_ERR_KEY_TYPE',
    ],
    // Found by the stress run: 500 CA_ERR_INTERNAL with a stack trace, on both routes.
    [
      'an ECDSA key with an empty curve identifier',
      () => ({
        csr: csrPem(withSpki(ecSpkiWithCurve(Buffer.from('0600', 'hex')))),
        spiffeId: 'spiffe://cluster.local/vm/a',
      }),
      'admin',
      400,
      'CA_ERR_KEY_TYPE',
    ],
    [
      'an ECDSA key with a truncated curve identifier',
      () => ({ csr: csrPem(withSpki(ecSpkiWithCurve(Buffer.from('06062a8648ce3d83', 'hex')))) }),
      'workload',
      400,
      'CA_ERR_KEY_TYPE',
    ],
  ])('refuses %s with its 4xx code', async (_name, payload, route, status, code) => {
    const res = route === 'admin' ? await admin(payload()) : await workload(payload());
    expect({ status: res.statusCode, code: res.json<{ code: string }>().code }).toEqual({
      status,
      code,
    });
    expect(res.json<{ message: string }>().message.length).toBeGreaterThan(0);
  });

  it.each<[string, () => Promise<{ statusCode: number; json: <T>() => T }>, number, string]>([
    [
      'a wrong admin token',
      () => admin({ csr: opensslCsr(P256), spiffeId: 'spiffe://cluster.local/vm/a' }, 'guess'),
      401,
      'CA_ERR_UNAUTHENTICATED',
    ],
    [
      'a workload token on the admin route',
      () => admin({ csr: 'x', spiffeId: 'spiffe://cluster.local/vm/a' }, WORKLOAD_TOKEN),
      401,
      'CA_ERR_UNAUTHENTICATED',
    ],
    [
      'the admin token on the workload route',
      () => workload({ csr: 'x' }, adminToken),
      401,
      'CA_ERR_UNAUTHENTICATED',
    ],
    [
      'an unknown workload token',
      () => workload({ csr: 'x' }, 'nobody'),
      401,
      'CA_ERR_UNAUTHENTICATED',
    ],
  ])('refuses %s', async (_name, call, status, code) => {
    const res = await call();
    expect({ status: res.statusCode, code: res.json<{ code: string }>().code }).toEqual({
      status,
      code,
    });
  });

  it('never logs the admin token, the workload token or a CSR', () => {
    const text = sink.text();
    expect(sink.raw.length).toBeGreaterThan(10);
    expect(text).not.toContain(adminToken);
    expect(text).not.toContain(WORKLOAD_TOKEN);
    expect(text).not.toContain('BEGIN CERTIFICATE REQUEST');
    expect(text).not.toContain('PRIVATE KEY');
  });
});

/** Flips one bit in the CSR's signature: still parses, no longer verifies. */
function tamperSignature(pem: string): string {
  const der = Buffer.from(pem.replace(/-----[^-]+-----/g, '').replace(/\s+/g, ''), 'base64');
  const copy = Buffer.from(der);
  const i = copy.length - 8;
  copy[i] = (copy[i] ?? 0) ^ 0x01;
  const b64 = copy.toString('base64').replace(/(.{64})/g, '$1\n');
  return `-----BEGIN CERTIFICATE REQUEST-----\n${b64.trimEnd()}\n-----END CERTIFICATE REQUEST-----\n`;
}
