import { mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PassThrough } from 'node:stream';
import { parseAllDocuments } from 'yaml';
import { main } from '../../src/cli/main';

interface Run {
  readonly code: number;
  readonly out: string;
  readonly err: string;
}

async function run(args: string[], stdinText?: string): Promise<Run> {
  const stdin = new PassThrough();
  const stdout = new PassThrough();
  const stderr = new PassThrough();
  const out: Buffer[] = [];
  const err: Buffer[] = [];
  stdout.on('data', (c: Buffer) => out.push(c));
  stderr.on('data', (c: Buffer) => err.push(c));
  stdin.end(stdinText ?? '');
  const code = await main(['node', 'mooring', 'inject', ...args], { stdin, stdout, stderr });
  return {
    code,
    out: Buffer.concat(out).toString('utf8'),
    err: Buffer.concat(err).toString('utf8'),
  };
}

const DEPLOYMENT = `apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  namespace: shop
spec:
  selector:
    matchLabels: {app: web}
  template:
    metadata:
      labels: {app: web}
    spec:
      containers:
        - name: web
          image: registry.example/web:1.0.0
`;
const SERVICE = `apiVersion: v1
kind: Service
metadata:
  name: web
spec:
  ports: [{port: 80}]
`;
const HOST_NETWORK_POD = `apiVersion: v1
kind: Pod
metadata:
  name: node-agent
spec:
  hostNetwork: true
  containers: [{name: agent, image: agent}]
`;

let dir: string;
beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'mooring-inject-'));
});
afterEach(() => {
  rmSync(dir, { recursive: true, force: true });
});

const file = (name: string, text: string): string => {
  const path = join(dir, name);
  writeFileSync(path, text);
  return path;
};

const kinds = (yamlText: string): unknown[] =>
  parseAllDocuments(yamlText).map((d) => (d.toJS() as { kind: string }).kind);

describe('mooring inject', () => {
  it('injects a Deployment from a file, writes YAML on stdout and what it did on stderr', async () => {
    const result = await run(['-f', file('app.yaml', `${DEPLOYMENT}---\n${SERVICE}`)]);
    expect(result.code).toBe(0);
    expect(kinds(result.out)).toEqual(['Deployment', 'Service']);
    expect(result.out).toContain('name: mooring-proxy');
    expect(result.out).toContain('name: mooring-init');
    expect(result.out).toContain(SERVICE);
    expect(result.err).toBe(
      'mooring: injected Deployment shop/web: native sidecar (init container, restartPolicy: Always), ' +
        'app containers wait for the proxy, no HTTP/TCP/gRPC probe to rewrite\n',
    );
  });

  it('reads stdin with -f -', async () => {
    const result = await run(['-f', '-'], DEPLOYMENT);
    expect(result.code).toBe(0);
    expect(result.out).toContain('name: mooring-proxy');
  });

  it('records its version in mooring.dev/status', async () => {
    const { version } = JSON.parse(
      readFileSync(join(__dirname, '..', '..', 'package.json'), 'utf8'),
    ) as { version: string };
    const result = await run(['-f', '-'], DEPLOYMENT);
    expect(result.out).toContain(`"version":"${version}"`);
  });

  it('passes a skipped Pod through unchanged, with the reason on stderr', async () => {
    const result = await run(['-f', file('pod.yaml', HOST_NETWORK_POD)]);
    expect(result.code).toBe(0);
    expect(result.out).toBe(HOST_NETWORK_POD);
    expect(result.err).toMatch(/^mooring: skipped Pod default\/node-agent: host_network: /);
  });

  it('writes -o FILE instead of stdout', async () => {
    const target = join(dir, 'out.yaml');
    const result = await run(['-f', file('app.yaml', DEPLOYMENT), '-o', target]);
    expect(result.code).toBe(0);
    expect(result.out).toBe('');
    expect(readFileSync(target, 'utf8')).toContain('name: mooring-proxy');
    expect(statSync(target).mode & 0o777).toBe(0o644);
  });

  it('exits 1 naming the -o file it cannot write, and reports no injection', async () => {
    const target = join(dir, 'no-such-dir', 'out.yaml');
    const result = await run(['-f', file('app.yaml', DEPLOYMENT), '-o', target]);
    expect(result.code).toBe(1);
    expect(result.err).toBe(`mooring: INJ_ERR_INPUT: cannot write ${target}: ENOENT\n`);
  });

  it('uses --config', async () => {
    const config = file(
      'mooring.yaml',
      'injector:\n  nativeSidecar: false\n  proxyImage: registry.example/proxy:9\n',
    );
    const result = await run(['-f', '-', '--config', config], DEPLOYMENT);
    expect(result.code).toBe(0);
    expect(result.out).toContain('image: registry.example/proxy:9');
    expect(result.err).toContain('classic sidecar');
  });

  it('exits 1 with the message for an invalid annotation, and writes nothing', async () => {
    const bad = DEPLOYMENT.replace(
      'labels: {app: web}\n    spec',
      'labels: {app: web}\n      annotations: {traffic.mooring.dev/exclude-inbound-ports: "80,http"}\n    spec',
    );
    const target = join(dir, 'out.yaml');
    const result = await run(['-f', file('bad.yaml', bad), '-o', target]);
    expect(result.code).toBe(1);
    expect(result.out).toBe('');
    expect(result.err).toBe(
      'mooring: INJ_ERR_ANNOTATION: Deployment shop/web: invalid annotation ' +
        'traffic.mooring.dev/exclude-inbound-ports: "80,http" "http" is not a port (1-65535)\n',
    );
    expect(() => statSync(target)).toThrow();
  });

  it('exits 1 for a file it cannot read or that is not YAML', async () => {
    const missing = await run(['-f', join(dir, 'missing.yaml')]);
    expect(missing.code).toBe(1);
    expect(missing.err).toContain('INJ_ERR_INPUT: cannot read');
    const broken = await run(['-f', '-'], 'kind: [Pod\n');
    expect(broken.code).toBe(1);
    expect(broken.err).toContain('INJ_ERR_INPUT: document 1 is not valid YAML or JSON');
    // The position, not the source lines (the manifest may be a Secret).
    const secret = await run(['-f', '-'], 'kind: Secret\ndata: {password: c2VjcmV0\n  x: y\n');
    expect(secret.code).toBe(1);
    expect(secret.err).toMatch(/at line \d+, column \d+\n$/);
    expect(secret.err).not.toContain('c2VjcmV0');
  });

  it('exits 1 for an invalid configuration', async () => {
    const result = await run(
      ['-f', '-', '--config', file('bad.yaml', 'injector:\n  nativeSidecr: true\n')],
      DEPLOYMENT,
    );
    expect(result.code).toBe(1);
    expect(result.err).toContain('CFG_ERR_INVALID');
  });

  it('exits 2 without -f', async () => {
    const result = await run([]);
    expect(result.code).toBe(2);
    expect(result.err).toContain("required option '-f, --filename <file>' not specified");
  });

  it('has --help with examples', async () => {
    const result = await run(['--help']);
    expect(result.code).toBe(0);
    expect(result.out).toContain('mooring inject -f deployment.yaml | kubectl apply -f -');
  });
});
