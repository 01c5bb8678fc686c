import type { AuthorizationPolicyRules, AuthorizationRule } from '../../../src/api/mesh';
import {
  authorize,
  normalizedPath,
  stringMatches,
  type AuthorizationFacts,
} from '../../../src/agent/proxy/core/authorization';
import type { RequestView } from '../../../src/agent/proxy/core/route';

const CLIENT = 'spiffe://cluster.local/ns/shop/sa/client';

function http(method: string, path: string, headers: Record<string, string> = {}): RequestView {
  return { method, path, header: (name) => headers[name] ?? null };
}

const facts = (over: Partial<AuthorizationFacts> = {}): AuthorizationFacts => ({
  peer: CLIENT,
  sourceIp: '10.1.0.5',
  destinationIp: '10.1.0.9',
  destinationPort: 8080,
  request: http('GET', '/api/items', { host: 'Web.Shop:8080' }),
  ...over,
});

const allow = (name: string, ...rules: AuthorizationRule[]): AuthorizationPolicyRules => ({
  name,
  action: 'ALLOW',
  rules,
});
const deny = (name: string, ...rules: AuthorizationRule[]): AuthorizationPolicyRules => ({
  name,
  action: 'DENY',
  rules,
});

const allowed = (policies: AuthorizationPolicyRules[], f = facts()): boolean =>
  authorize(policies, f).allowed;

describe('string matches (exact, prefix*, *suffix, *)', () => {
  it.each([
    ['abc', 'abc', true],
    ['abc', 'abcd', false],
    ['ab*', 'abcd', true],
    ['ab*', 'xabc', false],
    ['*cd', 'abcd', true],
    ['*cd', 'cdx', false],
    ['*', 'x', true],
    ['*', '', false],
    ['*', null, false],
  ])('%s against %s: %s', (pattern, value, expected) => {
    expect(stringMatches(pattern, value)).toBe(expected);
  });
});

describe('paths as a policy sees them', () => {
  it.each([
    ['/api/items?x=/admin', '/api/items'],
    ['/a/b#frag', '/a/b'],
    ['/public/../admin', '/admin'],
    ['/a/./b/.', '/a/b/'],
    ['/a/b/..', '/a/'],
    ['/..', '/'],
    ['/%61dmin/%2e%2e/x', '/x'],
    ['/a%2Fb', '/a%2Fb'],
    ['/a%2fb', '/a%2Fb'],
  ])('%s is %s', (target, expected) => {
    expect(normalizedPath(target)).toBe(expected);
  });
});

describe('the decision', () => {
  it('allows everything without policies, and nothing with an ALLOW policy of no rules', () => {
    expect(allowed([])).toBe(true);
    expect(authorize([allow('ns/none')], facts())).toEqual({ allowed: false, policy: null });
  });

  it('DENY wins over ALLOW, and names the policy that refused', () => {
    expect(
      authorize([allow('ns/all', {}), deny('ns/admin', { to: [{ paths: ['/api/*'] }] })], facts()),
    ).toEqual({
      allowed: false,
      policy: 'ns/admin',
    });
  });

  it('allows when any ALLOW policy matches, whichever order they come in', () => {
    const other = allow('ns/other', { from: [{ principals: ['cluster.local/ns/x/sa/y'] }] });
    const mine = allow('ns/mine', { from: [{ principals: ['cluster.local/ns/shop/*'] }] });
    expect(allowed([other, mine])).toBe(true);
    expect(allowed([other])).toBe(false);
  });

  it('matches principals and namespaces of a verified peer only; not-fields match plain text', () => {
    const byPrincipal = [allow('p', { from: [{ principals: ['*'] }] })];
    expect(allowed(byPrincipal)).toBe(true);
    expect(allowed(byPrincipal, facts({ peer: null }))).toBe(false);
    const byNamespace = [allow('n', { from: [{ namespaces: ['shop'] }] })];
    expect(allowed(byNamespace)).toBe(true);
    expect(allowed(byNamespace, facts({ peer: 'spiffe://cluster.local/ns/shopx/sa/c' }))).toBe(
      false,
    );
    expect(allowed(byNamespace, facts({ peer: null }))).toBe(false);
    const notShop = [deny('d', { from: [{ notNamespaces: ['shop'] }] })];
    expect(allowed(notShop)).toBe(true);
    expect(allowed(notShop, facts({ peer: null }))).toBe(false);
  });

  it('ANDs the fields of one source and of a rule, ORs the sources and the rules', () => {
    const rule: AuthorizationRule = {
      from: [
        { namespaces: ['shop'], ipBlocks: ['192.168.0.0/16'] },
        { ipBlocks: ['10.1.0.0/16'], notIpBlocks: ['10.1.0.5/32'] },
      ],
    };
    expect(allowed([allow('a', rule)])).toBe(false);
    expect(allowed([allow('a', rule)], facts({ sourceIp: '10.1.0.6' }))).toBe(true);
    expect(allowed([allow('a', rule)], facts({ sourceIp: '::ffff:192.168.3.4' }))).toBe(true);
    expect(allowed([allow('a', rule, { to: [{ ports: [8080] }] })])).toBe(true);
  });

  it('matches operations: ports, methods, normalized paths, hosts without case', () => {
    const op = (o: AuthorizationRule['to']): AuthorizationPolicyRules[] => [allow('o', { to: o })];
    expect(allowed(op([{ ports: [9090] }]))).toBe(false);
    expect(allowed(op([{ notPorts: [9090], methods: ['GET'] }]))).toBe(true);
    expect(allowed(op([{ methods: ['POST'] }]))).toBe(false);
    expect(allowed(op([{ hosts: ['web.shop:*'] }]))).toBe(true);
    expect(allowed(op([{ hosts: ['WEB.SHOP:8080'] }]))).toBe(true);
    expect(allowed(op([{ notHosts: ['web.shop*'] }]))).toBe(false);
    const admin = [allow('all', {}), deny('admin', { to: [{ paths: ['/admin*'] }] })];
    for (const path of ['/admin', '/public/../admin/x', '/%61dmin?q']) {
      expect(allowed(admin, facts({ request: http('GET', path) }))).toBe(false);
    }
    expect(allowed(admin, facts({ request: http('GET', '/admin/../public') }))).toBe(true);
  });

  it('reads when-conditions: headers, addresses, port, principal', () => {
    const when = (...c: NonNullable<AuthorizationRule['when']>): AuthorizationPolicyRules[] => [
      allow('w', { when: c }),
    ];
    const withTeam = facts({ request: http('GET', '/', { 'x-team': 'blue' }) });
    expect(allowed(when({ key: 'request.headers[x-team]', values: ['bl*'] }), withTeam)).toBe(true);
    expect(allowed(when({ key: 'request.headers[x-team]', values: ['bl*'] }))).toBe(false);
    expect(allowed(when({ key: 'request.headers[x-team]', notValues: ['red'] }), withTeam)).toBe(
      true,
    );
    expect(allowed(when({ key: 'source.ip', values: ['10.1.0.0/24'] }))).toBe(true);
    expect(allowed(when({ key: 'destination.ip', values: ['10.1.0.10/32'] }))).toBe(false);
    expect(allowed(when({ key: 'destination.port', values: ['8080'] }))).toBe(true);
    expect(
      allowed(
        when(
          { key: 'source.principal', values: ['cluster.local/ns/shop/sa/client'] },
          { key: 'source.namespace', notValues: ['shop'] },
        ),
      ),
    ).toBe(false);
  });

  describe('an opaque TCP connection, which has no HTTP fields', () => {
    const tcp = facts({ request: null });

    it('an ALLOW rule with an HTTP-only field matches nothing', () => {
      expect(allowed([allow('a', { to: [{ ports: [8080] }] })], tcp)).toBe(true);
      expect(allowed([allow('a', { to: [{ ports: [8080], methods: ['GET'] }] })], tcp)).toBe(false);
      expect(
        allowed([allow('a', { when: [{ key: 'request.headers[x]', values: ['1'] }] })], tcp),
      ).toBe(false);
    });

    it('a DENY rule is taken without its HTTP-only fields: it denies more', () => {
      const d = deny('d', { to: [{ ports: [8080], methods: ['POST'] }] });
      expect(allowed([d], tcp)).toBe(false);
      expect(allowed([d], facts({ request: null, destinationPort: 9000 }))).toBe(true);
      // Over HTTP the method counts.
      expect(allowed([d])).toBe(true);
    });
  });

  describe("the request's JWT (RequestAuthentication)", () => {
    const alice = facts({
      auth: {
        principal: 'https://issuer.example.com/alice',
        audiences: ['orders', 'books'],
        presenter: 'web-app',
        claims: { groups: ['admins', 'dev'], org: { tier: 'gold' }, email: 'a@example.com' },
      },
    });
    const anonymous = facts();

    it('requestPrincipals needs a verified token; notRequestPrincipals ["*"] takes requests without', () => {
      const any = [allow('jwt', { from: [{ requestPrincipals: ['*'] }] })];
      expect(allowed(any, alice)).toBe(true);
      expect(allowed(any, anonymous)).toBe(false);
      const issuer = [
        allow('jwt', { from: [{ requestPrincipals: ['https://issuer.example.com/*'] }] }),
      ];
      expect(allowed(issuer, alice)).toBe(true);
      const noToken = [deny('no-token', { from: [{ notRequestPrincipals: ['*'] }] })];
      expect(allowed(noToken, anonymous)).toBe(false);
      expect(allowed(noToken, alice)).toBe(true);
    });

    it('reads request.auth.principal, audiences, presenter and claims, nested and lists', () => {
      const when = (...c: NonNullable<AuthorizationRule['when']>): AuthorizationPolicyRules[] => [
        allow('w', { when: c }),
      ];
      expect(allowed(when({ key: 'request.auth.principal', values: ['*/alice'] }), alice)).toBe(
        true,
      );
      expect(allowed(when({ key: 'request.auth.audiences', values: ['books'] }), alice)).toBe(true);
      expect(allowed(when({ key: 'request.auth.audiences', values: ['pay'] }), alice)).toBe(false);
      expect(allowed(when({ key: 'request.auth.presenter', values: ['web-app'] }), alice)).toBe(
        true,
      );
      expect(allowed(when({ key: 'request.auth.claims[groups]', values: ['admins'] }), alice)).toBe(
        true,
      );
      expect(
        allowed(when({ key: 'request.auth.claims[org][tier]', values: ['gold'] }), alice),
      ).toBe(true);
      expect(
        allowed(when({ key: 'request.auth.claims[email]', values: ['*@example.com'] }), alice),
      ).toBe(true);
      expect(
        allowed(when({ key: 'request.auth.claims[groups]', values: ['admins'] }), anonymous),
      ).toBe(false);
    });

    it('on a TCP connection: an ALLOW rule with requestPrincipals matches nothing, a DENY rule is taken without it', () => {
      const tcp = facts({ request: null });
      expect(allowed([allow('a', { from: [{ requestPrincipals: ['*'] }] })], tcp)).toBe(false);
      expect(allowed([deny('d', { from: [{ requestPrincipals: ['*'] }] })], tcp)).toBe(false);
    });
  });
});
