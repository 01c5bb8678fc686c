// Shared pieces of the HTTP tests: a log sink, fakes of the CA ports (for the HTTP behaviour
// only; test/http/real-ca.test.ts goes through the real CA), and app builders.

import { Writable } from 'node:stream';
import { compare } from 'fast-json-patch';
import type { FastifyInstance } from 'fastify';
import type { Registry } from 'prom-client';
import type { PodInjector } from '../../src/admission';
import type {
  AdminAuthorizer,
  Authenticator,
  CAStatusView,
  CertificateService,
  IssuedChain,
  WorkloadIssueRequest,
} from '../../src/ca/ports';
import { spiffeIdOf } from '../../src/ca/identity';
import { MooringError } from '../../src/errors';
import {
  buildAdminApp,
  buildWebhookApp,
  createMooringMetrics,
  type MooringMetrics,
  type WebhookAppDeps,
} from '../../src/http';
import type { ReadinessProbe } from '../../src/http';
import { createLogger } from '../../src/observability/logger';
import { createRegistry } from '../../src/observability/metrics';

/** Collects every JSON log line written to it. */
export class LogSink extends Writable {
  readonly raw: string[] = [];
  override _write(chunk: Buffer, _enc: BufferEncoding, done: () => void): void {
    for (const line of chunk.toString('utf8').split('\n'))
      if (line.trim() !== '') this.raw.push(line);
    done();
  }
  get lines(): Record<string, unknown>[] {
    return this.raw.map((l) => JSON.parse(l) as Record<string, unknown>);
  }
  withMessage(msg: string): Record<string, unknown>[] {
    return this.lines.filter((l) => l.msg === msg);
  }
  text(): string {
    return this.raw.join('\n');
  }
}

export const WORKLOAD_TOKEN = 'workload-token-7f3a';
export const ADMIN_TOKEN = 'admin-token-91bc';

export const fakeAuthenticator: Authenticator = {
  authenticateWorkload(token) {
    if (token === WORKLOAD_TOKEN)
      return Promise.resolve({ namespace: 'shop', serviceAccount: 'web' });
    return Promise.reject(new MooringError('CA_ERR_UNAUTHENTICATED', 'unknown token'));
  },
};

export const fakeAdminAuthorizer: AdminAuthorizer = {
  authorizeAdmin(token) {
    if (token === ADMIN_TOKEN) return Promise.resolve({ subject: 'local-admin' });
    if (token === 'known-but-not-admin') {
      return Promise.reject(
        new MooringError('CA_ERR_FORBIDDEN', 'not allowed to create certificates'),
      );
    }
    return Promise.reject(new MooringError('CA_ERR_UNAUTHENTICATED', 'unknown credential'));
  },
};

const PEM = (label: string): string =>
  `-----BEGIN CERTIFICATE-----\n${label}\n-----END CERTIFICATE-----\n`;

export interface FakeCertificates extends CertificateService {
  readonly requests: WorkloadIssueRequest[];
  isReady: boolean;
  failWith: Error | undefined;
}

/** A CertificateService that records requests and answers a fixed chain. */
export function fakeCertificates(): FakeCertificates {
  const status: CAStatusView = {
    roots: [
      {
        subject: 'Mooring Root CA',
        notAfter: new Date('2035-01-01T00:00:00Z'),
        fingerprint: 'aa:bb',
      },
    ],
    issuer: {
      subject: 'Mooring Root CA',
      notAfter: new Date('2035-01-01T00:00:00Z'),
      fingerprint: 'aa:bb',
    },
    intermediate: false,
    nextRotationAt: null,
  };
  const fake: FakeCertificates = {
    requests: [],
    isReady: true,
    failWith: undefined,
    spiffeIdOf: (id) => spiffeIdOf('cluster.local', id),
    issueWorkload(req) {
      fake.requests.push(req);
      if (fake.failWith !== undefined) return Promise.reject(fake.failWith);
      const chain: IssuedChain = {
        certificateChain: [PEM('LEAF'), PEM('INTERMEDIATE')],
        trustBundle: [PEM('ROOT')],
        expiresAt: new Date('2030-01-02T03:04:05.678Z'),
        serialNumber: '0a1b',
        keyType: 'ecdsa-p256',
      };
      return Promise.resolve(chain);
    },
    issueServing() {
      return Promise.reject(new Error('not used'));
    },
    trustBundle: () => [PEM('ROOT')],
    status: () => status,
    ready: () => fake.isReady,
  };
  return fake;
}

/** A tiny injector for HTTP-only tests: adds an annotation and a container, via compare(). */
export const fakeInjector: PodInjector = (pod) => {
  const original = pod as {
    metadata?: { annotations?: Record<string, string> };
    spec?: { containers?: unknown[] };
  };
  if (original.metadata?.annotations?.['mooring.dev/status'] !== undefined) {
    return {
      action: 'skipped',
      reason: 'already_injected',
      message: 'already injected',
      warnings: [],
    };
  }
  const mutated = structuredClone(original);
  mutated.metadata = {
    ...mutated.metadata,
    annotations: { ...mutated.metadata?.annotations, 'mooring.dev/status': '{}' },
  };
  mutated.spec = {
    ...mutated.spec,
    containers: [...(mutated.spec?.containers ?? []), { name: 'mooring-proxy' }],
  };
  return { action: 'injected', pod: mutated, patch: compare(original, mutated), warnings: [] };
};

export interface TestWebhookApp {
  readonly app: FastifyInstance;
  readonly sink: LogSink;
  readonly registry: Registry;
  readonly metrics: MooringMetrics;
  readonly certificates: FakeCertificates;
}

export function buildTestWebhookApp(overrides: Partial<WebhookAppDeps> = {}): TestWebhookApp {
  const sink = new LogSink();
  const registry = createRegistry({ processMetrics: false });
  const certificates = fakeCertificates();
  const metrics = createMooringMetrics(registry, { caStatus: () => certificates.status() });
  const app = buildWebhookApp({
    logger: createLogger('info', sink),
    metrics,
    bodyLimitBytes: 10 * 1024 * 1024,
    failOpen: false,
    injectPod: fakeInjector,
    certificates,
    authenticator: fakeAuthenticator,
    adminAuthorizer: fakeAdminAuthorizer,
    ...overrides,
  });
  return { app, sink, registry, metrics, certificates };
}

export function buildTestAdminApp(
  readiness: ReadinessProbe,
  registry: Registry = createRegistry({ processMetrics: false }),
) {
  const sink = new LogSink();
  const app = buildAdminApp({ logger: createLogger('info', sink), registry, readiness });
  return { app, sink, registry };
}

export const JSON_HEADERS = { 'content-type': 'application/json' } as const;

/** Value of a metric sample with exactly these labels, or undefined. */
export async function metricValue(
  registry: Registry,
  name: string,
  labels: Record<string, string> = {},
): Promise<number | undefined> {
  const metric = registry.getSingleMetric(name);
  if (!metric) return undefined;
  const data = await metric.get();
  const sample = data.values.find((v) => {
    const l = v.labels as Record<string, string | number>;
    return Object.entries(labels).every(([k, val]) => String(l[k]) === val);
  });
  return sample?.value;
}
