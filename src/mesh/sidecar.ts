// Istio's Sidecar for a namespace: which services its proxies are given (`egress[].hosts`:
// `namespace/host`, the namespace `*` any, `.` the proxy's own, `~` none; the host `*`,
// `*.suffix` or a name). The namespace's own Sidecar (the oldest, when several) wins over the
// root namespace's, which is the mesh's default. Pure.

import { hostMatches } from './hosts';
import type { SidecarObject } from './objects';

/** Whether a Sidecar lets the proxies of `proxyNamespace` see a service. */
export function egressAllows(
  sidecar: SidecarObject | undefined,
  proxyNamespace: string,
  service: { readonly namespace: string; readonly hostname: string },
): boolean {
  if (sidecar === undefined || sidecar.egressHosts === null) return true;
  return sidecar.egressHosts.some((h) => {
    const ns =
      h.namespace === '*' ||
      (h.namespace === '.'
        ? service.namespace === proxyNamespace
        : h.namespace === service.namespace);
    return ns && hostMatches(h.host, service.hostname);
  });
}
