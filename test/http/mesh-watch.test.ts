// GET /v1/mesh/watch over real HTTPS, the server's CA pinned: refusals in the house's JSON,
// snapshot then debounced delta, heartbeats, and a slow reader that never makes the server
// buffer more than one message.
import type { AddressInfo } from 'node:net';
import type { FastifyInstance } from 'fastify';
import type { Authenticator } from '../../src/ca/ports';
import { MooringError } from '../../src/errors';
import { MeshModel } from '../../src/mesh';
import { CHUNK_BYTES, MeshPush } from '../../src/server/mesh/push';
import { makeCa, makeServing } from '../fixtures/agent-pki';
import {
  endpointSlice,
  meshed,
  MODEL_OPTIONS,
  pod,
  service,
  valid,
  withClusterIP,
  withEndpoint,
  withIP,
  withPort,
  withAnnotation,
  withServiceAccount,
  withSlicePort,
} from '../fixtures/mesh-objects';
import { openWatch } from '../fixtures/mesh-stream';
import { buildTestWebhookApp, metricValue, type TestWebhookApp } from './helpers';

const root = makeCa('Mesh Test Root');
const serving = makeServing(root);

const TOKENS: Record<string, { namespace: string; serviceAccount: string }> = {
  'tok-web': { namespace: 'default', serviceAccount: 'web' },
  'tok-other-sa': { namespace: 'default', serviceAccount: 'api' },
  'tok-other-ns': { namespace: 'shop', serviceAccount: 'web' },
};
const authenticator: Authenticator = {
  authenticateWorkload: (token) =>
    TOKENS[token] === undefined
      ? Promise.reject(new MooringError('CA_ERR_UNAUTHENTICATED', 'unknown token'))
      : Promise.resolve(TOKENS[token]),
};

const WEB_POD = { pod: 'web-1', namespace: 'default' };

function meshModel(): MeshModel {
  const model = new MeshModel(MODEL_OPTIONS);
  for (const raw of [
    service('web', withPort(80, 'http', 8080), withClusterIP('10.96.0.10')),
    endpointSlice('web', withSlicePort(8080, 'http'), withEndpoint('10.0.0.1', { pod: 'web-1' })),
    pod('web-1', meshed(), withServiceAccount('web'), withIP('10.0.0.1')),
  ]) {
    model.upsert(valid(raw));
  }
  return model;
}

interface Server {
  readonly app: FastifyInstance;
  readonly test: TestWebhookApp;
  readonly port: number;
  readonly push: MeshPush;
  readonly model: MeshModel;
}

const servers: Server[] = [];

async function start(
  options: { synced?: boolean; heartbeatMs?: number; stallMs?: number } = {},
): Promise<Server> {
  const model = meshModel();
  const push = new MeshPush({
    model,
    log: { info: () => undefined, warn: () => undefined, debug: () => undefined },
    quietMs: 50,
    heartbeatMs: options.heartbeatMs ?? 60_000,
    ...(options.stallMs === undefined ? {} : { stallMs: options.stallMs }),
  });
  if (options.synced ?? true) push.markSynced();
  const test = buildTestWebhookApp({ authenticator, meshWatch: push, tls: serving });
  await test.app.listen({ host: '127.0.0.1', port: 0 });
  const server = {
    app: test.app,
    test,
    port: (test.app.server.address() as AddressInfo).port,
    push,
    model,
  };
  servers.push(server);
  return server;
}

afterEach(async () => {
  for (const s of servers.splice(0)) {
    s.push.close();
    await s.app.close();
  }
});

const watch = (s: Server, token: string | undefined, query: Record<string, string> = WEB_POD) =>
  openWatch({ port: s.port, ca: root.pem, ...(token === undefined ? {} : { token }), query });

describe('GET /v1/mesh/watch refuses', () => {
  it.each([
    ['a request without token', undefined, WEB_POD, 401, 'CA_ERR_UNAUTHENTICATED'],
    ['an unknown token', 'nope', WEB_POD, 401, 'CA_ERR_UNAUTHENTICATED'],
    ['a token of another namespace', 'tok-other-ns', WEB_POD, 403, 'MESH_ERR_FORBIDDEN'],
    ['a token of another service account', 'tok-other-sa', WEB_POD, 403, 'MESH_ERR_FORBIDDEN'],
    [
      'a Pod the mesh does not know',
      'tok-web',
      { pod: 'ghost', namespace: 'default' },
      404,
      'MESH_ERR_POD_NOT_FOUND',
    ],
    ['a request without pod', 'tok-web', { namespace: 'default' }, 400, 'MESH_ERR_QUERY'],
    [
      'a pod name that is not one',
      'tok-web',
      { pod: 'Web_1', namespace: 'default' },
      400,
      'MESH_ERR_QUERY',
    ],
    ['an ip that is not one', 'tok-web', { ...WEB_POD, ip: '10.0.0.300' }, 400, 'MESH_ERR_QUERY'],
    ['an unknown parameter', 'tok-web', { ...WEB_POD, watch: 'true' }, 400, 'MESH_ERR_QUERY'],
    [
      "an ip that is not the Pod's",
      'tok-web',
      { ...WEB_POD, ip: '10.0.0.9' },
      403,
      'MESH_ERR_FORBIDDEN',
    ],
  ] as const)('%s, in JSON', async (_sentence, token, query, status, code) => {
    const s = await start();
    const w = await watch(s, token, query);
    expect({ status: w.status, code: w.error?.code, type: w.contentType }).toEqual({
      status,
      code,
      type: 'application/json; charset=utf-8',
    });
    expect(s.push.count()).toBe(0);
  });

  it('a watch before the mesh is loaded, with 503', async () => {
    const s = await start({ synced: false });
    const w = await watch(s, 'tok-web');
    expect({ status: w.status, code: w.error?.code }).toEqual({
      status: 503,
      code: 'MESH_ERR_NOT_READY',
    });
  });

  it('and names the rule: the Pod runs as another service account', async () => {
    const s = await start();
    const w = await watch(s, 'tok-other-sa');
    expect(w.error?.message).toBe('Pod default/web-1 runs as service account web, not api');
    expect(
      await metricValue(s.test.registry, 'mooring_authentication_failures_total', {
        route: 'mesh',
      }),
    ).toBeUndefined();
    await watch(s, 'nope');
    expect(
      await metricValue(s.test.registry, 'mooring_authentication_failures_total', {
        route: 'mesh',
        reason: 'invalid',
      }),
    ).toBe(1);
  });
});

describe('GET /v1/mesh/watch streams', () => {
  it('a snapshot, then a delta with only the Service that changed', async () => {
    const s = await start();
    const w = await watch(s, 'tok-web', { ...WEB_POD, ip: '10.0.0.1' });
    expect({ status: w.status, type: w.contentType }).toEqual({
      status: 200,
      type: 'application/x-ndjson',
    });
    const snapshot = await w.next((m) => m.type === 'snapshot');
    expect(snapshot).toMatchObject({
      proxy: {
        identity: 'spiffe://cluster.local/ns/default/sa/web',
        pod: { name: 'web-1', ip: '10.0.0.1' },
      },
      services: [{ key: 'default/web', endpoints: [{ address: '10.0.0.1' }] }],
    });
    s.model.upsert(
      valid(endpointSlice('web', withSlicePort(8080, 'http'), withEndpoint('10.0.0.2'))),
    );
    s.model.upsert(valid(service('api', withPort(80, 'http'))));
    s.push.changed();
    const delta = await w.next((m) => m.type === 'delta');
    expect(delta.version).toBeGreaterThan(snapshot.version);
    expect(
      delta.type === 'delta'
        ? delta.services?.map((x) => [x.key, x.endpoints.map((e) => e.address)])
        : null,
    ).toEqual([
      ['default/api', []],
      ['default/web', ['10.0.0.2']],
    ]);
    expect(s.push.streamViews()).toMatchObject([
      { pod: 'default/web-1', versionSent: delta.version, messages: 2 },
    ]);
  });

  it("its own scope when its Pod changed, and not another proxy's", async () => {
    const s = await start();
    s.model.upsert(valid(pod('web-2', meshed(), withServiceAccount('web'), withIP('10.0.0.2'))));
    s.push.flush();
    const one = await watch(s, 'tok-web');
    const two = await watch(s, 'tok-web', { pod: 'web-2', namespace: 'default' });
    await one.next((m) => m.type === 'snapshot');
    await two.next((m) => m.type === 'snapshot');
    s.model.upsert(
      valid(
        pod(
          'web-1',
          meshed(),
          withServiceAccount('web'),
          withIP('10.0.0.1'),
          withAnnotation('proxy.mooring.dev/access-log', 'true'),
        ),
      ),
    );
    s.push.changed();
    expect(await one.next((m) => m.type === 'delta')).toMatchObject({ proxy: { accessLog: true } });
    // The other proxy's scope did not change, and no Service did: it is sent nothing.
    await new Promise((r) => setTimeout(r, 300));
    expect(two.messages.map((m) => m.type)).toEqual(['snapshot']);
  });

  it('one delta for a burst of changes (the debounce)', async () => {
    const s = await start();
    const w = await watch(s, 'tok-web');
    await w.next((m) => m.type === 'snapshot');
    for (let i = 2; i <= 20; i++) {
      s.model.upsert(
        valid(endpointSlice('web', withSlicePort(8080, 'http'), withEndpoint(`10.0.0.${i}`))),
      );
      s.push.changed();
    }
    const delta = await w.next((m) => m.type === 'delta');
    expect(
      delta.type === 'delta' ? delta.services?.[0]?.endpoints.map((e) => e.address) : null,
    ).toEqual(['10.0.0.20']);
    expect(w.messages.filter((m) => m.type === 'delta')).toHaveLength(1);
  });

  it('heartbeats while nothing changes, with the version it holds', async () => {
    const s = await start({ heartbeatMs: 200 });
    const w = await watch(s, 'tok-web');
    const snapshot = await w.next((m) => m.type === 'snapshot');
    const heartbeat = await w.next((m) => m.type === 'heartbeat');
    expect(heartbeat).toEqual({
      type: 'heartbeat',
      apiVersion: 'mooring.dev/mesh/v1',
      version: snapshot.version,
    });
  });

  it('ends every stream when the server closes, so that agents reconnect elsewhere', async () => {
    const s = await start();
    const w = await watch(s, 'tok-web');
    await w.next((m) => m.type === 'snapshot');
    const ended = new Promise<void>((resolve) => w.res.on('end', resolve));
    s.push.close();
    await ended;
    expect(s.push.count()).toBe(0);
  });
});

describe('a slow reader', () => {
  /** A Service with `n` endpoints, about 250 bytes each on the wire. */
  const bigSlice = (n: number, tag: number) =>
    valid(
      endpointSlice(
        'web',
        withSlicePort(8080, 'http'),
        ...Array.from({ length: n }, (_, i) =>
          withEndpoint(`10.${tag % 250}.${Math.floor(i / 250)}.${i % 250}`, { pod: `web-${i}` }),
        ),
      ),
    );

  /** Changes of about 1 MB each until the stream's socket buffers are full. */
  async function fillSocket(s: Server): Promise<void> {
    for (let round = 1; s.push.waiting() === 0 && round <= 200; round++) {
      s.model.upsert(bigSlice(4000, round));
      s.push.flush();
      await new Promise((r) => setTimeout(r, 20));
    }
  }

  it('is not written to while its socket is full, then gets one delta with everything since', async () => {
    const s = await start();
    const w = await watch(s, 'tok-web');
    await w.next((m) => m.type === 'snapshot');
    w.res.pause();
    await fillSocket(s);
    expect(s.push.waiting()).toBe(1);
    const [before] = s.push.streamViews();
    for (let i = 0; i < 30; i++) {
      s.model.upsert(bigSlice(4000, 1000 + i));
      s.push.flush();
    }
    const [during] = s.push.streamViews();
    // Not one more message was queued for it, whatever the number of changes.
    expect({ messages: during?.messages, bytes: during?.bytes }).toEqual({
      messages: before?.messages,
      bytes: before?.bytes,
    });
    expect(s.model.version).toBeGreaterThan(before?.versionSent ?? Infinity);
    const finalVersion = s.model.version;
    w.res.resume();
    const caughtUp = await w.next((m) => m.type === 'delta' && m.version === finalVersion, 60_000);
    // The last change's endpoints (tag 1029: 10.29.x.y).
    expect(caughtUp.type === 'delta' ? caughtUp.services?.[0]?.endpoints[0]?.address : null).toBe(
      '10.29.0.0',
    );
    // 30 changes while it waited: one delta brought it up to date.
    expect(
      w.messages.filter((m) => m.type === 'delta' && m.version > (before?.versionSent ?? 0)),
    ).toHaveLength(1);
    expect(s.push.waiting()).toBe(0);
  }, 120_000);

  it('is sent a snapshot larger than its socket buffers chunk by chunk, never held whole', async () => {
    const s = await start();
    for (let i = 0; i < 12; i++) {
      s.model.upsert(
        valid(
          endpointSlice(
            `big-${i}`,
            withSlicePort(8080, 'http'),
            ...Array.from({ length: 4000 }, (_, j) =>
              withEndpoint(`10.${i}.${Math.floor(j / 250)}.${j % 250}`),
            ),
          ),
        ),
      );
      s.model.upsert(valid(service(`big-${i}`, withPort(80, 'http', 8080))));
    }
    s.push.flush();
    const w = await watch(s, 'tok-web');
    w.res.pause();
    const deadline = Date.now() + 20_000;
    while (s.push.streamViews()[0]?.waitingForReader !== true && Date.now() < deadline) {
      await new Promise((r) => setTimeout(r, 20));
    }
    const [view] = s.push.streamViews();
    expect(view?.waitingForReader).toBe(true);
    // About 5 MB to send: the server holds at most one chunk more than the socket took.
    expect(view?.bytes).toBeGreaterThan(4_000_000);
    expect(view?.buffered).toBeLessThanOrEqual(2 * CHUNK_BYTES);
    w.res.resume();
    const snapshot = await w.next((m) => m.type === 'snapshot', 60_000);
    expect(snapshot.type === 'snapshot' ? snapshot.services.length : 0).toBe(13);
  }, 120_000);

  it('is closed when it reads nothing for too long', async () => {
    const s = await start({ stallMs: 300, heartbeatMs: 100 });
    const w = await watch(s, 'tok-web');
    await w.next((m) => m.type === 'snapshot');
    w.res.pause();
    // Changes keep coming; the kernel's buffers grow, then fill: the stream stalls, and closes.
    const deadline = Date.now() + 60_000;
    for (let round = 1; s.push.count() > 0 && Date.now() < deadline; round++) {
      s.model.upsert(bigSlice(4000, round));
      s.push.flush();
      await new Promise((r) => setTimeout(r, 20));
    }
    expect(s.push.count()).toBe(0);
  }, 120_000);
});
