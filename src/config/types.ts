// The validated, defaulted and frozen configuration. Mirrors src/config/schema.ts.

import type { CAPolicy } from '../ca/policy';

export type KeyType = 'ecdsa-p256' | 'ecdsa-p384' | 'rsa-2048' | 'rsa-3072' | 'rsa-4096';
export type ProxyLogLevel = 'trace' | 'debug' | 'info' | 'warn' | 'error' | 'off';

export interface ResourceConfig {
  readonly cpuRequest: string;
  readonly memoryRequest: string;
  readonly cpuLimit: string | null;
  readonly memoryLimit: string | null;
}

export interface InjectorConfig {
  readonly proxyImage: string;
  readonly initImage: string;
  readonly imagePullPolicy: 'Always' | 'IfNotPresent' | 'Never';
  readonly proxyUID: number;
  readonly proxyGID: number;
  readonly ports: {
    readonly outboundCapture: number;
    readonly inboundCapture: number;
    readonly agent: number;
    readonly readiness: number;
    readonly proxyMetrics: number;
  };
  readonly resources: ResourceConfig;
  readonly initResources: ResourceConfig;
  readonly ignoredNamespaces: readonly string[];
  readonly nativeSidecar: boolean;
  readonly holdApplication: boolean;
  readonly rewriteProbes: boolean;
  readonly logLevel: ProxyLogLevel;
  readonly caAddress: string;
  readonly drainSeconds: number;
  readonly failOpen: boolean;
}

/** The `ca` section: the CA's own policy (src/ca/policy.ts), and what the server does with it. */
export interface CAConfig extends CAPolicy {
  /** A plugged-in CA's directory (Istio's cacerts files), or null for the self-signed root. */
  readonly pluginDir: string | null;
  /** Renew the server's own HTTPS certificate after this fraction of its lifetime. */
  readonly servingCertRenewFraction: number;
}

export interface ServerConfig {
  readonly listen: string;
  readonly adminListen: string;
  readonly dataDir: string;
  readonly bodyLimitBytes: number;
  readonly logLevel: 'trace' | 'debug' | 'info' | 'warn' | 'error' | 'fatal' | 'silent';
  readonly shutdownGraceSeconds: number;
  /** Processes serving the HTTPS port (node:cluster workers); 'auto': one per CPU. */
  readonly workers: number | 'auto';
  /**
   * Worker threads that answer admission reviews off the event loop; 0: on the event loop.
   * 'auto': 1 when one process may use 2 CPUs or more, else 0.
   */
  readonly injectThreads: number | 'auto';
  /** Local mode: the directory of Kubernetes objects the mesh is read from; null: none. */
  readonly meshDir: string | null;
}

export interface MeshConfig {
  /** Where no PeerAuthentication sets a mode. */
  readonly mtlsMode: 'PERMISSIVE' | 'STRICT';
  readonly tracing: {
    /** OTLP/HTTP base URL; null: no export. */
    readonly otlpEndpoint: string | null;
    readonly samplingPercent: number;
  };
  readonly accessLog: boolean;
  /** Istio's `outboundTrafficPolicy`: what happens to a destination the mesh does not know. */
  readonly outboundTrafficPolicy: { readonly mode: 'ALLOW_ANY' | 'REGISTRY_ONLY' };
}

export interface ClusterConfig {
  readonly namespace: string;
  readonly serviceName: string;
  readonly webhookConfigName: string;
  /** The ValidatingWebhookConfiguration of the traffic kinds (caBundle patched too); null: none. */
  readonly validatingWebhookConfigName: string | null;
  readonly patchCABundle: boolean;
  readonly tokenReviewCacheSeconds: number;
  readonly tokenReviewCacheSize: number;
  readonly csrSigner: boolean;
  readonly csrAutoApprove: boolean;
}

export interface UiConfig {
  /** Prometheus scraping the sidecars, for the mesh graph (/ui/graph); null: none. */
  readonly prometheusUrl: string | null;
}

export interface Config {
  readonly trustDomain: string;
  readonly injector: InjectorConfig;
  readonly ca: CAConfig;
  readonly server: ServerConfig;
  readonly cluster: ClusterConfig;
  /** The data plane's settings, pushed to every proxy (a change applies without a restart). */
  readonly mesh: MeshConfig;
  /** The admin port's pages (the mesh graph). */
  readonly ui: UiConfig;
}
