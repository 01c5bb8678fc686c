// The mesh side of `mooring serve` without I/O: the empty mesh of a local server without
// --mesh-dir, and the `mesh` part of a re-read configuration file applied at once.
import { validateConfig } from '../../../src/config/validate';
import { meshSettingsOf, startMesh } from '../../../src/server/mesh/runtime';

const log = {
  info: () => undefined,
  warn: () => undefined,
  debug: () => undefined,
  error: () => undefined,
};

describe('the mesh runtime', () => {
  it('accepts watches of an empty mesh at once when there is no source', async () => {
    const mesh = await startMesh({
      config: validateConfig({}),
      plan: { rootNamespace: 'mooring-system', source: null, waitForSource: false },
      log,
    });
    expect(mesh.push.isSynced()).toBe(true);
    expect(await mesh.objects()).toEqual({
      source: { source: 'none' },
      counts: {
        Service: 0,
        EndpointSlice: 0,
        Pod: 0,
        PeerAuthentication: 0,
        AuthorizationPolicy: 0,
        RequestAuthentication: 0,
        VirtualService: 0,
        DestinationRule: 0,
        HTTPRoute: 0,
        GRPCRoute: 0,
        TCPRoute: 0,
        TLSRoute: 0,
        ServiceEntry: 0,
        Sidecar: 0,
        Node: 0,
        Telemetry: 0,
        WorkloadEntry: 0,
      },
      problems: [],
    });
    await mesh.close();
  });

  it("applies a new configuration's mesh part, and keeps the running trust domain", async () => {
    const mesh = await startMesh({
      config: validateConfig({}),
      plan: { rootNamespace: 'mooring-system', source: null, waitForSource: false },
      log,
    });
    const next = validateConfig({
      trustDomain: 'example.org',
      mesh: {
        mtlsMode: 'STRICT',
        accessLog: true,
        tracing: { otlpEndpoint: 'http://collector:4318', samplingPercent: 5 },
        outboundTrafficPolicy: { mode: 'REGISTRY_ONLY' },
      },
    });
    expect(mesh.model.settings).not.toHaveProperty('outboundTrafficPolicy');
    mesh.applyConfig(next);
    expect(mesh.model.settings).toEqual({
      ...meshSettingsOf(next),
      trustDomain: 'cluster.local',
    });
    expect(mesh.model.settings.outboundTrafficPolicy).toBe('REGISTRY_ONLY');
    expect(mesh.model.commit()).toMatchObject({ settings: true });
    await mesh.close();
  });

  it('refuses an OTLP endpoint that is not an http(s) URL, in the configuration', () => {
    expect(() => validateConfig({ mesh: { tracing: { otlpEndpoint: 'collector:4318' } } })).toThrow(
      /\/mesh\/tracing\/otlpEndpoint/,
    );
    expect(() => validateConfig({ mesh: { mtlsMode: 'DISABLE' } })).toThrow(
      /\/mesh\/mtlsMode: must be one of "PERMISSIVE", "STRICT"/,
    );
    expect(() => validateConfig({ mesh: { outboundTrafficPolicy: { mode: 'DENY' } } })).toThrow(
      /\/mesh\/outboundTrafficPolicy\/mode: must be one of "ALLOW_ANY", "REGISTRY_ONLY"/,
    );
  });
});
