import {
  applyMeshMessage,
  MESH_API_VERSION,
  MeshMessageError,
  parseMeshMessage,
  type MeshMessage,
  type MeshService,
  type MeshState,
} from '../../../src/api/mesh';

const service = (name: string, address: string): MeshService => ({
  key: `default/${name}`,
  name,
  namespace: 'default',
  hostname: `${name}.default.svc.cluster.local`,
  addresses: [address],
  ports: [{ port: 80, name: 'http', protocol: 'http' }],
  endpoints: [],
});

const snapshot = (version: number, services: MeshService[]): MeshMessage => ({
  type: 'snapshot',
  apiVersion: MESH_API_VERSION,
  version,
  proxy: {
    pod: { name: 'web-1', namespace: 'default', ip: '10.0.0.5' },
    identity: 'spiffe://cluster.local/ns/default/sa/web',
    workload: { name: 'web', namespace: 'default', app: 'web', version: null },
    inbound: { mtlsMode: 'PERMISSIVE' },
  },
  settings: {
    trustDomain: 'cluster.local',
    protocolDetectionTimeoutMs: 100,
    tracing: { otlpEndpoint: null, samplingPercent: 1 },
    accessLog: false,
  },
  services,
});

const line = (value: unknown): string => JSON.stringify(value);

describe('parseMeshMessage', () => {
  it('returns a snapshot, a delta and a heartbeat as they came', () => {
    const s = snapshot(3, [service('a', '10.96.0.1')]);
    expect(parseMeshMessage(line(s))).toEqual(s);
    const d = { type: 'delta', apiVersion: MESH_API_VERSION, version: 4, removed: ['default/a'] };
    expect(parseMeshMessage(line(d))).toEqual(d);
    const h = { type: 'heartbeat', apiVersion: MESH_API_VERSION, version: 4 };
    expect(parseMeshMessage(line(h))).toEqual(h);
  });

  it.each([
    ['a truncated line', '{"type":"snapshot","apiVer', /not JSON/],
    ['an array', '[]', /JSON object/],
    [
      'another apiVersion',
      line({ type: 'heartbeat', apiVersion: 'mooring.dev/mesh/v2', version: 1 }),
      /different versions/,
    ],
    [
      'a negative version',
      line({ type: 'heartbeat', apiVersion: MESH_API_VERSION, version: -1 }),
      /non-negative integer/,
    ],
    [
      'a string version',
      line({ type: 'heartbeat', apiVersion: MESH_API_VERSION, version: '1' }),
      /non-negative integer/,
    ],
    [
      'a snapshot without services',
      line({ ...snapshot(1, []), services: undefined }),
      /needs "services"/,
    ],
    ['a snapshot without proxy', line({ ...snapshot(1, []), proxy: null }), /needs "proxy"/],
    [
      'a delta with removed not a list',
      line({ type: 'delta', apiVersion: MESH_API_VERSION, version: 2, removed: 'a' }),
      /"removed"/,
    ],
    [
      'an unknown type',
      line({ type: 'patch', apiVersion: MESH_API_VERSION, version: 2 }),
      /unknown message type "patch"/,
    ],
  ])('refuses %s, naming what is wrong', (_name, text, message) => {
    expect(() => parseMeshMessage(text)).toThrow(MeshMessageError);
    expect(() => parseMeshMessage(text)).toThrow(message);
  });
});

describe('applyMeshMessage', () => {
  const first = applyMeshMessage(
    null,
    snapshot(1, [service('a', '10.96.0.1'), service('b', '10.96.0.2')]),
  );

  it('a snapshot replaces everything', () => {
    const next = applyMeshMessage(first, snapshot(7, [service('c', '10.96.0.3')]));
    expect(next?.version).toBe(7);
    expect([...(next?.services.keys() ?? [])]).toEqual(['default/c']);
  });

  it('a delta replaces changed services and drops removed ones, keeping the rest', () => {
    const changed = { ...service('a', '10.96.0.9') };
    const next = applyMeshMessage(first, {
      type: 'delta',
      apiVersion: MESH_API_VERSION,
      version: 2,
      services: [changed, service('d', '10.96.0.4')],
      removed: ['default/b'],
    }) as MeshState;
    expect(next.version).toBe(2);
    expect([...next.services.keys()].sort()).toEqual(['default/a', 'default/d']);
    expect(next.services.get('default/a')?.addresses).toEqual(['10.96.0.9']);
    expect(next.proxy).toBe(first?.proxy);
    // The previous state is untouched (the proxy may still be reading it).
    expect(first?.services.get('default/a')?.addresses).toEqual(['10.96.0.1']);
    expect(first?.services.has('default/b')).toBe(true);
  });

  it('a heartbeat keeps the state', () => {
    expect(
      applyMeshMessage(first, { type: 'heartbeat', apiVersion: MESH_API_VERSION, version: 1 }),
    ).toBe(first);
  });

  it('refuses a delta before any snapshot, or one that does not move the version forward', () => {
    const delta = (version: number): MeshMessage => ({
      type: 'delta',
      apiVersion: MESH_API_VERSION,
      version,
    });
    expect(() => applyMeshMessage(null, delta(2))).toThrow(/before any snapshot/);
    expect(() => applyMeshMessage(first, delta(1))).toThrow(/does not follow version 1/);
  });
});
