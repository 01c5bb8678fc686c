import {
  admit,
  parseAdmissionReview,
  type InjectionResult,
  type PodInjector,
} from '../../../src/admission';
import { MooringError } from '../../../src/errors';
import {
  pod,
  review,
  uidOf,
  withGenerateName,
  withKind,
  withOperation,
  withPod,
  withSubResource,
  type Json,
} from './builders';

const decode = (b64: string | undefined): unknown =>
  JSON.parse(Buffer.from(b64 ?? '', 'base64').toString('utf8'));

const injecting: PodInjector = () => ({
  action: 'injected',
  pod: {},
  patch: [{ op: 'add', path: '/metadata/annotations', value: { 'mooring.dev/status': '{}' } }],
  warnings: ['proxy.mooring.dev/foo is not a known annotation and is ignored'],
});
const skipping =
  (reason: string): PodInjector =>
  () => ({ action: 'skipped', reason, message: `skipped: ${reason}`, warnings: [] });
const throwing =
  (err: unknown): PodInjector =>
  () => {
    throw err;
  };

function decide(body: Json, inject: PodInjector, failOpen = false) {
  return admit(parseAdmissionReview(body), inject, { failOpen });
}

describe('admit', () => {
  it('answers an injected Pod with its patch, its warnings and decision injected', () => {
    const body = review(withPod(pod('web', withGenerateName('web-6c9f-'))));
    const outcome = decide(body, injecting);
    expect(outcome.decision).toBe('injected');
    expect(outcome.reason).toBe('injected');
    expect(outcome.pod).toBe('web-6c9f-');
    expect(outcome.namespace).toBe('shop');
    expect(outcome.response.response.uid).toBe(uidOf(body));
    expect(decode(outcome.response.response.patch)).toEqual([
      { op: 'add', path: '/metadata/annotations', value: { 'mooring.dev/status': '{}' } },
    ]);
    expect(outcome.response.response.warnings).toEqual([
      'proxy.mooring.dev/foo is not a known annotation and is ignored',
    ]);
  });

  it('answers an injection with an empty patch without a patch field', () => {
    const empty: PodInjector = (): InjectionResult => ({
      action: 'injected',
      pod: {},
      patch: [],
      warnings: [],
    });
    const outcome = decide(review(), empty);
    expect(outcome.response.response).toEqual({
      uid: outcome.response.response.uid,
      allowed: true,
    });
  });

  it("allows a skipped Pod unchanged with the injector's typed reason", () => {
    const outcome = decide(review(), skipping('host_network'));
    expect(outcome.decision).toBe('skipped');
    expect(outcome.reason).toBe('host_network');
    expect(outcome.response.response.allowed).toBe(true);
    expect(outcome.response.response.patch).toBeUndefined();
  });

  it.each<[string, Json, string]>([
    ['a Deployment', review(withKind('apps', 'v1', 'Deployment')), 'not_pod'],
    ['a Pod in another group', review(withKind('example.com', 'v1', 'Pod')), 'not_pod'],
    ['a Pod UPDATE', review(withOperation('UPDATE')), 'not_create'],
    ['a Pod DELETE', review(withOperation('DELETE')), 'not_create'],
    ['an eviction (pods/eviction CREATE)', review(withSubResource('eviction')), 'subresource'],
  ])('allows %s with no patch and never asks the injector', (_name, body, reason) => {
    const outcome = decide(body, throwing(new Error('must not be called')));
    expect(outcome.decision).toBe('skipped');
    expect(outcome.reason).toBe(reason);
    expect(outcome.response.response).toEqual({ uid: uidOf(body), allowed: true });
  });

  it('denies a Pod with an invalid annotation with 400 and a message naming key and value', () => {
    const err = new MooringError(
      'INJ_ERR_ANNOTATION',
      'traffic.mooring.dev/include-inbound-ports: "80,abc" is not a port list',
    );
    const outcome = decide(review(), throwing(err));
    expect(outcome.decision).toBe('denied');
    expect(outcome.reason).toBe('INJ_ERR_ANNOTATION');
    expect(outcome.error).toBeUndefined();
    expect(outcome.response.response.allowed).toBe(false);
    expect(outcome.response.response.status).toEqual({
      status: 'Failure',
      code: 400,
      reason: 'BadRequest',
      message:
        'INJ_ERR_ANNOTATION: traffic.mooring.dev/include-inbound-ports: "80,abc" is not a port list',
    });
  });

  it('denies a review whose object is not an object with INJ_ERR_INPUT', () => {
    const outcome = decide(review(withPod('not a pod')), injecting);
    expect(outcome.decision).toBe('denied');
    expect(outcome.response.response.status?.message).toMatch(/^INJ_ERR_INPUT: /);
  });

  it('denies on an internal error with its code and a generic message, keeping the error for the log', () => {
    const bug = new TypeError(
      "Cannot read properties of undefined (reading 'containers') /secret/path",
    );
    const outcome = decide(review(), throwing(bug));
    expect(outcome.decision).toBe('error');
    expect(outcome.reason).toBe('INJ_ERR_INTERNAL');
    expect(outcome.error).toBe(bug);
    expect(outcome.response.response.allowed).toBe(false);
    expect(outcome.response.response.status).toEqual({
      status: 'Failure',
      code: 500,
      reason: 'InternalError',
      message: 'INJ_ERR_INTERNAL: injection failed',
    });
    expect(JSON.stringify(outcome.response)).not.toContain('secret');
  });

  it('allows the Pod uninjected on an internal error when failOpen is on, with a warning', () => {
    const bug = new Error('boom');
    const outcome = decide(review(), throwing(bug), true);
    expect(outcome.decision).toBe('fail_open');
    expect(outcome.reason).toBe('INJ_ERR_INTERNAL');
    expect(outcome.error).toBe(bug);
    expect(outcome.response.response.allowed).toBe(true);
    expect(outcome.response.response.patch).toBeUndefined();
    expect(outcome.response.response.warnings?.[0]).toMatch(
      /without the sidecar.*INJ_ERR_INTERNAL/,
    );
  });

  it('still denies an invalid annotation when failOpen is on (the Pod is wrong, not Mooring)', () => {
    const err = new MooringError(
      'INJ_ERR_ANNOTATION',
      'proxy.mooring.dev/log-level: "loud" is not a level',
    );
    expect(decide(review(), throwing(err), true).decision).toBe('denied');
  });

  it('gives a dry-run review the same answer as a real one', () => {
    const body = review();
    const dry = review(withPod((body.request as Json).object), (r) => ({
      ...r,
      request: { ...(r.request as Json), uid: uidOf(body), dryRun: true },
    }));
    expect(decide(dry, injecting).response).toEqual(decide(body, injecting).response);
  });
});
