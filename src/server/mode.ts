// The two modes of `mooring serve` (PRODUCT.md "Local mode", "Kubernetes objects"): what a mode
// gives the server, and how the mode is chosen. The modes themselves are local-mode.ts and
// cluster-mode.ts, loaded on demand by server.ts.

import { existsSync } from 'node:fs';
import type { Logger } from 'pino';
import type { Registry } from 'prom-client';
import type { CryptoMode } from '../ca/csr';
import type { AdminAuthorizer, Authenticator, CertificateService, Clock } from '../ca/ports';
import type { Config } from '../config/types';
import type { HostPort, ServeFlags } from './config';
import type { MeshPlan } from './mesh/runtime';

export type ModeName = 'local' | 'cluster';

export const SERVICE_ACCOUNT_TOKEN = '/var/run/secrets/kubernetes.io/serviceaccount/token';

/** Cluster mode when --kubeconfig is given or an in-cluster service account exists. */
export function detectMode(
  flags: ServeFlags,
  env: NodeJS.ProcessEnv,
  tokenExists: (path: string) => boolean = existsSync,
): ModeName {
  if (flags.kubeconfig !== undefined) return 'cluster';
  if (env.KUBERNETES_SERVICE_HOST !== undefined && tokenExists(SERVICE_ACCOUNT_TOKEN))
    return 'cluster';
  return 'local';
}

export interface ModeContext {
  readonly config: Config;
  readonly logger: Logger;
  readonly clock: Clock;
  readonly listen: HostPort;
  readonly kubeconfig?: string;
  /** The process's metrics registry (served on /metrics), for the mode's own metrics. */
  readonly registry?: Registry;
  /** Where CSR signatures are checked and certificates signed (see serverCryptoMode). */
  readonly cryptoMode?: CryptoMode;
}

/** What a mode gives the server: the ports of the CA and its periodic work. */
export interface ModeAdapters {
  readonly name: ModeName;
  readonly certificates: CertificateService;
  readonly authenticator: Authenticator;
  readonly adminAuthorizer: AdminAuthorizer;
  /** DNS names and IPs of the webhook's serving certificate. */
  readonly servingNames: { readonly dnsNames: string[]; readonly ipAddresses: string[] };
  /** Where the mesh's objects come from; absent: an empty mesh. */
  readonly mesh?: MeshPlan;
  /** Periodic work: pick up store changes, rotation transitions. */
  tick(): Promise<void>;
  /**
   * The mode's own readiness checks, by name: null when met, else what is wrong (shown by
   * /readyz: no secret). Read every MODE_CHECK_INTERVAL_MS; absent: none.
   */
  checks?(): Promise<Readonly<Record<string, string | null>>>;
  close(): Promise<void>;
}

/** How often the server reads the mode's checks (local mode's credential files: 1 s). */
export const MODE_CHECK_INTERVAL_MS = 1000;

export type ModeBuilder = (ctx: ModeContext) => Promise<ModeAdapters>;
