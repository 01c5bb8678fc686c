// The server fetches RequestAuthentication's keys from a real HTTP server on loopback: from a
// rule's jwksUri, from the issuer's OpenID configuration, again when they change; a failure with
// no keys before gives the proxies none (tokens refused), one after keeps the old keys; a source
// no rule names any more is not fetched again.
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { JwksFetcher } from '../../src/server/mesh/jwks';
import type { MeshModel } from '../../src/mesh';
import { meshed, modelOf, pod, valid, type Raw } from '../fixtures/mesh-objects';
import { testIssuer } from '../fixtures/jwt';

jest.setTimeout(20_000);

const first = testIssuer('ES256', 'k1');
const second = testIssuer('RS256', 'k2');

/** What the server answers, by path: a body, or a status to fail with. */
const answers = new Map<string, string | number>();
const hits = new Map<string, number>();
let server: http.Server;
let base: string;

beforeAll(async () => {
  server = http.createServer((req, res) => {
    const path = req.url ?? '';
    hits.set(path, (hits.get(path) ?? 0) + 1);
    const answer = answers.get(path) ?? 404;
    if (typeof answer === 'number') {
      res.writeHead(answer).end();
      return;
    }
    res.writeHead(200, { 'content-type': 'application/json' }).end(answer);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});

afterAll(async () => {
  server.closeAllConnections();
  await new Promise((r) => server.close(r));
});

const requestAuthentication = (name: string, rule: Raw): Raw => ({
  apiVersion: 'security.istio.io/v1',
  kind: 'RequestAuthentication',
  metadata: { name, namespace: 'default' },
  spec: { jwtRules: [rule] },
});

const silent = { info: () => {}, warn: () => {} };

function start(
  model: MeshModel,
  times: { refreshMs: number; retryMs: number },
  log: { info(o: object, m: string): void; warn(o: object, m: string): void } = silent,
) {
  const changes: number[] = [];
  const fetcher = new JwksFetcher({
    model,
    log,
    onChange: () => {
      const commit = model.commit();
      if (commit !== null) changes.push(commit.version);
    },
    ...times,
  });
  fetcher.sync();
  return { fetcher, changes };
}

const keysOf = (model: MeshModel, issuerUrl: string): string | null | undefined =>
  model.proxyScope('default/web-1')?.inbound.jwt?.find((p) => p.issuer === issuerUrl)?.jwks;

async function until(what: string, probe: () => boolean, ms = 5_000): Promise<void> {
  const end = Date.now() + ms;
  while (!probe()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

it('fetches a jwksUri, pushes the keys, and follows a change of them at the next refresh', async () => {
  answers.set('/a/keys', first.jwks);
  const model = modelOf([
    pod('web-1', meshed()),
    requestAuthentication('a', { issuer: 'https://a.example', jwksUri: `${base}/a/keys` }),
  ]);
  expect(keysOf(model, 'https://a.example')).toBeNull();
  const { fetcher, changes } = start(model, { refreshMs: 100, retryMs: 50 });
  try {
    await until('the keys', () => keysOf(model, 'https://a.example') === first.jwks);
    expect(changes.length).toBe(1);
    answers.set('/a/keys', second.jwks);
    await until('the new keys', () => keysOf(model, 'https://a.example') === second.jwks);
  } finally {
    fetcher.close();
  }
});

it("discovers the keys from the issuer's OpenID configuration", async () => {
  answers.set(
    '/realm/.well-known/openid-configuration',
    JSON.stringify({ jwks_uri: `${base}/realm/certs` }),
  );
  answers.set('/realm/certs', first.jwks);
  const issuerUrl = `${base}/realm`;
  const model = modelOf([
    pod('web-1', meshed()),
    requestAuthentication('oidc', { issuer: issuerUrl }),
  ]);
  const { fetcher } = start(model, { refreshMs: 60_000, retryMs: 60_000 });
  try {
    await until('the discovered keys', () => keysOf(model, issuerUrl) === first.jwks);
  } finally {
    fetcher.close();
  }
});

it('gives no keys while a first fetch fails (tokens refused), keeps fetched keys through a later failure, retries', async () => {
  answers.set('/b/keys', 503);
  const model = modelOf([
    pod('web-1', meshed()),
    requestAuthentication('b', { issuer: 'https://b.example', jwksUri: `${base}/b/keys` }),
  ]);
  const { fetcher } = start(model, { refreshMs: 100, retryMs: 50 });
  try {
    await until('two failed tries', () => (hits.get('/b/keys') ?? 0) >= 2);
    expect(keysOf(model, 'https://b.example')).toBeNull();
    // Not a JWKS: a failure too.
    answers.set('/b/keys', '{"keys": "none"}');
    const tries = hits.get('/b/keys') ?? 0;
    await until('another try', () => (hits.get('/b/keys') ?? 0) > tries);
    expect(keysOf(model, 'https://b.example')).toBeNull();
    answers.set('/b/keys', first.jwks);
    await until(
      'the keys after the retries',
      () => keysOf(model, 'https://b.example') === first.jwks,
    );
    answers.set('/b/keys', 500);
    const before = hits.get('/b/keys') ?? 0;
    await until('a failed refresh', () => (hits.get('/b/keys') ?? 0) >= before + 2);
    expect(keysOf(model, 'https://b.example')).toBe(first.jwks);
  } finally {
    fetcher.close();
  }
});

it('stops fetching a source no rule names any more', async () => {
  answers.set('/c/keys', first.jwks);
  const model = modelOf([
    pod('web-1', meshed()),
    requestAuthentication('c', { issuer: 'https://c.example', jwksUri: `${base}/c/keys` }),
  ]);
  const { fetcher } = start(model, { refreshMs: 50, retryMs: 50 });
  try {
    await until('the keys', () => keysOf(model, 'https://c.example') === first.jwks);
    model.remove({ kind: 'RequestAuthentication', namespace: 'default', name: 'c' });
    model.upsert(
      valid(requestAuthentication('d', { issuer: 'https://d.example', jwks: first.jwks })),
    );
    model.commit();
    fetcher.sync();
    const after = hits.get('/c/keys') ?? 0;
    await new Promise((r) => setTimeout(r, 300));
    expect(hits.get('/c/keys')).toBe(after);
  } finally {
    fetcher.close();
  }
});

it('refuses keys larger than 1 MiB (a JWKS is a few KiB): tokens of the issuer stay refused', async () => {
  answers.set('/e/keys', JSON.stringify({ keys: [], padding: 'x'.repeat(1_100_000) }));
  const model = modelOf([
    pod('web-1', meshed()),
    requestAuthentication('e', { issuer: 'https://e.example', jwksUri: `${base}/e/keys` }),
  ]);
  const warnings: string[] = [];
  const log = { info: () => {}, warn: (o: object) => warnings.push(JSON.stringify(o)) };
  const { fetcher } = start(model, { refreshMs: 60_000, retryMs: 60_000 }, log);
  try {
    await until('the failed fetch', () => warnings.length > 0);
    expect(warnings[0]).toContain('more than 1048576 bytes');
    expect(keysOf(model, 'https://e.example')).toBeNull();
  } finally {
    fetcher.close();
  }
});
