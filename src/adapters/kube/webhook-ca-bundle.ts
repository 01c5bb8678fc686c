// Keeps the caBundle of the named MutatingWebhookConfiguration equal to the trust bundle: at
// start, on rotation (bundleChanged) and on drift (it is watched; someone editing it, or a
// `kubectl apply` of the manifest without caBundle, is put right within seconds). Turned off
// with config.cluster.patchCABundle: false (GitOps installs that set the caBundle themselves).

import { groupPath, isConflict, isNotFound, type KubeApi, type KubeObject } from './api';
import { Reflector, type ReflectorLogger } from './reflector';
import { bundleText } from './trust-distributor';
import { WorkQueue } from './work-queue';

export const MWC_COLLECTION = groupPath(
  'admissionregistration.k8s.io/v1',
  'mutatingwebhookconfigurations',
);

interface Webhook {
  readonly name?: string;
  readonly clientConfig?: {
    readonly caBundle?: string;
    readonly url?: string;
    readonly service?: unknown;
  };
}

export interface MutatingWebhookConfiguration extends KubeObject {
  readonly webhooks?: readonly Webhook[];
}

/** base64 of the concatenated roots, as caBundle wants it. */
export function caBundleOf(roots: readonly string[]): string {
  return Buffer.from(bundleText(roots), 'utf8').toString('base64');
}

/** The configuration with every webhook's caBundle set, or null when nothing changes. Pure. */
export function withCABundle(
  mwc: MutatingWebhookConfiguration,
  caBundle: string,
): MutatingWebhookConfiguration | null {
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
  readonly name: string;
  readonly roots: () => readonly string[];
  readonly logger: WebhookCABundleLogger;
  readonly resyncMs?: number;
  readonly observe?: () => void;
}

export class WebhookCABundlePatcher {
  private readonly reflector: Reflector<MutatingWebhookConfiguration>;
  private readonly queue: WorkQueue;

  constructor(private readonly options: WebhookCABundleOptions) {
    this.queue = new WorkQueue({
      name: 'webhook-ca-bundle',
      concurrency: 1,
      logger: options.logger,
      handler: () => this.reconcile(),
    });
    this.reflector = new Reflector<MutatingWebhookConfiguration>({
      api: options.api,
      name: 'mutatingwebhookconfigurations',
      path: MWC_COLLECTION,
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
        { webhookConfiguration: this.options.name },
        'MutatingWebhookConfiguration not found yet; its caBundle is set when it appears',
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
        path: `${MWC_COLLECTION}/${encodeURIComponent(this.options.name)}`,
        body: updated,
      });
    } catch (err) {
      if (isConflict(err) || isNotFound(err)) return; // the watch brings the newer object
      throw err;
    }
    this.options.observe?.();
    this.options.logger.info(
      { webhookConfiguration: this.options.name, roots: roots.length },
      'webhook caBundle updated',
    );
  }
}
