// Every label, annotation, name and port of the product contract (../shared/PRODUCT.md) in one
// module, so that no other file spells them out.

/**
 * Mooring's version: package.json's, the chart's appVersion and the tag of the default image
 * (test/unit/version.test.ts keeps them equal).
 */
export const MOORING_VERSION = '0.1.0';

/**
 * The one image of the three roles (the Dockerfile builds it): the server, the init container
 * `mooring-init` (`mooring iptables`) and the proxy container `mooring-proxy` (`mooring agent`).
 */
export const MOORING_IMAGE = `ghcr.io/mooring-dev/mooring:${MOORING_VERSION}` as const;

export const INJECT_LABEL = 'mooring.dev/inject';
export const NAMESPACE_ENABLED = 'enabled';
export const NAMESPACE_DISABLED = 'disabled';
export const STATUS_ANNOTATION = 'mooring.dev/status';
export const DEFAULT_CONTAINER_ANNOTATION = 'kubectl.kubernetes.io/default-container';

export const ANNOTATION = {
  proxyImage: 'proxy.mooring.dev/image',
  cpuRequest: 'proxy.mooring.dev/cpu-request',
  memoryRequest: 'proxy.mooring.dev/memory-request',
  cpuLimit: 'proxy.mooring.dev/cpu-limit',
  memoryLimit: 'proxy.mooring.dev/memory-limit',
  logLevel: 'proxy.mooring.dev/log-level',
  nativeSidecar: 'proxy.mooring.dev/native-sidecar',
  holdApplication: 'proxy.mooring.dev/hold-application',
  rewriteProbes: 'proxy.mooring.dev/rewrite-probes',
  userVolumeMount: 'proxy.mooring.dev/user-volume-mount',
  includeOutboundIPRanges: 'traffic.mooring.dev/include-outbound-ip-ranges',
  excludeOutboundIPRanges: 'traffic.mooring.dev/exclude-outbound-ip-ranges',
  includeInboundPorts: 'traffic.mooring.dev/include-inbound-ports',
  excludeInboundPorts: 'traffic.mooring.dev/exclude-inbound-ports',
  excludeOutboundPorts: 'traffic.mooring.dev/exclude-outbound-ports',
} as const;

export const INIT_CONTAINER_NAME = 'mooring-init';
export const PROXY_CONTAINER_NAME = 'mooring-proxy';

export const PORT = {
  webhook: 8443,
  admin: 9090,
  outboundCapture: 15001,
  inboundCapture: 15006,
  agent: 15020,
  readiness: 15021,
  proxyMetrics: 15090,
  /** The proxy's admin endpoint (/config_dump), on 127.0.0.1 only. */
  proxyAdmin: 15000,
} as const;

/** Path of the admission webhook on the HTTPS port. */
export const INJECT_PATH = '/inject';

/** The MutatingWebhookConfiguration that sends Pods to INJECT_PATH (config.cluster.webhookConfigName). */
export const MUTATING_WEBHOOK_CONFIG_NAME = 'mooring-sidecar-injector';
/**
 * The ValidatingWebhookConfiguration that sends the traffic kinds (VirtualService,
 * DestinationRule, ServiceEntry, Sidecar, WorkloadEntry, PeerAuthentication, AuthorizationPolicy,
 * RequestAuthentication, Telemetry, HTTPRoute, GRPCRoute, TCPRoute, TLSRoute) to POST /validate
 * (config.cluster.validatingWebhookConfigName), and the name of its one webhook.
 */
export const VALIDATING_WEBHOOK_CONFIG_NAME = 'mooring-traffic-validator';
export const VALIDATING_WEBHOOK_NAME = 'traffic.validator.mooring.dev';

export const PROXY_UID = 1337;
export const PROXY_GID = 1337;

/** Audience of the projected service-account token the agent presents to the CA. */
export const CA_TOKEN_AUDIENCE = 'mooring-ca';
/** ConfigMap holding every trusted root, distributed to every namespace. */
export const ROOT_CERT_CONFIGMAP = 'mooring-ca-root-cert';
export const ROOT_CERT_KEY = 'root-cert.pem';
/** Secret holding the CA in cluster mode. */
export const CA_SECRET = 'mooring-ca';
export const CA_LEASE = 'mooring-ca-rotation';
export const CSR_SIGNER_NAME = 'mooring.dev/workload';
export const ADMIN_API_GROUP = 'mooring.dev';
export const ADMIN_RESOURCE = 'certificates';

/** Volume names and mount paths inside an injected Pod. */
export const VOLUME = {
  token: 'mooring-token',
  rootCert: 'mooring-ca-root-cert',
  certs: 'mooring-certs',
  xtablesLock: 'mooring-xtables-lock',
} as const;
export const MOUNT_PATH = {
  token: '/var/run/secrets/mooring.dev/token',
  rootCert: '/var/run/secrets/mooring.dev/root',
  certs: '/var/run/secrets/mooring.dev/certs',
  /** iptables-legacy takes its lock in /run/xtables.lock: writable in a read-only container. */
  xtablesLock: '/run',
} as const;
export const TOKEN_FILE = 'token';

/** Istio's file names for a plugged-in CA, so that an existing `cacerts` Secret works. */
export const PLUGIN_CA_FILES = {
  cert: 'ca-cert.pem',
  key: 'ca-key.pem',
  chain: 'cert-chain.pem',
  root: 'root-cert.pem',
} as const;

/**
 * NODE_OPTIONS of the injected mooring-proxy (bench/RESULTS.md, the sidecar proxy):
 * - a young generation of 1 MiB semi-spaces instead of V8's default of up to 16 MiB. The proxy's
 *   garbage is short-lived and small; under load this took its own memory (RssAnon) from about
 *   40 to 26 MiB per sidecar with no measurable CPU cost;
 * - one V8 worker thread instead of four (compiling, marking and sweeping in the background; the
 *   scavenges are on the loop's own thread, src/agent/proxy/v8-flags.ts): each worker that
 *   compiles keeps a C heap arena of its own. Peak VmRSS at 1,000 requests/s 0.3-1 MiB lower per
 *   sidecar, the CPU per request the same.
 */
export const PROXY_NODE_OPTIONS = '--max-semi-space-size=1 --v8-pool-size=1';

/** Environment variables that configure `mooring agent` inside the injected proxy container. */
export const AGENT_ENV = {
  caUrl: 'MOORING_CA_URL',
  tokenFile: 'MOORING_TOKEN_FILE',
  rootCert: 'MOORING_ROOT_CERT',
  outDir: 'MOORING_OUT_DIR',
  ttl: 'MOORING_TTL',
  keyType: 'MOORING_KEY_TYPE',
  renewFraction: 'MOORING_RENEW_FRACTION',
  drain: 'MOORING_DRAIN',
  logLevel: 'MOORING_LOG_LEVEL',
  appProbes: 'MOORING_APP_PROBES',
  meshUrl: 'MOORING_MESH_URL',
  podName: 'MOORING_POD_NAME',
  podNamespace: 'MOORING_POD_NAMESPACE',
  podIp: 'MOORING_POD_IP',
  /** The app's original `prometheus.io/*` annotations, as JSON (src/api/app-metrics.ts). */
  prometheusAnnotations: 'MOORING_PROMETHEUS_ANNOTATIONS',
} as const;

export const SYSTEM_NAMESPACES = ['kube-system', 'kube-public', 'kube-node-lease'] as const;
