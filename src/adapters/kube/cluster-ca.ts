// The CA of cluster mode: the Authority over Secret `mooring-ca` (or a plugged-in CA from
// config.ca.pluginDir, e.g. Istio's `cacerts` Secret mounted as files). Used by `mooring serve`
// in cluster mode and by `mooring ca ... --kubeconfig`.

import { Authority } from '../../ca/authority';
import type { CryptoMode } from '../../ca/csr';
import type { Clock, RandomSource } from '../../ca/ports';
import { bundleRoots, checkState, type CAState } from '../../ca/rotation';
import type { Config } from '../../config/types';
import { CA_SECRET, ROOT_CERT_KEY } from '../../constants';
import { MooringError } from '../../errors';
import { readPluginCA } from '../local-ca';
import { nextTurn, systemClock, systemRandom } from '../system-clock';
import { corePath, isKubeApiError, isNotFound, type KubeApi } from './api';
import { SecretKeyStore, type StateCodec } from './secret-store';

/** Keys of Secret mooring-ca: the whole state (roots and keys) and, for humans, the bundle. */
export const SECRET_KEYS = { state: 'ca-state.json', bundle: ROOT_CERT_KEY } as const;

export const caStateCodec: StateCodec<CAState> = {
  encode: (state) => ({
    [SECRET_KEYS.state]: `${JSON.stringify(state)}\n`,
    [SECRET_KEYS.bundle]: bundleRoots(state)
      .map((r) => `${r.certPem.trim()}\n`)
      .join(''),
  }),
  decode: (data) => {
    const text = data[SECRET_KEYS.state];
    if (text === undefined) throw new Error(`key ${SECRET_KEYS.state} is missing`);
    return checkState(JSON.parse(text) as unknown);
  },
};

export interface ClusterCAOptions {
  readonly api: KubeApi;
  readonly config: Config;
  /** Mooring's namespace, home of the Secret. */
  readonly namespace: string;
  /** Create the CA (a new root) if the Secret does not exist; false: CA_ERR_STORE. */
  readonly create: boolean;
  readonly clock?: Clock;
  readonly random?: RandomSource;
  /** See AuthorityOptions.cryptoMode. */
  readonly cryptoMode?: CryptoMode;
}

export interface ClusterCA {
  readonly authority: Authority;
  /** Undefined with a plugged-in CA. */
  readonly store: SecretKeyStore<CAState> | undefined;
}

/** Mooring's namespace: $POD_NAMESPACE (the downward API), else config.cluster.namespace. */
export function clusterNamespace(config: Config, env: NodeJS.ProcessEnv): string {
  const fromEnv = env.POD_NAMESPACE?.trim();
  return fromEnv !== undefined && fromEnv !== '' ? fromEnv : config.cluster.namespace;
}

/** Why reading Mooring's namespace failed, in words that say what to fix. */
function apiFailure(err: unknown, namespace: string): string {
  const message = (err as Error).message;
  if (isKubeApiError(err, 401)) {
    return `the Kubernetes API refuses Mooring's credential (expired, revoked or wrong token in the kubeconfig or service account): ${message}`;
  }
  if (isKubeApiError(err, 403)) {
    return `the Kubernetes API does not allow Mooring to get namespace "${namespace}" (RBAC: the chart's ClusterRole grants it): ${message}`;
  }
  return `cannot reach the Kubernetes API: ${message}`;
}

/** Fails with a clear message when Mooring's namespace does not exist. */
export async function requireNamespace(api: KubeApi, namespace: string): Promise<void> {
  try {
    await api.request({ method: 'GET', path: corePath('namespaces', undefined, namespace) });
  } catch (err) {
    if (isNotFound(err)) {
      throw new MooringError(
        'CFG_ERR_INVALID',
        `namespace "${namespace}" does not exist: create it (kubectl create namespace ${namespace}) or set cluster.namespace / POD_NAMESPACE`,
      );
    }
    throw new MooringError('CA_ERR_STORE', apiFailure(err, namespace), { cause: err });
  }
}

export async function openClusterCA(options: ClusterCAOptions): Promise<ClusterCA> {
  const { api, config, namespace } = options;
  const clock = options.clock ?? systemClock;
  const pluginDir = config.ca.pluginDir;
  const plugin = pluginDir === null ? undefined : await readPluginCA(pluginDir, clock.now());
  const store =
    plugin === undefined
      ? new SecretKeyStore<CAState>({ api, namespace, name: CA_SECRET, codec: caStateCodec })
      : undefined;
  const authority = await Authority.open(
    {
      trustDomain: config.trustDomain,
      ca: config.ca,
      clock,
      random: options.random ?? systemRandom,
      schedule: nextTurn,
      ...(store === undefined ? {} : { store }),
      ...(plugin === undefined ? {} : { plugin }),
      ...(options.cryptoMode === undefined ? {} : { cryptoMode: options.cryptoMode }),
    },
    { create: options.create },
  );
  return { authority, store };
}

export interface ConnectedClusterCA extends ClusterCA {
  readonly namespace: string;
  readonly apiserver: string;
  /** Whether the Secret existed before (false: `create` made it). */
  readonly existed: boolean;
  /** Closes the API connections. */
  close(): void;
}

/**
 * The cluster's CA for a one-shot command (`mooring ca status|rotate --kubeconfig FILE`):
 * connects with the kubeconfig (null: in-cluster), namespace $POD_NAMESPACE or
 * config.cluster.namespace, and opens the Secret without creating it. A rotation written this
 * way is a compare-and-swap on the Secret's resourceVersion: safe next to running replicas,
 * which see it by watch; the Lease holder then activates the new root when it is due.
 */
export async function connectClusterCA(options: {
  readonly kubeconfig: string | null;
  readonly config: Config;
  readonly env: NodeJS.ProcessEnv;
  readonly clock?: Clock;
  /** Create the CA when the Secret does not exist (`mooring ca init`); default false. */
  readonly create?: boolean;
}): Promise<ConnectedClusterCA> {
  // Loaded here, so that importing this module does not load the Kubernetes client.
  const { KubeClient, loadKubeConfig } = await import('./client');
  const api = new KubeClient(loadKubeConfig(options.kubeconfig));
  const namespace = clusterNamespace(options.config, options.env);
  try {
    await requireNamespace(api, namespace);
    const existed =
      options.config.ca.pluginDir !== null ||
      (await new SecretKeyStore<CAState>({
        api,
        namespace,
        name: CA_SECRET,
        codec: caStateCodec,
      }).load()) !== null;
    const ca = await openClusterCA({
      api,
      config: options.config,
      namespace,
      create: options.create ?? false,
      ...(options.clock === undefined ? {} : { clock: options.clock }),
    });
    return { ...ca, namespace, apiserver: api.serverUrl, existed, close: () => api.close() };
  } catch (err) {
    api.close();
    throw err;
  }
}
