// The agent's mesh client against a scripted HTTPS server (real TLS, the roots pinned): what it
// sends, the state it keeps through bad lines, refusals and silence, the roots it trusts, and the
// token it never logs.
import type { IncomingMessage, ServerResponse } from 'node:http';
import https from 'node:https';
import type { AddressInfo } from 'node:net';
import { MeshClient, type MeshChange } from '../../../src/agent/mesh-client';
import { MESH_API_VERSION, type MeshService } from '../../../src/api/mesh';
import { makeCa, makeServing } from '../../fixtures/agent-pki';
import { SETTINGS, WEB_PROXY } from '../../fixtures/mesh-objects';

const root = makeCa('Mesh Client Root');
const otherRoot = makeCa('Another Root');
const serving = makeServing(root);
const TOKEN = 'sa-token-0f9e8d7c6b5a';

const svc = (name: string, address = '10.96.0.1'): MeshService => ({
  key: `default/${name}`,
  name,
  namespace: 'default',
  hostname: `${name}.default.svc.cluster.local`,
  addresses: [address],
  ports: [{ port: 80, name: 'http', protocol: 'http' }],
  endpoints: [],
});

const snapshot = (version: number, services: MeshService[]) =>
  `${JSON.stringify({
    type: 'snapshot',
    apiVersion: MESH_API_VERSION,
    version,
    proxy: WEB_PROXY,
    settings: SETTINGS,
    services,
  })}\n`;
const delta = (version: number, fields: Record<string, unknown>) =>
  `${JSON.stringify({ type: 'delta', apiVersion: MESH_API_VERSION, version, ...fields })}\n`;

/** What the server does with the next connection; the last one repeats. */
type Script = (req: IncomingMessage, res: ServerResponse) => void;

interface FakeServer {
  readonly url: URL;
  readonly requests: { path: string; authorization: string | undefined }[];
  script(...steps: Script[]): void;
  close(): Promise<void>;
}

async function fakeServer(tls = serving): Promise<FakeServer> {
  let steps: Script[] = [];
  const requests: FakeServer['requests'] = [];
  const server = https.createServer({ cert: tls.cert, key: tls.key }, (req, res) => {
    requests.push({ path: req.url ?? '', authorization: req.headers.authorization });
    const step = steps.length > 1 ? steps.shift() : steps[0];
    step?.(req, res);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return {
    url: new URL(`https://localhost:${(server.address() as AddressInfo).port}`),
    requests,
    script: (...s) => {
      steps = s;
    },
    close: () =>
      new Promise((r) => {
        server.closeAllConnections();
        server.close(() => r());
      }),
  };
}

const stream =
  (...lines: string[]): Script =>
  (_req, res) => {
    res.writeHead(200, { 'content-type': 'application/x-ndjson' });
    for (const line of lines) res.write(line);
  };
const refuse =
  (status: number, body: unknown): Script =>
  (_req, res) => {
    res.writeHead(status, { 'content-type': 'application/json' });
    res.end(JSON.stringify(body));
  };

interface Logged {
  readonly msg: string;
  readonly fields: Record<string, unknown>;
}

const clients: MeshClient[] = [];
const servers: FakeServer[] = [];
afterEach(async () => {
  for (const c of clients.splice(0)) await c.stop();
  for (const s of servers.splice(0)) await s.close();
});

async function setup(options: { roots?: () => readonly string[]; idleMs?: number } = {}) {
  const server = await fakeServer();
  servers.push(server);
  const logs: Logged[] = [];
  const log = (fields: object, msg: string) =>
    logs.push({ msg, fields: fields as Record<string, unknown> });
  const changes: MeshChange[] = [];
  const client = new MeshClient({
    url: server.url,
    pod: { name: 'web-1', namespace: 'default', ip: '10.0.0.5' },
    readToken: () => Promise.resolve(`${TOKEN}\n`),
    roots: options.roots ?? (() => [root.pem]),
    log: { info: log, warn: log, debug: log },
    random: () => 0.5,
    minBackoffMs: 20,
    maxBackoffMs: 100,
    ...(options.idleMs === undefined ? {} : { idleMs: options.idleMs }),
  });
  clients.push(client);
  client.onChange((c) => changes.push(c));
  return { server, client, logs, changes };
}

async function until<T>(
  what: string,
  probe: () => T | undefined | false,
  timeoutMs = 20_000,
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = probe();
    if (value !== undefined && value !== false) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

describe('the mesh client', () => {
  it('asks for its Pod with the token, and applies the snapshot then each delta', async () => {
    const { server, client, changes } = await setup();
    server.script(
      stream(
        snapshot(3, [svc('a'), svc('b')]),
        delta(4, { services: [svc('a', '10.96.0.9')], removed: ['default/b'] }),
      ),
    );
    client.start();
    const first = await client.firstState;
    expect(first.version).toBeGreaterThanOrEqual(3);
    await until('the delta', () => client.state()?.version === 4);
    expect(server.requests[0]).toEqual({
      path: '/v1/mesh/watch?pod=web-1&namespace=default&ip=10.0.0.5',
      authorization: `Bearer ${TOKEN}`,
    });
    expect([...(client.state()?.services.values() ?? [])].map((s) => [s.key, s.addresses])).toEqual(
      [['default/a', ['10.96.0.9']]],
    );
    expect(
      changes.map((c) => [c.message.type, c.previous?.version ?? null, c.state.version]),
    ).toEqual([
      ['snapshot', null, 3],
      ['delta', 3, 4],
    ]);
    expect(client.status()).toMatchObject({ connected: true, version: 4 });
  });

  it("keeps its last good state after a bad line, and takes the next stream's snapshot", async () => {
    const { server, client, logs } = await setup();
    server.script(
      stream(snapshot(1, [svc('a')]), '{"type":"delta","apiVer\n'),
      stream(delta(9, { services: [svc('x')] })),
      stream(snapshot(1, [svc('a'), svc('c')])),
    );
    client.start();
    await client.firstState;
    await until(
      'the third stream',
      () => server.requests.length >= 3 && client.state()?.services.has('default/c'),
    );
    expect([...(client.state()?.services.keys() ?? [])]).toEqual(['default/a', 'default/c']);
    const reasons = logs
      .filter((l) => l.msg === 'mesh stream lost; keeping the last configuration')
      .map((l) => l.fields.reason);
    expect(reasons[0]).toMatch(/^bad message from the mesh server: not JSON/);
    expect(reasons[1]).toMatch(/a delta arrived before the stream's snapshot/);
    expect(
      logs.find((l) => l.msg === 'mesh stream lost; keeping the last configuration')?.fields
        .keptVersion,
    ).toBe(1);
  });

  it('refuses a delta whose version does not grow, keeping the state', async () => {
    const { server, client } = await setup();
    server.script(
      stream(snapshot(5, [svc('a')]), delta(5, { removed: ['default/a'] })),
      refuse(503, {}),
    );
    client.start();
    await client.firstState;
    await until('the failure', () =>
      client.status().lastError?.includes('does not follow version 5'),
    );
    expect(client.state()?.services.has('default/a')).toBe(true);
  });

  it('says why the server refused, and retries', async () => {
    const { server, client } = await setup();
    server.script(
      refuse(403, {
        code: 'MESH_ERR_FORBIDDEN',
        message: 'Pod default/web-1 runs as service account web, not api',
      }),
      stream(snapshot(1, [])),
    );
    client.start();
    await client.firstState;
    expect(server.requests.length).toBe(2);
    expect(client.status()).toMatchObject({
      reconnects: 1,
      lastError:
        'the mesh server refused the watch (MESH_ERR_FORBIDDEN: Pod default/web-1 runs as service account web, not api)',
    });
  });

  it('keeps the state while the server is away, and reconnects with a new snapshot', async () => {
    const { server, client } = await setup();
    server.script(
      (_req, res) => {
        stream(snapshot(1, [svc('a')]))(_req, res);
        setTimeout(() => res.destroy(), 50);
      },
      stream(snapshot(1, [svc('b')])),
    );
    client.start();
    await client.firstState;
    await until('the new snapshot', () => client.state()?.services.has('default/b'));
    expect(client.state()?.services.has('default/a')).toBe(false);
  });

  it('treats a silent stream as dead', async () => {
    const { server, client } = await setup({ idleMs: 200 });
    server.script(stream(snapshot(1, [svc('a')])), stream(snapshot(2, [svc('a')])));
    client.start();
    await until('the second stream', () => client.state()?.version === 2);
    expect(client.status().lastError).toBe('no message for 200 ms: the stream is dead');
  });

  it('trusts only the roots it is given, and new roots at the next connection', async () => {
    let roots = [otherRoot.pem];
    const { server, client } = await setup({ roots: () => roots });
    server.script(stream(snapshot(1, [svc('a')])));
    client.start();
    await until('a TLS failure', () =>
      client.status().lastError?.includes('is not trusted by the root file'),
    );
    expect(client.state()).toBeNull();
    roots = [otherRoot.pem, root.pem];
    await client.firstState;
    expect(client.state()?.services.has('default/a')).toBe(true);
  });

  it('never logs the token, not even when the server repeats it', async () => {
    const { server, client, logs } = await setup();
    server.script(
      refuse(401, { code: 'CA_ERR_UNAUTHENTICATED', message: `token Bearer ${TOKEN} is unknown` }),
      stream(snapshot(1, [])),
    );
    client.start();
    await client.firstState;
    const text = JSON.stringify(logs);
    expect(text).not.toContain(TOKEN);
    expect(text).toContain('Bearer [redacted]');
  });

  it('stops, keeping its state readable', async () => {
    const { server, client } = await setup();
    server.script(stream(snapshot(1, [svc('a')])));
    client.start();
    await client.firstState;
    await client.stop();
    expect(client.status().connected).toBe(false);
    expect(client.state()?.services.has('default/a')).toBe(true);
  });
});
