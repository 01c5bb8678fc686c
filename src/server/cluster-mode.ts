// Cluster mode of `mooring serve` (--kubeconfig FILE, or in a Pod with a service account):
//
//   CA        Authority over Secret `mooring-ca` in Mooring's namespace (created if absent; two
//             replicas starting together end with one root: create-if-absent + conflict reload)
//   auth      workloads: TokenReview (audience mooring-ca, cached); admins: TokenReview +
//             SubjectAccessReview (create certificates.mooring.dev)
//   Lease     `mooring-ca-rotation`: its holder performs the rotation steps (auto start,
//             activation, removal) and runs the controllers below; every replica follows the
//             Secret by watch and reloads the CA when it changes
//   leader    trust distribution (ConfigMap mooring-ca-root-cert everywhere), the caBundle of
//             the webhook configurations (injector and traffic validator), the Kubernetes CSR
//             signer (and auto-approver)
//
// Namespace: $POD_NAMESPACE (the Deployment sets it from the downward API), else
// config.cluster.namespace.

import { randomBytes, X509Certificate } from 'node:crypto';
import { hostname } from 'node:os';
import { isIP } from 'node:net';
import type { Logger } from 'pino';
import { Registry } from 'prom-client';
import { corePath } from '../adapters/kube/api';
import { KubeClient, loadKubeConfig } from '../adapters/kube/client';
import { clusterNamespace, openClusterCA, requireNamespace } from '../adapters/kube/cluster-ca';
import { CsrSigner } from '../adapters/kube/csr-signer';
import { LeaseElector } from '../adapters/kube/lease';
import { ClusterMeshSource } from '../adapters/kube/mesh-source';
import { createKubeMetrics, type KubeMetrics } from '../adapters/kube/metrics';
import { Reflector } from '../adapters/kube/reflector';
import type { Secret } from '../adapters/kube/secret-store';
import {
  SubjectAccessReviewAuthorizer,
  TokenReviewAuthenticator,
} from '../adapters/kube/token-review';
import { TrustDistributor } from '../adapters/kube/trust-distributor';
import {
  WebhookCABundlePatcher,
  type WebhookConfigurationKind,
} from '../adapters/kube/webhook-ca-bundle';
import type { Authority } from '../ca/authority';
import type { RotationEvent } from '../ca/rotation';
import type { Clock } from '../ca/ports';
import type { Config } from '../config/types';
import { CA_LEASE, CA_SECRET } from '../constants';
import { isMooringError } from '../errors';
import type { ModeAdapters, ModeContext } from './mode';

export { clusterNamespace };

/**
 * Names of the webhook's serving certificate: the Service's DNS names, plus the listen host when
 * it is a specific address (a webhook registered by URL, e.g. https://127.0.0.1:8443/inject).
 */
export function clusterServingNames(
  serviceName: string,
  namespace: string,
  listenHost: string,
): { dnsNames: string[]; ipAddresses: string[] } {
  const dnsNames = [
    serviceName,
    `${serviceName}.${namespace}`,
    `${serviceName}.${namespace}.svc`,
    `${serviceName}.${namespace}.svc.cluster.local`,
  ];
  const ipAddresses: string[] = [];
  if (listenHost !== '0.0.0.0' && listenHost !== '::' && listenHost !== '') {
    if (isIP(listenHost) !== 0) ipAddresses.push(listenHost);
    else if (!dnsNames.includes(listenHost)) dnsNames.push(listenHost);
  }
  return { dnsNames, ipAddresses };
}

/** Unique per replica, readable in `kubectl get lease`: pod name (or host) + random suffix. */
export function replicaIdentity(env: NodeJS.ProcessEnv): string {
  return `${env.POD_NAME ?? hostname()}-${randomBytes(4).toString('hex')}`;
}

function logRotationEvents(logger: Logger, events: readonly RotationEvent[]): void {
  for (const e of events) {
    const fingerprint = new X509Certificate(e.certPem).fingerprint256;
    const activateAt = e.event === 'rotation-started' ? e.activateAt.toISOString() : undefined;
    logger.info({ event: e.event, fingerprint, activateAt }, 'CA rotation step');
  }
}

/** The controllers the Lease holder runs; made anew for each term (they do not restart). */
class LeaderControllers {
  private readonly distributor: TrustDistributor;
  /** The caBundle of the injector's webhook configuration, and of the validator's if any. */
  private readonly patchers: readonly WebhookCABundlePatcher[];
  private readonly signer: CsrSigner | null;

  constructor(deps: {
    api: KubeClient;
    config: Config;
    authority: Authority;
    clock: Clock;
    logger: Logger;
    metrics: KubeMetrics;
  }) {
    const { api, config, authority, clock, logger, metrics } = deps;
    const roots = (): readonly string[] => authority.trustBundle();
    this.distributor = new TrustDistributor({
      api,
      roots,
      logger: logger.child({ component: 'trust-distributor' }),
      observe: (action) => metrics.configMapWrites.inc({ action }),
    });
    const patcher = (kind: WebhookConfigurationKind, name: string): WebhookCABundlePatcher =>
      new WebhookCABundlePatcher({
        api,
        kind,
        name,
        roots,
        logger: logger.child({ component: 'webhook-ca-bundle' }),
        observe: () => metrics.webhookCABundlePatches.inc({ kind }),
      });
    const { patchCABundle, webhookConfigName, validatingWebhookConfigName } = config.cluster;
    this.patchers = patchCABundle
      ? [
          patcher('MutatingWebhookConfiguration', webhookConfigName),
          ...(validatingWebhookConfigName === null
            ? []
            : [patcher('ValidatingWebhookConfiguration', validatingWebhookConfigName)]),
        ]
      : [];
    this.signer = config.cluster.csrSigner
      ? new CsrSigner({
          api,
          certificates: authority,
          clock,
          policy: {
            trustDomain: config.trustDomain,
            defaultTtlSeconds: config.ca.workloadDefaultTtlSeconds,
            maxTtlSeconds: config.ca.workloadMaxTtlSeconds,
          },
          autoApprove: config.cluster.csrAutoApprove,
          logger: logger.child({ component: 'csr-signer' }),
          observe: (outcome) => metrics.csrs.inc({ outcome }),
        })
      : null;
  }

  async start(): Promise<void> {
    await Promise.all([
      this.distributor.start(),
      ...this.patchers.map((p) => p.start()),
      this.signer?.start(),
    ]);
  }

  bundleChanged(): void {
    this.distributor.bundleChanged();
    for (const p of this.patchers) p.bundleChanged();
  }

  async stop(): Promise<void> {
    await Promise.allSettled([
      this.distributor.stop(),
      ...this.patchers.map((p) => p.stop()),
      this.signer?.stop(),
    ]);
  }
}

export async function buildClusterMode(ctx: ModeContext): Promise<ModeAdapters> {
  const { config, clock, listen } = ctx;
  const env = process.env;
  const logger = ctx.logger.child({ mode: 'cluster' });
  const registry = ctx.registry ?? new Registry();
  const metrics = createKubeMetrics(registry);

  const kubeconfig = loadKubeConfig(ctx.kubeconfig ?? null);
  const api = new KubeClient(kubeconfig, { observe: metrics.observeRequest, userAgent: 'mooring' });
  const namespace = clusterNamespace(config, env);
  await requireNamespace(api, namespace);

  const { authority, store } = await openClusterCA({
    api,
    config,
    namespace,
    create: true,
    clock,
    ...(ctx.cryptoMode === undefined ? {} : { cryptoMode: ctx.cryptoMode }),
  });
  const status = authority.status();
  logger.info(
    {
      apiserver: api.serverUrl,
      namespace,
      secret: store === undefined ? null : CA_SECRET,
      pluggedIn: store === undefined,
      roots: status.roots.map((r) => ({
        fingerprint: r.fingerprint,
        notAfter: r.notAfter.toISOString(),
        status: r.status,
      })),
    },
    'certificate authority loaded',
  );

  // --- the trust bundle: whoever leads writes it out when it changes ------------------------
  let controllers: LeaderControllers | null = null;
  let lastBundle = authority.trustBundle().join('');
  const bundleMaybeChanged = (): void => {
    const bundle = authority.trustBundle().join('');
    if (bundle === lastBundle) return;
    lastBundle = bundle;
    logger.info({ roots: authority.trustBundle().length }, 'trust bundle changed');
    controllers?.bundleChanged();
  };

  // --- follow the Secret: every replica reloads the CA when another one changed it -----------
  /** The leader writes the CA it holds back into a deleted Secret (same roots, same keys). */
  const restoreSecret = async (): Promise<void> => {
    const { state } = authority.snapshot();
    if (store === undefined || state === null || (await store.load()) !== null) return;
    try {
      await store.save(state, null);
    } catch (err) {
      if (!(isMooringError(err) && err.code === 'CA_ERR_CONFLICT')) throw err;
    }
    await authority.reloadIfChanged();
    logger.warn(
      { secret: CA_SECRET, namespace },
      'the CA Secret was deleted: written back from memory',
    );
  };
  let reloading: Promise<void> = Promise.resolve();
  const secretWatch =
    store === undefined
      ? null
      : new Reflector<Secret>({
          api,
          name: 'ca-secret',
          path: corePath('secrets', namespace),
          fieldSelector: `metadata.name=${CA_SECRET}`,
          resyncMs: 60_000,
          logger: logger.child({ component: 'ca-secret-watch' }),
          onEvent: (type, secret) => {
            if (type === 'deleted') {
              // Every replica keeps serving from memory; the leader writes the CA back.
              if (!elector.isLeader()) {
                logger.warn(
                  { secret: CA_SECRET, namespace },
                  'the CA Secret was deleted; the leader writes it back',
                );
                return;
              }
              reloading = reloading
                .then(() => restoreSecret())
                .catch((err: unknown) =>
                  logger.error({ err }, 'writing the CA Secret back failed'),
                );
              return;
            }
            if (secret.metadata?.resourceVersion === authority.snapshot().version) return;
            reloading = reloading
              .then(async () => {
                if (await authority.reloadIfChanged()) {
                  logger.info(
                    { version: authority.snapshot().version },
                    'CA Secret changed: reloaded',
                  );
                  bundleMaybeChanged();
                }
              })
              .catch((err: unknown) => logger.error({ err }, 'reloading the CA Secret failed'));
          },
        });
  await secretWatch?.start();

  // --- the Lease: one replica rotates and runs the controllers ------------------------------
  let leaderTick: Promise<void> = Promise.resolve();
  const rotate = (): Promise<void> => {
    leaderTick = leaderTick
      .then(async () => {
        if (!elector.isLeader()) return;
        let result: Awaited<ReturnType<Authority['tick']>>;
        try {
          result = await authority.tick(clock.now());
        } catch (err) {
          // The Secret is gone (deleted while no replica led): write it back, then go on.
          if (!(isMooringError(err) && err.code === 'CA_ERR_STORE')) throw err;
          await restoreSecret();
          result = await authority.tick(clock.now());
        }
        const { reloaded, events } = result;
        if (reloaded) logger.info('CA Secret changed: reloaded');
        logRotationEvents(logger, events);
        bundleMaybeChanged();
      })
      .catch((err: unknown) =>
        logger.error({ err }, 'CA rotation step failed; retrying at the next tick'),
      );
    return leaderTick;
  };
  let term: Promise<void> = Promise.resolve();
  const elector: LeaseElector = new LeaseElector({
    api,
    clock,
    namespace,
    name: CA_LEASE,
    identity: replicaIdentity(env),
    logger: logger.child({ component: 'lease' }),
    onStartedLeading: () => {
      metrics.leader.set(1);
      term = term.then(async () => {
        const next = new LeaderControllers({ api, config, authority, clock, logger, metrics });
        controllers = next;
        void rotate();
        try {
          await next.start();
        } catch (err) {
          logger.error({ err }, 'starting the cluster controllers failed');
        }
      });
    },
    onStoppedLeading: () => {
      metrics.leader.set(0);
      const previous = controllers;
      controllers = null;
      term = term.then(() => previous?.stop());
    },
  });
  elector.start();

  return {
    name: 'cluster',
    certificates: authority,
    authenticator: new TokenReviewAuthenticator({
      api,
      clock,
      cacheSeconds: config.cluster.tokenReviewCacheSeconds,
      cacheSize: config.cluster.tokenReviewCacheSize,
      observer: metrics.tokenReviewObserver,
    }),
    adminAuthorizer: new SubjectAccessReviewAuthorizer({
      api,
      observer: metrics.tokenReviewObserver,
    }),
    servingNames: clusterServingNames(config.cluster.serviceName, namespace, listen.host),
    // Services, EndpointSlices, Pods, PeerAuthentications and AuthorizationPolicies of the
    // cluster; watches are taken once they are listed (the CA and the webhook do not wait for them).
    mesh: {
      rootNamespace: namespace,
      source: (deps) => new ClusterMeshSource({ api, ...deps }),
      waitForSource: false,
    },
    async tick() {
      // The leader performs due rotation steps; followers learn of them from the Secret watch.
      await rotate();
      await reloading;
    },
    async close() {
      await elector.stop();
      await term;
      await controllers?.stop();
      await secretWatch?.stop();
      api.close();
    },
  };
}
