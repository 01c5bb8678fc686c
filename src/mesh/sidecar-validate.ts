// Istio's Sidecar (networking.istio.io v1, v1beta1) for a whole namespace, or with a
// `workloadSelector` for some of its Pods: `egress[].hosts` (`namespace/host`), which services its
// proxies are given, and `outboundTrafficPolicy.mode`. What Mooring does not do is refused with
// the field named: `ingress` listeners, an egress listener's `port`, `bind` or `captureMode`,
// `outboundTrafficPolicy.egressProxy`. Pure.

import { isObject, type Fields, type Json } from './fields';
import { isDnsHost } from './hosts';
import type { Meta, SidecarObject } from './objects';

const NAMESPACE = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/;

function readHost(
  f: Fields,
  raw: unknown,
  field: string,
): { namespace: string; host: string } | null {
  const text = f.string(raw, field);
  if (text === undefined) return null;
  const slash = text.indexOf('/');
  const namespace = slash === -1 ? '' : text.slice(0, slash);
  const host = slash === -1 ? '' : text.slice(slash + 1).toLowerCase();
  const nsOk =
    namespace === '*' || namespace === '.' || namespace === '~' || NAMESPACE.test(namespace);
  const hostOk = host === '*' || isDnsHost(host);
  if (!nsOk || !hostOk) {
    f.problem(
      field,
      `${JSON.stringify(text)} is not "namespace/host" (namespace "*", "." , "~" or a name; host "*", "*.suffix" or a DNS name)`,
    );
    return null;
  }
  return { namespace, host };
}

export function readSidecar(raw: Json, f: Fields, meta: Meta): SidecarObject {
  const spec = f.object(raw.spec, 'spec') ?? {};
  const selector = f.object(spec.workloadSelector, 'spec.workloadSelector');
  const labels =
    selector === undefined ? {} : f.stringMap(selector.labels, 'spec.workloadSelector.labels');
  if (selector !== undefined && Object.keys(labels).length === 0) {
    f.problem('spec.workloadSelector.labels', 'is required: the labels of the Pods it applies to');
  }
  if (f.array(spec.ingress, 'spec.ingress').length > 0) {
    f.problem(
      'spec.ingress',
      'is not supported by Mooring yet: the proxy takes every inbound port',
    );
  }
  if (spec.inboundConnectionPool !== undefined && spec.inboundConnectionPool !== null) {
    f.warn('spec.inboundConnectionPool', 'is not supported by Mooring yet: ignored');
  }
  let egressHosts: { namespace: string; host: string }[] | null = null;
  const egress = f.array(spec.egress, 'spec.egress');
  for (const [i, e] of egress.entries()) {
    const field = `spec.egress[${i}]`;
    const listener = f.object(e, field);
    if (listener === undefined) continue;
    for (const key of ['port', 'bind', 'captureMode'] as const) {
      if (listener[key] !== undefined && listener[key] !== null && listener[key] !== '') {
        f.problem(
          `${field}.${key}`,
          'is not supported by Mooring yet: the egress listener takes every port',
        );
      }
    }
    const hosts = f.array(listener.hosts, `${field}.hosts`);
    if (hosts.length === 0)
      f.problem(`${field}.hosts`, 'is required: at least one "namespace/host"');
    egressHosts ??= [];
    for (const [j, h] of hosts.entries()) {
      const host = readHost(f, h, `${field}.hosts[${j}]`);
      if (host !== null) egressHosts.push(host);
    }
  }
  let outboundTrafficPolicy: SidecarObject['outboundTrafficPolicy'] = null;
  const policy = f.object(spec.outboundTrafficPolicy, 'spec.outboundTrafficPolicy');
  if (policy !== undefined) {
    const mode = policy.mode ?? 'ALLOW_ANY';
    if (mode === 'ALLOW_ANY' || mode === 'REGISTRY_ONLY') outboundTrafficPolicy = mode;
    else
      f.problem(
        'spec.outboundTrafficPolicy.mode',
        `must be ALLOW_ANY or REGISTRY_ONLY, not ${JSON.stringify(mode)}`,
      );
    if (isObject(policy.egressProxy)) {
      f.problem('spec.outboundTrafficPolicy.egressProxy', 'is not supported by Mooring yet');
    }
  }
  return {
    kind: 'Sidecar',
    meta,
    egressHosts,
    outboundTrafficPolicy,
    workloadSelector: Object.keys(labels).length === 0 ? null : labels,
  };
}
