import { createMooringMetrics } from '../../src/http';
import { createRegistry } from '../../src/observability/metrics';
import { buildTestAdminApp, buildTestWebhookApp, JSON_HEADERS, WORKLOAD_TOKEN } from './helpers';
import { review } from '../unit/admission/builders';

describe('admin app', () => {
  it('answers /healthz 200 while the process runs', async () => {
    const { app } = buildTestAdminApp(() => ({ ready: false, checks: { caLoaded: false } }));
    const res = await app.inject({ method: 'GET', url: '/healthz' });
    expect(res.statusCode).toBe(200);
    expect(res.json()).toEqual({ status: 'ok' });
  });

  it('answers /readyz 503 naming the failing checks until everything is ready, then 200', async () => {
    let checks = { caLoaded: false, servingCertificate: false, accepting: true };
    const { app } = buildTestAdminApp(() => ({
      ready: Object.values(checks).every(Boolean),
      checks,
    }));
    const before = await app.inject({ method: 'GET', url: '/readyz' });
    expect(before.statusCode).toBe(503);
    expect(before.json()).toEqual({
      code: 'CA_ERR_NOT_READY',
      message: 'not ready: caLoaded, servingCertificate',
      checks,
    });
    checks = { caLoaded: true, servingCertificate: true, accepting: true };
    const after = await app.inject({ method: 'GET', url: '/readyz' });
    expect(after.statusCode).toBe(200);
    expect(after.json()).toEqual({ status: 'ready', checks });
  });

  it('says what is wrong with a failing check that has more to say than its name', async () => {
    const { app } = buildTestAdminApp(() => ({
      ready: false,
      checks: { caLoaded: true, workloadTokens: false },
      problems: { workloadTokens: 'tokens.json is unsafe: mode 0644' },
    }));
    const res = await app.inject({ method: 'GET', url: '/readyz' });
    expect(res.statusCode).toBe(503);
    expect(res.json()).toMatchObject({
      message: 'not ready: workloadTokens (tokens.json is unsafe: mode 0644)',
    });
  });

  it('serves the Prometheus text of the registry with process metrics', async () => {
    const registry = createRegistry();
    const { app } = buildTestAdminApp(() => ({ ready: true, checks: {} }), registry);
    const res = await app.inject({ method: 'GET', url: '/metrics' });
    expect(res.statusCode).toBe(200);
    expect(res.headers['content-type']).toMatch(/^text\/plain; version=0.0.4/);
    expect(res.body).toContain('process_cpu_seconds_total');
    expect(res.body).toContain('nodejs_eventloop_lag_seconds');
  });

  it('shows the counters with their labels after some requests', async () => {
    const { app: webhook, registry } = buildTestWebhookApp();
    const { app } = buildTestAdminApp(() => ({ ready: true, checks: {} }), registry);
    await webhook.inject({
      method: 'POST',
      url: '/inject',
      headers: JSON_HEADERS,
      payload: review(),
    });
    await webhook.inject({
      method: 'POST',
      url: '/v1/certificates',
      headers: { ...JSON_HEADERS, authorization: `Bearer ${WORKLOAD_TOKEN}` },
      payload: { csr: 'x' },
    });
    await webhook.inject({
      method: 'POST',
      url: '/v1/certificates',
      headers: JSON_HEADERS,
      payload: { csr: 'x' },
    });
    const text = (await app.inject({ method: 'GET', url: '/metrics' })).body;
    expect(text).toContain('mooring_injection_requests_total{result="injected"} 1');
    expect(text).toContain('mooring_injection_duration_seconds_bucket{le="0.00025"}');
    expect(text).toContain(
      'mooring_certificates_issued_total{result="issued",key_type="ecdsa-p256"} 1',
    );
    expect(text).toContain(
      'mooring_authentication_failures_total{reason="missing",route="workload"} 1',
    );
    expect(text).toContain(
      'mooring_ca_root_expiry_timestamp_seconds{fingerprint="aa:bb",status="active"} 2051222400',
    );
    expect(text).toContain(
      'mooring_ca_issuer_expiry_timestamp_seconds{fingerprint="aa:bb",intermediate="false"} 2051222400',
    );
  });

  it('leaves the expiry gauges empty while the CA is not loaded', async () => {
    const registry = createRegistry({ processMetrics: false });
    createMooringMetrics(registry, { caStatus: () => null, servingCert: () => null });
    const text = await registry.metrics();
    expect(text).toContain('# TYPE mooring_ca_root_expiry_timestamp_seconds gauge');
    expect(text).not.toMatch(/mooring_ca_root_expiry_timestamp_seconds\{/);
    expect(text).not.toMatch(/^mooring_serving_certificate_expiry_timestamp_seconds/m);
  });

  it('answers unknown paths with 404 HTTP_ERR_NOT_FOUND', async () => {
    const { app } = buildTestAdminApp(() => ({ ready: true, checks: {} }));
    const res = await app.inject({ method: 'GET', url: '/debug/pprof' });
    expect(res.statusCode).toBe(404);
    expect(res.json<{ code: string }>().code).toBe('HTTP_ERR_NOT_FOUND');
  });
});
