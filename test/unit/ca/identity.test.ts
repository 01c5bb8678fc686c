import { parseSpiffeId, spiffeIdOf, workloadOf, workloadSpiffeId } from '../../../src/ca/identity';
import { MooringError } from '../../../src/errors';

describe('SPIFFE ID parsing', () => {
  it.each([
    [
      'a workload ID',
      'spiffe://cluster.local/ns/default/sa/web',
      'cluster.local',
      ['ns', 'default', 'sa', 'web'],
    ],
    ['a trust domain ID', 'spiffe://example.org', 'example.org', []],
    ['underscores and dots in segments', 'spiffe://td/a_b/c.d-e', 'td', ['a_b', 'c.d-e']],
    ['upper case in the path', 'spiffe://td/Web', 'td', ['Web']],
  ])('accepts %s', (_name, id, trustDomain, segments) => {
    const parsed = parseSpiffeId(id);
    expect(parsed.trustDomain).toBe(trustDomain);
    expect(parsed.segments).toEqual(segments);
  });

  it.each([
    ['another scheme', 'https://cluster.local/ns/a/sa/b', 'scheme'],
    ['an upper-case scheme', 'SPIFFE://cluster.local/ns/a/sa/b', 'scheme'],
    ['an upper-case trust domain', 'spiffe://Cluster.local/ns/a', 'lowercase'],
    ['a port', 'spiffe://cluster.local:8443/ns/a', 'no port'],
    ['userinfo', 'spiffe://user@cluster.local/ns/a', 'no userinfo'],
    ['an empty trust domain', 'spiffe:///ns/a', 'empty'],
    ['a query', 'spiffe://td/ns/a?x=1', 'no query'],
    ['a fragment', 'spiffe://td/ns/a#x', 'no fragment'],
    ['percent-encoding', 'spiffe://td/ns/a%20b', 'percent'],
    ['an empty segment', 'spiffe://td/ns//a', 'empty'],
    ['a dot segment', 'spiffe://td/ns/./a', '"." or ".."'],
    ['a dot-dot segment', 'spiffe://td/ns/../a', '"." or ".."'],
    ['a trailing slash', 'spiffe://td/ns/a/', 'empty'],
    ['a bare slash', 'spiffe://td/', 'trailing slash'],
    ['a space', 'spiffe://td/ns/a b', 'may only hold'],
    ['more than 2048 bytes', `spiffe://td/${'a'.repeat(2048)}`, '2048'],
  ])('refuses %s with CA_ERR_SPIFFE_ID', (_name, id, reason) => {
    let caught: unknown;
    try {
      parseSpiffeId(id);
    } catch (err) {
      caught = err;
    }
    expect(caught).toBeInstanceOf(MooringError);
    expect((caught as MooringError).code).toBe('CA_ERR_SPIFFE_ID');
    expect((caught as MooringError).message).toContain(reason);
  });
});

describe('workload SPIFFE IDs', () => {
  it.each([
    ['an ID in the trust domain', 'spiffe://cluster.local/ns/a/sa/b', null],
    ['a VM path in the trust domain', 'spiffe://cluster.local/vm/db-1', null],
    [
      'an ID of another trust domain',
      'spiffe://evil.example/ns/a/sa/b',
      'outside the trust domain',
    ],
    [
      'a trust domain suffix trick',
      'spiffe://cluster.local.evil/ns/a/sa/b',
      'outside the trust domain',
    ],
    ['the trust domain itself', 'spiffe://cluster.local', 'names the trust domain'],
  ])('%s', (_name, id, problem) => {
    if (problem === null) {
      expect(workloadSpiffeId(id, 'cluster.local').trustDomain).toBe('cluster.local');
    } else {
      expect(() => workloadSpiffeId(id, 'cluster.local')).toThrow(problem);
    }
  });

  it('formats and reads back namespace and service account', () => {
    const id = spiffeIdOf('cluster.local', { namespace: 'shop', serviceAccount: 'cart' });
    expect(id).toBe('spiffe://cluster.local/ns/shop/sa/cart');
    expect(workloadOf(parseSpiffeId(id))).toEqual({ namespace: 'shop', serviceAccount: 'cart' });
    expect(workloadOf(parseSpiffeId('spiffe://cluster.local/vm/db'))).toBeNull();
  });

  it('refuses to format an identity that would not be a valid ID', () => {
    expect(() => spiffeIdOf('cluster.local', { namespace: 'a/b', serviceAccount: 'c' })).toThrow(
      MooringError,
    );
  });
});
