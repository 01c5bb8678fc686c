import {
  decideApproval,
  decideSigning,
  failedReasonOfError,
  FAILED_REASON,
  type CertificateSigningRequest,
  type CsrPolicy,
} from '../../../src/adapters/kube/csr-policy';
import type { RequestedNames } from '../../../src/ca/csr';

// --- fixture builders with modifiers -------------------------------------------------------------

type Csr = CertificateSigningRequest;
type Modifier = (csr: Csr) => Csr;

const PEM = '-----BEGIN CERTIFICATE REQUEST-----\nMIIB\n-----END CERTIFICATE REQUEST-----\n';

function csr(...modifiers: Modifier[]): Csr {
  const base: Csr = {
    apiVersion: 'certificates.k8s.io/v1',
    kind: 'CertificateSigningRequest',
    metadata: { name: 'web-1', resourceVersion: '7' },
    spec: {
      request: Buffer.from(PEM).toString('base64'),
      signerName: 'mooring.dev/workload',
      username: 'system:serviceaccount:shop:cart',
      groups: ['system:serviceaccounts', 'system:serviceaccounts:shop', 'system:authenticated'],
      usages: ['digital signature', 'key encipherment', 'client auth', 'server auth'],
    },
  };
  return modifiers.reduce((c, m) => m(c), base);
}
const withSpec =
  (spec: Partial<NonNullable<Csr['spec']>>): Modifier =>
  (c) => ({ ...c, spec: { ...c.spec, ...spec } });
const withCondition =
  (type: string, status = 'True'): Modifier =>
  (c) => ({
    ...c,
    status: { ...c.status, conditions: [...(c.status?.conditions ?? []), { type, status }] },
  });
const approved = withCondition('Approved');
const withCertificate: Modifier = (c) => ({ ...c, status: { ...c.status, certificate: 'LS0t' } });

const policy: CsrPolicy = {
  trustDomain: 'cluster.local',
  defaultTtlSeconds: 86400,
  maxTtlSeconds: 604800,
};
const CART = 'spiffe://cluster.local/ns/shop/sa/cart';

function names(n: Partial<RequestedNames> = {}): RequestedNames {
  return { uris: [], dnsNames: [], ipAddresses: [], emails: [], otherCount: 0, ...n };
}

// --- signing -------------------------------------------------------------------------------------

describe('the CSR signer', () => {
  it('signs an approved CSR of a service account for its SPIFFE ID, default lifetime', () => {
    expect(decideSigning(csr(approved), policy)).toEqual({
      action: 'sign',
      csrPem: PEM,
      spiffeId: CART,
      ttlSeconds: 86400,
    });
  });

  it('signs for expirationSeconds when it is within the maximum', () => {
    expect(
      decideSigning(csr(approved, withSpec({ expirationSeconds: 3600 })), policy),
    ).toMatchObject({
      action: 'sign',
      ttlSeconds: 3600,
    });
  });

  it.each<[string, Csr, string]>([
    [
      'a CSR of another signer',
      csr(approved, withSpec({ signerName: 'kubernetes.io/kube-apiserver-client' })),
      'another signer',
    ],
    ['a CSR not approved yet', csr(), 'not approved'],
    ['a denied CSR', csr(withCondition('Denied')), 'denied'],
    ['a CSR with a certificate already', csr(approved, withCertificate), 'already issued'],
    ['a CSR already failed', csr(approved, withCondition('Failed')), 'already failed'],
    [
      'a CSR whose Approved condition is False',
      csr(withCondition('Approved', 'False')),
      'not approved',
    ],
  ])('ignores %s', (_name, request, why) => {
    expect(decideSigning(request, policy)).toEqual({ action: 'ignore', why });
  });

  it.each<[string, Csr, string, string]>([
    [
      'a requester that is a user, not a service account',
      csr(approved, withSpec({ username: 'alice' })),
      FAILED_REASON.requester,
      'alice',
    ],
    [
      'a requester that is a node',
      csr(approved, withSpec({ username: 'system:node:worker-1' })),
      FAILED_REASON.requester,
      'not a service account',
    ],
    [
      'a usage outside policy',
      csr(approved, withSpec({ usages: ['digital signature', 'code signing'] })),
      FAILED_REASON.usages,
      '"code signing"',
    ],
    [
      'a CA-like usage',
      csr(approved, withSpec({ usages: ['cert sign'] })),
      FAILED_REASON.usages,
      'cert sign',
    ],
    [
      'an expiration above the maximum',
      csr(approved, withSpec({ expirationSeconds: 604801 })),
      FAILED_REASON.expiration,
      '604801',
    ],
    [
      'a request that is not a PEM CSR',
      csr(approved, withSpec({ request: Buffer.from('hello').toString('base64') })),
      FAILED_REASON.request,
      'PKCS#10',
    ],
  ])('marks Failed %s', (_name, request, reason, inMessage) => {
    const decision = decideSigning(request, policy);
    expect(decision).toMatchObject({ action: 'fail', reason });
    expect(decision.action === 'fail' && decision.message).toContain(inMessage);
  });

  it.each([
    ['CA_ERR_CSR', FAILED_REASON.request],
    ['CA_ERR_CSR_SIGNATURE', FAILED_REASON.request],
    ['CA_ERR_KEY_TYPE', FAILED_REASON.keyType],
    ['CA_ERR_SAN', FAILED_REASON.names],
    ['CA_ERR_TTL', FAILED_REASON.expiration],
    ['CA_ERR_SPIFFE_ID', FAILED_REASON.identity],
    ['CA_ERR_NOT_READY', null],
    ['CA_ERR_INTERNAL', null],
  ] as const)('maps a CA refusal %s to Failed reason %s (null: retry)', (code, reason) => {
    expect(failedReasonOfError(code)).toBe(reason);
  });
});

// --- auto-approval -------------------------------------------------------------------------------

describe('the CSR auto-approver', () => {
  it('approves a service account asking for exactly its own SPIFFE ID', () => {
    expect(decideApproval(csr(), names({ uris: [CART] }), policy)).toEqual({
      approve: true,
      spiffeId: CART,
    });
  });

  it.each<[string, Csr, RequestedNames | null, string]>([
    [
      'another service account identity',
      csr(),
      names({ uris: ['spiffe://cluster.local/ns/shop/sa/admin'] }),
      'exactly',
    ],
    [
      'another trust domain',
      csr(),
      names({ uris: ['spiffe://evil.example/ns/shop/sa/cart'] }),
      'exactly',
    ],
    [
      'its identity plus a DNS name',
      csr(),
      names({ uris: [CART], dnsNames: ['cart.shop.svc'] }),
      'exactly',
    ],
    ['its identity twice', csr(), names({ uris: [CART, CART] }), 'exactly'],
    ['no name at all', csr(), names(), 'exactly'],
    ['a CSR that does not parse', csr(), null, 'does not parse'],
    [
      'a user requester',
      csr(withSpec({ username: 'alice' })),
      names({ uris: [CART] }),
      'not a service account',
    ],
    [
      'usages outside policy',
      csr(withSpec({ usages: ['code signing'] })),
      names({ uris: [CART] }),
      'usages',
    ],
    [
      'a too long expiration',
      csr(withSpec({ expirationSeconds: 10_000_000 })),
      names({ uris: [CART] }),
      'expirationSeconds',
    ],
    [
      'another signer',
      csr(withSpec({ signerName: 'example.com/other' })),
      names({ uris: [CART] }),
      'another signer',
    ],
    ['a CSR approved already', csr(approved), names({ uris: [CART] }), 'already approved'],
    ['a denied CSR', csr(withCondition('Denied')), names({ uris: [CART] }), 'denied'],
  ])('does not approve %s', (_name, request, requested, why) => {
    const decision = decideApproval(request, requested, policy);
    expect(decision.approve).toBe(false);
    expect(!decision.approve && decision.why).toContain(why);
  });
});
