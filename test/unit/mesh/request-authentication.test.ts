// Istio's RequestAuthentication on the server's side: the reader's errors (each naming its field),
// AuthorizationPolicy's JWT fields read, the providers a workload's proxy gets (Istio's scoping,
// one per issuer), keys inline or from the server's fetch (sources, a fetch that changes them).
import { validateMeshObject } from '../../../src/mesh';
import {
  meshed,
  modelOf,
  pod,
  problemsOf,
  valid,
  withLabels,
  withServiceAccount,
  type Raw,
} from '../../fixtures/mesh-objects';
import { testIssuer } from '../../fixtures/jwt';

const ROOT = 'mooring-system';
const issuer = testIssuer('ES256');

const requestAuthentication = (name: string, spec: Raw, namespace = 'default'): Raw => ({
  apiVersion: 'security.istio.io/v1',
  kind: 'RequestAuthentication',
  metadata: { name, namespace },
  spec,
});

describe('reading RequestAuthentication', () => {
  it('refuses what it cannot use, naming the field', () => {
    expect(
      problemsOf(
        requestAuthentication('ra', {
          targetRef: { kind: 'Gateway', name: 'gw' },
          jwtRules: [
            { jwksUri: 'https://x/jwks' },
            { issuer: 'plain-name' },
            { issuer: 'https://a', jwksUri: 'ftp://a/keys' },
            { issuer: 'https://b', jwks: '{"keys":[{"kty":"EC","crv":"P-256","x":"bad"}]}' },
            { issuer: 'https://c', jwks: 'not json', timeout: 'soon' },
            {
              issuer: 'https://d',
              jwksUri: 'https://d/keys',
              fromHeaders: [{ name: 'Bad Header' }],
              outputClaimToHeaders: [{ header: 'x-sub' }],
            },
            { issuer: 'https://d', jwksUri: 'https://d/keys' },
          ],
        }),
      ),
    ).toEqual([
      'spec.targetRef: attaches a policy to a Gateway or Service, which Mooring does not do: use spec.selector',
      'spec.jwtRules[0].issuer: is required',
      'spec.jwtRules[1].jwksUri: is required when the issuer "plain-name" is not a URL (its keys cannot be discovered): give jwksUri or jwks',
      'spec.jwtRules[2].jwksUri: "ftp://a/keys" must be an http or https URL',
      expect.stringMatching(
        /^spec\.jwtRules\[3\]\.jwks: keys\[0\] is not a public key Mooring can use/,
      ) as unknown as string,
      'spec.jwtRules[4].jwks: is not JSON',
      'spec.jwtRules[4].timeout: "soon" is not a positive duration such as "5s"',
      'spec.jwtRules[5].fromHeaders[0].name: "Bad Header" is not a header name',
      'spec.jwtRules[5].outputClaimToHeaders[0].claim: is required',
      'spec.jwtRules[6].issuer: "https://d" has a rule already',
    ]);
  });

  it("reads AuthorizationPolicy's JWT fields into the wire form", () => {
    const v = validateMeshObject({
      apiVersion: 'security.istio.io/v1',
      kind: 'AuthorizationPolicy',
      metadata: { name: 'jwt', namespace: 'default' },
      spec: {
        rules: [
          {
            from: [{ source: { requestPrincipals: ['https://issuer/*'] } }],
            when: [
              { key: 'request.auth.claims[groups]', values: ['admins'] },
              { key: 'request.auth.claims[org][tier]', values: ['gold'] },
              { key: 'request.auth.audiences', values: ['orders'] },
            ],
          },
        ],
      },
    });
    expect(v).toMatchObject({
      status: 'valid',
      object: {
        rules: [
          {
            from: [{ requestPrincipals: ['https://issuer/*'] }],
            when: [
              { key: 'request.auth.claims[groups]', values: ['admins'] },
              { key: 'request.auth.claims[org][tier]', values: ['gold'] },
              { key: 'request.auth.audiences', values: ['orders'] },
            ],
          },
        ],
      },
    });
  });
});

describe('the providers of a workload', () => {
  const web = pod('web-1', meshed(), withServiceAccount('web'), withLabels({ app: 'web' }));
  const db = pod('db-1', meshed(), withLabels({ app: 'db' }));

  it("puts the rules of the RequestAuthentications that select a Pod in its proxy's scope, one per issuer", () => {
    const model = modelOf([
      web,
      db,
      requestAuthentication('web-only', {
        selector: { matchLabels: { app: 'web' } },
        jwtRules: [
          {
            issuer: 'https://issuer.example.com',
            jwks: issuer.jwks,
            audiences: ['orders'],
            fromHeaders: [{ name: 'x-jwt', prefix: 'Token ' }],
            forwardOriginalToken: true,
            outputClaimToHeaders: [{ header: 'x-user', claim: 'sub' }],
          },
        ],
      }),
      // Mesh-wide, from the root namespace: a second issuer for everyone, and the same one again
      // (the first by name keeps it).
      requestAuthentication(
        'z-mesh',
        {
          jwtRules: [
            { issuer: 'https://issuer.example.com', jwks: '{"keys":[]}' },
            { issuer: 'https://accounts.example.org', jwksUri: 'https://accounts.example.org/k' },
          ],
        },
        ROOT,
      ),
    ]);
    expect(model.proxyScope('default/web-1')?.inbound.jwt).toEqual([
      {
        source: 'default/web-only',
        issuer: 'https://issuer.example.com',
        audiences: ['orders'],
        jwks: issuer.jwks,
        locations: { headers: [{ name: 'x-jwt', prefix: 'Token ' }], params: [], cookies: [] },
        forwardOriginalToken: true,
        outputClaimToHeaders: [{ header: 'x-user', claim: 'sub' }],
      },
      // Not fetched yet: no keys, every token of it refused.
      { source: `${ROOT}/z-mesh`, issuer: 'https://accounts.example.org', jwks: null },
    ]);
    expect(model.proxyScope('default/db-1')?.inbound.jwt?.map((p) => p.issuer)).toEqual([
      'https://issuer.example.com',
      'https://accounts.example.org',
    ]);
  });

  it('names the sources the server fetches; keys fetched are pushed to the Pods that use them', () => {
    const model = modelOf([
      web,
      requestAuthentication('uri', {
        jwtRules: [
          { issuer: 'https://a.example', jwksUri: 'https://a.example/keys', timeout: '2s' },
        ],
      }),
      requestAuthentication('discovered', { jwtRules: [{ issuer: 'https://b.example' }] }),
      requestAuthentication('inline', {
        jwtRules: [{ issuer: 'https://c.example', jwks: issuer.jwks }],
      }),
    ]);
    expect([...model.jwksSources()].sort()).toEqual([
      ['https://a.example/keys', 2000],
      ['openid:https://b.example', null],
    ]);
    model.setJwks('https://a.example/keys', issuer.jwks);
    expect(model.commit()).toMatchObject({ pods: ['default/web-1'], services: [] });
    expect(
      model.proxyScope('default/web-1')?.inbound.jwt?.find((p) => p.issuer === 'https://a.example')
        ?.jwks,
    ).toBe(issuer.jwks);
    // The same keys again change nothing.
    model.setJwks('https://a.example/keys', issuer.jwks);
    expect(model.commit()).toBeNull();
    model.remove({ kind: 'RequestAuthentication', namespace: 'default', name: 'uri' });
    model.upsert(valid(requestAuthentication('x', { jwtRules: [] })));
    model.commit();
    expect([...model.jwksSources().keys()]).toEqual(['openid:https://b.example']);
  });
});
