import { X509Certificate } from 'node:crypto';
import { Authority, type AuthorityOptions } from '../../../src/ca/authority';
import type { CAConfig } from '../../../src/config/types';
import type { MooringError } from '../../../src/errors';
import {
  cachedKeyGenerator,
  caConfig,
  countingRandom,
  csrPem,
  DAY,
  errorCode,
  fixedClock,
  MemoryStore,
  T0,
  verifiesAgainst,
  withCorruptSignature,
  withDns,
  withKeyType,
  withUri,
  type FixedClock,
} from './fixtures';

const ID = 'spiffe://cluster.local/ns/shop/sa/cart';

interface Harness {
  authority: Authority;
  clock: FixedClock;
  store: MemoryStore;
}

async function openCA(
  overrides: Parameters<typeof caConfig>[0] = {},
  shared?: { store: MemoryStore; clock: FixedClock },
  crypto: Pick<AuthorityOptions, 'cryptoMode' | 'schedule'> = {},
): Promise<Harness> {
  const clock = shared?.clock ?? fixedClock(T0);
  const store = shared?.store ?? new MemoryStore();
  const options: AuthorityOptions = {
    trustDomain: 'cluster.local',
    ca: caConfig(overrides),
    clock,
    random: countingRandom(),
    store,
    generateKey: cachedKeyGenerator(),
    schedule: (flush) => setImmediate(flush),
    ...crypto,
  };
  return { authority: await Authority.open(options, { create: true }), clock, store };
}

describe('opening the CA', () => {
  it('creates a self-signed ECDSA P-256 root valid for 10 years on first open', async () => {
    const { authority, store } = await openCA();
    const [rootPem] = authority.trustBundle();
    const root = new X509Certificate(rootPem as string);
    expect(root.ca).toBe(true);
    expect(root.checkIssued(root)).toBe(true);
    expect(root.publicKey.asymmetricKeyDetails?.namedCurve).toBe('prime256v1');
    expect(Date.parse(root.validTo)).toBe(T0.getTime() + 315360000 * 1000);
    expect(root.subject).toContain('CN=Mooring Root CA');
    expect(store.saves).toBe(1);
  });

  it.each<[string, CAConfig['rootKeyType'], string, number | undefined]>([
    ['ECDSA P-384', 'ecdsa-p384', 'ec', undefined],
    ['RSA 2048', 'rsa-2048', 'rsa', 2048],
    ['RSA 3072', 'rsa-3072', 'rsa', 3072],
  ])('creates a %s root when configured', async (_name, rootKeyType, type, bits) => {
    const { authority } = await openCA({ rootKeyType });
    const root = new X509Certificate(authority.trustBundle()[0] as string);
    expect(root.publicKey.asymmetricKeyType).toBe(type);
    expect(root.publicKey.asymmetricKeyDetails?.modulusLength).toBe(bits);
    const chain = await authority.issueWorkload({ csrPem: csrPem(), spiffeId: ID });
    expect(verifiesAgainst(chain.certificateChain[0] as string, chain.trustBundle)).toBe(true);
  });

  it('reuses the stored root when opened again', async () => {
    const first = await openCA();
    const again = await openCA({}, { store: first.store, clock: first.clock });
    expect(again.authority.trustBundle()).toEqual(first.authority.trustBundle());
    expect(first.store.saves).toBe(1);
  });

  it('refuses an empty store when not asked to create', async () => {
    const options: AuthorityOptions = {
      trustDomain: 'cluster.local',
      ca: caConfig(),
      clock: fixedClock(),
      random: countingRandom(),
      store: new MemoryStore(),
    };
    expect(await errorCode(() => Authority.open(options, { create: false }))).toBe('CA_ERR_STORE');
  });

  it('refuses a store made for another trust domain (the wrong configuration), and takes its own', async () => {
    const { store, clock } = await openCA();
    const reopen = (trustDomain: string) =>
      Authority.open(
        {
          trustDomain,
          ca: caConfig(),
          clock,
          random: countingRandom(),
          store,
          generateKey: cachedKeyGenerator(),
        },
        { create: false },
      );
    const err = await reopen('acme.io').catch((e: unknown) => e);
    expect(err).toMatchObject({
      code: 'CFG_ERR_INVALID',
      message:
        'the CA was made for trust domain "cluster.local" but trustDomain is "acme.io": give the ' +
        'configuration the CA was made with (--config), or make a new CA elsewhere',
    });
    await expect(reopen('cluster.local')).resolves.toBeInstanceOf(Authority);
  });

  it('refuses a rotation window that would rotate every new root at once', async () => {
    expect(
      await errorCode(() =>
        openCA({ rootLifetimeSeconds: 30 * DAY, rotation: { beforeExpirySeconds: 30 * DAY } }),
      ),
    ).toBe('CFG_ERR_INVALID');
  });
});

describe('the identity of a workload', () => {
  it('is the SPIFFE ID under the trust domain of the CA, for cluster and local mode alike', async () => {
    const { authority } = await openCA();
    expect(authority.spiffeIdOf({ namespace: 'shop', serviceAccount: 'cart' })).toBe(ID);
  });

  it('is refused when a name could not be a path segment (CA_ERR_SPIFFE_ID), never built', async () => {
    const { authority } = await openCA();
    expect(
      await errorCode(() =>
        authority.spiffeIdOf({ namespace: 'shop/../x', serviceAccount: 'cart' }),
      ),
    ).toBe('CA_ERR_SPIFFE_ID');
  });
});

describe('issuing workload certificates', () => {
  it('returns the leaf alone as the chain, the roots as the bundle, and the expiry of the leaf', async () => {
    const { authority } = await openCA();
    const chain = await authority.issueWorkload({ csrPem: csrPem(withUri(ID)), spiffeId: ID });
    expect(chain.certificateChain).toHaveLength(1);
    const leaf = new X509Certificate(chain.certificateChain[0] as string);
    expect(leaf.subjectAltName).toBe(`URI:${ID}`);
    expect(chain.expiresAt).toEqual(new Date(T0.getTime() + DAY * 1000));
    expect(Date.parse(leaf.validTo)).toBe(chain.expiresAt.getTime());
    expect(chain.serialNumber.toUpperCase()).toBe(leaf.serialNumber);
    expect(chain.keyType).toBe('ecdsa-p256');
    expect(chain.trustBundle).toEqual(authority.trustBundle());
  });

  it('in batched mode, checks the CSRs of requests that arrive together in one run and signs them in the next; a bad one fails alone', async () => {
    let flushes = 0;
    const { authority } = await openCA({}, undefined, {
      cryptoMode: 'batched',
      schedule: (flush) => {
        flushes += 1;
        setImmediate(flush);
      },
    });
    const issue = (pem: string) =>
      authority.issueWorkload({ csrPem: pem, spiffeId: ID }).then(
        (chain) => verifiesAgainst(chain.certificateChain[0] as string, chain.trustBundle),
        (err: MooringError) => err.code,
      );
    const results = await Promise.all([
      issue(csrPem()),
      issue(csrPem(withKeyType('rsa-2048'))),
      issue(csrPem(withCorruptSignature())),
      issue(csrPem(withKeyType('ed25519'))),
    ]);
    expect(results).toEqual([true, true, 'CA_ERR_CSR_SIGNATURE', true]);
    // Four checks in one run, then the three signatures in one run.
    expect(flushes).toBe(2);
  });

  it.each(['sync', 'threadpool', 'batched'] as const)(
    'issues verifiable certificates and refuses bad CSR signatures with crypto mode %s',
    async (cryptoMode) => {
      const { authority } = await openCA({}, undefined, { cryptoMode });
      for (const type of ['ecdsa-p256', 'rsa-2048', 'ed25519'] as const) {
        const chain = await authority.issueWorkload({
          csrPem: csrPem(withKeyType(type)),
          spiffeId: ID,
        });
        expect(verifiesAgainst(chain.certificateChain[0] as string, chain.trustBundle)).toBe(true);
      }
      expect(
        await errorCode(() =>
          authority.issueWorkload({ csrPem: csrPem(withCorruptSignature()), spiffeId: ID }),
        ),
      ).toBe('CA_ERR_CSR_SIGNATURE');
    },
  );

  it('gives each certificate a different serial number', async () => {
    const { authority } = await openCA();
    const a = await authority.issueWorkload({ csrPem: csrPem(), spiffeId: ID });
    const b = await authority.issueWorkload({ csrPem: csrPem(), spiffeId: ID });
    expect(a.serialNumber).not.toBe(b.serialNumber);
  });

  it.each([
    [
      'a SPIFFE ID outside the trust domain',
      { spiffeId: 'spiffe://other.org/ns/a/sa/b' },
      'CA_ERR_SPIFFE_ID',
    ],
    [
      'a malformed SPIFFE ID',
      { spiffeId: 'spiffe://cluster.local/ns/../sa/b' },
      'CA_ERR_SPIFFE_ID',
    ],
    [
      'a CSR naming someone else',
      { csrPem: csrPem(withUri('spiffe://cluster.local/ns/x/sa/y')) },
      'CA_ERR_SAN',
    ],
    ['a CSR with a DNS name', { csrPem: csrPem(withDns('cart.shop')) }, 'CA_ERR_SAN'],
    ['a lifetime above 7 days', { ttlSeconds: 7 * DAY + 1 }, 'CA_ERR_TTL'],
    ['a CSR that is not PEM', { csrPem: 'nope' }, 'CA_ERR_CSR'],
  ])('refuses %s', async (_name, change, code) => {
    const { authority } = await openCA();
    expect(
      await errorCode(() => authority.issueWorkload({ csrPem: csrPem(), spiffeId: ID, ...change })),
    ).toBe(code);
  });

  it('never issues past the root expiry, and is not ready once it has passed', async () => {
    const { authority, clock } = await openCA({
      rootLifetimeSeconds: 10 * DAY,
      rotation: { auto: false },
    });
    clock.advance(8 * DAY);
    const chain = await authority.issueWorkload({
      csrPem: csrPem(),
      spiffeId: ID,
      ttlSeconds: 7 * DAY,
    });
    expect(chain.expiresAt).toEqual(new Date(T0.getTime() + 10 * DAY * 1000));
    expect(authority.ready()).toBe(true);
    clock.advance(2 * DAY);
    expect(authority.ready()).toBe(false);
    expect(await errorCode(() => authority.issueWorkload({ csrPem: csrPem(), spiffeId: ID }))).toBe(
      'CA_ERR_NOT_READY',
    );
  });

  it('issues a serving certificate for DNS names and IPs, refusing a lifetime above its maximum', async () => {
    const { authority } = await openCA();
    const chain = await authority.issueServing({
      csrPem: csrPem(withKeyType('rsa-2048')),
      dnsNames: ['localhost'],
      ipAddresses: ['127.0.0.1', '::1'],
      ttlSeconds: 30 * DAY,
    });
    const leaf = new X509Certificate(chain.certificateChain[0] as string);
    expect(leaf.subjectAltName).toBe(
      'DNS:localhost, IP Address:127.0.0.1, IP Address:0:0:0:0:0:0:0:1',
    );
    expect(chain.keyType).toBe('rsa-2048');
    expect(
      await errorCode(() =>
        authority.issueServing({
          csrPem: csrPem(),
          dnsNames: ['localhost'],
          ipAddresses: [],
          ttlSeconds: 31 * DAY,
        }),
      ),
    ).toBe('CA_ERR_TTL');
  });
});

describe('status and rotation through the authority', () => {
  it('reports the root, the issuer and the next automatic rotation', async () => {
    const { authority } = await openCA();
    const status = authority.status();
    expect(status.roots).toHaveLength(1);
    expect(status.roots[0]).toMatchObject({ status: 'active', keyType: 'ecdsa-p256' });
    expect(status.issuer.fingerprint).toBe(status.roots[0]?.fingerprint);
    expect(status.intermediate).toBe(false);
    // 10 years minus the 2-year window.
    expect(status.nextRotationAt).toEqual(new Date(T0.getTime() + (315360000 - 63072000) * 1000));
  });

  it('starts a rotation on demand, issues from the new root only after the propagation delay', async () => {
    const { authority, clock } = await openCA();
    const oldRoot = authority.trustBundle()[0] as string;
    const started = await authority.rotate();
    expect(started.events.map((e) => e.event)).toEqual(['rotation-started']);
    expect(authority.trustBundle()).toHaveLength(2);
    const during = await authority.issueWorkload({ csrPem: csrPem(), spiffeId: ID });
    expect(verifiesAgainst(during.certificateChain[0] as string, [oldRoot])).toBe(true);
    expect(await errorCode(() => authority.rotate())).toBe('CA_ERR_ROTATION');

    clock.advance(900);
    const activated = await authority.tick();
    expect(activated.events.map((e) => e.event)).toEqual(['root-activated']);
    const after = await authority.issueWorkload({ csrPem: csrPem(), spiffeId: ID });
    expect(verifiesAgainst(after.certificateChain[0] as string, [oldRoot])).toBe(false);
    expect(verifiesAgainst(after.certificateChain[0] as string, after.trustBundle)).toBe(true);
    expect(authority.status().roots.map((r) => r.status)).toEqual(['active', 'retired']);
  });

  it('picks up a rotation made by another process on its next tick', async () => {
    const a = await openCA();
    const b = await openCA({}, { store: a.store, clock: a.clock });
    await a.authority.rotate();
    expect(b.authority.trustBundle()).toHaveLength(1);
    expect((await b.authority.tick()).reloaded).toBe(true);
    expect(b.authority.trustBundle()).toEqual(a.authority.trustBundle());
  });

  it('refuses a concurrent second rotation after reloading the first one', async () => {
    const a = await openCA();
    const b = await openCA({}, { store: a.store, clock: a.clock });
    await a.authority.rotate();
    expect(await errorCode(() => b.authority.rotate())).toBe('CA_ERR_ROTATION');
  });

  it('does nothing on a tick when nothing is due', async () => {
    const { authority, store } = await openCA();
    expect(await authority.tick()).toEqual({ reloaded: false, events: [] });
    expect(store.saves).toBe(1);
  });
});
