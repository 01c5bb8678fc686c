// Jaeger, as the tracing tests will use it: it starts on loopback, takes one span by OTLP/HTTP
// and gives it back through its query API.
import { randomBytes } from 'node:crypto';
import { startJaeger, type Jaeger } from './harness/jaeger';

jest.setTimeout(120_000);

interface QuerySpan {
  traceID: string;
  spanID: string;
  operationName: string;
  startTime: number;
  duration: number;
  processID: string;
  tags: { key: string; value: unknown }[];
}
interface QueryTrace {
  traceID: string;
  spans: QuerySpan[];
  processes: Record<string, { serviceName: string }>;
}

describe('Jaeger (the trace store of the tracing tests)', () => {
  let jaeger: Jaeger;
  beforeAll(async () => {
    jaeger = await startJaeger();
  });
  afterAll(async () => {
    await jaeger?.stop();
  });

  it('gives back through its query API a span sent by OTLP/HTTP', async () => {
    const traceId = randomBytes(16).toString('hex');
    const spanId = randomBytes(8).toString('hex');
    const startUs = (Date.now() - 1_000) * 1_000;
    const span = {
      resourceSpans: [
        {
          resource: {
            attributes: [{ key: 'service.name', value: { stringValue: 'mooring-e2e' } }],
          },
          scopeSpans: [
            {
              scope: { name: 'mooring' },
              spans: [
                {
                  traceId,
                  spanId,
                  name: 'GET /healthz/ready',
                  kind: 2, // SPAN_KIND_SERVER
                  startTimeUnixNano: String(startUs * 1_000),
                  endTimeUnixNano: String((startUs + 2_500) * 1_000),
                  attributes: [{ key: 'http.response.status_code', value: { intValue: '200' } }],
                },
              ],
            },
          ],
        },
      ],
    };
    const sent = await fetch(`${jaeger.otlpHttpUrl}/v1/traces`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify(span),
    });
    expect(sent.status).toBe(200);

    // The batch processor flushes within 100 ms; the store answers once it has the span.
    let trace: QueryTrace | undefined;
    const deadline = Date.now() + 15_000;
    while (trace === undefined && Date.now() < deadline) {
      const answer = await fetch(`${jaeger.queryUrl}/api/traces/${traceId}`);
      if (answer.status === 200) trace = ((await answer.json()) as { data: QueryTrace[] }).data[0];
      else await new Promise((resolve) => setTimeout(resolve, 100));
    }
    expect(trace).toBeDefined();
    expect(trace?.traceID).toBe(traceId);
    expect(trace?.spans).toHaveLength(1);
    const got = trace?.spans[0];
    expect(got).toMatchObject({
      traceID: traceId,
      spanID: spanId,
      operationName: 'GET /healthz/ready',
      startTime: startUs,
      duration: 2_500,
    });
    expect(got?.tags).toEqual(
      expect.arrayContaining([{ key: 'http.response.status_code', type: 'int64', value: 200 }]),
    );
    expect(trace?.processes[got?.processID ?? '']?.serviceName).toBe('mooring-e2e');

    const services = (await (await fetch(`${jaeger.queryUrl}/api/services`)).json()) as {
      data: string[];
    };
    expect(services.data).toContain('mooring-e2e');
  });

  it('answers 404 for a trace it never received', async () => {
    const answer = await fetch(`${jaeger.queryUrl}/api/traces/${randomBytes(16).toString('hex')}`);
    expect(answer.status).toBe(404);
  });
});
