// The agent's mesh client against a real `mooring serve --mesh-dir` (the compiled CLI as a
// process, TLS pinned to its trust bundle): the first configuration, a file change, a change of
// the config file's mesh part without a restart, the last good state kept while the server is
// down and a new snapshot after it comes back, the debug views and `mooring proxy-config`, an
// invalid object reported, and --workers.
import { execFile } from 'node:child_process';
import { chmodSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, type AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { MeshClient, type MeshChange } from '../../src/agent/mesh-client';
import { buildDist, httpGet, readyPorts, spawnServe, waitFor, type Spawned } from './serve-helpers';

const ROOT = join(__dirname, '..', '..');
const TOKEN = 'web-token-5d1c9a';

const WEB = (address: string) => `apiVersion: v1
kind: Service
metadata: {name: web, namespace: shop}
spec:
  clusterIP: 10.96.0.10
  selector: {app: web}
  ports: [{name: http, port: 80, targetPort: 8080}]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {name: web-1, namespace: shop, labels: {kubernetes.io/service-name: web}}
addressType: IPv4
endpoints: [{addresses: [${address}], targetRef: {kind: Pod, name: web-1}}]
ports: [{name: http, port: 8080}]
---
apiVersion: v1
kind: Pod
metadata:
  name: web-1
  namespace: shop
  labels: {app: web}
  annotations: {mooring.dev/status: '{"containers":["mooring-proxy"]}'}
spec:
  serviceAccountName: web
  containers: [{name: app, image: app, ports: [{containerPort: 8080}]}]
status: {podIP: 10.0.0.1}
`;

beforeAll(buildDist, 120_000);

let dir: string;
const running: Spawned[] = [];
const clients: MeshClient[] = [];

beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'mooring-mesh-serve-'));
  const data = join(dir, 'data');
  mkdirSync(data, { mode: 0o700 });
  chmodSync(data, 0o700);
  writeFileSync(
    join(data, 'tokens.json'),
    JSON.stringify({ [TOKEN]: { namespace: 'shop', serviceAccount: 'web' } }),
    { mode: 0o600 },
  );
  mkdirSync(join(dir, 'mesh'));
  writeFileSync(join(dir, 'mesh', 'web.yaml'), WEB('10.0.0.1'));
  writeFileSync(join(dir, 'config.yaml'), 'mesh:\n  accessLog: false\n');
});

afterEach(async () => {
  for (const c of clients.splice(0)) await c.stop();
  for (const s of running.splice(0)) {
    s.child.kill('SIGKILL');
    await s.exit;
  }
  rmSync(dir, { recursive: true, force: true });
});

async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const { port } = server.address() as AddressInfo;
  await new Promise<void>((r) => server.close(() => r()));
  return port;
}

function serve(port: number, ...extra: string[]): Spawned {
  const s = spawnServe([
    ...[
      '--data-dir',
      join(dir, 'data'),
      '--mesh-dir',
      join(dir, 'mesh'),
      '--config',
      join(dir, 'config.yaml'),
    ],
    ...['--listen', `127.0.0.1:${port}`, '--admin-listen', '127.0.0.1:0', ...extra],
  ]);
  running.push(s);
  return s;
}

function client(port: number): { client: MeshClient; changes: MeshChange[]; logs: string[] } {
  const logs: string[] = [];
  const log = (fields: object, msg: string) => logs.push(JSON.stringify({ msg, ...fields }));
  const changes: MeshChange[] = [];
  const c = new MeshClient({
    url: new URL(`https://127.0.0.1:${port}`),
    pod: { name: 'web-1', namespace: 'shop', ip: '10.0.0.1' },
    readToken: () => Promise.resolve(TOKEN),
    roots: () => [readFileSync(join(dir, 'data', 'root-cert.pem'), 'utf8')],
    log: { info: log, warn: log, debug: log },
    minBackoffMs: 100,
    maxBackoffMs: 500,
  });
  c.onChange((change) => changes.push(change));
  clients.push(c);
  c.start();
  return { client: c, changes, logs };
}

const endpoints = (c: MeshClient): string[] | undefined =>
  c
    .state()
    ?.services.get('shop/web')
    ?.endpoints.map((e) => e.address);

function mooring(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(process.execPath, [join(ROOT, 'bin', 'mooring.js'), ...args], (err, stdout, stderr) =>
      resolve({
        code: err === null ? 0 : typeof err.code === 'number' ? err.code : 1,
        stdout,
        stderr,
      }),
    );
  });
}

describe('the mesh client against mooring serve --mesh-dir', () => {
  it('gets its configuration, then every change of the files and of the mesh configuration', async () => {
    const port = await freePort();
    const s = serve(port);
    await readyPorts(s);
    const { client: c } = client(port);
    const state = await c.firstState;
    expect(state.proxy).toMatchObject({
      identity: 'spiffe://cluster.local/ns/shop/sa/web',
      inbound: { ports: [{ port: 8080, protocol: 'http' }] },
    });
    expect(state.services.get('shop/web')?.endpoints).toMatchObject([
      { address: '10.0.0.1', identity: 'spiffe://cluster.local/ns/shop/sa/web' },
    ]);

    writeFileSync(join(dir, 'mesh', 'web.yaml'), WEB('10.0.0.2'));
    await waitFor('the new endpoint', () => (endpoints(c)?.[0] === '10.0.0.2' ? true : undefined));

    writeFileSync(join(dir, 'config.yaml'), 'mesh:\n  accessLog: true\n  mtlsMode: STRICT\n');
    await waitFor('the new settings', () =>
      c.state()?.settings.accessLog === true ? true : undefined,
    );
    expect(c.state()?.proxy.inbound.mtlsMode).toBe('STRICT');
    expect(s.stderr.join('\n')).toContain('mesh configuration changed: pushing it to the proxies');
  }, 60_000);

  it('keeps its last configuration while the server is down, and takes a new snapshot when it is back', async () => {
    const port = await freePort();
    const first = serve(port);
    await readyPorts(first);
    const { client: c, logs } = client(port);
    await c.firstState;
    first.child.kill('SIGTERM');
    expect((await first.exit).code).toBe(0);
    await waitFor('the lost stream', () => (c.status().connected ? undefined : true));
    writeFileSync(join(dir, 'mesh', 'web.yaml'), WEB('10.0.0.3'));
    // Down: the last configuration stays.
    await new Promise((r) => setTimeout(r, 600));
    expect(endpoints(c)).toEqual(['10.0.0.1']);
    expect(logs.some((l) => l.includes('mesh stream lost; keeping the last configuration'))).toBe(
      true,
    );
    const second = serve(port);
    await readyPorts(second);
    await waitFor(
      'the new snapshot',
      () => (endpoints(c)?.[0] === '10.0.0.3' ? true : undefined),
      30_000,
    );
    expect(c.status().connected).toBe(true);
    expect(logs.join('\n')).not.toContain(TOKEN);
  }, 90_000);

  it('shows the connected proxy and its configuration on the admin port and with mooring proxy-config', async () => {
    const port = await freePort();
    const s = serve(port);
    const { admin } = await readyPorts(s);
    const { client: c } = client(port);
    const state = await c.firstState;
    const syncz = JSON.parse((await httpGet(admin, '/debug/mesh/syncz')).body) as {
      proxies: { pod: string; versionSent: number }[];
    };
    expect(syncz.proxies).toMatchObject([{ pod: 'shop/web-1', versionSent: state.version }]);

    const summary = await mooring([
      'proxy-config',
      'shop/web-1',
      '--admin-url',
      `http://127.0.0.1:${admin}`,
    ]);
    expect(summary.code).toBe(0);
    expect(summary.stdout).toContain('Identity       spiffe://cluster.local/ns/shop/sa/web');
    expect(summary.stdout).toMatch(/shop\/web\s+10\.96\.0\.10\s+80\/http\s+1\/1 ready, 1 mTLS/);
    expect(summary.stdout).toMatch(/Streams\s+since .*version sent \d+ \(up to date\)/);
    const json = await mooring([
      'proxy-config',
      'shop/web-1',
      '--admin-url',
      `http://127.0.0.1:${admin}`,
      '-o',
      'json',
    ]);
    expect(JSON.parse(json.stdout)).toMatchObject({
      source: 'server',
      pod: 'shop/web-1',
      mesh: { proxy: { pod: { name: 'web-1' } } },
    });
    const unknown = await mooring([
      'proxy-config',
      'shop/ghost',
      '--admin-url',
      `http://127.0.0.1:${admin}`,
    ]);
    expect({ code: unknown.code, stderr: unknown.stderr }).toEqual({
      code: 1,
      stderr: 'mooring: HTTP_ERR_NOT_FOUND: the mesh does not know Pod shop/ghost\n',
    });
  }, 60_000);

  it('reports an invalid object in its log and on the admin port, and keeps serving the rest', async () => {
    const port = await freePort();
    const s = serve(port);
    const { admin } = await readyPorts(s);
    writeFileSync(
      join(dir, 'mesh', 'bad.yaml'),
      'apiVersion: v1\nkind: Service\nmetadata: {name: bad, namespace: shop}\nspec: {ports: [{port: 0}]}\n',
    );
    const line = await waitFor('the log line', () =>
      s.stderr.find((l) => l.includes('"invalid mesh object"')),
    );
    expect(JSON.parse(line)).toMatchObject({
      file: join(dir, 'mesh', 'bad.yaml'),
      kind: 'Service',
      namespace: 'shop',
      name: 'bad',
      field: 'spec.ports[0].port',
      effect: 'skipped',
    });
    const objects = JSON.parse((await httpGet(admin, '/debug/mesh/objects')).body) as {
      problems: unknown[];
    };
    expect(objects.problems).toMatchObject([{ name: 'bad', field: 'spec.ports[0].port' }]);
    const metrics = (await httpGet(admin, '/metrics')).body;
    expect(metrics).toContain('mooring_mesh_invalid_objects{kind="Service"} 1');
    const { client: c } = client(port);
    expect((await c.firstState).services.has('shop/web')).toBe(true);
  }, 60_000);

  it('works with --workers 2: the stream goes to a worker, the primary shows it', async () => {
    const port = await freePort();
    const s = serve(port, '--workers', '2');
    const { admin } = await readyPorts(s);
    const { client: c } = client(port);
    await c.firstState;
    const syncz = await waitFor('the stream in syncz', async () => {
      const body = JSON.parse((await httpGet(admin, '/debug/mesh/syncz')).body) as {
        proxies: { pod: string; worker?: number }[];
      };
      return body.proxies.length === 1 ? body : undefined;
    });
    expect(syncz.proxies[0]).toMatchObject({
      pod: 'shop/web-1',
      worker: expect.any(Number) as number,
    });
    writeFileSync(join(dir, 'mesh', 'web.yaml'), WEB('10.0.0.4'));
    await waitFor('the change through the worker', () =>
      endpoints(c)?.[0] === '10.0.0.4' ? true : undefined,
    );
    const metrics = (await httpGet(admin, '/metrics')).body;
    expect(metrics).toMatch(/^mooring_mesh_proxies_connected 1$/m);
  }, 90_000);
});
