import { generateKeyPairSync } from 'node:crypto';
import {
  ChainError,
  splitPemCertificates,
  verifyChain,
} from '../../../../src/agent/identity/chain';
import {
  makeCa,
  makeIntermediate,
  makeLeaf,
  withUri,
  withValidity,
} from '../../../fixtures/agent-pki';

const HOUR = 3_600_000;
const now = new Date();
const ago = (ms: number): Date => new Date(now.getTime() - ms);
const later = (ms: number): Date => new Date(now.getTime() + ms);
const key = generateKeyPairSync('ec', { namedCurve: 'P-256' });
const root = makeCa('Root');
const otherRoot = makeCa('Other Root');
const inter = makeIntermediate(root, 'Intermediate');

const refusal = (fn: () => unknown): string => {
  try {
    fn();
  } catch (err) {
    expect(err).toBeInstanceOf(ChainError);
    return (err as Error).message;
  }
  throw new Error('expected a ChainError');
};

describe('verifyChain', () => {
  it('accepts a leaf signed by a root of the file, and reports its validity and SPIFFE ID', () => {
    const leaf = makeLeaf(
      root,
      key.publicKey,
      withUri('spiffe://cluster.local/ns/a/sa/b'),
      withValidity(ago(HOUR), later(HOUR)),
    );
    const v = verifyChain([leaf], [root.pem], key.publicKey, now);
    expect(v.spiffeId).toBe('spiffe://cluster.local/ns/a/sa/b');
    expect(Math.abs(v.notAfter.getTime() - later(HOUR).getTime())).toBeLessThan(1000);
    expect(v.serialNumber).toMatch(/^[0-9A-F]+$/);
  });

  it('accepts a chain through an intermediate', () => {
    expect(() =>
      verifyChain([makeLeaf(inter, key.publicKey), inter.pem], [root.pem], key.publicKey, now),
    ).not.toThrow();
  });

  it('accepts a chain that ends with the root itself', () => {
    expect(() =>
      verifyChain([makeLeaf(root, key.publicKey), root.pem], [root.pem], key.publicKey, now),
    ).not.toThrow();
  });

  it('accepts either root of a bundle during a rotation', () => {
    const leaf = makeLeaf(otherRoot, key.publicKey);
    expect(() => verifyChain([leaf], [root.pem, otherRoot.pem], key.publicKey, now)).not.toThrow();
  });

  it.each([
    [
      'a leaf signed by an untrusted root',
      () => [makeLeaf(otherRoot, key.publicKey)],
      /does not lead to a root/,
    ],
    [
      'an intermediate missing from the chain',
      () => [makeLeaf(inter, key.publicKey)],
      /does not lead to a root/,
    ],
    [
      'a leaf for another key',
      () => [makeLeaf(root, generateKeyPairSync('ed25519').publicKey)],
      /not the agent's key/,
    ],
    [
      'an expired leaf',
      () => [makeLeaf(root, key.publicKey, withValidity(ago(2 * HOUR), ago(HOUR)))],
      /expired/,
    ],
    [
      'a leaf not yet valid',
      () => [makeLeaf(root, key.publicKey, withValidity(later(HOUR), later(2 * HOUR)))],
      /not valid before/,
    ],
    [
      'an expired intermediate',
      () => {
        const old = makeIntermediate(root, 'Old', withValidity(ago(3 * HOUR), ago(HOUR)));
        return [makeLeaf(old, key.publicKey), old.pem];
      },
      /chain certificate 1 expired/,
    ],
    [
      'a leaf that is a CA',
      () => [makeIntermediate(root, 'Leafy').pem],
      /not the agent's key|CA certificate/,
    ],
    [
      'an intermediate out of order',
      () => {
        const other = makeIntermediate(otherRoot, 'Other Intermediate');
        return [makeLeaf(inter, key.publicKey), other.pem];
      },
      /not signed by certificate 1/,
    ],
    ['an empty chain', () => [], /empty/],
    [
      'garbage',
      () => ['-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n'],
      /does not parse/,
    ],
  ])('refuses %s', (_name, chain, message) => {
    expect(refusal(() => verifyChain(chain(), [root.pem], key.publicKey, now))).toMatch(message);
  });

  it('refuses everything when the root file is empty', () => {
    expect(
      refusal(() => verifyChain([makeLeaf(root, key.publicKey)], [], key.publicKey, now)),
    ).toMatch(/root file/);
  });

  it('refuses a leaf whose CA flag is set even when its key is ours', () => {
    const fake = makeIntermediate(root, 'CA leaf');
    expect(refusal(() => verifyChain([fake.pem], [root.pem], fake.publicKey, now))).toMatch(
      /is a CA certificate/,
    );
  });
});

describe('splitPemCertificates', () => {
  it('finds every certificate block and ignores everything else', () => {
    const text = `# comment\n${root.pem}junk\n${otherRoot.pem.trim()}`;
    expect(splitPemCertificates(text)).toEqual([root.pem, otherRoot.pem]);
  });
});
