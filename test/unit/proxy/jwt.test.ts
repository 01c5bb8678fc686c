// The proxy's side of RequestAuthentication: tokens found where the providers look, verified by
// signature (ES256, RS256, PS256, EdDSA), issuer, time and audience, refused with Envoy's
// messages; what a verified token gives (principal, claims, headers for the app); the cache.
import type { JwtProvider } from '../../../src/api/mesh';
import { authenticate, compileJwt, type CompiledJwt } from '../../../src/agent/proxy/core/jwt';
import type { RequestView } from '../../../src/agent/proxy/core/route';
import { nowS, testIssuer, type JwtAlg } from '../../fixtures/jwt';

const ISS = 'https://issuer.example.com';

const view = (headers: Record<string, string> = {}, path = '/'): RequestView => ({
  method: 'GET',
  path,
  header: (name) => headers[name] ?? null,
});

const provider = (jwks: string | null, more: Partial<JwtProvider> = {}): JwtProvider => ({
  source: 'default/jwt',
  issuer: ISS,
  jwks,
  ...more,
});

const compiled = (...providers: JwtProvider[]): CompiledJwt => compileJwt(providers) as CompiledJwt;

const bearer = (token: string): Record<string, string> => ({ authorization: `Bearer ${token}` });

describe('verifying a token', () => {
  it.each<JwtAlg>(['ES256', 'RS256', 'PS256', 'EdDSA'])(
    '%s: a good token gives the request principal, audiences, presenter and claims',
    (alg) => {
      const issuer = testIssuer(alg);
      const c = compiled(provider(issuer.jwks));
      const token = issuer.token({
        iss: ISS,
        sub: 'alice',
        aud: ['orders', 'books'],
        azp: 'web-app',
        exp: nowS() + 60,
        groups: ['admins'],
      });
      const outcome = authenticate(c, view(bearer(token)), Date.now());
      expect(outcome).toEqual({
        kind: 'verified',
        auth: {
          principal: `${ISS}/alice`,
          audiences: ['orders', 'books'],
          presenter: 'web-app',
          claims: expect.objectContaining({ groups: ['admins'] }) as unknown,
        },
        remove: 'authorization',
        add: [],
      });
    },
  );

  it('lets a request without a token through, and refuses each bad token with its reason', () => {
    const issuer = testIssuer('ES256');
    const other = testIssuer('ES256', issuer.kid);
    const c = compiled(provider(issuer.jwks, { audiences: ['orders'] }));
    const at = (token: string): unknown => authenticate(c, view(bearer(token)), Date.now());
    const good = { iss: ISS, sub: 'alice', aud: 'orders', exp: nowS() + 60 };
    expect(authenticate(c, view(), Date.now())).toEqual({ kind: 'none' });
    // Another scheme in Authorization is no token (Basic auth goes on).
    expect(authenticate(c, view({ authorization: 'Basic YTpi' }), Date.now())).toEqual({
      kind: 'none',
    });
    const failed = (message: string) => ({ kind: 'failed', message });
    expect(at('not-a-jwt')).toEqual(
      failed('Jwt is not in the form of Header.Payload.Signature with two dots and 3 sections'),
    );
    expect(at(issuer.token({ ...good, iss: 'https://elsewhere' }))).toEqual(
      failed('Jwt issuer is not configured'),
    );
    expect(at(other.token(good))).toEqual(failed('Jwt verification fails'));
    expect(at(issuer.token(good, { kid: 'unknown-kid' }))).toEqual(
      failed("Jwks doesn't have key to match kid or alg from Jwt"),
    );
    expect(at(issuer.token(good, { alg: 'none' }))).toEqual(failed('Jwt verification fails'));
    // 60 s of leeway, as Envoy.
    expect(at(issuer.token({ ...good, exp: nowS() - 30 }))).toMatchObject({ kind: 'verified' });
    expect(at(issuer.token({ ...good, exp: nowS() - 120 }))).toEqual(failed('Jwt is expired'));
    expect(at(issuer.token({ ...good, nbf: nowS() + 600 }))).toEqual(failed('Jwt not yet valid'));
    expect(at(issuer.token({ ...good, aud: 'payments' }))).toEqual(
      failed('Audiences in Jwt are not allowed'),
    );
    // A tampered payload with the original signature.
    const [h, , s] = issuer.token(good).split('.');
    const forged = Buffer.from(JSON.stringify({ ...good, sub: 'admin' })).toString('base64url');
    expect(at(`${h}.${forged}.${s}`)).toEqual(failed('Jwt verification fails'));
  });

  it('refuses every token of an issuer whose keys the server could not fetch', () => {
    const issuer = testIssuer();
    const c = compiled(provider(null));
    const token = issuer.token({ iss: ISS, sub: 'a', exp: nowS() + 60 });
    expect(authenticate(c, view(bearer(token)), Date.now())).toEqual({
      kind: 'failed',
      message: 'Jwks remote fetch is failed',
    });
  });
});

describe('where tokens are, and what the app gets', () => {
  it('reads the default locations: Authorization: Bearer, then access_token', () => {
    const issuer = testIssuer();
    const c = compiled(provider(issuer.jwks));
    const token = issuer.token({ iss: ISS, sub: 'bob', exp: nowS() + 60 });
    expect(authenticate(c, view({}, `/x?a=1&access_token=${token}`), Date.now())).toMatchObject({
      kind: 'verified',
      auth: { principal: `${ISS}/bob` },
      remove: null,
    });
  });

  it('reads custom headers with their prefix, parameters and cookies; keeps the header when asked; writes payload and claims', () => {
    const issuer = testIssuer('RS256');
    const c = compiled(
      provider(issuer.jwks, {
        locations: {
          headers: [{ name: 'x-jwt', prefix: 'Token ' }],
          params: ['jwt'],
          cookies: ['session'],
        },
        forwardOriginalToken: true,
        outputPayloadToHeader: 'x-jwt-payload',
        outputClaimToHeaders: [
          { header: 'x-user', claim: 'sub' },
          { header: 'x-tenant', claim: 'org.tenant' },
          { header: 'x-missing', claim: 'nope' },
        ],
      }),
    );
    const token = issuer.token({ iss: ISS, sub: 'carol', org: { tenant: 't1' } });
    const payload = token.split('.')[1];
    const verified = {
      kind: 'verified',
      auth: { principal: `${ISS}/carol` },
      add: ['x-jwt-payload', payload, 'x-user', 'carol', 'x-tenant', 't1'],
    };
    expect(authenticate(c, view({ 'x-jwt': `Token ${token}` }), Date.now())).toMatchObject({
      ...verified,
      remove: null,
    });
    expect(authenticate(c, view({}, `/?jwt=${token}`), Date.now())).toMatchObject(verified);
    expect(authenticate(c, view({ cookie: `a=b; session=${token}` }), Date.now())).toMatchObject(
      verified,
    );
    // The default locations are not read when a rule names its own.
    expect(authenticate(c, view(bearer(token)), Date.now())).toEqual({ kind: 'none' });
    expect(c.outputs).toEqual(['x-jwt-payload', 'x-user', 'x-tenant', 'x-missing']);
  });

  it('keeps a verified token until its exp: a changed clock past it checks it again', () => {
    const issuer = testIssuer();
    const c = compiled(provider(issuer.jwks));
    const exp = nowS() + 10;
    const token = issuer.token({ iss: ISS, sub: 'dan', exp });
    expect(authenticate(c, view(bearer(token)), Date.now()).kind).toBe('verified');
    expect(c.cache.size).toBe(1);
    expect(authenticate(c, view(bearer(token)), Date.now()).kind).toBe('verified');
    expect(authenticate(c, view(bearer(token)), (exp + 61) * 1000)).toEqual({
      kind: 'failed',
      message: 'Jwt is expired',
    });
    expect(c.cache.size).toBe(0);
  });
});
