// `make demo` as a test (root): the quick start's two sidecars carry a request with mutual TLS,
// nothing of it readable on the wire, and both count it in Istio's metrics.

import { chmodSync, existsSync } from 'node:fs';
import { runDemo } from './demo';
import { ECHO } from './mesh-rig';
import { ROOT } from './support';

jest.setTimeout(120_000);

it('shows a request from web to api through two sidecars: XFCC, TLS on the wire, the metrics', async () => {
  if (!existsSync(ECHO)) throw new Error(`${ECHO} is missing: run \`make netns\``);
  chmodSync(ROOT, 0o755);
  const lines: string[] = [];
  const result = await runDemo(
    (line) => lines.push(line),
    () => Promise.resolve(),
  );
  expect(result.answer.status).toBe(200);
  const echoed = JSON.parse(result.answer.body ?? '{}') as { headers: Record<string, string> };
  expect(echoed.headers['x-demo']).toBe(result.marker);
  expect(echoed.headers['x-forwarded-client-cert']).toBe(
    'By=spiffe://cluster.local/ns/default/sa/api;URI=spiffe://cluster.local/ns/default/sa/web',
  );
  expect(result.wire).toContain('10.77.0.12.8080');
  expect(result.wire).not.toContain(result.marker);
  expect(lines.join('\n')).toContain('TLS only (the marker is not there)');
  expect(result.metrics.web).toMatch(/reporter="source"/);
  expect(result.metrics.web).toMatch(/destination_service="api\.default\.svc\.cluster\.local"/);
  expect(result.metrics.web).toMatch(/response_code="200"/);
  expect(result.metrics.api).toMatch(/reporter="destination"/);
  expect(result.metrics.api).toMatch(/connection_security_policy="mutual_tls"/);
  expect(result.metrics.api).toMatch(
    /source_principal="spiffe:\/\/cluster\.local\/ns\/default\/sa\/web"/,
  );
});
