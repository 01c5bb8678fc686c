// Metrics of the cluster adapters, registered on the process's registry by the composition
// root. The apiserver request counter is what the mass-rollout bench reads: with the TokenReview
// cache at work, a burst of certificate requests costs one TokenReview per token, not per request.

import { Counter, Gauge, type Registry } from 'prom-client';
import type { RequestObserver } from './client';
import type { TokenReviewObserver } from './token-review';

export interface KubeMetrics {
  readonly apiRequests: Counter<'verb' | 'resource' | 'code'>;
  readonly tokenReviewCache: Counter<'result'>;
  readonly tokenReviews: Counter<'kind' | 'result'>;
  readonly leader: Gauge;
  readonly configMapWrites: Counter<'action'>;
  readonly webhookCABundlePatches: Counter;
  readonly csrs: Counter<'outcome'>;
  readonly observeRequest: RequestObserver;
  readonly tokenReviewObserver: TokenReviewObserver;
}

export function createKubeMetrics(registry: Registry): KubeMetrics {
  const registers = [registry];
  const apiRequests = new Counter({
    name: 'mooring_kube_api_requests_total',
    help: 'Requests to the Kubernetes API by verb (WATCH for watches), resource and HTTP status (0: no answer).',
    labelNames: ['verb', 'resource', 'code'],
    registers,
  });
  const tokenReviewCache = new Counter({
    name: 'mooring_token_review_cache_lookups_total',
    help: 'Workload token lookups in the TokenReview cache by result (hit, miss).',
    labelNames: ['result'],
    registers,
  });
  const tokenReviews = new Counter({
    name: 'mooring_token_reviews_total',
    help: 'TokenReviews sent to the apiserver by kind (workload, admin) and result (authenticated, rejected, error).',
    labelNames: ['kind', 'result'],
    registers,
  });
  return {
    apiRequests,
    tokenReviewCache,
    tokenReviews,
    leader: new Gauge({
      name: 'mooring_ca_leader',
      help: '1 while this replica holds the rotation Lease (and runs the cluster controllers).',
      registers,
      // Summed over server.workers, one holder would still read 1; max says so directly.
      aggregator: 'max',
    }),
    configMapWrites: new Counter({
      name: 'mooring_trust_configmap_writes_total',
      help: 'Writes of the mooring-ca-root-cert ConfigMaps by action (created, updated).',
      labelNames: ['action'],
      registers,
    }),
    webhookCABundlePatches: new Counter({
      name: 'mooring_webhook_ca_bundle_patches_total',
      help: 'Updates of the caBundle of the webhook configurations by kind (MutatingWebhookConfiguration, ValidatingWebhookConfiguration).',
      labelNames: ['kind'],
      registers,
    }),
    csrs: new Counter({
      name: 'mooring_kube_csrs_total',
      help: 'Kubernetes CertificateSigningRequests handled by outcome (issued, failed, approved).',
      labelNames: ['outcome'],
      registers,
    }),
    observeRequest: (verb, resource, code) =>
      apiRequests.inc({ verb, resource, code: String(code) }),
    tokenReviewObserver: {
      cache: (result) => tokenReviewCache.inc({ result }),
      review: (kind, result) => tokenReviews.inc({ kind, result }),
    },
  };
}
