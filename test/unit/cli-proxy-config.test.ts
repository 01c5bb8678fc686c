// `mooring proxy-config` against a proxy's own admin port (its /config_dump, the shape the
// server's view has), and its usage errors. The server's view is tested against a real
// `mooring serve` in test/integration/mesh-serve.test.ts.
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { PassThrough } from 'node:stream';
import { meshConfigDump, type MeshService, type MeshState } from '../../src/api/mesh';
import { main } from '../../src/cli/main';

async function run(args: string[]): Promise<{ code: number; out: string; err: string }> {
  const stdout = new PassThrough();
  const stderr = new PassThrough();
  const out: Buffer[] = [];
  const err: Buffer[] = [];
  stdout.on('data', (c: Buffer) => out.push(c));
  stderr.on('data', (c: Buffer) => err.push(c));
  const code = await main(['node', 'mooring', 'proxy-config', ...args], {
    stdin: new PassThrough(),
    stdout,
    stderr,
  });
  return {
    code,
    out: Buffer.concat(out).toString('utf8'),
    err: Buffer.concat(err).toString('utf8'),
  };
}

const web: MeshService = {
  key: 'shop/web',
  name: 'web',
  namespace: 'shop',
  hostname: 'web.shop.svc.cluster.local',
  addresses: ['10.96.0.10'],
  ports: [{ port: 80, name: 'http', protocol: 'http' }],
  endpoints: [
    {
      address: '10.0.0.1',
      ports: { '80': 8080 },
      ready: true,
      identity: 'spiffe://cluster.local/ns/shop/sa/web',
      workload: { name: 'web', namespace: 'shop', app: 'web', version: 'v1' },
      pod: 'web-1',
    },
    {
      address: '10.0.0.2',
      ports: { '80': 8080 },
      ready: false,
      identity: null,
      workload: null,
      pod: null,
    },
  ],
};

const state: MeshState = {
  version: 7,
  proxy: {
    pod: { name: 'web-1', namespace: 'shop', ip: '10.0.0.1' },
    identity: 'spiffe://cluster.local/ns/shop/sa/web',
    workload: { name: 'web', namespace: 'shop', app: 'web', version: 'v1' },
    inbound: {
      mtlsMode: 'STRICT',
      portMtls: { '9090': 'DISABLE' },
      ports: [{ port: 8080, protocol: 'http' }],
      source: 'PeerAuthentication shop/strict (namespace)',
      authorization: [
        { name: 'shop/deny-admin', action: 'DENY', rules: [{ to: [{ paths: ['/admin*'] }] }, {}] },
        { name: 'shop/from-web', action: 'ALLOW', rules: [{}] },
      ],
      jwt: [
        { source: 'shop/jwt', issuer: 'https://issuer.example.com', jwks: '{"keys":[]}' },
        { source: 'mooring-system/sso', issuer: 'https://sso.example.com', jwks: null },
      ],
    },
  },
  settings: {
    trustDomain: 'cluster.local',
    protocolDetectionTimeoutMs: 100,
    tracing: { otlpEndpoint: 'http://collector:4318', samplingPercent: 1 },
    accessLog: false,
  },
  services: new Map([[web.key, web]]),
};

let server: http.Server;
let url: string;
beforeAll(async () => {
  server = http.createServer((req, res) => {
    if (req.url !== '/config_dump') {
      res.writeHead(404).end('{}');
      return;
    }
    res.writeHead(200, { 'content-type': 'application/json' });
    res.end(
      JSON.stringify({
        source: 'proxy',
        mesh: meshConfigDump(state),
        connections: { outbound: 3 },
      }),
    );
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});
afterAll(() => new Promise<void>((r) => server.close(() => r())));

describe('mooring proxy-config', () => {
  it("prints a summary of what a proxy holds, from the proxy's own /config_dump", async () => {
    const { code, out } = await run(['--proxy-admin', url]);
    expect(code).toBe(0);
    expect(out).toBe(
      [
        `Pod            shop/web-1 (10.0.0.1), version 7, from the proxy at ${url}`,
        'Identity       spiffe://cluster.local/ns/shop/sa/web',
        'Workload       web (app web, version v1)',
        'Inbound mTLS   STRICT (PeerAuthentication shop/strict (namespace)); ports 9090 DISABLE',
        'Inbound ports  8080/http',
        'Authorization  DENY shop/deny-admin (2 rules), ALLOW shop/from-web (1 rule)',
        'JWT            https://issuer.example.com (shop/jwt), https://sso.example.com (mooring-system/sso, keys not fetched: its tokens refused)',
        'Settings       tracing http://collector:4318 (1%), access log off, protocol detection 100 ms',
        '',
        'SERVICE   ADDRESSES   PORTS    ENDPOINTS',
        'shop/web  10.96.0.10  80/http  1/2 ready, 1 mTLS',
        '',
        'ENDPOINT       SERVICE   READY  IDENTITY                               WORKLOAD',
        '10.0.0.1:8080  shop/web  yes    spiffe://cluster.local/ns/shop/sa/web  web',
        '10.0.0.2:8080  shop/web  no     plain text                             -',
        '',
      ].join('\n'),
    );
  });

  it('prints the whole answer as JSON or YAML', async () => {
    const json = await run(['--proxy-admin', url, '-o', 'json']);
    expect(JSON.parse(json.out)).toMatchObject({
      source: 'proxy',
      connections: { outbound: 3 },
      mesh: { version: 7 },
    });
    const yaml = await run(['--proxy-admin', url, '-o', 'yaml']);
    expect(yaml.out).toContain('source: proxy\n');
  });

  it.each([
    ['no Pod and no --proxy-admin', [], 'name the Pod: mooring proxy-config <namespace>/<pod>'],
    ['a Pod without namespace', ['web-1'], 'the Pod must be <namespace>/<name>, not "web-1"'],
    [
      'an unknown output',
      ['shop/web-1', '-o', 'table'],
      '--output must be one of summary, json, yaml, not "table"',
    ],
    [
      'an admin URL that is not one',
      ['shop/web-1', '--admin-url', 'localhost:9090'],
      '--admin-url must be an http:// or https:// URL, not "localhost:9090"',
    ],
  ])('refuses %s (exit 2)', async (_sentence, args, message) => {
    expect(await run(args)).toMatchObject({
      code: 2,
      err: `mooring: ${message}\nmooring: run 'mooring proxy-config --help' for the usage\n`,
    });
  });

  it('says when the server cannot be reached (exit 1)', async () => {
    const { code, err } = await run(['shop/web-1', '--admin-url', 'http://127.0.0.1:9']);
    expect(code).toBe(1);
    expect(err).toMatch(/^mooring: cannot reach http:\/\/127\.0\.0\.1:9: .*ECONNREFUSED/);
  });
});
