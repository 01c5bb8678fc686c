// The validating webhook (POST /validate) on AuthorizationPolicy: one the mesh would put in closed
// (what Mooring cannot enforce) is refused at `kubectl apply` with its field named; a valid one,
// in either API version the mesh reads, is allowed. The webhook configuration that sends them
// here is checked in test/chart (render.test.ts, webhook-config-cli.test.ts).
import { answerMeshValidation } from '../../../src/admission/validate-mesh';

const review = (spec: Record<string, unknown>, version = 'v1') => ({
  apiVersion: 'admission.k8s.io/v1',
  kind: 'AdmissionReview',
  request: {
    uid: 'u-1',
    kind: { group: 'security.istio.io', version, kind: 'AuthorizationPolicy' },
    operation: 'CREATE',
    namespace: 'shop',
    object: { metadata: { name: 'policy', namespace: 'shop' }, spec },
  },
});

describe('the validating webhook on AuthorizationPolicy', () => {
  it('refuses CUSTOM, naming the field', () => {
    const answer = answerMeshValidation(
      review({ action: 'CUSTOM', provider: { name: 'ext-authz' }, rules: [{}] }),
    ).response;
    expect(answer).toMatchObject({ uid: 'u-1', allowed: false, status: { code: 422 } });
    expect(answer.status?.message).toMatch(
      /^AuthorizationPolicy shop\/policy is invalid for Mooring: spec\.action: CUSTOM /,
    );
  });

  it('refuses a path template, naming the field', () => {
    const answer = answerMeshValidation(
      review({ action: 'DENY', rules: [{ to: [{ operation: { paths: ['/a/{*}'] } }] }] }),
    ).response;
    expect(answer.allowed).toBe(false);
    expect(answer.status?.message).toContain('spec.rules[0].to[0].operation.paths[0]:');
  });

  it.each(['v1', 'v1beta1'])('allows a valid policy in %s', (version) => {
    const answer = answerMeshValidation(
      review(
        {
          selector: { matchLabels: { app: 'web' } },
          action: 'ALLOW',
          rules: [
            {
              from: [{ source: { namespaces: ['shop'] } }],
              to: [{ operation: { methods: ['GET'] } }],
            },
          ],
        },
        version,
      ),
    ).response;
    expect(answer).toEqual({ uid: 'u-1', allowed: true });
  });
});
