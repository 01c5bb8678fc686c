// Mooring's metric definitions, built on a given registry (one per process, one per test).
// Gauges of expiry times read their sources when scraped, so nothing needs to push them.

import { Counter, Gauge, Histogram, type Registry } from 'prom-client';
import type { CAStatusView } from '../ca/ports';

/** Sub-millisecond buckets: an injection takes a fraction of a millisecond. */
export const INJECTION_DURATION_BUCKETS = [
  0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1,
];
export const ISSUE_DURATION_BUCKETS = [
  0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5,
];

export type IssueResult = 'issued' | 'rejected' | 'error';
export type AuthFailureReason = 'missing' | 'malformed' | 'invalid' | 'forbidden' | 'error';

export interface MetricSources {
  /** The CA's current status, or null while it is not loaded. */
  readonly caStatus?: () => CAStatusView | null;
  /** The serving certificate's serial and notAfter, or null while there is none. */
  readonly servingCert?: () => { readonly serialNumber: string; readonly notAfter: Date } | null;
  /** Inject threads that answer reviews now (0: reviews run on the event loop). */
  readonly injectThreads?: () => number;
}

export interface MooringMetrics {
  readonly certificatesIssued: Counter<'result' | 'key_type'>;
  readonly certificateIssueDuration: Histogram<'key_type'>;
  readonly authenticationFailures: Counter<'reason' | 'route'>;
  readonly injectionRequests: Counter<'result'>;
  readonly injectionSkipped: Counter<'reason'>;
  readonly injectionDuration: Histogram;
  readonly injectThreadsReady: Gauge;
  readonly injectThreadRestarts: Counter;
}

const seconds = (d: Date): number => Math.floor(d.getTime() / 1000);

/** Registers every Mooring metric on `registry` and returns handles to them. */
export function createMooringMetrics(
  registry: Registry,
  sources: MetricSources = {},
): MooringMetrics {
  const registers = [registry];
  const { caStatus, servingCert, injectThreads } = sources;

  new Gauge({
    name: 'mooring_ca_root_expiry_timestamp_seconds',
    help: 'notAfter of each trusted root (Unix seconds) by fingerprint and status (active, pending, retired).',
    labelNames: ['fingerprint', 'status'],
    registers,
    aggregator: 'min',
    collect() {
      this.reset();
      const status = caStatus?.();
      for (const root of status?.roots ?? []) {
        this.set(
          { fingerprint: root.fingerprint, status: root.status ?? 'active' },
          seconds(root.notAfter),
        );
      }
    },
  });
  new Gauge({
    name: 'mooring_ca_issuer_expiry_timestamp_seconds',
    help: 'notAfter of the certificate that signs workload certificates (root or intermediate).',
    labelNames: ['fingerprint', 'intermediate'],
    registers,
    aggregator: 'min',
    collect() {
      this.reset();
      const status = caStatus?.();
      if (status) {
        this.set(
          { fingerprint: status.issuer.fingerprint, intermediate: String(status.intermediate) },
          seconds(status.issuer.notAfter),
        );
      }
    },
  });
  new Gauge({
    name: 'mooring_serving_certificate_expiry_timestamp_seconds',
    help: 'notAfter of the HTTPS serving certificate of the webhook and CA API, by serial.',
    labelNames: ['serial'],
    registers,
    aggregator: 'min',
    collect() {
      this.reset();
      const cert = servingCert?.();
      if (cert) this.set({ serial: cert.serialNumber }, seconds(cert.notAfter));
    },
  });

  return {
    certificatesIssued: new Counter({
      name: 'mooring_certificates_issued_total',
      help: 'Certificate requests to the CA API by result (issued, rejected, error) and CSR key type.',
      labelNames: ['result', 'key_type'],
      registers,
    }),
    certificateIssueDuration: new Histogram({
      name: 'mooring_certificate_issue_duration_seconds',
      help: 'Time to issue a certificate: CSR parse and verify, policy, signing.',
      labelNames: ['key_type'],
      buckets: ISSUE_DURATION_BUCKETS,
      registers,
    }),
    authenticationFailures: new Counter({
      name: 'mooring_authentication_failures_total',
      help: 'Refused credentials on the CA API by reason (missing, malformed, invalid, forbidden, error).',
      labelNames: ['reason', 'route'],
      registers,
    }),
    injectionRequests: new Counter({
      name: 'mooring_injection_requests_total',
      help: 'AdmissionReviews answered by result (injected, skipped, denied, error, fail_open, invalid).',
      labelNames: ['result'],
      registers,
    }),
    injectionSkipped: new Counter({
      name: 'mooring_injection_skipped_total',
      help: 'Pods admitted without injection, by typed reason.',
      labelNames: ['reason'],
      registers,
    }),
    injectionDuration: new Histogram({
      name: 'mooring_injection_duration_seconds',
      help: 'Time to decide one AdmissionReview (parse, inject, patch), without network.',
      buckets: INJECTION_DURATION_BUCKETS,
      registers,
    }),
    injectThreadsReady: new Gauge({
      name: 'mooring_inject_threads',
      help: 'Inject threads answering admission reviews (0: reviews run on the event loop).',
      registers,
      collect() {
        this.set(injectThreads?.() ?? 0);
      },
    }),
    injectThreadRestarts: new Counter({
      name: 'mooring_inject_thread_restarts_total',
      help: 'Inject threads replaced after they exited unexpectedly.',
      registers,
    }),
  };
}
