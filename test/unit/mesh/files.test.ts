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
