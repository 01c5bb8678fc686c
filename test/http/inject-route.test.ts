import { applyPatch, type Operation } from 'fast-json-patch';
import { InjectThreadError } from '../../src/adapters/inject-threads';
import { answerReview, type PodInjector } from '../../src/admission';
import type { ReviewThreads } from '../../src/http';
import { MooringError } from '../../src/errors';
import {
  INTERNAL_ERROR_STATUS,
  objectOf,
  pod,
  review,
  uidOf,
  withAnnotation,
  withDryRun,
  withGenerateName,
  withKind,
  withOperation,
  withoutUid,
  withPod,
  type Json,
} from '../unit/admission/builders';
import { buildTestWebhookApp, JSON_HEADERS, metricValue } from './helpers';
import { injectorUnderTest } from './injector-under-test';

interface ReviewAnswer {
  apiVersion: string;
  kind: string;
  response: {
    uid: string;
    allowed: boolean;
    patchType?: string;
    patch?: string;
    status?: { code: number; message: string; reason: string };
    warnings?: string[];
  };
}

const decodePatch = (b64: string): Operation[] =>
  JSON.parse(Buffer.from(b64, 'base64').toString('utf8')) as Operation[];

describe('POST /inject (HTTP behaviour)', () => {
  it('echoes the uid and returns a base64 JSONPatch that applies to request.object', async () => {
    const { app } = buildTestWebhookApp();
    const body = review();
    const res = await app.inject({
      method: 'POST',
      url: '/inject',
      headers: JSON_HEADERS,
      payload: body,
    });
    expect(res.statusCode).toBe(200);
    expect(res.headers['content-type']).toMatch(/^application\/json/);
    const answer = res.json<ReviewAnswer>();
    expect(answer.apiVersion).toBe('admission.k8s.io/v1');
    expect(answer.kind).toBe('AdmissionReview');
    expect(answer.response.uid).toBe(uidOf(body));
    expect(answer.response.allowed).toBe(true);
    expect(answer.response.patchType).toBe('JSONPatch');
    const patched = applyPatch(
      structuredClone(objectOf(body)),
      decodePatch(answer.response.patch ?? ''),
      true,
    ).newDocument;
    expect((patched.metadata as Json).annotations).toEqual({ 'mooring.dev/status': '{}' });
  });

  it.each([
    'application/json; charset=utf-8',
    'Application/JSON;charset=UTF-8',
    'application/json; charset="utf-8"',
    'application/json; charset=utf8',
    'application/json; foo=bar',
  ])('accepts %s', async (contentType) => {
    const { app } = buildTestWebhookApp();
    const res = await app.inject({
      method: 'POST',
      url: '/inject',
      headers: { 'content-type': contentType },
      payload: review(),
    });
    expect(res.statusCode).toBe(200);
  });

  it.each<[string, string, BufferEncoding]>([
    ['utf-16', 'application/json; charset=utf-16', 'utf16le'],
    ['UTF-16LE, quoted', 'application/json; charset="UTF-16LE"', 'utf16le'],
    ['latin1', 'application/json; charset=iso-8859-1', 'latin1'],
    ['a second charset after utf-8', 'application/json; charset=utf-8; charset=utf-16', 'utf8'],
  ])(
    'answers 415 ADM_ERR_CONTENT_TYPE for a body declared in another charset: %s',
    async (_name, contentType, encoding) => {
      const { app } = buildTestWebhookApp();
      const res = await app.inject({
        method: 'POST',
        url: '/inject',
        headers: { 'content-type': contentType },
        payload: Buffer.from(JSON.stringify(review()), encoding),
      });
      expect(res.statusCode).toBe(415);
      expect(res.json()).toEqual({
        code: 'ADM_ERR_CONTENT_TYPE',
        message: expect.stringMatching(
          /^the body must be JSON in UTF-8: charset "[^"]+" is not accepted/,
        ),
      });
    },
  );

  it('answers a skipped Pod with no patch field', async () => {
    const { app } = buildTestWebhookApp();
    const body = review(withPod(pod('web', withAnnotation('mooring.dev/status', '{}'))));
    const answer = (
      await app.inject({ method: 'POST', url: '/inject', headers: JSON_HEADERS, payload: body })
    ).json<ReviewAnswer>();
    expect(answer.response).toEqual({ uid: uidOf(body), allowed: true });
  });

  it.each<[string, Json]>([
    ['a Deployment', review(withKind('apps', 'v1', 'Deployment'))],
    ['a Pod UPDATE', review(withOperation('UPDATE'))],
  ])('allows %s with no patch', async (_name, body) => {
    const { app } = buildTestWebhookApp();
    const res = await app.inject({
      method: 'POST',
      url: '/inject',
      headers: JSON_HEADERS,
      payload: body,
    });
    expect(res.statusCode).toBe(200);
    expect(res.json<ReviewAnswer>().response).toEqual({ uid: uidOf(body), allowed: true });
  });

  it.each<[string, string | undefined, RegExp]>([
    ['an empty body', '', /empty/],
    ['a body that is not JSON', '{"apiVersion": ', /not valid JSON/],
    ['a JSON array', '[]', /JSON object/],
    [
      'a review without request.uid',
      JSON.stringify(review(withoutUid())),
      /request.uid is missing/,
    ],
    [
      'a v1beta1 review',
      JSON.stringify({ ...review(), apiVersion: 'admission.k8s.io/v1beta1' }),
      /admission.k8s.io\/v1/,
    ],
  ])('answers 400 ADM_ERR_BODY for %s', async (_name, payload, message) => {
    const { app } = buildTestWebhookApp();
    const res = await app.inject({
      method: 'POST',
      url: '/inject',
      headers: JSON_HEADERS,
      payload,
    });
    expect(res.statusCode).toBe(400);
    expect(res.json()).toEqual({ code: 'ADM_ERR_BODY', message: expect.stringMatching(message) });
  });

  it('does not quote the body in the message of a JSON syntax error', async () => {
    const { app } = buildTestWebhookApp();
    const res = await app.inject({
      method: 'POST',
      url: '/inject',
      headers: JSON_HEADERS,
      payload: '{"secretmarker": x}',
    });
    expect(res.statusCode).toBe(400);
    expect(res.body).not.toContain('secretmarker');
  });

  it.each<[string, Record<string, string>]>([
    ['text/plain', { 'content-type': 'text/plain' }],
    ['application/yaml', { 'content-type': 'application/yaml' }],
    ['application/json-patch+json', { 'content-type': 'application/json-patch+json' }],
    ['no content type', {}],
  ])('answers 415 ADM_ERR_CONTENT_TYPE for %s', async (_name, headers) => {
    const { app } = buildTestWebhookApp();
    const res = await app.inject({
      method: 'POST',
      url: '/inject',
      headers,
      payload: JSON.stringify(review()),
    });
    expect(res.statusCode).toBe(415);
    expect(res.json()).toEqual({
      code: 'ADM_ERR_CONTENT_TYPE',
      message: 'the content type must be application/json',
    });
  });

  it('accepts a review just under 10 MiB (the body limit is at least 10 MiB)', async () => {
    const { app } = buildTestWebhookApp();
    const body = review(
      withPod(pod('big', withAnnotation('example.com/blob', 'x'.repeat(10 * 1024 * 1024 - 4096)))),
    );
    const payload = JSON.stringify(body);
    expect(payload.length).toBeGreaterThan(10 * 1024 * 1024 - 4096);
    const res = await app.inject({
      method: 'POST',
      url: '/inject',
      headers: JSON_HEADERS,
      payload,
    });
    expect(res.statusCode).toBe(200);
    expect(res.json<ReviewAnswer>().response.uid).toBe(uidOf(body));
  });

  it('answers 413 ADM_ERR_TOO_LARGE above the body limit', async () => {
    const { app } = buildTestWebhookApp();
    const body = review(
      withPod(pod('huge', withAnnotation('example.com/blob', 'x'.repeat(10 * 1024 * 1024 + 1)))),
    );
    const res = await app.inject({
      method: 'POST',
      url: '/inject',
      headers: JSON_HEADERS,
      payload: JSON.stringify(body),
    });
    expect(res.statusCode).toBe(413);
    expect(res.json()).toEqual({
      code: 'ADM_ERR_TOO_LARGE',
      message: 'the body is larger than the limit of 10485760 bytes',
    });
  });

  it('denies a Pod with an invalid annotation: allowed false, 400, message naming key and value', async () => {
    const invalid: PodInjector = () => {
      throw new MooringError(
        'INJ_ERR_ANNOTATION',
        'traffic.mooring.dev/include-inbound-ports: invalid port "abc" in "80,abc"',
      );
    };
    const { app } = buildTestWebhookApp({ injectPod: invalid });
    const body = review();
    const res = await app.inject({
      method: 'POST',
      url: '/inject',
      headers: JSON_HEADERS,
      payload: body,
    });
    expect(res.statusCode).toBe(200);
    const { response } = res.json<ReviewAnswer>();
    expect(response.allowed).toBe(false);
    expect(response.uid).toBe(uidOf(body));
    expect(response.status?.code).toBe(400);
    expect(response.status?.message).toContain('traffic.mooring.dev/include-inbound-ports');
    expect(response.status?.message).toContain('80,abc');
  });

  it('denies on an internal error with its code, never the internal message, and logs it', async () => {
    const broken: PodInjector = () => {
      throw new TypeError('internal detail /srv/secret');
    };
    const { app, sink, registry } = buildTestWebhookApp({ injectPod: broken });
    const body = review();
    const res = await app.inject({
      method: 'POST',
      url: '/inject',
      headers: JSON_HEADERS,
      payload: body,
    });
    expect(res.statusCode).toBe(200);
    const { response } = res.json<ReviewAnswer>();
    expect(response).toEqual({
      uid: uidOf(body),
      allowed: false,
      status: INTERNAL_ERROR_STATUS,
    });
    expect(res.body).not.toContain('secret');
    const [line] = sink.withMessage('admission review');
    expect(line).toMatchObject({ level: 50, decision: 'error', reason: 'INJ_ERR_INTERNAL' });
    expect((line?.err as { message: string }).message).toBe('internal detail /srv/secret');
    expect(
      await metricValue(registry, 'mooring_injection_requests_total', { result: 'error' }),
    ).toBe(1);
  });

  it('allows the Pod uninjected on an internal error when failOpen is on: logged and counted', async () => {
    const broken: PodInjector = () => {
      throw new Error('boom');
    };
    const { app, sink, registry } = buildTestWebhookApp({ injectPod: broken, failOpen: true });
    const body = review();
    const { response } = (
      await app.inject({ method: 'POST', url: '/inject', headers: JSON_HEADERS, payload: body })
    ).json<ReviewAnswer>();
    expect(response.allowed).toBe(true);
    expect(response.patch).toBeUndefined();
    expect(response.warnings?.[0]).toMatch(/INJ_ERR_INTERNAL/);
    expect(sink.withMessage('admission review')[0]).toMatchObject({
      decision: 'fail_open',
      reason: 'INJ_ERR_INTERNAL',
    });
    expect(
      await metricValue(registry, 'mooring_injection_requests_total', { result: 'fail_open' }),
    ).toBe(1);
  });

  it('answers a dry-run review exactly like the same review without dryRun, and logs dryRun', async () => {
    const { app, sink } = buildTestWebhookApp();
    const body = review();
    const dry = { ...body, request: { ...(body.request as Json), dryRun: true } };
    const real = await app.inject({
      method: 'POST',
      url: '/inject',
      headers: JSON_HEADERS,
      payload: body,
    });
    const dryRes = await app.inject({
      method: 'POST',
      url: '/inject',
      headers: JSON_HEADERS,
      payload: dry,
    });
    expect(dryRes.statusCode).toBe(200);
    expect(dryRes.json()).toEqual(real.json());
    expect(sink.withMessage('admission review').map((l) => l.dryRun)).toEqual([false, true]);
  });

  it('logs one line per review with uid, namespace, pod (generateName), decision, reason, duration', async () => {
    const { app, sink } = buildTestWebhookApp();
    const body = review(withPod(pod('x', withGenerateName('web-6c9f8-'))), withDryRun());
    await app.inject({ method: 'POST', url: '/inject', headers: JSON_HEADERS, payload: body });
    const lines = sink.withMessage('admission review');
    expect(lines).toHaveLength(1);
    expect(lines[0]).toMatchObject({
      level: 30,
      uid: uidOf(body),
      namespace: 'shop',
      pod: 'web-6c9f8-',
      decision: 'injected',
      reason: 'injected',
      dryRun: true,
      reqId: expect.any(String),
    });
    expect(typeof lines[0]?.durationMs).toBe('number');
    expect(sink.raw).toHaveLength(1);
  });

  it('counts reviews by result, skips by reason, and observes the latency histogram', async () => {
    const { app, registry } = buildTestWebhookApp();
    const post = (payload: unknown) =>
      app.inject({
        method: 'POST',
        url: '/inject',
        headers: JSON_HEADERS,
        payload: payload as Json,
      });
    await post(review());
    await post(review());
    await post(review(withOperation('UPDATE')));
    await post(review(withPod(pod('web', withAnnotation('mooring.dev/status', '{}')))));
    await post('[]');
    expect(
      await metricValue(registry, 'mooring_injection_requests_total', { result: 'injected' }),
    ).toBe(2);
    expect(
      await metricValue(registry, 'mooring_injection_requests_total', { result: 'skipped' }),
    ).toBe(2);
    expect(
      await metricValue(registry, 'mooring_injection_requests_total', { result: 'invalid' }),
    ).toBe(1);
    expect(
      await metricValue(registry, 'mooring_injection_skipped_total', { reason: 'not_create' }),
    ).toBe(1);
    expect(
      await metricValue(registry, 'mooring_injection_skipped_total', {
        reason: 'already_injected',
      }),
    ).toBe(1);
    const text = await registry.metrics();
    expect(text).toContain('mooring_injection_duration_seconds_bucket{le="0.0001"}');
    expect(text).toMatch(/mooring_injection_duration_seconds_count 4\n/);
  });

  it('sets X-Request-Id: keeps a plain one from the caller, makes one otherwise', async () => {
    const { app } = buildTestWebhookApp();
    const given = await app.inject({
      method: 'POST',
      url: '/inject',
      headers: { ...JSON_HEADERS, 'x-request-id': 'abc-123' },
      payload: review(),
    });
    expect(given.headers['x-request-id']).toBe('abc-123');
    const made = await app.inject({
      method: 'POST',
      url: '/inject',
      headers: { ...JSON_HEADERS, 'x-request-id': 'bad id with spaces\n' },
      payload: review(),
    });
    expect(made.headers['x-request-id']).toMatch(/^[0-9a-f-]{36}$/);
  });

  it('answers 404 HTTP_ERR_NOT_FOUND for an unknown path', async () => {
    const { app } = buildTestWebhookApp();
    const res = await app.inject({ method: 'POST', url: '/mutate' });
    expect(res.statusCode).toBe(404);
    expect(res.json()).toEqual({ code: 'HTTP_ERR_NOT_FOUND', message: 'no route POST /mutate' });
  });

  it.each<[string, string, string]>([
    ['GET', '/inject', 'POST'],
    ['PUT', '/v1/certificates', 'POST'],
    ['POST', '/v1/trust-bundle?x=1', 'GET, HEAD'],
  ])('answers 405 HTTP_ERR_METHOD with Allow for %s %s', async (method, url, allow) => {
    const { app } = buildTestWebhookApp();
    const res = await app.inject({ method: method as 'GET', url });
    expect(res.statusCode).toBe(405);
    expect(res.headers.allow).toBe(allow);
    expect(res.json<{ code: string }>().code).toBe('HTTP_ERR_METHOD');
  });
});

describe('POST /inject with inject threads', () => {
  // Stand-ins for src/adapters/inject-threads.ts: the real pool is tested with real threads in
  // test/unit/adapters/inject-threads.test.ts and through the compiled server.
  const sameAsThread = (injectPod: PodInjector, failOpen = false): ReviewThreads => ({
    answer: (text) =>
      new Promise((resolve) =>
        setImmediate(() =>
          resolve(
            answerReview(text, injectPod, { failOpen, monotonicMs: () => performance.now() }),
          ),
        ),
      ),
  });
  const dead: ReviewThreads = {
    answer: () => Promise.reject(new InjectThreadError('the inject thread exited: exit code 1')),
  };
  const unusedOnTheEventLoop: PodInjector = () => {
    throw new Error('the event loop ran the injector');
  };
  const post = (app: ReturnType<typeof buildTestWebhookApp>['app'], payload: string | Json) =>
    app.inject({ method: 'POST', url: '/inject', headers: JSON_HEADERS, payload });

  it('sends the answer of the thread, byte for byte what the event loop answers', async () => {
    const inline = buildTestWebhookApp({ injectPod: injectorUnderTest() });
    const threaded = buildTestWebhookApp({
      injectPod: unusedOnTheEventLoop,
      injectThreads: sameAsThread(injectorUnderTest()),
    });
    const payload = JSON.stringify(review(withAnnotation('mooring.dev/inject', 'true')));
    const [a, b] = await Promise.all([post(inline.app, payload), post(threaded.app, payload)]);
    expect(b.statusCode).toBe(200);
    expect(b.body).toBe(a.body);
    expect(b.headers['content-type']).toBe(a.headers['content-type']);
    expect(threaded.sink.withMessage('admission review')[0]).toMatchObject({
      decision: 'injected',
    });
  });

  it('answers 400 with the code the thread refused the body with', async () => {
    const { app, registry } = buildTestWebhookApp({
      injectPod: unusedOnTheEventLoop,
      injectThreads: sameAsThread(injectorUnderTest()),
    });
    const res = await post(app, '{"__proto__": {"admin": true}}');
    expect(res.statusCode).toBe(400);
    expect(res.json()).toEqual({
      code: 'ADM_ERR_BODY',
      message: 'the body holds a "__proto__" or "constructor.prototype" key',
    });
    expect(
      await metricValue(registry, 'mooring_injection_requests_total', { result: 'invalid' }),
    ).toBe(1);
  });

  it('denies the Pod with INJ_ERR_INTERNAL when its thread died, uid echoed, cause logged', async () => {
    const { app, sink, registry } = buildTestWebhookApp({
      injectPod: unusedOnTheEventLoop,
      injectThreads: dead,
    });
    const body = review();
    const res = await post(app, body);
    expect(res.statusCode).toBe(200);
    expect(res.json<ReviewAnswer>().response).toEqual({
      uid: uidOf(body),
      allowed: false,
      status: INTERNAL_ERROR_STATUS,
    });
    const [line] = sink.withMessage('admission review');
    expect(line).toMatchObject({ level: 50, decision: 'error', reason: 'INJ_ERR_INTERNAL' });
    expect((line?.err as { message: string }).message).toMatch(/exit code 1/);
    expect(
      await metricValue(registry, 'mooring_injection_requests_total', { result: 'error' }),
    ).toBe(1);
  });

  it('allows the Pod uninjected when its thread died and failOpen is on', async () => {
    const { app } = buildTestWebhookApp({
      injectPod: unusedOnTheEventLoop,
      injectThreads: dead,
      failOpen: true,
    });
    const res = await post(app, review());
    const { response } = res.json<ReviewAnswer>();
    expect(response.allowed).toBe(true);
    expect(response.patch).toBeUndefined();
    expect(response.warnings?.[0]).toMatch(/INJ_ERR_INTERNAL/);
  });

  it('still answers 400 for a body that is not a review when the thread died', async () => {
    const { app } = buildTestWebhookApp({ injectPod: unusedOnTheEventLoop, injectThreads: dead });
    const res = await post(app, '[]');
    expect(res.statusCode).toBe(400);
    expect(res.json<{ code: string }>().code).toBe('ADM_ERR_BODY');
  });
});
