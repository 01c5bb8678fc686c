// The --mesh-dir source on real files: read at start, a change seen on its own (a notification
// or the poll), a bad object reported with file, kind, name and field and skipped while the rest
// keeps working, a deleted file's objects gone, a directory that vanishes leaving the mesh as is.
import { mkdtempSync, rmSync, writeFileSync, renameSync, unlinkSync, mkdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { MeshDirSource } from '../../src/adapters/mesh-dir';
import { isMooringError } from '../../src/errors';
import { MeshModel } from '../../src/mesh';
import { MODEL_OPTIONS } from '../fixtures/mesh-objects';

interface Logged {
  readonly level: 'info' | 'warn' | 'debug';
  readonly fields: Record<string, unknown>;
  readonly msg: string;
}

const SERVICE = (name: string, port: number | string = 80, ip = '10.96.0.10') => `apiVersion: v1
kind: Service
metadata:
  name: ${name}
spec:
  clusterIP: ${ip}
  ports:
    - name: http
      port: ${port}
      targetPort: 8080
`;
const SLICE = (service: string, address: string) => `apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: ${service}-1
  labels: {kubernetes.io/service-name: ${service}}
addressType: IPv4
endpoints: [{addresses: [${address}]}]
ports: [{name: http, port: 8080}]
`;

let dir: string;
let sources: MeshDirSource[] = [];

beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'mooring-mesh-dir-'));
});
afterEach(async () => {
  for (const s of sources) await s.stop();
  sources = [];
  rmSync(dir, { recursive: true, force: true });
});

function source(options: { pollMs?: number; watch?: boolean } = {}) {
  const model = new MeshModel(MODEL_OPTIONS);
  const logs: Logged[] = [];
  let changes = 0;
  const log = (level: Logged['level']) => (fields: object, msg: string) =>
    logs.push({ level, fields: fields as Record<string, unknown>, msg });
  const src = new MeshDirSource({
    dir,
    model,
    log: { info: log('info'), warn: log('warn'), debug: log('debug') },
    onChange: () => {
      changes += 1;
      model.commit();
    },
    ...(options.pollMs === undefined ? {} : { pollMs: options.pollMs }),
    ...(options.watch === undefined ? {} : { watch: options.watch }),
  });
  sources.push(src);
  return { src, model, logs, changes: () => changes };
}

const endpointsOf = (model: MeshModel, key = 'default/web') =>
  model.service(key)?.service.endpoints.map((e) => e.address);

async function until<T>(what: string, probe: () => T | undefined, timeoutMs = 20_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = probe();
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

describe('the --mesh-dir source', () => {
  it('reads every YAML and JSON file of the directory at start, and nothing else', async () => {
    writeFileSync(join(dir, 'web.yaml'), `${SERVICE('web')}---\n${SLICE('web', '10.0.0.1')}`);
    writeFileSync(
      join(dir, 'api.json'),
      JSON.stringify({
        apiVersion: 'v1',
        kind: 'Service',
        metadata: { name: 'api' },
        spec: { ports: [{ port: 80 }] },
      }),
    );
    writeFileSync(join(dir, 'notes.txt'), SERVICE('ignored'));
    mkdirSync(join(dir, 'sub'));
    writeFileSync(join(dir, 'sub', 'deep.yaml'), SERVICE('deep'));
    const { src, model } = source();
    await src.start();
    expect(model.visibleServices('default').map((b) => b.key)).toEqual([
      'default/api',
      'default/web',
    ]);
    expect(endpointsOf(model)).toEqual(['10.0.0.1']);
  });

  it('sees a change of a file on its own, and a new file', async () => {
    writeFileSync(join(dir, 'web.yaml'), `${SERVICE('web')}---\n${SLICE('web', '10.0.0.1')}`);
    const { src, model } = source();
    await src.start();
    writeFileSync(join(dir, 'web.yaml'), `${SERVICE('web')}---\n${SLICE('web', '10.0.0.2')}`);
    await until('the new endpoint', () =>
      endpointsOf(model)?.[0] === '10.0.0.2' ? true : undefined,
    );
    writeFileSync(join(dir, 'api.yml'), SERVICE('api'));
    await until('the new file', () => model.service('default/api'));
  });

  it('sees a change through its poll alone, an atomic rename included', async () => {
    writeFileSync(join(dir, 'web.yaml'), SERVICE('web', 80));
    const { src, model } = source({ pollMs: 100, watch: false });
    await src.start();
    const scans = src.scans;
    writeFileSync(join(dir, '.web.yaml.tmp'), SERVICE('web', 81));
    renameSync(join(dir, '.web.yaml.tmp'), join(dir, 'web.yaml'));
    await until('port 81', () =>
      model.service('default/web')?.service.ports[0]?.port === 81 ? true : undefined,
    );
    expect(src.scans).toBeGreaterThan(scans);
  });

  it('reports a bad object with its file, kind, name and field, skips it, and keeps the rest working', async () => {
    writeFileSync(join(dir, 'web.yaml'), `${SERVICE('web')}---\n${SLICE('web', '10.0.0.1')}`);
    const { src, model, logs } = source();
    await src.start();
    writeFileSync(
      join(dir, 'bad.yaml'),
      `${SERVICE('broken', 70000)}---\n${SERVICE('fine', 80, '10.96.0.11')}`,
    );
    await until('the good object of the bad file', () => model.service('default/fine'));
    expect(model.service('default/broken')).toBeUndefined();
    expect(endpointsOf(model)).toEqual(['10.0.0.1']);
    expect(src.problems()).toEqual([
      {
        source: join(dir, 'bad.yaml'),
        kind: 'Service',
        namespace: 'default',
        name: 'broken',
        field: 'spec.ports[0].port',
        message: 'must be a port number from 1 to 65535',
        effect: 'skipped',
      },
    ]);
    const warned = logs.filter((l) => l.msg === 'invalid mesh object');
    expect(warned.map((l) => l.fields)).toEqual([
      {
        file: join(dir, 'bad.yaml'),
        kind: 'Service',
        namespace: 'default',
        name: 'broken',
        field: 'spec.ports[0].port',
        effect: 'skipped',
        reason: 'must be a port number from 1 to 65535',
      },
    ]);
    // Logged once, not at every scan.
    await src.check();
    await src.check();
    expect(logs.filter((l) => l.msg === 'invalid mesh object')).toHaveLength(1);
  });

  it('keeps the last valid version of an object broken by an edit, and the objects of a file that is no longer YAML', async () => {
    writeFileSync(join(dir, 'web.yaml'), `${SERVICE('web', 80)}---\n${SLICE('web', '10.0.0.1')}`);
    const { src, model } = source();
    await src.start();
    writeFileSync(
      join(dir, 'web.yaml'),
      `${SERVICE('web', 'eighty')}---\n${SLICE('web', '10.0.0.3')}`,
    );
    await until('the slice change', () =>
      endpointsOf(model)?.[0] === '10.0.0.3' ? true : undefined,
    );
    expect(model.service('default/web')?.service.ports[0]?.port).toBe(80);
    expect(src.problems().map((p) => p.effect)).toEqual(['kept-last-valid']);
    writeFileSync(join(dir, 'web.yaml'), 'kind: Service\n  metadata: [\n');
    await until('the syntax error', () => (src.problems()[0]?.field === '' ? true : undefined));
    expect(endpointsOf(model)).toEqual(['10.0.0.3']);
  });

  it("drops a deleted file's objects", async () => {
    writeFileSync(join(dir, 'web.yaml'), SERVICE('web'));
    writeFileSync(join(dir, 'api.yaml'), SERVICE('api'));
    const { src, model } = source();
    await src.start();
    unlinkSync(join(dir, 'api.yaml'));
    await until('the removal', () =>
      model.service('default/api') === undefined ? true : undefined,
    );
    expect(model.service('default/web')).toBeDefined();
  });

  it('keeps the mesh as it is when the directory goes away', async () => {
    writeFileSync(join(dir, 'web.yaml'), SERVICE('web'));
    const { src, model, logs } = source();
    await src.start();
    rmSync(dir, { recursive: true, force: true });
    await src.check();
    expect(model.service('default/web')).toBeDefined();
    expect(
      logs.some((l) => l.msg === 'cannot read the mesh directory; keeping the mesh as it is'),
    ).toBe(true);
  });

  it('refuses to start on a directory that does not exist, naming it', async () => {
    rmSync(dir, { recursive: true, force: true });
    const { src } = source();
    const err: unknown = await src.start().then(
      () => null,
      (e: unknown) => e,
    );
    expect(isMooringError(err) && err.code).toBe('CFG_ERR_READ');
    expect((err as Error).message).toContain(`--mesh-dir ${dir}: cannot read it`);
  });
});
