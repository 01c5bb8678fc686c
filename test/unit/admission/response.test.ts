import fc from 'fast-check';
import {
  serializeAdmissionReviewResponse,
  buildAdmissionReviewResponse,
  encodePatch,
  normalizeWarnings,
  statusReason,
} from '../../../src/admission';

const decode = (b64: string): unknown => JSON.parse(Buffer.from(b64, 'base64').toString('utf8'));

describe('buildAdmissionReviewResponse', () => {
  it('echoes the uid and carries the patch as base64 JSONPatch', () => {
    const patch = [{ op: 'add', path: '/metadata/annotations/a~1b', value: 'x' }];
    const answer = buildAdmissionReviewResponse('uid-1', { allowed: true, patch, warnings: [] });
    expect(answer.apiVersion).toBe('admission.k8s.io/v1');
    expect(answer.kind).toBe('AdmissionReview');
    expect(answer.response.uid).toBe('uid-1');
    expect(answer.response.allowed).toBe(true);
    expect(answer.response.patchType).toBe('JSONPatch');
    expect(decode(answer.response.patch ?? '')).toEqual(patch);
  });

  it('has neither patch nor patchType when nothing changes', () => {
    const answer = buildAdmissionReviewResponse('uid-2', {
      allowed: true,
      patch: [],
      warnings: [],
    });
    expect(answer.response).toEqual({ uid: 'uid-2', allowed: true });
  });

  it('refuses with a Failure status carrying code, reason and message', () => {
    const answer = buildAdmissionReviewResponse('uid-3', {
      allowed: false,
      code: 400,
      message: 'INJ_ERR_ANNOTATION: bad',
      warnings: [],
    });
    expect(answer.response).toEqual({
      uid: 'uid-3',
      allowed: false,
      status: {
        status: 'Failure',
        code: 400,
        reason: 'BadRequest',
        message: 'INJ_ERR_ANNOTATION: bad',
      },
    });
  });

  it('adds the warnings field only when there are warnings', () => {
    const answer = buildAdmissionReviewResponse('uid-4', {
      allowed: true,
      patch: [],
      warnings: ['annotation x is deprecated'],
    });
    expect(answer.response.warnings).toEqual(['annotation x is deprecated']);
  });
});

describe('normalizeWarnings', () => {
  it('makes each warning one printable line and drops empty and repeated ones', () => {
    expect(normalizeWarnings(['a\nb', '', 'a\nb', '  c  '])).toEqual(['a b', 'c']);
  });

  it('shortens a warning longer than 256 characters', () => {
    const [w] = normalizeWarnings(['x'.repeat(1000)]);
    expect(w).toHaveLength(256);
    expect(w?.endsWith('...')).toBe(true);
  });

  it('keeps at most 16 warnings', () => {
    expect(normalizeWarnings(Array.from({ length: 40 }, (_, i) => `w${i}`))).toHaveLength(16);
  });
});

describe('statusReason', () => {
  it.each([
    [400, 'BadRequest'],
    [403, 'Forbidden'],
    [422, 'Invalid'],
    [500, 'InternalError'],
    [503, 'InternalError'],
  ])('names %i %s', (code, reason) => {
    expect(statusReason(code)).toBe(reason);
  });
});

describe('encodePatch', () => {
  it('encodes UTF-8 values losslessly', () => {
    const patch = [{ op: 'add', path: '/metadata/annotations/x', value: 'größe ✓' }];
    expect(decode(encodePatch(patch))).toEqual(patch);
  });
});

describe('serializeAdmissionReviewResponse', () => {
  const jsonValue = fc.jsonValue({ maxDepth: 3 });

  it('writes JSON that reads back as the answer, whatever the patch and warnings', () => {
    fc.assert(
      fc.property(
        fc.string(),
        fc.array(
          fc.record({ op: fc.constantFrom('add', 'replace'), path: fc.string(), value: jsonValue }),
        ),
        fc.array(fc.string()),
        fc.boolean(),
        (uid, patch, warnings, allowed) => {
          const review = buildAdmissionReviewResponse(
            uid,
            allowed
              ? { allowed: true, patch, warnings }
              : { allowed: false, code: 400, message: uid, warnings },
          );
          expect(JSON.parse(serializeAdmissionReviewResponse(review))).toEqual(review);
        },
      ),
    );
  });

  it('writes a patch from elsewhere that needs escaping through JSON.stringify', () => {
    const review = {
      apiVersion: 'admission.k8s.io/v1',
      kind: 'AdmissionReview',
      response: { uid: 'u', allowed: true, patchType: 'JSONPatch', patch: 'a"b\\c' },
    } as const;
    expect(JSON.parse(serializeAdmissionReviewResponse(review))).toEqual(review);
  });
});
