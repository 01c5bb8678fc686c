// Istio's WorkloadEntry (networking.istio.io v1, v1beta1): a workload outside Kubernetes (a VM)
// that Services and ServiceEntries select by its labels. Every field Mooring reads is checked and
// named when wrong; `network` and `weight` are warned of and ignored. Pure.

import { isIP } from 'node:net';
import { isObject, isPort, type Fields, type Json } from './fields';
import { readLocality } from './locality';
import type { Meta, WorkloadEntryObject } from './objects';
import { readServiceAccount } from './service-entry-validate';

export function readWorkloadEntry(raw: Json, f: Fields, meta: Meta): WorkloadEntryObject {
  const spec = f.object(raw.spec, 'spec') ?? {};
  const text = f.string(spec.address, 'spec.address') ?? '';
  if (text === '') f.problem('spec.address', 'is required');
  else if (isIP(text) === 0) {
    f.problem(
      'spec.address',
      `${JSON.stringify(text)} is not an IP address (Mooring does not resolve a WorkloadEntry's name)`,
    );
  }
  const ports: Record<string, number> = {};
  for (const [name, value] of Object.entries(f.object(spec.ports, 'spec.ports') ?? {})) {
    if (isPort(value)) ports[name] = value;
    else f.problem(`spec.ports.${name}`, 'must be a port number from 1 to 65535');
  }
  const labels = isObject(spec.labels) ? f.stringMap(spec.labels, 'spec.labels') : {};
  const serviceAccount = readServiceAccount(f, spec.serviceAccount, 'spec.serviceAccount');
  const locality = readLocality(f, spec.locality, 'spec.locality');
  for (const key of ['network', 'weight'] as const) {
    if (spec[key] !== undefined && spec[key] !== null && spec[key] !== '') {
      f.warn(`spec.${key}`, 'is not supported by Mooring yet: ignored');
    }
  }
  return {
    kind: 'WorkloadEntry',
    meta,
    address: text.toLowerCase(),
    ports,
    labels,
    serviceAccount,
    locality,
  };
}
