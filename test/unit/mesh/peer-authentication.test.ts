import {
  resolvePeerAuthentication,
  type ResolvedMtls,
} from '../../../src/mesh/peer-authentication';
import type { PeerAuthenticationObject } from '../../../src/mesh/objects';
import {
  createdAt,
  inNamespace,
  peerAuthentication,
  valid,
  withMatchLabels,
  withMode,
  withPortMtls,
  type Modifier,
} from '../../fixtures/mesh-objects';

const ROOT = 'mooring-system';
const pa = (name: string, ...mods: Modifier[]): PeerAuthenticationObject =>
  valid(peerAuthentication(name, ...mods)) as PeerAuthenticationObject;
const meshWide = (mode: string, ...mods: Modifier[]) =>
  pa(`mesh-${mode.toLowerCase()}`, inNamespace(ROOT), withMode(mode), ...mods);
const web: { namespace: string; labels: Record<string, string> } = {
  namespace: 'default',
  labels: { app: 'web', version: 'v1' },
};

const resolve = (
  policies: PeerAuthenticationObject[],
  defaultMode: 'PERMISSIVE' | 'STRICT' = 'PERMISSIVE',
  workload = web,
): ResolvedMtls => resolvePeerAuthentication(workload, policies, ROOT, defaultMode);

describe('PeerAuthentication precedence (workload selector > namespace > mesh-wide > mesh.mtlsMode)', () => {
  it.each([
    ['no policy: mesh.mtlsMode PERMISSIVE', [], 'PERMISSIVE', 'PERMISSIVE', 'mesh.mtlsMode'],
    ['no policy: mesh.mtlsMode STRICT', [], 'STRICT', 'STRICT', 'mesh.mtlsMode'],
    [
      'a mesh-wide policy in the root namespace beats the configuration',
      [meshWide('STRICT')],
      'PERMISSIVE',
      'STRICT',
      'PeerAuthentication mooring-system/mesh-strict (mesh-wide)',
    ],
    [
      'a namespace policy beats the mesh-wide one',
      [meshWide('STRICT'), pa('ns', withMode('PERMISSIVE'))],
      'PERMISSIVE',
      'PERMISSIVE',
      'PeerAuthentication default/ns (namespace)',
    ],
    [
      'a workload policy beats the namespace one',
      [
        pa('ns', withMode('STRICT')),
        pa('wl', withMode('DISABLE'), withMatchLabels({ app: 'web' })),
      ],
      'PERMISSIVE',
      'DISABLE',
      'PeerAuthentication default/wl (workload)',
    ],
    [
      'an UNSET workload policy inherits the namespace mode',
      [pa('ns', withMode('STRICT')), pa('wl', withMatchLabels({ app: 'web' }))],
      'PERMISSIVE',
      'STRICT',
      'PeerAuthentication default/ns (namespace)',
    ],
    [
      'an UNSET namespace policy inherits the mesh-wide mode',
      [meshWide('STRICT'), pa('ns', withMode('UNSET'))],
      'PERMISSIVE',
      'STRICT',
      'PeerAuthentication mooring-system/mesh-strict (mesh-wide)',
    ],
    [
      'a policy of another namespace does not apply',
      [pa('other', inNamespace('shop'), withMode('STRICT'))],
      'PERMISSIVE',
      'PERMISSIVE',
      'mesh.mtlsMode',
    ],
    [
      'a workload policy whose selector does not match does not apply',
      [pa('wl', withMode('STRICT'), withMatchLabels({ app: 'api' }))],
      'PERMISSIVE',
      'PERMISSIVE',
      'mesh.mtlsMode',
    ],
    [
      'a selector must match every label',
      [pa('wl', withMode('STRICT'), withMatchLabels({ app: 'web', version: 'v2' }))],
      'PERMISSIVE',
      'PERMISSIVE',
      'mesh.mtlsMode',
    ],
    [
      'a policy with a selector in the root namespace is ignored (as Istio ignores it)',
      [pa('root-wl', inNamespace(ROOT), withMode('STRICT'), withMatchLabels({ app: 'web' }))],
      'PERMISSIVE',
      'PERMISSIVE',
      'mesh.mtlsMode',
    ],
    [
      'of two namespace policies the older one wins',
      [
        pa('newer', withMode('STRICT'), createdAt('2026-02-01T00:00:00Z')),
        pa('older', withMode('DISABLE'), createdAt('2026-01-01T00:00:00Z')),
      ],
      'PERMISSIVE',
      'DISABLE',
      'PeerAuthentication default/older (namespace)',
    ],
    [
      'of two workload policies the older one wins',
      [
        pa(
          'a-newer',
          withMode('STRICT'),
          withMatchLabels({ app: 'web' }),
          createdAt('2026-02-01T00:00:00Z'),
        ),
        pa(
          'b-older',
          withMode('PERMISSIVE'),
          withMatchLabels({ version: 'v1' }),
          createdAt('2026-01-01T00:00:00Z'),
        ),
      ],
      'STRICT',
      'PERMISSIVE',
      'PeerAuthentication default/b-older (workload)',
    ],
    [
      'a policy without creation time (from a file) comes after one with it',
      [
        pa('a-file', withMode('STRICT')),
        pa('b-api', withMode('DISABLE'), createdAt('2026-01-01T00:00:00Z')),
      ],
      'PERMISSIVE',
      'DISABLE',
      'PeerAuthentication default/b-api (namespace)',
    ],
    [
      'two policies without creation time: the first by name wins',
      [pa('b', withMode('STRICT')), pa('a', withMode('DISABLE'))],
      'PERMISSIVE',
      'DISABLE',
      'PeerAuthentication default/a (namespace)',
    ],
  ] as const)('%s', (_sentence, policies, defaultMode, mode, source) => {
    expect(resolve([...policies], defaultMode)).toEqual({ mode, source });
  });

  it('applies a policy without selector in the root namespace to the Pods of that namespace as mesh-wide', () => {
    const result = resolve([meshWide('STRICT')], 'PERMISSIVE', { namespace: ROOT, labels: {} });
    expect(result.mode).toBe('STRICT');
  });
});

describe('portLevelMtls', () => {
  it('sets the mode of single container ports', () => {
    const policy = pa(
      'wl',
      withMode('STRICT'),
      withMatchLabels({ app: 'web' }),
      withPortMtls(8080, 'DISABLE'),
    );
    expect(resolve([policy])).toEqual({
      mode: 'STRICT',
      portMtls: { '8080': 'DISABLE' },
      source: 'PeerAuthentication default/wl (workload)',
    });
  });

  it('gives an UNSET port the resolved mode of the workload, inherited from the namespace', () => {
    const policies = [
      pa('ns', withMode('STRICT')),
      pa(
        'wl',
        withMatchLabels({ app: 'web' }),
        withPortMtls(9000, 'UNSET'),
        withPortMtls(9090, 'PERMISSIVE'),
      ),
    ];
    expect(resolve(policies).portMtls).toEqual({ '9000': 'STRICT', '9090': 'PERMISSIVE' });
  });
});
