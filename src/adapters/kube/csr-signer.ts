// The Kubernetes CSR signer for signerName mooring.dev/workload: watches
// certificates.k8s.io/v1 CertificateSigningRequests of that signer; signs approved ones through
// the same CertificateService as the HTTP API (status.certificate, via the /status subresource),
// marks bad ones Failed with a reason, and (optionally) approves those whose requester is a
// service account asking for exactly its own SPIFFE ID (the /approval subresource).

import { readCsr, type RequestedNames } from '../../ca/csr';
import type { CertificateService, Clock } from '../../ca/ports';
import { CSR_SIGNER_NAME } from '../../constants';
import { isMooringError } from '../../errors';
import { groupPath, isConflict, isNotFound, type KubeApi } from './api';
import {
  decideApproval,
  decideSigning,
  failedReasonOfError,
  type CertificateSigningRequest,
  type CsrCondition,
  type CsrPolicy,
} from './csr-policy';
import { Reflector, type ReflectorLogger } from './reflector';
import { WorkQueue } from './work-queue';

export const CSR_COLLECTION = groupPath('certificates.k8s.io/v1', 'certificatesigningrequests');
const csrPath = (name: string, sub?: 'status' | 'approval'): string =>
  `${CSR_COLLECTION}/${encodeURIComponent(name)}${sub === undefined ? '' : `/${sub}`}`;

export interface CsrSignerLogger extends ReflectorLogger {
  info(obj: object, msg: string): void;
}

export interface CsrSignerOptions {
  readonly api: KubeApi;
  readonly certificates: CertificateService;
  readonly clock: Clock;
  readonly policy: CsrPolicy;
  readonly autoApprove: boolean;
  readonly logger: CsrSignerLogger;
  readonly resyncMs?: number;
  /** Counts outcomes (issued, failed, approved), for metrics. */
  readonly observe?: (outcome: 'issued' | 'failed' | 'approved') => void;
}

/** status.certificate: the PEM chain, leaf first, no root (the root is in the trust bundle). */
export function certificateField(chain: readonly string[]): string {
  return Buffer.from(chain.map((pem) => `${pem.trim()}\n`).join(''), 'utf8').toString('base64');
}

export class CsrSigner {
  private readonly reflector: Reflector<CertificateSigningRequest>;
  private readonly queue: WorkQueue;

  constructor(private readonly options: CsrSignerOptions) {
    this.queue = new WorkQueue({
      name: 'csr-signer',
      concurrency: 4,
      logger: options.logger,
      handler: (name) => this.reconcile(name),
    });
    this.reflector = new Reflector<CertificateSigningRequest>({
      api: options.api,
      name: 'certificatesigningrequests',
      path: CSR_COLLECTION,
      fieldSelector: `spec.signerName=${CSR_SIGNER_NAME}`,
      resyncMs: options.resyncMs ?? 300_000,
      logger: options.logger,
      onEvent: (type, csr) => {
        if (type !== 'deleted' && csr.metadata?.name !== undefined)
          this.queue.add(csr.metadata.name);
      },
    });
  }

  start(): Promise<void> {
    return this.reflector.start();
  }

  async stop(): Promise<void> {
    this.queue.stop();
    await this.reflector.stop();
  }

  /** Resolves when no CSR is being worked on (tests). */
  idle(): Promise<void> {
    return this.queue.idle();
  }

  private condition(type: string, reason: string, message: string): CsrCondition {
    const now = this.options.clock
      .now()
      .toISOString()
      .replace(/\.\d{3}Z$/, 'Z');
    return { type, status: 'True', reason, message, lastUpdateTime: now, lastTransitionTime: now };
  }

  private async reconcile(name: string): Promise<void> {
    const csr = this.reflector.get(name);
    if (csr === undefined) return;
    try {
      if (this.options.autoApprove && (await this.maybeApprove(csr))) return;
      await this.maybeSign(csr);
    } catch (err) {
      // A stale copy (someone else wrote first) or a deleted CSR: the watch brings the news.
      if (isConflict(err) || isNotFound(err)) return;
      throw err;
    }
  }

  /** True when it approved (the watch then brings the approved CSR back to be signed). */
  private async maybeApprove(csr: CertificateSigningRequest): Promise<boolean> {
    let names: RequestedNames | null;
    try {
      names = (await readCsr(Buffer.from(csr.spec?.request ?? '', 'base64').toString('utf8')))
        .names;
    } catch {
      names = null;
    }
    const decision = decideApproval(csr, names, this.options.policy);
    if (!decision.approve) return false;
    const name = csr.metadata?.name ?? '';
    await this.options.api.request({
      method: 'PUT',
      path: csrPath(name, 'approval'),
      body: {
        ...csr,
        status: {
          ...csr.status,
          conditions: [
            ...(csr.status?.conditions ?? []),
            this.condition(
              'Approved',
              'MooringAutoApproved',
              `the requester asks for exactly its own identity ${decision.spiffeId}`,
            ),
          ],
        },
      },
    });
    this.options.observe?.('approved');
    this.options.logger.info({ csrName: name, spiffeId: decision.spiffeId }, 'CSR auto-approved');
    return true;
  }

  private async maybeSign(csr: CertificateSigningRequest): Promise<void> {
    const name = csr.metadata?.name ?? '';
    const decision = decideSigning(csr, this.options.policy);
    if (decision.action === 'ignore') return;
    if (decision.action === 'fail') {
      await this.fail(csr, decision.reason, decision.message);
      return;
    }
    let chain: readonly string[];
    try {
      const issued = await this.options.certificates.issueWorkload({
        csrPem: decision.csrPem,
        spiffeId: decision.spiffeId,
        ttlSeconds: decision.ttlSeconds,
      });
      chain = issued.certificateChain;
    } catch (err) {
      const reason = isMooringError(err) ? failedReasonOfError(err.code) : null;
      if (reason === null || !isMooringError(err)) throw err; // not the CSR's fault: retry
      await this.fail(csr, reason, err.message);
      return;
    }
    await this.options.api.request({
      method: 'PUT',
      path: csrPath(name, 'status'),
      body: { ...csr, status: { ...csr.status, certificate: certificateField(chain) } },
    });
    this.options.observe?.('issued');
    this.options.logger.info({ csrName: name, spiffeId: decision.spiffeId }, 'CSR signed');
  }

  private async fail(
    csr: CertificateSigningRequest,
    reason: string,
    message: string,
  ): Promise<void> {
    const name = csr.metadata?.name ?? '';
    await this.options.api.request({
      method: 'PUT',
      path: csrPath(name, 'status'),
      body: {
        ...csr,
        status: {
          ...csr.status,
          conditions: [
            ...(csr.status?.conditions ?? []),
            this.condition('Failed', reason, message),
          ],
        },
      },
    });
    this.options.observe?.('failed');
    this.options.logger.info({ csrName: name, reason, message }, 'CSR marked Failed');
  }
}
