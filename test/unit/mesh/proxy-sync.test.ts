import {
  applyMeshMessage,
  parseMeshMessage,
  type MeshMessage,
  type MeshState,
} from '../../../src/api/mesh';
import { lineText, ProxySync, type SyncLine } from '../../../src/mesh';
import {
  endpointSlice,
  inNamespace,
  meshed,
  modelOf,
  peerAuthentication,
  pod,
  service,
  SETTINGS,
  valid,
  withAnnotation,
  withEndpoint,
  withIP,
  withMode,
  withPort,
  withServiceAccount,
  withSlicePort,
  exportedTo,
} from '../../fixtures/mesh-objects';

const parsed = (line: SyncLine | null): MeshMessage => {
  if (line === null) throw new Error('no line');
  const text = lineText(line);
  expect(text.endsWith('\n')).toBe(true);
  expect(text.indexOf('\n')).toBe(text.length - 1);
  expect(line.bytes).toBe(Buffer.byteLength(text));
  return parseMeshMessage(text);
};

function setup() {
  const model = modelOf([
    service('web', withPort(80, 'http', 8080)),
    endpointSlice('web', withSlicePort(8080, 'http'), withEndpoint('10.0.0.1', { pod: 'web-1' })),
    pod('web-1', meshed(), withServiceAccount('web'), withIP('10.0.0.1')),
    service('api', withPort(80, 'http'), inNamespace('shop')),
  ]);
  const sync = new ProxySync(model, 'default/web-1', 'default');
  return { model, sync };
}

describe('what one proxy is sent', () => {
  it('starts with a snapshot of its scope, the settings and every Service it sees', () => {
    const { model, sync } = setup();
    const message = parsed(sync.snapshot());
    expect(message).toMatchObject({
      type: 'snapshot',
      version: model.version,
      proxy: { identity: 'spiffe://cluster.local/ns/default/sa/web', pod: { ip: '10.0.0.1' } },
      settings: SETTINGS,
    });
    expect(message.type === 'snapshot' ? message.services.map((s) => s.key) : []).toEqual([
      'default/web',
      'shop/api',
    ]);
  });

  it('has no snapshot for a Pod the mesh does not know', () => {
    const { model } = setup();
    expect(new ProxySync(model, 'default/ghost', 'default').snapshot()).toBeNull();
  });

  it('sends a delta with only the Service that changed, and nothing when nothing changed for it', () => {
    const { model, sync } = setup();
    sync.snapshot();
    expect(sync.delta()).toBeNull();
    model.upsert(
      valid(endpointSlice('web', withSlicePort(8080, 'http'), withEndpoint('10.0.0.2'))),
    );
    model.commit();
    const delta = parsed(sync.delta());
    expect(delta).toMatchObject({ type: 'delta', version: model.version });
    expect(
      delta.type === 'delta' ? delta.services?.map((s) => s.endpoints.map((e) => e.address)) : [],
    ).toEqual([['10.0.0.2']]);
    expect(Object.keys(delta).sort()).toEqual(['apiVersion', 'services', 'type', 'version']);
    expect(sync.delta()).toBeNull();
  });

  it('coalesces what happened while it could not be written to into one delta', () => {
    const { model, sync } = setup();
    const state = applyMeshMessage(null, parsed(sync.snapshot()));
    model.upsert(valid(service('new', withPort(81, 'http'))));
    model.commit();
    model.remove({ kind: 'Service', namespace: 'shop', name: 'api' });
    model.commit();
    model.upsert(valid(peerAuthentication('strict', withMode('STRICT'))));
    model.commit();
    model.setSettings({ ...SETTINGS, accessLog: true });
    model.commit();
    const delta = parsed(sync.delta());
    expect(delta).toMatchObject({
      type: 'delta',
      version: model.version,
      removed: ['shop/api'],
      proxy: { inbound: { mtlsMode: 'STRICT' } },
      settings: { accessLog: true },
    });
    const next = applyMeshMessage(state, delta) as MeshState;
    expect([...next.services.keys()].sort()).toEqual(['default/new', 'default/web']);
  });

  it('sends its scope when the Pod changed, and the Services it can no longer see as removed', () => {
    const { model, sync } = setup();
    sync.snapshot();
    model.upsert(
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
    model.upsert(valid(service('api', withPort(80, 'http'), inNamespace('shop'), exportedTo('.'))));
    model.commit();
    expect(parsed(sync.delta())).toMatchObject({
      proxy: { accessLog: true },
      removed: ['shop/api'],
    });
  });

  it("leaves its scope out when told it did not change (its Pod is not among the commit's)", () => {
    const { model, sync } = setup();
    sync.snapshot();
    model.upsert(
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
    model.upsert(valid(service('new', withPort(81, 'http'))));
    model.commit();
    expect(parsed(sync.delta(false))).not.toHaveProperty('proxy');
  });

  it('says in a heartbeat the version it is up to date with, also after a change it does not see', () => {
    const { model, sync } = setup();
    sync.snapshot();
    const before = model.version;
    expect(parsed(sync.heartbeat())).toEqual({
      type: 'heartbeat',
      apiVersion: 'mooring.dev/mesh/v1',
      version: before,
    });
    model.upsert(
      valid(service('hidden', withPort(80, 'http'), inNamespace('shop'), exportedTo('.'))),
    );
    model.commit();
    expect(sync.delta()).toBeNull();
    expect(sync.version).toBe(model.version);
    expect(sync.sentVersion).toBe(before);
  });

  it('writes the same text for a Service to every proxy (serialized once, canonical)', () => {
    const { model } = setup();
    const a = new ProxySync(model, 'default/web-1', 'default').snapshot();
    const b = new ProxySync(model, 'default/web-1', 'default').snapshot();
    expect(a?.pieces).toContain(model.service('default/web')?.json);
    expect(b?.pieces).toContain(model.service('default/web')?.json);
    expect(a === null ? '' : lineText(a)).toBe(b === null ? '' : lineText(b));
  });
});
