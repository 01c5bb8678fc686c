import { isMeshFile, mergeMeshFiles, readMeshFile, type FileObjects } from '../../../src/mesh';

const SERVICE = (name: string, port: number | string = 80) => `apiVersion: v1
kind: Service
metadata:
  name: ${name}
spec:
  clusterIP: 10.96.0.10
  ports:
    - name: http
      port: ${port}
`;

const POLICY = (name: string, action: string, path: string) => `apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata:
  name: ${name}
  namespace: shop
spec:
  selector:
    matchLabels:
      app: web
  action: ${action}
  rules:
    - to:
        - operation:
            paths: ["${path}"]
`;

/** A Node (cluster-scoped) with a zone label, and no namespace, as `kubectl get node -o yaml`. */
const NODE = (name: string, zone: string) => `apiVersion: v1
kind: Node
metadata:
  name: ${name}
  labels:
    topology.kubernetes.io/region: region1
    topology.kubernetes.io/zone: ${zone}
`;

const keys = (f: FileObjects) => [...f.objects.keys()];

describe('the objects of a mesh file', () => {
  it('reads every document of a YAML file, the items of a List, and ignores other kinds', () => {
    const text = [
      SERVICE('web'),
      'apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: web\n',
      'apiVersion: v1\nkind: List\nitems:\n  - apiVersion: v1\n    kind: Pod\n    metadata:\n      name: web-1\n',
      '',
    ].join('---\n');
    const f = readMeshFile('/mesh/web.yaml', text, null);
    expect(keys(f)).toEqual(['Service/default/web', 'Pod/default/web-1']);
    expect(f.ignored).toEqual(['Deployment default/web']);
    expect(f.problems).toEqual([]);
  });

  it('reads a ServiceList whose items leave out their kind, as the API lists them', () => {
    const text = JSON.stringify({
      apiVersion: 'v1',
      kind: 'ServiceList',
      items: [{ metadata: { name: 'a', namespace: 'shop' }, spec: { ports: [{ port: 80 }] } }],
    });
    expect(keys(readMeshFile('/mesh/list.json', text, null))).toEqual(['Service/shop/a']);
  });

  it('reports an invalid object with its file, kind, name and field, and skips it', () => {
    const f = readMeshFile('/mesh/web.yaml', `${SERVICE('web', 0)}---\n${SERVICE('api')}`, null);
    expect(keys(f)).toEqual(['Service/default/api']);
    expect(f.problems).toEqual([
      {
        source: '/mesh/web.yaml',
        kind: 'Service',
        namespace: 'default',
        name: 'web',
        field: 'spec.ports[0].port',
        message: 'must be a port number from 1 to 65535',
        effect: 'skipped',
      },
    ]);
  });

  it('keeps the last valid version of an object that became invalid', () => {
    const before = readMeshFile('/mesh/web.yaml', SERVICE('web', 80), null);
    const after = readMeshFile('/mesh/web.yaml', SERVICE('web', 'eighty'), before);
    expect(after.objects.get('Service/default/web')).toBe(
      before.objects.get('Service/default/web'),
    );
    expect(after.problems.map((p) => [p.field, p.effect])).toEqual([
      ['spec.ports[0].port', 'kept-last-valid'],
    ]);
  });

  it('puts an invalid AuthorizationPolicy in closed, over its last valid version; a valid one as it is', () => {
    const KEY = 'AuthorizationPolicy/shop/deny';
    const valid = readMeshFile('/mesh/ap.yaml', POLICY('deny', 'DENY', '/admin*'), null);
    expect(valid.problems).toEqual([]);
    expect(valid.objects.get(KEY)).toEqual({
      kind: 'AuthorizationPolicy',
      meta: expect.objectContaining({ namespace: 'shop', name: 'deny' }),
      selector: { app: 'web' },
      action: 'DENY',
      rules: [{ to: [{ paths: ['/admin*'] }] }],
    });
    expect(valid.objects.get(KEY)).not.toHaveProperty('failClosed');

    // A path template: not the last valid version (which would let /admin/x through), but the
    // closed stand-in, which denies every request of the workloads it selects.
    const broken = readMeshFile('/mesh/ap.yaml', POLICY('deny', 'DENY', '/a/{*}'), valid);
    expect(broken.objects.get(KEY)).toEqual({
      kind: 'AuthorizationPolicy',
      meta: expect.objectContaining({ namespace: 'shop', name: 'deny' }),
      selector: { app: 'web' },
      action: 'DENY',
      rules: [{}],
      failClosed: expect.stringContaining('spec.rules[0].to[0].operation.paths[0]'),
    });
    expect(broken.problems).toEqual([
      {
        source: '/mesh/ap.yaml',
        kind: 'AuthorizationPolicy',
        namespace: 'shop',
        name: 'deny',
        field: 'spec.rules[0].to[0].operation.paths[0]',
        message: expect.stringContaining('path templates'),
        effect: 'fail-closed',
      },
    ]);

    // Never valid (CUSTOM: no external authorizer): in closed too, not skipped.
    const custom = readMeshFile('/mesh/ext.yaml', POLICY('ext', 'CUSTOM', '/admin*'), null);
    expect(custom.objects.get('AuthorizationPolicy/shop/ext')).toMatchObject({
      action: 'DENY',
      rules: [{}],
      failClosed: expect.stringContaining('spec.action'),
    });
    expect(custom.problems.map((p) => [p.field, p.effect])).toEqual([
      ['spec.action', 'fail-closed'],
    ]);

    // Mended: the policy as written again, and no problem left.
    const mended = readMeshFile('/mesh/ap.yaml', POLICY('deny', 'DENY', '/admin*'), broken);
    expect(mended.objects.get(KEY)).toEqual(valid.objects.get(KEY));
    expect(mended.problems).toEqual([]);
  });

  it('skips an AuthorizationPolicy whose name cannot be read, and takes the first of two in closed', () => {
    const nameless = readMeshFile(
      '/mesh/ap.yaml',
      POLICY('deny', 'CUSTOM', '/admin*').replace('  name: deny\n', ''),
      null,
    );
    expect(keys(nameless)).toEqual([]);
    expect(nameless.problems.map((p) => [p.field, p.effect])).toContainEqual([
      'metadata.name',
      'skipped',
    ]);
    expect(nameless.problems.filter((p) => p.effect !== 'skipped')).toEqual([]);
    const twice = readMeshFile(
      '/mesh/ap.yaml',
      `${POLICY('deny', 'CUSTOM', '/admin*')}---\n${POLICY('deny', 'DENY', '/admin*')}`,
      null,
    );
    expect(twice.objects.get('AuthorizationPolicy/shop/deny')).toMatchObject({
      action: 'DENY',
      rules: [{}],
    });
    expect(twice.problems.map((p) => [p.field, p.effect])).toEqual([
      ['spec.action', 'fail-closed'],
      ['metadata.name', 'skipped'],
    ]);
  });

  it('keeps every object of a file that is no longer YAML, and says where it broke', () => {
    const before = readMeshFile('/mesh/web.yaml', SERVICE('web'), null);
    const after = readMeshFile('/mesh/web.yaml', 'kind: Service\n  metadata: [\n', before);
    expect(keys(after)).toEqual(['Service/default/web']);
    expect(after.problems).toHaveLength(1);
    expect(after.problems[0]).toMatchObject({
      source: '/mesh/web.yaml',
      effect: 'kept-last-valid',
    });
    expect(after.problems[0]?.message).toMatch(
      /^not valid YAML or JSON: .*line \d+.*keeping the objects it last gave$/,
    );
    const fresh = readMeshFile('/mesh/bad.json', '{"kind": ', null);
    expect(fresh.problems[0]).toMatchObject({ effect: 'skipped' });
    expect(fresh.problems[0]?.message).toMatch(/^not valid JSON: /);
  });

  it('uses the first of two definitions in one file', () => {
    const f = readMeshFile(
      '/mesh/web.yaml',
      `${SERVICE('web', 80)}---\n${SERVICE('web', 81)}`,
      null,
    );
    expect(f.problems.map((p) => p.message)).toEqual([
      'is defined twice in this file: the first one is used',
    ]);
  });

  it('takes an object defined in two files from the first file by name', () => {
    const a = readMeshFile('/mesh/a.yaml', SERVICE('web', 80), null);
    const b = readMeshFile('/mesh/b.yaml', SERVICE('web', 81), null);
    const merged = mergeMeshFiles([
      ['/mesh/b.yaml', b],
      ['/mesh/a.yaml', a],
    ]);
    expect(merged.objects.get('Service/default/web')).toBe(a.objects.get('Service/default/web'));
    expect(merged.problems).toMatchObject([
      {
        source: '/mesh/b.yaml',
        name: 'web',
        message: 'is also defined in /mesh/a.yaml, which is used',
        effect: 'skipped',
      },
    ]);
  });

  it('reads a Node as cluster-scoped (no namespace, not default) with its locality', () => {
    const f = readMeshFile(
      '/mesh/nodes.yaml',
      `${NODE('n1', 'zone1')}---\n${SERVICE('web')}`,
      null,
    );
    expect(keys(f)).toEqual(['Node//n1', 'Service/default/web']);
    expect(f.objects.get('Node//n1')).toMatchObject({
      kind: 'Node',
      meta: { name: 'n1', namespace: '' },
      locality: 'region1/zone1/',
    });
    expect(f.problems).toEqual([]);
    // A NodeList (`kubectl get nodes -o yaml`), whose items may leave out their kind.
    const list = JSON.stringify({
      apiVersion: 'v1',
      kind: 'NodeList',
      items: [{ metadata: { name: 'n2', labels: { 'topology.kubernetes.io/zone': 'zone2' } } }],
    });
    const listed = readMeshFile('/mesh/nodes.json', list, null);
    expect(keys(listed)).toEqual(['Node//n2']);
    expect(listed.objects.get('Node//n2')).toMatchObject({ locality: '/zone2/' });
  });

  it('keeps the last valid version of a Node an edit broke, and names it without namespace', () => {
    const before = readMeshFile('/mesh/nodes.yaml', NODE('n1', 'zone1'), null);
    const after = readMeshFile('/mesh/nodes.yaml', NODE('n1', '[1]'), before);
    expect(after.objects.get('Node//n1')).toBe(before.objects.get('Node//n1'));
    expect(after.problems).toEqual([
      {
        source: '/mesh/nodes.yaml',
        kind: 'Node',
        namespace: '',
        name: 'n1',
        field: 'metadata.labels.topology.kubernetes.io/zone',
        message: 'must be a string',
        effect: 'kept-last-valid',
      },
    ]);
  });

  it.each([
    ['web.yaml', true],
    ['web.yml', true],
    ['web.json', true],
    ['.web.yaml.swp', false],
    ['.hidden.yaml', false],
    ['web.yaml~', false],
    ['README.md', false],
  ])('%s is a mesh file: %s', (name, expected) => {
    expect(isMeshFile(name)).toBe(expected);
  });
});
