import { X509Certificate } from 'node:crypto';
import { readCsr, type RequestedNames } from '../../../src/ca/csr';
import { toPem } from '../../../src/ca/der';
import { buildRoot, compileIssuer, signLeaf } from '../../../src/ca/issuer';
import {
  checkRequestedNames,
  checkServingNames,
  ipToBytes,
  leafKeyUsage,
  resolveTtl,
  serialNumber,
  servingTemplate,
  validityWindow,
  workloadTemplate,
  type IssuerWindow,
  type LifetimePolicy,
} from '../../../src/ca/profile';
import type { KeyAlgorithm } from '../../../src/ca/ports';
import { MooringError } from '../../../src/errors';
import {
  countingRandom,
  csrPem,
  DAY,
  T0,
  testKey,
  withDns,
  withKeyType,
  withUri,
} from './fixtures';

const ID = 'spiffe://cluster.local/ns/shop/sa/cart';
const names = (n: Partial<RequestedNames>): RequestedNames => ({
  uris: [],
  dnsNames: [],
  ipAddresses: [],
  emails: [],
  otherCount: 0,
  ...n,
});
const policy: LifetimePolicy = {
  defaultTtlSeconds: DAY,
  maxTtlSeconds: 7 * DAY,
  backdateSeconds: 60,
};
const at = (offsetSeconds: number): Date => new Date(T0.getTime() + offsetSeconds * 1000);
const wideIssuer: IssuerWindow = { notBefore: at(-365 * DAY), notAfter: at(3650 * DAY) };

function codeOf(fn: () => unknown): string {
  try {
    fn();
    return 'ok';
  } catch (err) {
    return err instanceof MooringError ? err.code : String(err);
  }
}

describe('profile step: the names a CSR asks for', () => {
  it.each<[string, Partial<RequestedNames>, string]>([
    ['no names at all are fine', {}, 'ok'],
    ["exactly the caller's own SPIFFE ID is fine", { uris: [ID] }, 'ok'],
    [
      'another SPIFFE ID is refused',
      { uris: ['spiffe://cluster.local/ns/shop/sa/admin'] },
      'CA_ERR_SAN',
    ],
    ['the own ID plus another URI is refused', { uris: [ID, 'https://x'] }, 'CA_ERR_SAN'],
    ['the own ID twice is refused', { uris: [ID, ID] }, 'CA_ERR_SAN'],
    ['a DNS name is refused', { dnsNames: ['cart.shop.svc'] }, 'CA_ERR_SAN'],
    ['an IP address is refused', { ipAddresses: ['10.0.0.1'] }, 'CA_ERR_SAN'],
    ['an email is refused', { emails: ['a@b.c'] }, 'CA_ERR_SAN'],
    ['an otherName is refused', { otherCount: 1 }, 'CA_ERR_SAN'],
  ])('%s', (_name, requested, expected) => {
    expect(codeOf(() => checkRequestedNames(names(requested), ID))).toBe(expected);
  });

  it('names what it refuses in the message', () => {
    expect(() => checkRequestedNames(names({ dnsNames: ['evil.example'] }), ID)).toThrow(
      'DNS:evil.example',
    );
  });
});

describe('profile step: the lifetime', () => {
  it.each<[string, number | undefined, number | string]>([
    ['no request gets the default of 24h', undefined, DAY],
    ['one hour is granted as asked', 3600, 3600],
    ['exactly the maximum of 7 days is granted', 7 * DAY, 7 * DAY],
    ['one second above the maximum is refused', 7 * DAY + 1, 'CA_ERR_TTL'],
    ['zero is refused', 0, 'CA_ERR_TTL'],
    ['a negative lifetime is refused', -5, 'CA_ERR_TTL'],
    ['a fractional lifetime is refused', 1.5, 'CA_ERR_TTL'],
  ])('%s', (_name, requested, expected) => {
    const result =
      typeof expected === 'number'
        ? resolveTtl(requested, policy)
        : codeOf(() => resolveTtl(requested, policy));
    expect(result).toBe(expected);
  });
});

describe('profile step: the validity window', () => {
  it.each<[string, Date, number, IssuerWindow, Date, Date]>([
    ['starts 60 s before now and lasts the TTL', T0, DAY, wideIssuer, at(-60), at(DAY)],
    [
      'drops the milliseconds of now',
      new Date(T0.getTime() + 999),
      3600,
      wideIssuer,
      at(-60),
      at(3600),
    ],
    [
      'never ends after the issuer',
      T0,
      7 * DAY,
      { notBefore: at(-DAY), notAfter: at(2 * DAY) },
      at(-60),
      at(2 * DAY),
    ],
    [
      'never starts before the issuer',
      T0,
      DAY,
      { notBefore: at(-10), notAfter: at(3650 * DAY) },
      at(-10),
      at(DAY),
    ],
  ])('%s', (_name, now, ttl, issuer, notBefore, notAfter) => {
    expect(validityWindow(now, ttl, 60, issuer)).toEqual({ notBefore, notAfter });
  });

  it('refuses to issue from an expired issuer', () => {
    expect(codeOf(() => validityWindow(T0, DAY, 60, { notBefore: at(-DAY), notAfter: T0 }))).toBe(
      'CA_ERR_NOT_READY',
    );
  });
});

describe('profile step: key usage', () => {
  it.each<[string, KeyAlgorithm, string[]]>([
    ['ECDSA keys get digitalSignature only', 'ecdsa-p256', ['digitalSignature']],
    ['Ed25519 keys get digitalSignature only', 'ed25519', ['digitalSignature']],
    ['RSA keys also get keyEncipherment', 'rsa-3072', ['digitalSignature', 'keyEncipherment']],
  ])('%s', (_name, type, usages) => {
    expect(leafKeyUsage(type)).toEqual(usages);
  });
});

describe('profile step: the serial number', () => {
  it.each([
    ['all-ones random bytes', 0xff],
    ['all-zero random bytes', 0x00],
  ])('is 16 bytes, positive and never needs a leading zero, from %s', (_name, fill) => {
    const serial = serialNumber({ bytes: (n) => Buffer.alloc(n, fill) });
    expect(serial.length).toBe(16);
    expect((serial[0] as number) & 0x80).toBe(0);
    expect((serial[0] as number) & 0x40).toBe(0x40);
  });

  it('differs between calls (the random source decides)', () => {
    const random = countingRandom();
    expect(serialNumber(random).equals(serialNumber(random))).toBe(false);
  });

  it('refuses a short read from the random source', () => {
    expect(() => serialNumber({ bytes: () => Buffer.alloc(8) })).toThrow('short read');
  });
});

describe('profile step: serving names', () => {
  it.each<[string, string[], string[], string]>([
    ['localhost and 127.0.0.1 are fine', ['localhost'], ['127.0.0.1'], 'ok'],
    ['a service DNS name is fine', ['mooring.mooring-system.svc'], [], 'ok'],
    ['an IPv6 address is fine', [], ['::1'], 'ok'],
    ['no name at all is refused', [], [], 'CA_ERR_SAN'],
    ['a wildcard is refused', ['*.example.com'], [], 'CA_ERR_SAN'],
    ['an underscore is refused', ['a_b.example'], [], 'CA_ERR_SAN'],
    ['a non-address is refused', [], ['300.1.1.1'], 'CA_ERR_SAN'],
  ])('%s', (_name, dns, ips, expected) => {
    expect(codeOf(() => checkServingNames(dns, ips))).toBe(expected);
  });

  it.each([
    ['127.0.0.1', '7f000001'],
    ['::1', '00000000000000000000000000000001'],
    ['2001:db8::8:800:200c:417a', '20010db8000000000008080020 0c417a'.replace(' ', '')],
    ['::ffff:10.1.2.3', '00000000000000000000ffff0a010203'],
    ['fe80::', 'fe800000000000000000000000000000'],
  ])('converts %s to bytes', (text, hex) => {
    expect(ipToBytes(text)?.toString('hex')).toBe(hex);
  });
});

describe('the workload profile (validate, then override)', () => {
  const root = testKey('ecdsa-p256', 9);
  const rootPem = buildRoot({
    key: root,
    commonName: 'Test Root',
    organization: 'cluster.local',
    now: at(-DAY),
    lifetimeSeconds: 3650 * DAY,
    backdateSeconds: 0,
    serial: Buffer.from('01', 'hex'),
  });
  const issuer = compileIssuer({
    certPem: rootPem,
    privateKey: root.privateKey,
    chainPems: [],
    windowCertificates: [],
  });

  async function issue(pem: string, ttl?: number): Promise<X509Certificate> {
    const template = workloadTemplate({
      csr: await readCsr(pem),
      spiffeId: ID,
      ttlSeconds: ttl,
      now: T0,
      serial: serialNumber(countingRandom()),
      issuer: issuer.window,
      policy,
    });
    return new X509Certificate(toPem('CERTIFICATE', signLeaf(template, issuer)));
  }

  it("puts the caller's SPIFFE ID in as the only SAN, whatever the CSR's subject", async () => {
    const cert = await issue(csrPem(withUri(ID)));
    expect(cert.subjectAltName).toBe(`URI:${ID}`);
    expect(cert.subject ?? '').toBe('');
    expect(cert.ca).toBe(false);
    expect(Date.parse(cert.validFrom)).toBe(at(-60).getTime());
    expect(Date.parse(cert.validTo)).toBe(at(DAY).getTime());
    expect(cert.checkIssued(issuer.certificate)).toBe(true);
    expect(cert.verify(issuer.certificate.publicKey)).toBe(true);
  });

  it('refuses a CSR that asks for a DNS name', async () => {
    await expect(issue(csrPem(withDns('x.example')))).rejects.toMatchObject({ code: 'CA_ERR_SAN' });
  });

  it('refuses a lifetime above the maximum', async () => {
    await expect(issue(csrPem(), 8 * DAY)).rejects.toMatchObject({ code: 'CA_ERR_TTL' });
  });

  it('gives RSA keys keyEncipherment and others not', async () => {
    const rsa = await readCsr(csrPem(withKeyType('rsa-2048')));
    const template = workloadTemplate({
      csr: rsa,
      spiffeId: ID,
      ttlSeconds: undefined,
      now: T0,
      serial: serialNumber(countingRandom()),
      issuer: issuer.window,
      policy,
    });
    const keyUsageExt = template.extensions.find((e) =>
      e.includes(Buffer.from('0603551d0f', 'hex')),
    );
    expect(keyUsageExt?.toString('hex')).toContain('030205a0');
  });

  it('makes a serving certificate with the given names and serverAuth only', async () => {
    const template = servingTemplate({
      csr: await readCsr(csrPem(withUri('spiffe://ignored/x'))),
      dnsNames: ['localhost'],
      ipAddresses: ['127.0.0.1'],
      ttlSeconds: 30 * DAY,
      now: T0,
      serial: serialNumber(countingRandom()),
      issuer: issuer.window,
      policy: { ...policy, maxTtlSeconds: 30 * DAY },
    });
    const cert = new X509Certificate(toPem('CERTIFICATE', signLeaf(template, issuer)));
    expect(cert.subjectAltName).toBe('DNS:localhost, IP Address:127.0.0.1');
    expect(cert.keyUsage).toEqual(['1.3.6.1.5.5.7.3.1']);
  });
});
