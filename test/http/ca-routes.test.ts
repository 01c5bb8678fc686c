// The CA routes' HTTP behaviour with fakes of the CA ports: authentication, content type, body
// shape and size, readiness, error mapping, metrics and logs. The CA's own refusals (CSR,
// SPIFFE ID, SANs, TTL) are tested through the real CA in real-ca.test.ts.

import { MooringError } from '../../src/errors';
import {
  ADMIN_TOKEN,
  buildTestWebhookApp,
  JSON_HEADERS,
  metricValue,
  WORKLOAD_TOKEN,
} from './helpers';

const CSR = '-----BEGIN CERTIFICATE REQUEST-----\nMIIB\n-----END CERTIFICATE REQUEST-----\n';
const auth = (token: string) => ({ ...JSON_HEADERS, authorization: `Bearer ${token}` });

describe('POST /v1/certificates (workload)', () => {
  it("issues for the caller's own SPIFFE ID and answers chain, bundle and RFC 3339 expiry", async () => {
    const { app, certificates } = buildTestWebhookApp();
    const res = await app.inject({
      method: 'POST',
      url: '/v1/certificates',
      headers: auth(WORKLOAD_TOKEN),
      payload: { csr: CSR, ttlSeconds: 3600 },
    });
    expect(res.statusCode).toBe(200);
    expect(res.json()).toEqual({
      certificateChain: [expect.stringContaining('LEAF'), expect.stringContaining('INTERMEDIATE')],
      trustBundle: [expect.stringContaining('ROOT')],
      expiresAt: '2030-01-02T03:04:05Z',
    });
    expect(certificates.requests).toEqual([
      { csrPem: CSR, spiffeId: 'spiffe://cluster.local/ns/shop/sa/web', ttlSeconds: 3600 },
    ]);
  });

  it('leaves the lifetime to the CA default when ttlSeconds is absent', async () => {
    const { app, certificates } = buildTestWebhookApp();
    await app.inject({
      method: 'POST',
      url: '/v1/certificates',
      headers: auth(WORKLOAD_TOKEN),
      payload: { csr: CSR },
    });
    expect(certificates.requests[0]).toEqual({
      csrPem: CSR,
      spiffeId: 'spiffe://cluster.local/ns/shop/sa/web',
    });
  });

  it.each<[string, Record<string, string>, string]>([
    ['no Authorization header', JSON_HEADERS, 'missing'],
    ['a Basic credential', { ...JSON_HEADERS, authorization: 'Basic dXNlcjpwYXNz' }, 'malformed'],
    ['"Bearer" without a token', { ...JSON_HEADERS, authorization: 'Bearer ' }, 'malformed'],
    ['an unknown token', auth('not-a-token'), 'invalid'],
    ['the admin token (not a workload token)', auth(ADMIN_TOKEN), 'invalid'],
  ])(
    'answers 401 CA_ERR_UNAUTHENTICATED for %s, counted by reason',
    async (_name, headers, reason) => {
      const { app, registry, certificates } = buildTestWebhookApp();
      const res = await app.inject({
        method: 'POST',
        url: '/v1/certificates',
        headers,
        payload: { csr: CSR },
      });
      expect(res.statusCode).toBe(401);
      expect(res.json<{ code: string }>().code).toBe('CA_ERR_UNAUTHENTICATED');
      expect(res.headers['www-authenticate']).toBe('Bearer');
      expect(certificates.requests).toHaveLength(0);
      expect(
        await metricValue(registry, 'mooring_authentication_failures_total', {
          reason,
          route: 'workload',
        }),
      ).toBe(1);
    },
  );

  it('accepts the bearer scheme in any case', async () => {
    const { app } = buildTestWebhookApp();
    const res = await app.inject({
      method: 'POST',
      url: '/v1/certificates',
      headers: { ...JSON_HEADERS, authorization: `bearer ${WORKLOAD_TOKEN}` },
      payload: { csr: CSR },
    });
    expect(res.statusCode).toBe(200);
  });

  it.each<[string, unknown, RegExp]>([
    ['no csr', { ttlSeconds: 60 }, /"csr" must be a PEM/],
    ['an empty csr', { csr: '  ' }, /"csr" must be a PEM/],
    ['a numeric csr', { csr: 5 }, /"csr" must be a PEM/],
    ['a ttl that is a string', { csr: CSR, ttlSeconds: '3600' }, /ttlSeconds/],
    ['a fractional ttl', { csr: CSR, ttlSeconds: 1.5 }, /ttlSeconds/],
    ['a negative ttl', { csr: CSR, ttlSeconds: -1 }, /ttlSeconds/],
    ['an unknown field (a misspelt ttl)', { csr: CSR, ttl: 3600 }, /unknown field "ttl"/],
    [
      'a spiffeId on the workload route',
      { csr: CSR, spiffeId: 'spiffe://cluster.local/x' },
      /unknown field "spiffeId"/,
    ],
    ['a JSON array', [CSR], /JSON object/],
  ])('answers 400 CA_ERR_BODY for %s', async (_name, payload, message) => {
    const { app, certificates } = buildTestWebhookApp();
    const res = await app.inject({
      method: 'POST',
      url: '/v1/certificates',
      headers: auth(WORKLOAD_TOKEN),
      payload: JSON.stringify(payload),
    });
    expect(res.statusCode).toBe(400);
    expect(res.json()).toEqual({ code: 'CA_ERR_BODY', message: expect.stringMatching(message) });
    expect(certificates.requests).toHaveLength(0);
  });

  it.each<[string, string]>([
    ['an empty body', ''],
    ['a body that is not JSON', '{"csr": '],
  ])('answers 400 CA_ERR_BODY for %s', async (_name, payload) => {
    const { app } = buildTestWebhookApp();
    const res = await app.inject({
      method: 'POST',
      url: '/v1/certificates',
      headers: auth(WORKLOAD_TOKEN),
      payload,
    });
    expect(res.statusCode).toBe(400);
    expect(res.json<{ code: string }>().code).toBe('CA_ERR_BODY');
  });

  it('answers 415 CA_ERR_CONTENT_TYPE for a PEM body', async () => {
    const { app } = buildTestWebhookApp();
    const res = await app.inject({
      method: 'POST',
      url: '/v1/certificates',
      headers: { 'content-type': 'application/pkcs10', authorization: `Bearer ${WORKLOAD_TOKEN}` },
      payload: CSR,
    });
    expect(res.statusCode).toBe(415);
    expect(res.json()).toEqual({
      code: 'CA_ERR_CONTENT_TYPE',
      message: 'the content type must be application/json',
    });
  });

  it('answers 415 CA_ERR_CONTENT_TYPE for a JSON body declared in UTF-16', async () => {
    const { app, certificates } = buildTestWebhookApp();
    const res = await app.inject({
      method: 'POST',
      url: '/v1/certificates',
      headers: {
        'content-type': 'application/json; charset=utf-16',
        authorization: `Bearer ${WORKLOAD_TOKEN}`,
      },
      payload: Buffer.from(JSON.stringify({ csr: CSR }), 'utf16le'),
    });
    expect(res.statusCode).toBe(415);
    expect(res.json<{ code: string }>().code).toBe('CA_ERR_CONTENT_TYPE');
    expect(certificates.requests).toEqual([]);
  });

  it('answers 413 CA_ERR_TOO_LARGE for a body over 64 KiB', async () => {
    const { app } = buildTestWebhookApp();
    const res = await app.inject({
      method: 'POST',
      url: '/v1/certificates',
      headers: auth(WORKLOAD_TOKEN),
      payload: JSON.stringify({ csr: 'A'.repeat(70 * 1024) }),
    });
    expect(res.statusCode).toBe(413);
    expect(res.json()).toEqual({
      code: 'CA_ERR_TOO_LARGE',
      message: 'the body is larger than the limit of 65536 bytes',
    });
  });

  it('answers 401 before reading a large body from an unauthenticated caller', async () => {
    const { app } = buildTestWebhookApp();
    const res = await app.inject({
      method: 'POST',
      url: '/v1/certificates',
      headers: JSON_HEADERS,
      payload: JSON.stringify({ csr: 'A'.repeat(70 * 1024) }),
    });
    expect(res.statusCode).toBe(401);
  });

  it("passes the CA's coded refusal through with its status", async () => {
    const { app, certificates, registry } = buildTestWebhookApp();
    certificates.failWith = new MooringError(
      'CA_ERR_TTL',
      'ttlSeconds 999999 is above the maximum of 604800',
    );
    const res = await app.inject({
      method: 'POST',
      url: '/v1/certificates',
      headers: auth(WORKLOAD_TOKEN),
      payload: { csr: CSR, ttlSeconds: 999999 },
    });
    expect(res.statusCode).toBe(400);
    expect(res.json()).toEqual({
      code: 'CA_ERR_TTL',
      message: 'ttlSeconds 999999 is above the maximum of 604800',
    });
    expect(
      await metricValue(registry, 'mooring_certificates_issued_total', { result: 'rejected' }),
    ).toBe(1);
  });

  it('answers an unexpected failure with 500 CA_ERR_INTERNAL and a generic message, detail only in the log', async () => {
    const { app, certificates, sink } = buildTestWebhookApp();
    certificates.failWith = new Error('disk /var/lib/secret-place exploded');
    const res = await app.inject({
      method: 'POST',
      url: '/v1/certificates',
      headers: auth(WORKLOAD_TOKEN),
      payload: { csr: CSR },
    });
    expect(res.statusCode).toBe(500);
    expect(res.json()).toEqual({ code: 'CA_ERR_INTERNAL', message: 'internal error' });
    expect(res.body).not.toContain('secret-place');
    expect(sink.text()).toContain('secret-place');
  });

  it('answers 503 CA_ERR_NOT_READY while the CA is not loaded', async () => {
    const { app, certificates } = buildTestWebhookApp();
    certificates.isReady = false;
    const res = await app.inject({
      method: 'POST',
      url: '/v1/certificates',
      headers: auth(WORKLOAD_TOKEN),
      payload: { csr: CSR },
    });
    expect(res.statusCode).toBe(503);
    expect(res.json<{ code: string }>().code).toBe('CA_ERR_NOT_READY');
    const bundle = await app.inject({ method: 'GET', url: '/v1/trust-bundle' });
    expect(bundle.statusCode).toBe(503);
  });

  it('counts issuance by result and key type and observes the issuance latency', async () => {
    const { app, registry } = buildTestWebhookApp();
    await app.inject({
      method: 'POST',
      url: '/v1/certificates',
      headers: auth(WORKLOAD_TOKEN),
      payload: { csr: CSR },
    });
    await app.inject({
      method: 'POST',
      url: '/v1/certificates',
      headers: auth('wrong'),
      payload: { csr: CSR },
    });
    expect(
      await metricValue(registry, 'mooring_certificates_issued_total', {
        result: 'issued',
        key_type: 'ecdsa-p256',
      }),
    ).toBe(1);
    expect(
      await metricValue(registry, 'mooring_certificates_issued_total', {
        result: 'rejected',
        key_type: 'unknown',
      }),
    ).toBe(1);
    expect(await registry.metrics()).toMatch(
      /mooring_certificate_issue_duration_seconds_count\{key_type="ecdsa-p256"\} 1/,
    );
  });
});

describe('POST /v1/admin/certificates', () => {
  it('issues for the requested SPIFFE ID with the admin token', async () => {
    const { app, certificates, sink } = buildTestWebhookApp();
    const res = await app.inject({
      method: 'POST',
      url: '/v1/admin/certificates',
      headers: auth(ADMIN_TOKEN),
      payload: { csr: CSR, spiffeId: 'spiffe://cluster.local/vm/db-1', ttlSeconds: 600 },
    });
    expect(res.statusCode).toBe(200);
    expect(certificates.requests).toEqual([
      { csrPem: CSR, spiffeId: 'spiffe://cluster.local/vm/db-1', ttlSeconds: 600 },
    ]);
    expect(sink.withMessage('certificate issued')[0]).toMatchObject({
      route: 'admin',
      subject: 'local-admin',
      spiffeId: 'spiffe://cluster.local/vm/db-1',
      serial: '0a1b',
    });
  });

  it.each<[string, Record<string, string>, number, string]>([
    ['no token', JSON_HEADERS, 401, 'CA_ERR_UNAUTHENTICATED'],
    ['a wrong token', auth('guess'), 401, 'CA_ERR_UNAUTHENTICATED'],
    ['a workload token', auth(WORKLOAD_TOKEN), 401, 'CA_ERR_UNAUTHENTICATED'],
    ['a known identity without the right', auth('known-but-not-admin'), 403, 'CA_ERR_FORBIDDEN'],
  ])('refuses %s', async (_name, headers, status, code) => {
    const { app, certificates } = buildTestWebhookApp();
    const res = await app.inject({
      method: 'POST',
      url: '/v1/admin/certificates',
      headers,
      payload: { csr: CSR, spiffeId: 'spiffe://cluster.local/vm/db-1' },
    });
    expect(res.statusCode).toBe(status);
    expect(res.json<{ code: string }>().code).toBe(code);
    expect(certificates.requests).toHaveLength(0);
  });

  it.each<[string, Record<string, unknown>, string]>([
    ['without a spiffeId', { csr: CSR }, '"spiffeId" must be a string'],
    ['with an empty spiffeId', { csr: CSR, spiffeId: '' }, '"spiffeId" must not be empty'],
  ])('answers 400 CA_ERR_BODY %s', async (_name, payload, message) => {
    const { app } = buildTestWebhookApp();
    const res = await app.inject({
      method: 'POST',
      url: '/v1/admin/certificates',
      headers: auth(ADMIN_TOKEN),
      payload,
    });
    expect(res.statusCode).toBe(400);
    expect(res.json()).toEqual({ code: 'CA_ERR_BODY', message });
  });

  it('names a __proto__ key as what is refused, not as invalid JSON', async () => {
    const { app, certificates } = buildTestWebhookApp();
    const res = await app.inject({
      method: 'POST',
      url: '/v1/admin/certificates',
      headers: auth(ADMIN_TOKEN),
      payload: `{"__proto__": {"polluted": true}, "csr": ${JSON.stringify(CSR)}, "spiffeId": "spiffe://cluster.local/vm/a"}`,
    });
    expect(res.statusCode).toBe(400);
    expect(res.json()).toEqual({
      code: 'CA_ERR_BODY',
      message: 'the body holds a "__proto__" or "constructor.prototype" key',
    });
    expect(certificates.requests).toHaveLength(0);
    expect(({} as Record<string, unknown>).polluted).toBeUndefined();
  });
});

describe('GET /v1/trust-bundle', () => {
  it('answers every trusted root without authentication', async () => {
    const { app } = buildTestWebhookApp();
    const res = await app.inject({ method: 'GET', url: '/v1/trust-bundle' });
    expect(res.statusCode).toBe(200);
    expect(res.json()).toEqual({ trustBundle: [expect.stringContaining('ROOT')] });
    expect(res.headers['cache-control']).toBe('no-cache');
  });
});

describe('secrets never reach the log', () => {
  it('logs neither the CSR, nor a token, nor the Authorization header, whatever the outcome', async () => {
    const marker = 'SECRETMARKER';
    const { app, sink, certificates } = buildTestWebhookApp();
    const csr = `-----BEGIN CERTIFICATE REQUEST-----\n${marker}\n-----END CERTIFICATE REQUEST-----\n`;
    const calls: [Record<string, string>, unknown][] = [
      [auth(WORKLOAD_TOKEN), { csr }],
      [auth(`${marker}-token`), { csr }],
      [{ ...JSON_HEADERS, authorization: `Basic ${marker}` }, { csr }],
      [auth(WORKLOAD_TOKEN), { csr, [`${marker}field`]: 1 }],
      [auth(WORKLOAD_TOKEN), `{"csr": "${marker}`],
    ];
    for (const [headers, payload] of calls) {
      await app.inject({
        method: 'POST',
        url: '/v1/certificates',
        headers,
        payload: typeof payload === 'string' ? payload : JSON.stringify(payload),
      });
      await app.inject({
        method: 'POST',
        url: '/v1/admin/certificates',
        headers,
        payload: typeof payload === 'string' ? payload : JSON.stringify(payload),
      });
    }
    certificates.failWith = new Error('unexpected');
    await app.inject({
      method: 'POST',
      url: '/v1/certificates',
      headers: auth(WORKLOAD_TOKEN),
      payload: { csr },
    });
    expect(sink.raw.length).toBeGreaterThan(5);
    expect(sink.text()).not.toContain(marker);
    expect(sink.text()).not.toContain(WORKLOAD_TOKEN);
  });
});
