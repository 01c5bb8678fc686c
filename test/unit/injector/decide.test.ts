import { validateConfig } from '../../../src/config/validate';
import { ANNOTATION, INJECT_LABEL, STATUS_ANNOTATION } from '../../../src/constants';
import { decide, SKIP_CODES, SKIP_REASONS, type SkipCode } from '../../../src/injector/decide';
import { inject } from '../../../src/injector/inject';
import type { Pod } from '../../../src/injector/pod';
import {
  container,
  pod,
  withAnnotation,
  withContainer,
  withHostNetwork,
  withInitContainer,
  withLabel,
  withSpecField,
  withVolume,
} from '../../fixtures/pods';

const config = validateConfig({ injector: { ignoredNamespaces: ['legacy'] } });

describe('skip reasons', () => {
  it('each has a sentence', () => {
    for (const code of SKIP_CODES) expect(SKIP_REASONS[code]).toMatch(/^the .{20,}/);
  });

  it.each<[string, Pod, string, SkipCode, string]>([
    ['a system namespace', pod('dns'), 'kube-system', 'ignored_namespace', 'namespace kube-system'],
    ['kube-public', pod('x'), 'kube-public', 'ignored_namespace', 'namespace kube-public'],
    [
      'kube-node-lease',
      pod('x'),
      'kube-node-lease',
      'ignored_namespace',
      'namespace kube-node-lease',
    ],
    [
      'a namespace of injector.ignoredNamespaces',
      pod('x'),
      'legacy',
      'ignored_namespace',
      'namespace legacy',
    ],
    ['a host-network Pod', pod('x', withHostNetwork()), 'shop', 'host_network', 'host network'],
    [
      'a Windows Pod',
      pod('x', withSpecField('os', { name: 'windows' })),
      'shop',
      'unsupported_os',
      'Windows',
    ],
    [
      'a Pod labelled "false"',
      pod('x', withLabel(INJECT_LABEL, 'false')),
      'shop',
      'opted_out',
      'labelled',
    ],
    [
      'a Pod with mooring.dev/status',
      pod('x', withAnnotation(STATUS_ANNOTATION, '{}')),
      'shop',
      'already_injected',
      `annotation ${STATUS_ANNOTATION} is present`,
    ],
    [
      'a Pod with a mooring-proxy container',
      pod('x', withContainer(container('mooring-proxy'))),
      'shop',
      'already_injected',
      'container mooring-proxy is present',
    ],
    [
      'a Pod with a mooring-proxy init container',
      pod('x', withInitContainer(container('mooring-proxy'))),
      'shop',
      'already_injected',
      'container mooring-proxy is present',
    ],
    [
      'a Pod with its own mooring-init container',
      pod('x', withInitContainer(container('mooring-init'))),
      'shop',
      'name_conflict',
      'container mooring-init',
    ],
    [
      'a Pod with its own mooring-token volume',
      pod('x', withVolume({ name: 'mooring-token', emptyDir: {} })),
      'shop',
      'name_conflict',
      'volume mooring-token',
    ],
  ])('%s is skipped', (_name, p, namespace, reason, detail) => {
    const outcome = inject(p, { config, namespace, version: '1' });
    expect(outcome).toMatchObject({ action: 'skipped', reason, warnings: [] });
    expect(outcome.action === 'skipped' && outcome.message).toContain(SKIP_REASONS[reason]);
    expect(outcome.action === 'skipped' && outcome.message).toContain(detail);
  });

  it('every skip code has a case above', () => {
    // Keep the table complete: a new code needs a Pod that triggers it.
    expect(SKIP_CODES.sort()).toEqual(
      [
        'already_injected',
        'host_network',
        'ignored_namespace',
        'name_conflict',
        'opted_out',
        'unsupported_os',
      ].sort(),
    );
  });

  it('injects Pods labelled "true", unlabelled Pods and Linux Pods', () => {
    for (const p of [
      pod('a', withLabel(INJECT_LABEL, 'true')),
      pod('b'),
      pod('c', withSpecField('os', { name: 'linux' })),
    ]) {
      expect(decide(p, 'shop', config.injector)).toBeUndefined();
    }
  });

  it('decides the namespace before anything else, so a system Pod with invalid keys is never refused', () => {
    const broken = pod(
      'x',
      withHostNetwork(),
      withLabel(INJECT_LABEL, 'maybe'),
      withAnnotation(ANNOTATION.cpuRequest, 'lots'),
    );
    expect(decide(broken, 'kube-system', config.injector)?.reason).toBe('ignored_namespace');
    expect(decide(broken, 'shop', config.injector)?.reason).toBe('host_network');
    expect(inject(broken, { config, namespace: 'shop', version: '1' }).action).toBe('skipped');
  });

  it('skips an opted-out Pod without reading its annotations', () => {
    const p = pod(
      'x',
      withLabel(INJECT_LABEL, 'false'),
      withAnnotation(ANNOTATION.logLevel, 'loud'),
    );
    expect(inject(p, { config, namespace: 'shop', version: '1' })).toMatchObject({
      reason: 'opted_out',
    });
  });
});
