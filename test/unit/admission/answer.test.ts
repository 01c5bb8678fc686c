import {
  admit,
  answerAfterFailure,
  answerReview,
  errorRecord,
  parseAdmissionReview,
  serializeAdmissionReviewResponse,
  type PodInjector,
  type ReviewAnswer,
} from '../../../src/admission';
import { MooringError } from '../../../src/errors';
import {
  INTERNAL_ERROR_STATUS,
  pod,
  review,
  uidOf,
  withDryRun,
  withKind,
  withPod,
  type Json,
} from './builders';

const injecting: PodInjector = () => ({
  action: 'injected',
  pod: {},
  patch: [{ op: 'add', path: '/metadata/annotations', value: { 'mooring.dev/status': '{}' } }],
  warnings: [],
});
/** A clock that moves 0.25 ms each time it is read. */
const ticking = (): (() => number) => {
  let t = 0;
  return () => (t += 0.25);
};
const OPTIONS = { failOpen: false, monotonicMs: ticking() };

function answered(answer: ReviewAnswer): Extract<ReviewAnswer, { kind: 'answer' }> {
  if (answer.kind !== 'answer') throw new Error(`refused: ${answer.code} ${answer.message}`);
  return answer;
}

const responseOf = (answer: ReviewAnswer): Json =>
  (JSON.parse(answered(answer).body) as { response: Json }).response;

describe('answerReview: from the body text to the answer text', () => {
  it('answers exactly what admit() decides, serialized, with the fields of the log line', () => {
    const body = review(withDryRun());
    const answer = answered(
      answerReview(JSON.stringify(body), injecting, { ...OPTIONS, monotonicMs: ticking() }),
    );
    const expected = admit(parseAdmissionReview(body), injecting, OPTIONS);
    expect(answer.body).toBe(serializeAdmissionReviewResponse(expected.response));
    expect(answer).toMatchObject({
      uid: uidOf(body),
      dryRun: true,
      namespace: expected.namespace,
      pod: expected.pod,
      decision: 'injected',
      reason: 'injected',
    });
    // Read once before and once after the work, from the clock it was given.
    expect(answer.durationMs).toBe(0.25);
    expect(answer.error).toBeUndefined();
  });

  it.each<[string, string | undefined, RegExp]>([
    ['no body', undefined, /^the body is empty$/],
    ['an empty body', '', /^the body is empty$/],
    ['a body that is not JSON', '{"apiVersion": ', /^the body is not valid JSON$/],
    ['a "__proto__" key', '{"__proto__": {"polluted": true}}', /"__proto__"/],
    ['a "constructor.prototype" key', '{"a": {"constructor": {"prototype": {}}}}', /constructor/],
    ['a JSON array', '[]', /must be a JSON object/],
    [
      'a review without request',
      '{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview"}',
      /request is missing/,
    ],
  ])('refuses %s with ADM_ERR_BODY and a message of its own', (_name, text, message) => {
    const answer = answerReview(text, injecting, OPTIONS);
    expect(answer).toEqual({
      kind: 'refused',
      code: 'ADM_ERR_BODY',
      message: expect.stringMatching(message),
    });
  });

  it('never quotes the body in the message of a JSON syntax error', () => {
    const answer = answerReview('{"token": "s3cr3t-forbidden', injecting, OPTIONS);
    expect(answer).toEqual({
      kind: 'refused',
      code: 'ADM_ERR_BODY',
      message: 'the body is not valid JSON',
    });
  });

  it('records an internal error as plain data (it crosses threads), with its code', () => {
    const broken: PodInjector = () => {
      throw new MooringError('INJ_ERR_INTERNAL', 'the template is broken');
    };
    const answer = answered(answerReview(JSON.stringify(review()), broken, OPTIONS));
    expect(answer).toMatchObject({ decision: 'error', reason: 'INJ_ERR_INTERNAL' });
    expect(answer.error).toEqual({
      type: 'MooringError',
      message: 'the template is broken',
      stack: expect.stringContaining('the template is broken'),
      code: 'INJ_ERR_INTERNAL',
    });
    expect(structuredClone(answer)).toEqual(answer);
  });
});

describe('answerAfterFailure: a review whose thread died', () => {
  const died = new Error('the inject thread exited: exit code 1');

  it('denies the Pod with INJ_ERR_INTERNAL, the uid echoed, the cause kept for the log', () => {
    const body = review();
    const answer = answered(answerAfterFailure(JSON.stringify(body), died, OPTIONS));
    expect(responseOf(answer)).toEqual({
      uid: uidOf(body),
      allowed: false,
      status: INTERNAL_ERROR_STATUS,
    });
    expect(answer).toMatchObject({ decision: 'error', reason: 'INJ_ERR_INTERNAL' });
    expect(answer.error?.message).toBe(died.message);
  });

  it('allows the Pod uninjected, with a warning, when failOpen is on', () => {
    const answer = answered(
      answerAfterFailure(JSON.stringify(review()), died, { ...OPTIONS, failOpen: true }),
    );
    const response = responseOf(answer);
    expect(response.allowed).toBe(true);
    expect(response.patch).toBeUndefined();
    expect(response.warnings).toEqual([expect.stringMatching(/INJ_ERR_INTERNAL/)]);
    expect(answer.decision).toBe('fail_open');
  });

  it('still allows what is not a Pod CREATE, and still refuses what is not a review', () => {
    const deployment = review(withKind('apps', 'v1', 'Deployment'));
    expect(answered(answerAfterFailure(JSON.stringify(deployment), died, OPTIONS))).toMatchObject({
      decision: 'skipped',
      reason: 'not_pod',
    });
    expect(answerAfterFailure('nope', died, OPTIONS)).toMatchObject({
      kind: 'refused',
      code: 'ADM_ERR_BODY',
    });
  });

  it('records a thrown value that is not an Error', () => {
    expect(errorRecord('plain text')).toEqual({ type: 'string', message: 'plain text' });
    expect(
      answered(answerAfterFailure(JSON.stringify(review(withPod(pod('a')))), 42, OPTIONS)).error,
    ).toEqual({
      type: 'number',
      message: '42',
    });
  });
});
