import { inCidr, parseCidr } from '../../src/ip';

describe('CIDRs', () => {
  it('gives a bare address its full prefix and refuses what is not a CIDR', () => {
    expect(parseCidr('10.0.0.1')).toBe('10.0.0.1/32');
    expect(parseCidr('fd00::1')).toBe('fd00::1/128');
    expect(parseCidr('10.0.0.0/08')).toBe('10.0.0.0/8');
    for (const bad of ['10.0.0.0/33', 'fd00::/129', '10.0.0', 'fe80::1%eth0', '10.0.0.0/8/1']) {
      expect(parseCidr(bad)).toBeUndefined();
    }
  });

  it.each([
    ['10.1.2.3', '10.0.0.0/8', true],
    ['11.1.2.3', '10.0.0.0/8', false],
    ['10.1.2.3', '10.1.2.3/32', true],
    ['10.1.2.4', '10.1.2.3/32', false],
    ['10.1.2.130', '10.1.2.128/25', true],
    ['10.1.2.127', '10.1.2.128/25', false],
    ['8.8.8.8', '0.0.0.0/0', true],
    ['::ffff:10.1.2.3', '10.0.0.0/8', true],
    ['fd00:1::5', 'fd00::/16', true],
    ['fd01::5', 'fd00::/16', false],
    ['fd00::5', '10.0.0.0/8', false],
    ['10.1.2.3', 'fd00::/16', false],
    ['not-an-ip', '0.0.0.0/0', false],
  ])('%s in %s: %s', (address, cidr, expected) => {
    expect(inCidr(address, cidr)).toBe(expected);
  });
});
