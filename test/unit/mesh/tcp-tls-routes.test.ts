// TCPRoute and TLSRoute (Gateway API, GAMMA): the readers' errors, the tcp and tls route tables
// they make for a Service (ports, server names, weights, oldest first), where a VirtualService
// wins, the route the proxy draws for a connection, and their status.
import type { MeshService } from '../../../src/api/mesh';
import { routeStatusParents, validateMeshObject } from '../../../src/mesh';
import { tcpRoute } from '../../../src/agent/proxy/core/route';
import {
  createdAt,
  modelOf,
  builtService,
  problemsOf,
  service,
  withClusterIP,
  withPort,
  type Raw,
} from '../../fixtures/mesh-objects';

/** Service db with two ports (5432 and 6543, named), and two Services to send to. */
const dbMesh = (...extra: Raw[]): Raw[] => [
  service('db', withPort(5432, 'pg'), withPort(6543, 'other'), withClusterIP('10.96.0.40')),
  service('db-v2', withPort(5432, 'pg')),
  service('db-v3', withPort(5432, 'pg')),
  ...extra,
];

const route = (
  kind: 'TCPRoute' | 'TLSRoute',
  name: string,
  spec: Raw,
  ...mods: ((r: Raw) => Raw)[]
): Raw =>
  mods.reduce<Raw>((r, m) => m(r), {
    apiVersion: `gateway.networking.k8s.io/${kind === 'TCPRoute' ? 'v1alpha2' : 'v1'}`,
    kind,
    metadata: { name, namespace: 'default' },
    spec: { parentRefs: [{ group: '', kind: 'Service', name: 'db', port: 5432 }], ...spec },
  });

const to = (...backends: [string, number][]): Raw[] => [
  { backendRefs: backends.map(([name, weight]) => ({ name, port: 5432, weight })) },
];

const built = (raws: Raw[], key = 'default/db'): MeshService => builtService(raws, key);

describe('reading TCPRoute and TLSRoute', () => {
  it('refuses what a connection cannot have, naming the field', () => {
    expect(
      problemsOf(route('TCPRoute', 'r', { rules: [...to(['db-v2', 1]), ...to(['db', 1])] })),
    ).toEqual(['spec.rules: takes one rule (a connection has nothing to match a second one on)']);
    expect(problemsOf(route('TCPRoute', 'r', { rules: [{ backendRefs: [] }] }))).toEqual([
      'spec.rules[0].backendRefs: needs at least one backend',
    ]);
    expect(problemsOf(route('TLSRoute', 'r', { rules: to(['db-v2', 0], ['db-v3', 0]) }))).toEqual([
      'spec.rules[0].backendRefs: has weights that add up to 0: no backend takes a connection',
    ]);
    expect(
      problemsOf(route('TCPRoute', 'r', { rules: [{ ...to(['db-v2', 1])[0], matches: [{}] }] })),
    ).toEqual(['spec.rules[0].matches: is not supported by Mooring yet']);
    expect(
      problemsOf(
        route('TLSRoute', 'r', {
          hostnames: ['Db.Example.com', '10.0.0.1x*'],
          rules: to(['db', 1]),
        }),
      ),
    ).toEqual([
      'spec.hostnames[0]: "Db.Example.com" is not a DNS name, or "*." and one (lowercase)',
      'spec.hostnames[1]: "10.0.0.1x*" is not a DNS name, or "*." and one (lowercase)',
    ]);
    // TCPRoute is v1 (standard channel) or v1alpha2 (experimental), never v1beta1.
    expect(
      problemsOf(
        route('TCPRoute', 'r', { rules: to(['db', 1]) }, (r) => ({
          ...r,
          apiVersion: 'gateway.networking.k8s.io/v1beta1',
        })),
      )[0],
    ).toMatch(/^apiVersion: "gateway.networking.k8s.io\/v1beta1" is not read for TCPRoute/);
  });
});

describe('the route tables of a Service', () => {
  it('a TCPRoute sends the connections of the port it attaches to its backends by weight', () => {
    const db = built(
      dbMesh(route('TCPRoute', 'split', { rules: to(['db-v2', 90], ['db-v3', 10]) })),
    );
    expect(db.tcpRoutes).toEqual({
      source: { kind: 'TCPRoute', namespace: 'default', name: 'split' },
      rules: [
        {
          matches: [{ port: 5432 }],
          destinations: [
            { service: 'default/db-v2', port: 5432, weight: 90 },
            { service: 'default/db-v3', port: 5432, weight: 10 },
          ],
        },
      ],
    });
    const draws = new Map<string, number>();
    let x = 0;
    const random = (): number => ((x = (x + 0.0123) % 1), x);
    for (let i = 0; i < 1000; i++) {
      const d = tcpRoute(db, 5432, random);
      draws.set(d?.service ?? 'none', (draws.get(d?.service ?? 'none') ?? 0) + 1);
    }
    expect(draws.get('default/db-v2')).toBeGreaterThan(850);
    expect(draws.get('default/db-v3')).toBeGreaterThan(50);
    // The other port is not the route's: the Service itself.
    expect(tcpRoute(db, 6543, random)).toBeNull();
  });

  it('a TCPRoute without a port takes every port; by sectionName, the port of that name; the oldest first', () => {
    const db = built(
      dbMesh(
        route(
          'TCPRoute',
          'young',
          {
            parentRefs: [{ group: '', kind: 'Service', name: 'db', sectionName: 'other' }],
            rules: to(['db-v3', 1]),
          },
          createdAt('2026-02-01T00:00:00Z'),
        ),
        route(
          'TCPRoute',
          'old',
          { parentRefs: [{ group: '', kind: 'Service', name: 'db' }], rules: to(['db-v2', 1]) },
          createdAt('2026-01-01T00:00:00Z'),
        ),
      ),
    );
    expect(db.tcpRoutes?.source).toEqual({ kind: 'TCPRoute', namespace: 'default', name: 'old' });
    expect(db.tcpRoutes?.merged).toEqual([{ namespace: 'default', name: 'young' }]);
    const random = (): number => 0.5;
    // The oldest takes every port, the younger one's port included.
    expect(tcpRoute(db, 6543, random)?.service).toBe('default/db-v2');
    expect(tcpRoute(db, 5432, random)?.service).toBe('default/db-v2');
    // Alone, the younger one takes only the port it names.
    const young = built(
      dbMesh(
        route('TCPRoute', 'young', {
          parentRefs: [{ group: '', kind: 'Service', name: 'db', sectionName: 'other' }],
          rules: to(['db-v3', 1]),
        }),
      ),
    );
    expect(tcpRoute(young, 6543, random)?.service).toBe('default/db-v3');
    expect(tcpRoute(young, 5432, random)).toBeNull();
  });

  it('a TLSRoute sends a TLS connection by its server name; others go to the Service', () => {
    const db = built(
      dbMesh(
        route('TLSRoute', 'by-name', { hostnames: ['*.v2.example.com'], rules: to(['db-v2', 1]) }),
      ),
    );
    expect(db.tlsRoutes?.rules[0]?.matches).toEqual([
      { port: 5432, sniHosts: ['*.v2.example.com'] },
    ]);
    const random = (): number => 0.5;
    expect(tcpRoute(db, 5432, random, { serverName: 'a.v2.example.com' })?.service).toBe(
      'default/db-v2',
    );
    expect(tcpRoute(db, 5432, random, { serverName: 'v2.example.com' })).toBeNull();
    expect(tcpRoute(db, 5432, random, { serverName: null })).toBeNull();
    // No hostnames: any server name.
    const any = built(dbMesh(route('TLSRoute', 'any', { rules: to(['db-v3', 1]) })));
    expect(tcpRoute(any, 5432, random, { serverName: 'whatever.test' })?.service).toBe(
      'default/db-v3',
    );
  });

  it('a VirtualService with tcp rules wins over TCPRoutes, one without leaves them theirs', () => {
    const vs = (tcp: boolean): Raw => ({
      apiVersion: 'networking.istio.io/v1',
      kind: 'VirtualService',
      metadata: { name: 'vs', namespace: 'default' },
      spec: {
        hosts: ['db'],
        ...(tcp
          ? { tcp: [{ route: [{ destination: { host: 'db-v3', port: { number: 5432 } } }] }] }
          : { http: [{ route: [{ destination: { host: 'db' } }] }] }),
      },
    });
    const tcpRoute_ = route('TCPRoute', 'r', { rules: to(['db-v2', 1]) });
    expect(built(dbMesh(vs(true), tcpRoute_)).tcpRoutes?.source.kind).toBe('VirtualService');
    expect(built(dbMesh(vs(false), tcpRoute_)).tcpRoutes?.source.kind).toBe('TCPRoute');
    const model = modelOf(dbMesh(vs(true), tcpRoute_));
    expect(model.routeFacts().virtualServiceFor('default/db', 'TCPRoute')).toBe('default/vs');
    expect(model.routeFacts().virtualServiceFor('default/db', 'TLSRoute')).toBeNull();
    expect(model.routeFacts().virtualServiceFor('default/db', 'HTTPRoute')).toBeNull();
  });
});

describe('their status', () => {
  it('says Accepted and ResolvedRefs in terms of connections, and names a missing backend', () => {
    const raws = dbMesh(
      route('TCPRoute', 'ok', { rules: to(['db-v2', 1]) }),
      route('TLSRoute', 'gone', { rules: to(['nowhere', 1]) }),
    );
    const facts = modelOf(raws).routeFacts();
    const statusOf = (raw: Raw) => {
      const v = validateMeshObject(raw);
      if (v.status !== 'valid') throw new Error('invalid');
      const parents = routeStatusParents(
        v.object as Parameters<typeof routeStatusParents>[0],
        [],
        facts,
        '2026-12-07T00:00:00Z',
      ) as { conditions: { type: string; status: string; reason: string; message: string }[] }[];
      return parents[0]?.conditions;
    };
    expect(statusOf(raws[3] as Raw)).toEqual([
      expect.objectContaining({
        type: 'Accepted',
        status: 'True',
        message: 'Mooring routes the connections to this Service by this route',
      }),
      expect.objectContaining({ type: 'ResolvedRefs', status: 'True' }),
    ]);
    expect(statusOf(raws[4] as Raw)?.[1]).toMatchObject({
      status: 'False',
      reason: 'BackendNotFound',
      message: 'no such Service: default/nowhere (its share of the connections is closed)',
    });
  });
});
