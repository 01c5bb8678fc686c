import { resolveAuthorization } from '../../../src/mesh/authorization';
import type { AuthorizationPolicyObject } from '../../../src/mesh/objects';
import { validateMeshObject } from '../../../src/mesh/validate';
import {
  MODEL_OPTIONS,
  meshed,
  modelOf,
  pod,
  valid,
  withLabels,
  withServiceAccount,
  type Raw,
} from '../../fixtures/mesh-objects';

const ROOT = MODEL_OPTIONS.rootNamespace;

/** An AuthorizationPolicy in `namespace` with this spec. */
const policy = (name: string, spec: Raw, namespace = 'default'): Raw => ({
  apiVersion: 'security.istio.io/v1',
  kind: 'AuthorizationPolicy',
  metadata: { name, namespace },
  spec,
});

const read = (name: string, spec: Raw, namespace = 'default'): AuthorizationPolicyObject =>
  valid(policy(name, spec, namespace)) as AuthorizationPolicyObject;

/** The problems of an invalid policy, and what stands in for it. */
function refused(spec: Raw): { fields: string[]; failClosed: AuthorizationPolicyObject } {
  const v = validateMeshObject(policy('bad', spec));
  if (v.status !== 'invalid') throw new Error(`expected problems: ${JSON.stringify(v)}`);
  return {
    fields: v.problems.map((p) => `${p.field}: ${p.message}`),
    failClosed: v.failClosed as AuthorizationPolicyObject,
  };
}

describe('reading an AuthorizationPolicy', () => {
  it('reads selector, action and rules into the form the proxy enforces, empty lists left out', () => {
    const p = read('frontend', {
      selector: { matchLabels: { app: 'web' } },
      action: 'ALLOW',
      rules: [
        {
          from: [
            {
              source: {
                principals: ['cluster.local/ns/default/sa/client', 'cluster.local/ns/ops/*'],
                notNamespaces: ['test'],
                ipBlocks: ['10.0.0.0/8', '192.168.1.1'],
                namespaces: [],
              },
            },
          ],
          to: [
            { operation: { methods: ['GET', 'HEAD'], paths: ['/api/*'], ports: ['8080', 9090] } },
          ],
          when: [
            { key: 'request.headers[X-Team]', values: ['blue'] },
            { key: 'destination.port', notValues: ['9091'] },
          ],
        },
        {},
      ],
    });
    expect(p).toEqual({
      kind: 'AuthorizationPolicy',
      meta: expect.objectContaining({ name: 'frontend', namespace: 'default' }),
      selector: { app: 'web' },
      action: 'ALLOW',
      rules: [
        {
          from: [
            {
              principals: ['cluster.local/ns/default/sa/client', 'cluster.local/ns/ops/*'],
              notNamespaces: ['test'],
              ipBlocks: ['10.0.0.0/8', '192.168.1.1/32'],
            },
          ],
          to: [{ methods: ['GET', 'HEAD'], paths: ['/api/*'], ports: [8080, 9090] }],
          when: [
            { key: 'request.headers[x-team]', values: ['blue'] },
            { key: 'destination.port', notValues: ['9091'] },
          ],
        },
        {},
      ],
    });
  });

  it('takes ALLOW when no action is given, and an empty spec as an ALLOW of nothing', () => {
    expect(read('deny-all', {})).toMatchObject({ action: 'ALLOW', rules: [], selector: null });
  });

  it.each([
    [
      { action: 'CUSTOM', provider: { name: 'ext' } },
      'spec.action: CUSTOM needs an external authorizer',
    ],
    [{ action: 'deny' }, 'spec.action: must be one of ALLOW, DENY, AUDIT, CUSTOM, not "deny"'],
    [
      { rules: [{ from: [{ source: { requestPrincipals: ['a*b'] } }] }] },
      'spec.rules[0].from[0].source.requestPrincipals[0]: "a*b" has "*" inside',
    ],
    [
      { rules: [{ when: [{ key: 'request.auth.claim[iss]', values: ['x'] }] }] },
      'spec.rules[0].when[0].key: "request.auth.claim[iss]" is not a key Mooring reads',
    ],
    [
      { rules: [{ when: [{ key: 'connection.sni', values: ['x'] }] }] },
      'spec.rules[0].when[0].key: "connection.sni" is not a key Mooring reads',
    ],
    [
      { rules: [{ when: [{ key: 'source.ip' }] }] },
      'spec.rules[0].when[0]: needs values or notValues',
    ],
    [
      { rules: [{ to: [{ operation: { paths: ['/a/{*}/b'] } }] }] },
      'spec.rules[0].to[0].operation.paths[0]: "/a/{*}/b": path templates',
    ],
    [
      { rules: [{ to: [{ operation: { paths: ['/a*b'] } }] }] },
      'spec.rules[0].to[0].operation.paths[0]: "/a*b" has "*" inside',
    ],
    [
      { rules: [{ to: [{ operation: { ports: ['http'] } }] }] },
      'spec.rules[0].to[0].operation.ports[0]: "http" is not a port number',
    ],
    [
      { rules: [{ from: [{ source: { ipBlocks: ['10.0.0.0/33'] } }] }] },
      'spec.rules[0].from[0].source.ipBlocks[0]: "10.0.0.0/33" is not an IPv4 or IPv6 address or CIDR',
    ],
    [
      { rules: [{ from: [{ principals: ['x'] }] }] },
      'spec.rules[0].from[0]: must be an object with "source"',
    ],
    [
      { targetRefs: [{ kind: 'Service', name: 'web' }] },
      'spec.targetRefs: attaches a policy to a Gateway or Service',
    ],
  ])('refuses what it cannot enforce, naming the field: %j', (spec, message) => {
    expect(refused(spec).fields.join('\n')).toContain(message);
  });

  it('stands in closed when it cannot be read: DENY and CUSTOM deny everything, ALLOW allows nothing', () => {
    const deny = refused({
      action: 'DENY',
      selector: { matchLabels: { app: 'web' } },
      rules: [{ to: [{ operation: { paths: ['/admin/{**}'] } }] }],
    }).failClosed;
    expect(deny).toMatchObject({ action: 'DENY', rules: [{}], selector: { app: 'web' } });
    expect(deny.failClosed).toContain('spec.rules[0].to[0].operation.paths[0]');
    expect(refused({ action: 'CUSTOM' }).failClosed).toMatchObject({ action: 'DENY', rules: [{}] });
    expect(refused({ rules: [{ when: [{ key: 'x' }] }] }).failClosed).toMatchObject({
      action: 'ALLOW',
      rules: [],
    });
    // An AUDIT policy decides nothing, readable or not.
    expect(refused({ action: 'AUDIT', rules: 3 }).failClosed).toMatchObject({
      action: 'AUDIT',
      rules: [],
    });
  });

  it('stands in for every workload of its namespace when its selector cannot be read', () => {
    const v = refused({ action: 'DENY', selector: { matchLabels: 'web' } });
    expect(v.failClosed).toMatchObject({ selector: null, action: 'DENY', rules: [{}] });
  });

  it('is not stood in for when it does not name itself (no fail-closed object without a name)', () => {
    const v = validateMeshObject({ ...policy('x', { action: 'DENY', rules: 1 }), metadata: {} });
    expect(v.status).toBe('invalid');
    expect(v.status === 'invalid' && v.failClosed).toBeUndefined();
  });
});

describe('which policies apply to a workload', () => {
  const web = { namespace: 'default', labels: { app: 'web' } };
  const names = (policies: AuthorizationPolicyObject[], workload = web): string[] =>
    resolveAuthorization(workload, policies, ROOT).map((p) => `${p.name} ${p.action}`);

  it('takes the root namespace mesh-wide, its selectors in every namespace, and its own namespace', () => {
    const all = [
      read('z-mesh', { action: 'DENY', rules: [{}] }, ROOT),
      read('root-web', { selector: { matchLabels: { app: 'web' } } }, ROOT),
      read('root-db', { selector: { matchLabels: { app: 'db' } } }, ROOT),
      read('ns', { action: 'DENY' }),
      read('web', { selector: { matchLabels: { app: 'web' } } }),
      read('db', { selector: { matchLabels: { app: 'db' } } }),
      read('other-ns', {}, 'other'),
      read('audit', { action: 'AUDIT', rules: [{}] }),
    ];
    expect(names(all)).toEqual([
      'default/ns DENY',
      'default/web ALLOW',
      `${ROOT}/root-web ALLOW`,
      `${ROOT}/z-mesh DENY`,
    ]);
    expect(names(all, { namespace: 'other', labels: { app: 'db' } })).toEqual([
      `${ROOT}/root-db ALLOW`,
      `${ROOT}/z-mesh DENY`,
      'other/other-ns ALLOW',
    ]);
  });
});

describe('the model', () => {
  const webPod = pod('web-1', meshed(), withServiceAccount('web'), withLabels({ app: 'web' }));

  it("puts a workload's policies in its proxy's scope, and only there", () => {
    const model = modelOf([
      webPod,
      pod('db-1', meshed(), withLabels({ app: 'db' })),
      policy('web-only', {
        selector: { matchLabels: { app: 'web' } },
        rules: [{ from: [{ source: { namespaces: ['default'] } }] }],
      }),
    ]);
    expect(model.proxyScope('default/web-1')?.inbound.authorization).toEqual([
      {
        name: 'default/web-only',
        action: 'ALLOW',
        rules: [{ from: [{ namespaces: ['default'] }] }],
      },
    ]);
    expect(model.proxyScope('default/db-1')?.inbound).not.toHaveProperty('authorization');
  });

  it('marks the scopes of the Pods of its namespace changed, and rebuilds no Service', () => {
    const model = modelOf([
      webPod,
      pod('other-1', meshed(), (o) => ({
        ...o,
        metadata: { ...(o.metadata as Raw), namespace: 'other' },
      })),
    ]);
    model.upsert(valid(policy('deny', { action: 'DENY', rules: [{}] })));
    const commit = model.commit();
    expect(commit).toMatchObject({ pods: ['default/web-1'], services: [], rebuilt: 0 });
    expect(model.proxyScope('default/web-1')?.inbound.authorization).toEqual([
      { name: 'default/deny', action: 'DENY', rules: [{}] },
    ]);
    model.remove({ kind: 'AuthorizationPolicy', namespace: 'default', name: 'deny' });
    expect(model.commit()).toMatchObject({ pods: ['default/web-1'] });
    expect(model.proxyScope('default/web-1')?.inbound).not.toHaveProperty('authorization');
  });
});
