// Keeps the caBundle of a named webhook configuration equal to the trust bundle: at start, on
// rotation (bundleChanged) and on drift (it is watched; someone editing it, or a `kubectl apply`
// of the manifest without caBundle, is put right within seconds). One patcher per object: the
// MutatingWebhookConfiguration of the injector (config.cluster.webhookConfigName) and the
// ValidatingWebhookConfiguration of the traffic kinds (config.cluster.validatingWebhookConfigName).
// Turned off with config.cluster.patchCABundle: false (GitOps installs that set the caBundle
// themselves).

import { groupPath, isConflict, isNotFound, type KubeApi, type KubeObject } from './api';
import { Reflector, type ReflectorLogger } from './reflector';
import { bundleText } from './trust-distributor';
import { WorkQueue } from './work-queue';

export const MWC_COLLECTION = groupPath(
  'admissionregistration.k8s.io/v1',
  'mutatingwebhookconfigurations',
);
export const VWC_COLLECTION = groupPath(
  'admissionregistration.k8s.io/v1',
  'validatingwebhookconfigurations',
);

export type WebhookConfigurationKind =
  'MutatingWebhookConfiguration' | 'ValidatingWebhookConfiguration';

const COLLECTIONS: Readonly<
  Record<WebhookConfigurationKind, { readonly path: string; readonly resource: string }>
> = {
  MutatingWebhookConfiguration: { path: MWC_COLLECTION, resource: 'mutatingwebhookconfigurations' },
  ValidatingWebhookConfiguration: {
    path: VWC_COLLECTION,
    resource: 'validatingwebhookconfigurations',
  },
};

interface Webhook {
  readonly name?: string;
  readonly clientConfig?: {
    readonly caBundle?: string;
    readonly url?: string;
    readonly service?: unknown;
  };
}

/** A Mutating- or ValidatingWebhookConfiguration: the caBundle lives in the same place. */
export interface WebhookConfiguration extends KubeObject {
  readonly webhooks?: readonly Webhook[];
}
export type MutatingWebhookConfiguration = WebhookConfiguration;

/** base64 of the concatenated roots, as caBundle wants it. */
export function caBundleOf(roots: readonly string[]): string {
  return Buffer.from(bundleText(roots), 'utf8').toString('base64');
}

/** The configuration with every webhook's caBundle set, or null when nothing changes. Pure. */
export function withCABundle(
  mwc: WebhookConfiguration,
  caBundle: string,
): WebhookConfiguration | null {
  const webhooks = mwc.webhooks ?? [];
  if (webhooks.every((w) => w.clientConfig?.caBundle === caBundle)) return null;
  return {
    ...mwc,
    webhooks: webhooks.map((w) => ({ ...w, clientConfig: { ...w.clientConfig, caBundle } })),
  };
}

export interface WebhookCABundleLogger extends ReflectorLogger {
  info(obj: object, msg: string): void;
}

export interface WebhookCABundleOptions {
  readonly api: KubeApi;
  /** Which configuration (default: the MutatingWebhookConfiguration). */
  readonly kind?: WebhookConfigurationKind;
  readonly name: string;
  readonly roots: () => readonly string[];
  readonly logger: WebhookCABundleLogger;
  readonly resyncMs?: number;
  readonly observe?: () => void;
}

export class WebhookCABundlePatcher {
  private readonly reflector: Reflector<WebhookConfiguration>;
  private readonly queue: WorkQueue;
  private readonly kind: WebhookConfigurationKind;
  private readonly collection: string;

  constructor(private readonly options: WebhookCABundleOptions) {
    this.kind = options.kind ?? 'MutatingWebhookConfiguration';
    const { path, resource } = COLLECTIONS[this.kind];
    this.collection = path;
    this.queue = new WorkQueue({
      name: `webhook-ca-bundle/${resource}`,
      concurrency: 1,
      logger: options.logger,
      handler: () => this.reconcile(),
    });
    this.reflector = new Reflector<WebhookConfiguration>({
      api: options.api,
      name: resource,
      path,
      fieldSelector: `metadata.name=${options.name}`,
      resyncMs: options.resyncMs ?? 300_000,
      logger: options.logger,
      onEvent: (type) => {
        if (type !== 'deleted') this.queue.add(options.name);
      },
    });
  }

  async start(): Promise<void> {
    await this.reflector.start();
    if (this.reflector.get(this.options.name) === undefined) {
      this.options.logger.info(
        { kind: this.kind, webhookConfiguration: this.options.name },
        `${this.kind} not found yet; its caBundle is set when it appears`,
      );
    }
  }

  async stop(): Promise<void> {
    this.queue.stop();
    await this.reflector.stop();
  }

  bundleChanged(): void {
    this.queue.add(this.options.name);
  }

  idle(): Promise<void> {
    return this.queue.idle();
  }

  private async reconcile(): Promise<void> {
    const mwc = this.reflector.get(this.options.name);
    const roots = this.options.roots();
    if (mwc === undefined || roots.length === 0) return;
    const updated = withCABundle(mwc, caBundleOf(roots));
    if (updated === null) return;
    try {
      await this.options.api.request({
        method: 'PUT',
        path: `${this.collection}/${encodeURIComponent(this.options.name)}`,
        body: updated,
      });
    } catch (err) {
      if (isConflict(err) || isNotFound(err)) return; // the watch brings the newer object
      throw err;
    }
    this.options.observe?.();
    this.options.logger.info(
      { kind: this.kind, webhookConfiguration: this.options.name, roots: roots.length },
      'webhook caBundle updated',
    );
  }
}
