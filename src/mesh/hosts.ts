// The hosts traffic rules name, as the keys of the mesh's services (pure). A Kubernetes Service
// is `<namespace>/<name>`; a ServiceEntry's host is the key its name resolves to: the host itself
// (`api.example.com`, `*.example.com`), or, for a name of two labels such as `httpbin.org`, the
// key `name.namespace` gives (`org/httpbin`), so that every rule naming it finds it.

const DNS_LABEL = '[a-z0-9]([-a-z0-9]*[a-z0-9])?';
const LABEL = new RegExp(`^${DNS_LABEL}$`);
const DNS_NAME = new RegExp(`^${DNS_LABEL}(\\.${DNS_LABEL})*$`);

/**
 * A Kubernetes Service host: `name` (in `namespace`), `name.ns`, `name.ns.svc`, `name.ns.svc.<domain>`;
 * null for anything else (an external host, a wildcard).
 */
export function serviceKeyOfHost(host: string, namespace: string): string | null {
  const parts = host.toLowerCase().split('.');
  if (parts.some((p) => !LABEL.test(p))) return null;
  if (parts.length === 1) return `${namespace}/${parts[0] as string}`;
  if (parts.length === 2) return `${parts[1] as string}/${parts[0] as string}`;
  if (parts[2] === 'svc') return `${parts[1] as string}/${parts[0] as string}`;
  return null;
}

/** A DNS name, lowercase, `*.` in front for a wildcard. */
export function isDnsHost(host: string): boolean {
  const name = host.startsWith('*.') ? host.slice(2) : host;
  return name.length <= 253 && DNS_NAME.test(name);
}

/**
 * The key of the service a rule's host names: a Kubernetes Service's, or a ServiceEntry host's;
 * null when it can be neither (`*`, not a DNS name).
 */
export function meshKeyOfHost(host: string, namespace: string): string | null {
  const lower = host.toLowerCase().replace(/\.$/, '');
  return serviceKeyOfHost(lower, namespace) ?? (isDnsHost(lower) ? lower : null);
}

/**
 * Whether a host pattern takes a name (both lowercase): `*` any, `*.example.com` a name under it
 * (not itself), else the same name. Server names, ServiceEntry hosts, a Sidecar's egress hosts.
 */
export function hostMatches(pattern: string, name: string): boolean {
  if (pattern === '*' || pattern === name) return true;
  return (
    pattern.startsWith('*.') && name.length > pattern.length - 1 && name.endsWith(pattern.slice(1))
  );
}
