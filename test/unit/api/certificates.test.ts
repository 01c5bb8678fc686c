import {
  certificateResponse,
  parseAdminRequest,
  parseCertificateResponse,
  parseErrorResponse,
  parseWorkloadRequest,
  rfc3339,
  workloadRequestText,
} from '../../../src/api/certificates';
import { MooringError } from '../../../src/errors';

const CSR = '-----BEGIN CERTIFICATE REQUEST-----\nMIIB\n-----END CERTIFICATE REQUEST-----\n';

const codeOf = (fn: () => unknown): string => {
  try {
    fn();
  } catch (err) {
    return err instanceof MooringError ? `${err.code}: ${err.message}` : String(err);
  }
  return 'no error';
};

describe('the certificate API, read by one end as the other wrote it', () => {
  it.each([
    ['without a lifetime', { csr: CSR }],
    ['with a lifetime', { csr: CSR, ttlSeconds: 3600 }],
  ])('a workload request the agent writes %s is the request the server reads', (_name, req) => {
    expect(parseWorkloadRequest(JSON.parse(workloadRequestText(req)))).toEqual(req);
  });

  it('an answer the server writes is the answer the agent reads, the expiry in whole seconds', () => {
    const written = certificateResponse({
      certificateChain: ['LEAF', 'INTERMEDIATE'],
      trustBundle: ['ROOT'],
      expiresAt: new Date('2030-01-02T03:04:05.678Z'),
    });
    const read = parseCertificateResponse(JSON.stringify(written));
    expect(read).toEqual({
      ok: true,
      value: {
        certificateChain: ['LEAF', 'INTERMEDIATE'],
        trustBundle: ['ROOT'],
        expiresAt: '2030-01-02T03:04:05Z',
      },
    });
    expect(rfc3339(new Date('2030-01-02T03:04:05.000Z'))).toBe('2030-01-02T03:04:05Z');
  });
});

describe('requests the server refuses (CA_ERR_BODY, naming the field)', () => {
  it.each([
    ['an array', [], 'the body must be a JSON object'],
    ['no csr', { ttlSeconds: 5 }, '"csr" must be a PEM PKCS#10 string'],
    ['a blank csr', { csr: '  ' }, '"csr" must be a PEM PKCS#10 string'],
    [
      'a fractional lifetime',
      { csr: CSR, ttlSeconds: 1.5 },
      '"ttlSeconds" must be a positive integer',
    ],
    ['a zero lifetime', { csr: CSR, ttlSeconds: 0 }, '"ttlSeconds" must be a positive integer'],
    ['an identity of its own', { csr: CSR, spiffeId: 'spiffe://x/y' }, 'unknown field "spiffeId"'],
  ])('a workload request with %s', (_name, body, message) => {
    expect(codeOf(() => parseWorkloadRequest(body))).toBe(`CA_ERR_BODY: ${message}`);
  });

  it.each([
    ['no spiffeId', { csr: CSR }, '"spiffeId" must be a string'],
    ['an empty spiffeId', { csr: CSR, spiffeId: '' }, '"spiffeId" must not be empty'],
  ])('an admin request with %s', (_name, body, message) => {
    expect(codeOf(() => parseAdminRequest(body))).toBe(`CA_ERR_BODY: ${message}`);
  });
});

describe('answers the agent refuses', () => {
  it.each([
    ['not JSON', '<html>', 'the CA answered with invalid JSON'],
    ['null', 'null', 'the CA answer lacks certificateChain, trustBundle or expiresAt'],
    [
      'an empty chain',
      JSON.stringify({ certificateChain: [], trustBundle: [], expiresAt: 'x' }),
      'the CA answer lacks certificateChain, trustBundle or expiresAt',
    ],
    [
      'no expiry',
      JSON.stringify({ certificateChain: ['LEAF'], trustBundle: ['ROOT'] }),
      'the CA answer lacks certificateChain, trustBundle or expiresAt',
    ],
  ])('%s', (_name, text, problem) => {
    expect(parseCertificateResponse(text)).toEqual({ ok: false, problem });
  });

  it('reads the code and message of an error answer, and nothing from one that is not JSON', () => {
    expect(parseErrorResponse('{"code":"CA_ERR_TTL","message":"too long"}')).toEqual({
      code: 'CA_ERR_TTL',
      message: 'too long',
    });
    expect(parseErrorResponse('{"code":7}')).toEqual({});
    expect(parseErrorResponse('Bad Gateway')).toEqual({});
  });
});
