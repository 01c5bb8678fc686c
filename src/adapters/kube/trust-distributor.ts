// Trust distribution: ConfigMap mooring-ca-root-cert (key root-cert.pem: every trusted root,
// concatenated) in every namespace but kube-public and kube-node-lease. Two watches drive it:
// namespaces (a new namespace gets the ConfigMap) and the ConfigMaps of that name in every
// namespace (a deleted or edited one is put back). A new trust bundle (rotation) rewrites all.

import { ROOT_CERT_CONFIGMAP, ROOT_CERT_KEY } from '../../constants';
import {
  corePath,
  isAlreadyExists,
  isConflict,
  isKubeApiError,
  isNotFound,
  type KubeApi,
  type KubeObject,
} from './api';
import { Reflector, type ReflectorLogger } from './reflector';
import { WorkQueue } from './work-queue';

/** Namespaces that never get the ConfigMap. */
export const TRUST_EXCLUDED_NAMESPACES: readonly string[] = ['kube-public', 'kube-node-lease'];
export const MANAGED_BY_LABEL = 'app.kubernetes.io/managed-by';
export const MANAGED_BY = 'mooring';

export interface ConfigMap extends KubeObject {
  readonly data?: Readonly<Record<string, string>>;
  readonly binaryData?: Readonly<Record<string, string>>;
}

interface Namespace extends KubeObject {
  readonly status?: { readonly phase?: string };
}

/** root-cert.pem: the roots, each ending with a newline. */
export function bundleText(roots: readonly string[]): string {
  return roots.map((pem) => `${pem.trim()}\n`).join('');
}

/** What the ConfigMap of `namespace` must be. Pure. */
export function desiredConfigMap(namespace: string, roots: readonly string[]): ConfigMap {
  return {
    apiVersion: 'v1',
    kind: 'ConfigMap',
    metadata: {
      name: ROOT_CERT_CONFIGMAP,
      namespace,
      labels: { [MANAGED_BY_LABEL]: MANAGED_BY },
    },
    data: { [ROOT_CERT_KEY]: bundleText(roots) },
  };
}

/** True when the existing ConfigMap holds exactly the bundle (and nothing else). Pure. */
export function configMapUpToDate(existing: ConfigMap, roots: readonly string[]): boolean {
  const data = existing.data ?? {};
  const keys = Object.keys(data);
  return (
    keys.length === 1 &&
    data[ROOT_CERT_KEY] === bundleText(roots) &&
    Object.keys(existing.binaryData ?? {}).length === 0 &&
    existing.metadata?.labels?.[MANAGED_BY_LABEL] === MANAGED_BY
  );
}

export interface TrustDistributorLogger extends ReflectorLogger {
  info(obj: object, msg: string): void;
}

export interface TrustDistributorOptions {
  readonly api: KubeApi;
  /** The roots to distribute, read at every reconcile. */
  readonly roots: () => readonly string[];
  readonly logger: TrustDistributorLogger;
  readonly resyncMs?: number;
  readonly excluded?: readonly string[];
  readonly observe?: (action: 'created' | 'updated') => void;
}

export class TrustDistributor {
  private readonly namespaces: Reflector<Namespace>;
  private readonly configMaps: Reflector<ConfigMap>;
  private readonly queue: WorkQueue;
  private readonly excluded: readonly string[];

  constructor(private readonly options: TrustDistributorOptions) {
    this.excluded = options.excluded ?? TRUST_EXCLUDED_NAMESPACES;
    this.queue = new WorkQueue({
      name: 'trust-distributor',
      concurrency: 8,
      logger: options.logger,
      handler: (ns) => this.reconcile(ns),
    });
    const resyncMs = options.resyncMs ?? 300_000;
    this.namespaces = new Reflector<Namespace>({
      api: options.api,
      name: 'namespaces',
      path: corePath('namespaces'),
      resyncMs,
      logger: options.logger,
      onEvent: (type, ns) => {
        const name = ns.metadata?.name;
        if (type !== 'deleted' && name !== undefined) this.queue.add(name);
      },
    });
    this.configMaps = new Reflector<ConfigMap>({
      api: options.api,
      name: 'root-cert-configmaps',
      path: corePath('configmaps'),
      fieldSelector: `metadata.name=${ROOT_CERT_CONFIGMAP}`,
      resyncMs,
      logger: options.logger,
      onEvent: (_type, cm) => {
        const ns = cm.metadata?.namespace;
        if (ns !== undefined) this.queue.add(ns);
      },
    });
  }

  /** Starts both watches; resolves once both lists are in (the queue then fills every namespace). */
  async start(): Promise<void> {
    await Promise.all([this.configMaps.start(), this.namespaces.start()]);
  }

  async stop(): Promise<void> {
    this.queue.stop();
    await Promise.all([this.namespaces.stop(), this.configMaps.stop()]);
  }

  /** The bundle changed: every namespace is checked again. */
  bundleChanged(): void {
    for (const ns of this.namespaces.list()) {
      const name = ns.metadata?.name;
      if (name !== undefined) this.queue.add(name);
    }
  }

  /** Resolves when no namespace is being worked on (tests, bench). */
  idle(): Promise<void> {
    return this.queue.idle();
  }

  private async reconcile(namespace: string): Promise<void> {
    if (this.excluded.includes(namespace)) return;
    const ns = this.namespaces.get(namespace);
    // Gone, or going: creating in a terminating namespace is refused anyway.
    if (
      ns === undefined ||
      ns.metadata?.deletionTimestamp !== undefined ||
      ns.status?.phase === 'Terminating'
    ) {
      return;
    }
    const roots = this.options.roots();
    if (roots.length === 0) return;
    const existing = this.configMaps.get(`${namespace}/${ROOT_CERT_CONFIGMAP}`);
    const desired = desiredConfigMap(namespace, roots);
    try {
      if (existing === undefined) {
        await this.options.api.request({
          method: 'POST',
          path: corePath('configmaps', namespace),
          body: desired,
        });
        this.options.observe?.('created');
        this.options.logger.info({ namespace }, 'root certificate ConfigMap created');
        return;
      }
      if (configMapUpToDate(existing, roots)) return;
      await this.options.api.request({
        method: 'PUT',
        path: corePath('configmaps', namespace, ROOT_CERT_CONFIGMAP),
        body: {
          ...desired,
          metadata: {
            ...existing.metadata,
            labels: { ...existing.metadata?.labels, [MANAGED_BY_LABEL]: MANAGED_BY },
          },
          binaryData: undefined,
        },
      });
      this.options.observe?.('updated');
      this.options.logger.info({ namespace }, 'root certificate ConfigMap updated');
    } catch (err) {
      // Our cache is behind the apiserver: the watch event that follows reconciles again.
      if (isAlreadyExists(err) || isConflict(err) || isNotFound(err)) return;
      // Namespace being deleted (403 Forbidden "because it is being terminated").
      if (isKubeApiError(err, 403) && /terminat/i.test(err.message)) return;
      throw err;
    }
  }
}
