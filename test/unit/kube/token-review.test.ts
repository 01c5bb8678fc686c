import {
  cacheLifetimeMs,
  TokenCache,
  tokenKey,
  unverifiedJwtExpiry,
} from '../../../src/adapters/kube/token-cache';
import {
  adminAccessReview,
  SubjectAccessReviewAuthorizer,
  TokenReviewAuthenticator,
  workloadIdentityOfReview,
  type TokenReviewStatus,
} from '../../../src/adapters/kube/token-review';
import { serviceAccountOfUsername } from '../../../src/adapters/kube/identity';
import { KubeApiError } from '../../../src/adapters/kube/api';
import type { Clock } from '../../../src/ca/ports';
import { MooringError } from '../../../src/errors';
import { FakeKubeApi } from './fake-api';

// --- fixtures ------------------------------------------------------------------------------------

class FakeClock implements Clock {
  constructor(private ms: number) {}
  now(): Date {
    return new Date(this.ms);
  }
  advance(seconds: number): void {
    this.ms += seconds * 1000;
  }
}

const T0 = Date.parse('2030-01-01T00:00:00Z');

/** A JWT-shaped token (unsigned: only its `exp` matters to the cache). */
function jwt(claims: Record<string, unknown>, tag = 'sig'): string {
  const b64 = (o: object): string => Buffer.from(JSON.stringify(o)).toString('base64url');
  return `${b64({ alg: 'RS256' })}.${b64(claims)}.${tag}`;
}

const expIn = (seconds: number): number => Math.floor(T0 / 1000) + seconds;

type Review = TokenReviewStatus;
const serviceAccountReview = (
  ns: string,
  sa: string,
  modify: (r: Review) => Review = (r) => r,
): Review =>
  modify({
    authenticated: true,
    user: {
      username: `system:serviceaccount:${ns}:${sa}`,
      uid: 'u-1',
      groups: ['system:serviceaccounts', `system:serviceaccounts:${ns}`, 'system:authenticated'],
    },
    audiences: ['mooring-ca'],
  });
const withAudiences =
  (audiences: string[]) =>
  (r: Review): Review => ({ ...r, audiences });
const withGroups =
  (groups: string[]) =>
  (r: Review): Review => ({ ...r, user: { ...r.user, groups } });
const withUsername =
  (username: string) =>
  (r: Review): Review => ({ ...r, user: { ...r.user, username } });

function errorOf(promise: Promise<unknown>): Promise<MooringError> {
  return promise.then(
    () => {
      throw new Error('expected a rejection');
    },
    (err: unknown) => {
      if (err instanceof MooringError) return err;
      throw err;
    },
  );
}

// --- pure parts -------------------------------------------------------------------------------------

describe('service account user names', () => {
  it.each([
    ['system:serviceaccount:web:frontend', { namespace: 'web', serviceAccount: 'frontend' }],
    ['system:serviceaccount:a-b:c.d', { namespace: 'a-b', serviceAccount: 'c.d' }],
    ['system:serviceaccount:web', null],
    ['system:serviceaccount:web:front:end', null],
    ['system:serviceaccount:Web:frontend', null],
    ['system:node:worker-1', null],
    ['alice', null],
    [undefined, null],
  ])('"%s" is %j', (username, expected) => {
    expect(serviceAccountOfUsername(username)).toEqual(expected);
  });
});

describe('the JWT expiry read to bound the cache', () => {
  it('reads a numeric exp claim', () => {
    expect(unverifiedJwtExpiry(jwt({ exp: 1_900_000_000 }))?.getTime()).toBe(1_900_000_000_000);
  });
  it.each([
    ['an opaque token', 'abcdef0123456789'],
    ['a JWT without exp', jwt({ sub: 'x' })],
    ['a JWT with a string exp', jwt({ exp: '1900000000' })],
    ['a JWT whose payload is not JSON', 'aaa.!!!.bbb'],
  ])('is null for %s', (_name, token) => {
    expect(unverifiedJwtExpiry(token)).toBeNull();
  });
});

describe('cache lifetime', () => {
  const now = new Date(T0);
  it.each([
    ['the configured bound when the token lives longer', 60, new Date(T0 + 3_600_000), 60_000],
    ['the token expiry when it comes first', 60, new Date(T0 + 10_000), 10_000],
    ['nothing for an expired token', 60, new Date(T0 - 1), 0],
    ['the configured bound for a token without exp', 30, null, 30_000],
    ['nothing when caching is off', 0, new Date(T0 + 3_600_000), 0],
  ])('is %s', (_name, maxSeconds, expiry, expected) => {
    expect(cacheLifetimeMs(now, maxSeconds, expiry)).toBe(expected);
  });
});

describe('the token cache', () => {
  it('keys entries by SHA-256, never by the token itself', () => {
    expect(tokenKey('secret-token')).toMatch(/^[0-9a-f]{64}$/);
    expect(tokenKey('secret-token')).not.toContain('secret');
  });

  it('forgets an entry after the configured bound', () => {
    const clock = new FakeClock(T0);
    const cache = new TokenCache<string>({ clock, maxSeconds: 60, maxEntries: 10 });
    const token = jwt({ exp: expIn(3600) });
    cache.set(token, 'v');
    clock.advance(59);
    expect(cache.get(token)).toBe('v');
    clock.advance(1);
    expect(cache.get(token)).toBeUndefined();
  });

  it('forgets an entry when the token expires, before the bound', () => {
    const clock = new FakeClock(T0);
    const cache = new TokenCache<string>({ clock, maxSeconds: 60, maxEntries: 10 });
    const token = jwt({ exp: expIn(5) });
    cache.set(token, 'v');
    clock.advance(4);
    expect(cache.get(token)).toBe('v');
    clock.advance(1);
    expect(cache.get(token)).toBeUndefined();
  });

  it('drops the least recently used entry when full', () => {
    const clock = new FakeClock(T0);
    const cache = new TokenCache<string>({ clock, maxSeconds: 60, maxEntries: 2 });
    cache.set('a', 'A');
    cache.set('b', 'B');
    expect(cache.get('a')).toBe('A'); // a is now the most recent
    cache.set('c', 'C');
    expect(cache.size).toBe(2);
    expect(cache.get('b')).toBeUndefined();
    expect(cache.get('a')).toBe('A');
    expect(cache.get('c')).toBe('C');
  });

  it('keeps nothing when its size is 0', () => {
    const cache = new TokenCache<string>({
      clock: new FakeClock(T0),
      maxSeconds: 60,
      maxEntries: 0,
    });
    cache.set('a', 'A');
    expect(cache.get('a')).toBeUndefined();
  });
});

describe('a reviewed workload token', () => {
  it.each<[string, Review | undefined, string | null]>([
    [
      'a service account token for mooring-ca is accepted',
      serviceAccountReview('web', 'api'),
      null,
    ],
    [
      'an unauthenticated token is refused',
      { authenticated: false, error: 'expired' },
      'not valid',
    ],
    ['no answer is refused', undefined, 'not valid'],
    [
      'a token for another audience is refused',
      serviceAccountReview('web', 'api', withAudiences(['other'])),
      'audience',
    ],
    [
      'a token without audiences in the answer is refused',
      serviceAccountReview('web', 'api', withAudiences([])),
      'audience',
    ],
    [
      'a user outside system:serviceaccounts is refused',
      serviceAccountReview('web', 'api', withGroups(['system:authenticated'])),
      'service account',
    ],
    [
      'a user name that is not a service account is refused',
      serviceAccountReview('web', 'api', withUsername('alice')),
      'service account',
    ],
  ])('%s', (_name, status, refusal) => {
    const decision = workloadIdentityOfReview(status, 'mooring-ca');
    if (refusal === null) {
      expect(decision).toEqual({ ok: true, identity: { namespace: 'web', serviceAccount: 'api' } });
    } else {
      expect(decision.ok).toBe(false);
      expect(!decision.ok && decision.reason).toContain(refusal);
    }
  });
});

// --- the authenticator against a fake apiserver ----------------------------------------------------

function setup(options: { cacheSeconds?: number; cacheSize?: number } = {}) {
  const api = new FakeKubeApi();
  const clock = new FakeClock(T0);
  const reviews: { audiences?: string[]; token: string }[] = [];
  const valid = new Map<string, Review>();
  api.reviewHandler = (resource, body) => {
    const spec = body.spec as { token: string; audiences?: string[] };
    reviews.push(spec);
    if (resource === 'tokenreviews')
      return { status: valid.get(spec.token) ?? { authenticated: false } };
    return { status: { allowed: false } };
  };
  const counts = { hit: 0, miss: 0, authenticated: 0, rejected: 0, error: 0 };
  const authenticator = new TokenReviewAuthenticator({
    api,
    clock,
    cacheSeconds: options.cacheSeconds ?? 60,
    cacheSize: options.cacheSize ?? 100,
    observer: {
      cache: (r) => counts[r]++,
      review: (_kind, r) => counts[r]++,
    },
  });
  return { api, clock, reviews, valid, authenticator, counts };
}

describe('TokenReview authentication of workloads', () => {
  it('asks the apiserver with audience mooring-ca and answers the service account', async () => {
    const { authenticator, valid, reviews } = setup();
    const token = jwt({ exp: expIn(3600) });
    valid.set(token, serviceAccountReview('shop', 'cart'));
    await expect(authenticator.authenticateWorkload(token)).resolves.toEqual({
      namespace: 'shop',
      serviceAccount: 'cart',
    });
    expect(reviews).toEqual([{ token, audiences: ['mooring-ca'] }]);
  });

  it('reviews a token once for many requests within the cache lifetime', async () => {
    const { authenticator, valid, reviews, counts } = setup();
    const token = jwt({ exp: expIn(3600) });
    valid.set(token, serviceAccountReview('shop', 'cart'));
    for (let i = 0; i < 20; i++) await authenticator.authenticateWorkload(token);
    expect(reviews).toHaveLength(1);
    expect(counts).toMatchObject({ hit: 19, miss: 1, authenticated: 1 });
  });

  it('shares one review between concurrent requests with the same token', async () => {
    const { authenticator, valid, reviews } = setup();
    const token = jwt({ exp: expIn(3600) });
    valid.set(token, serviceAccountReview('shop', 'cart'));
    await Promise.all(Array.from({ length: 10 }, () => authenticator.authenticateWorkload(token)));
    expect(reviews).toHaveLength(1);
  });

  it('reviews again once the entry is older than the configured bound', async () => {
    const { authenticator, valid, reviews, clock } = setup({ cacheSeconds: 30 });
    const token = jwt({ exp: expIn(3600) });
    valid.set(token, serviceAccountReview('shop', 'cart'));
    await authenticator.authenticateWorkload(token);
    clock.advance(29);
    await authenticator.authenticateWorkload(token);
    clock.advance(1);
    await authenticator.authenticateWorkload(token);
    expect(reviews).toHaveLength(2);
  });

  it('never keeps an entry past the token expiry', async () => {
    const { authenticator, valid, reviews, clock } = setup();
    const token = jwt({ exp: expIn(10) });
    valid.set(token, serviceAccountReview('shop', 'cart'));
    await authenticator.authenticateWorkload(token);
    clock.advance(10);
    valid.delete(token); // the apiserver now says no
    const err = await errorOf(authenticator.authenticateWorkload(token));
    expect(err.code).toBe('CA_ERR_UNAUTHENTICATED');
    expect(reviews).toHaveLength(2);
  });

  it('does not cache a refusal', async () => {
    const { authenticator, reviews } = setup();
    const token = jwt({ exp: expIn(3600) });
    for (let i = 0; i < 3; i++) {
      expect((await errorOf(authenticator.authenticateWorkload(token))).code).toBe(
        'CA_ERR_UNAUTHENTICATED',
      );
    }
    expect(reviews).toHaveLength(3);
  });

  it('reviews every request when the cache is turned off', async () => {
    const { authenticator, valid, reviews } = setup({ cacheSeconds: 0 });
    const token = jwt({ exp: expIn(3600) });
    valid.set(token, serviceAccountReview('shop', 'cart'));
    await authenticator.authenticateWorkload(token);
    await authenticator.authenticateWorkload(token);
    expect(reviews).toHaveLength(2);
  });

  it('answers 503 (not 401) when the apiserver cannot review, and caches nothing', async () => {
    const { authenticator, api, valid, reviews } = setup();
    const token = jwt({ exp: expIn(3600) });
    valid.set(token, serviceAccountReview('shop', 'cart'));
    api.failures.push({
      when: () => true,
      error: new KubeApiError(500, 'InternalError', 'etcd down'),
    });
    const err = await errorOf(authenticator.authenticateWorkload(token));
    expect(err.code).toBe('CA_ERR_NOT_READY');
    expect(err.status).toBe(503);
    await expect(authenticator.authenticateWorkload(token)).resolves.toEqual({
      namespace: 'shop',
      serviceAccount: 'cart',
    });
    expect(reviews).toHaveLength(1);
  });
});

// --- admin -------------------------------------------------------------------------------------------

describe('admin authorization by TokenReview and SubjectAccessReview', () => {
  function adminSetup(allowed: boolean, authenticated = true) {
    const api = new FakeKubeApi();
    const seen: { resource: string; body: Record<string, unknown> }[] = [];
    api.reviewHandler = (resource, body) => {
      seen.push({ resource, body });
      if (resource === 'tokenreviews') {
        return {
          status: authenticated
            ? {
                authenticated: true,
                user: { username: 'alice', uid: 'a1', groups: ['ops', 'system:authenticated'] },
              }
            : { authenticated: false },
        };
      }
      return { status: { allowed } };
    };
    return { authorizer: new SubjectAccessReviewAuthorizer({ api }), seen };
  }

  it('allows a user whom RBAC allows to create certificates.mooring.dev', async () => {
    const { authorizer, seen } = adminSetup(true);
    await expect(authorizer.authorizeAdmin('t')).resolves.toEqual({ subject: 'alice' });
    // The token review asks for the apiserver's default audiences (none named).
    expect(seen[0]?.body).toMatchObject({ spec: { token: 't' } });
    expect((seen[0]?.body.spec as Record<string, unknown>).audiences).toBeUndefined();
    expect(seen[1]?.body).toEqual(
      adminAccessReview({ username: 'alice', uid: 'a1', groups: ['ops', 'system:authenticated'] }),
    );
    expect(seen[1]?.body).toMatchObject({
      spec: {
        user: 'alice',
        groups: ['ops', 'system:authenticated'],
        resourceAttributes: { verb: 'create', group: 'mooring.dev', resource: 'certificates' },
      },
    });
  });

  it('refuses with 403 a known user whom RBAC does not allow', async () => {
    const { authorizer } = adminSetup(false);
    const err = await errorOf(authorizer.authorizeAdmin('t'));
    expect(err.code).toBe('CA_ERR_FORBIDDEN');
    expect(err.message).toContain('alice');
  });

  it('refuses with 401 a credential the apiserver does not know, without asking RBAC', async () => {
    const { authorizer, seen } = adminSetup(true, false);
    const err = await errorOf(authorizer.authorizeAdmin('t'));
    expect(err.code).toBe('CA_ERR_UNAUTHENTICATED');
    expect(err.message).toContain('audience "mooring-ca"');
    // Tried for the apiserver's audiences, then for mooring-ca; RBAC never asked.
    expect(seen.map((s) => s.resource)).toEqual(['tokenreviews', 'tokenreviews']);
    expect(seen[1]?.body).toMatchObject({ spec: { token: 't', audiences: ['mooring-ca'] } });
  });

  /** An apiserver that knows token `bound` for audience mooring-ca only. */
  function boundTokenSetup(answerAudiences: readonly string[]) {
    const api = new FakeKubeApi();
    const seen: Record<string, unknown>[] = [];
    api.reviewHandler = (resource, body) => {
      seen.push(body);
      if (resource === 'subjectaccessreviews') return { status: { allowed: true } };
      const spec = body.spec as { audiences?: string[] };
      if (spec.audiences === undefined) return { status: { authenticated: false } };
      return {
        status: {
          authenticated: true,
          audiences: answerAudiences,
          user: { username: 'system:serviceaccount:ops:robot', groups: ['system:serviceaccounts'] },
        },
      };
    };
    return { authorizer: new SubjectAccessReviewAuthorizer({ api }), seen };
  }

  it('allows a token bound to audience mooring-ca, checked by RBAC like any other', async () => {
    const { authorizer, seen } = boundTokenSetup(['mooring-ca']);
    await expect(authorizer.authorizeAdmin('bound')).resolves.toEqual({
      subject: 'system:serviceaccount:ops:robot',
    });
    expect(seen[2]).toMatchObject({
      spec: { user: 'system:serviceaccount:ops:robot', resourceAttributes: { verb: 'create' } },
    });
  });

  it('refuses a token the apiserver vouches for but not for audience mooring-ca', async () => {
    const { authorizer, seen } = boundTokenSetup(['other']);
    const err = await errorOf(authorizer.authorizeAdmin('bound'));
    expect(err.code).toBe('CA_ERR_UNAUTHENTICATED');
    expect(seen).toHaveLength(2);
  });
});
