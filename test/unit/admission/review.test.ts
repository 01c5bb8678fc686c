import { parseAdmissionReview, podDisplayName } from '../../../src/admission';
import { MooringError } from '../../../src/errors';
import {
  objectOf,
  pod,
  review,
  uidOf,
  withDryRun,
  withGenerateName,
  withNamespace,
  withoutUid,
  withPod,
  withPodNamespace,
  withRequest,
  withUid,
} from './builders';

function rejection(body: unknown): MooringError {
  try {
    parseAdmissionReview(body);
  } catch (err) {
    if (err instanceof MooringError) return err;
    throw err;
  }
  throw new Error('expected a rejection');
}

describe('parseAdmissionReview', () => {
  it('reads uid, kind, operation, namespace, object and dryRun of a v1 review', () => {
    const body = review(withDryRun());
    const request = parseAdmissionReview(body);
    expect(request).toEqual({
      uid: uidOf(body),
      kind: { group: '', version: 'v1', kind: 'Pod' },
      subResource: '',
      operation: 'CREATE',
      namespace: 'shop',
      object: objectOf(body),
      dryRun: true,
    });
  });

  it("takes the object's namespace when request.namespace is empty", () => {
    const body = review(withNamespace(''), withPod(pod('web', withPodNamespace('blue'))));
    expect(parseAdmissionReview(body).namespace).toBe('blue');
  });

  it('treats an absent dryRun as false', () => {
    const body = review(withRequest({ dryRun: undefined }));
    expect(parseAdmissionReview(body).dryRun).toBe(false);
  });

  it.each<[string, unknown, RegExp]>([
    ['an empty body', undefined, /JSON object/],
    ['a JSON array', [], /JSON object/],
    ['a string', 'AdmissionReview', /JSON object/],
    [
      'a v1beta1 review',
      { ...review(), apiVersion: 'admission.k8s.io/v1beta1' },
      /apiVersion must be admission.k8s.io\/v1/,
    ],
    ['another kind', { ...review(), kind: 'Pod' }, /kind must be AdmissionReview/],
    [
      'no request',
      { apiVersion: 'admission.k8s.io/v1', kind: 'AdmissionReview' },
      /request is missing/,
    ],
    ['no uid', review(withoutUid()), /request.uid is missing/],
    ['an empty uid', review(withUid('')), /request.uid is missing/],
    ['a numeric uid', review(withUid(42)), /request.uid is missing/],
    ['a uid of 300 characters', review(withUid('u'.repeat(300))), /longer than 256/],
    ['no operation', review(withRequest({ operation: undefined })), /operation is missing/],
    [
      'a dryRun that is not a boolean',
      review(withRequest({ dryRun: 'yes' })),
      /dryRun must be a boolean/,
    ],
    [
      'a kind that is a string',
      review(withRequest({ kind: 'Pod' })),
      /request.kind must be an object/,
    ],
    [
      'a namespace that is a number',
      review(withRequest({ namespace: 7 })),
      /namespace must be a string/,
    ],
  ])('refuses %s with ADM_ERR_BODY (400)', (_name, body, message) => {
    const err = rejection(body);
    expect(err.code).toBe('ADM_ERR_BODY');
    expect(err.status).toBe(400);
    expect(err.message).toMatch(message);
  });
});

describe('podDisplayName', () => {
  it.each<[string, unknown, string]>([
    ['the name when there is one', pod('web'), 'web'],
    [
      'the generateName of a controller-made Pod',
      pod('x', withGenerateName('web-7d4b9c-')),
      'web-7d4b9c-',
    ],
    ['nothing for an object without metadata', { spec: {} }, ''],
    ['nothing for a non-object', 'pod', ''],
  ])('gives %s', (_name, object, expected) => {
    expect(podDisplayName(object)).toBe(expected);
  });
});
