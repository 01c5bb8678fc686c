// POST /v1/certificates (the contract: src/api/certificates.ts) over HTTPS, the CA's certificate
// verified against the roots of the root file (the CA's trust bundle). Verification is never
// turned off.

import https from 'node:https';
import {
  CA_PATHS,
  parseCertificateResponse,
  serverErrorForLog,
  workloadRequestText,
  type CertificateResponse,
} from '../../api/certificates';

/** Why a renewal failed: the metric label and log field. */
export type FailureReason =
  | 'token'
  | 'roots'
  | 'unreachable'
  | 'tls'
  | 'rejected'
  | 'unavailable'
  | 'invalid_response'
  | 'verification'
  | 'write';

export class RenewalError extends Error {
  constructor(
    readonly reason: FailureReason,
    message: string,
    readonly detail: { status?: number; code?: string } = {},
  ) {
    super(message);
    this.name = 'RenewalError';
  }
}

export interface CertificateRequest {
  readonly caUrl: URL;
  readonly token: string;
  readonly csrPem: string;
  readonly ttlSeconds: number | undefined;
  /** PEM roots the CA's serving certificate must chain to. */
  readonly roots: readonly string[];
  readonly timeoutMs: number;
  readonly signal?: AbortSignal;
}

const MAX_RESPONSE_BYTES = 1024 * 1024;

function parseResponse(body: string): CertificateResponse {
  const parsed = parseCertificateResponse(body);
  if (!parsed.ok) throw new RenewalError('invalid_response', parsed.problem);
  return parsed.value;
}

function errorFrom(status: number, body: string): RenewalError {
  const { code, message } = serverErrorForLog(status, body);
  const reason = status >= 500 || status === 429 ? 'unavailable' : 'rejected';
  return new RenewalError(reason, `the CA refused the request (${message})`, { status, code });
}

/** Asks the CA for a certificate. Rejects with RenewalError. */
export function requestCertificate(req: CertificateRequest): Promise<CertificateResponse> {
  const payload = workloadRequestText({
    csr: req.csrPem,
    ...(req.ttlSeconds === undefined ? {} : { ttlSeconds: req.ttlSeconds }),
  });
  const url = new URL(CA_PATHS.workload, req.caUrl);
  return new Promise((resolve, reject) => {
    const request = https.request(
      url,
      {
        method: 'POST',
        ca: [...req.roots],
        agent: false,
        timeout: req.timeoutMs,
        signal: req.signal,
        headers: {
          authorization: `Bearer ${req.token}`,
          'content-type': 'application/json',
          'content-length': Buffer.byteLength(payload),
          accept: 'application/json',
        },
      },
      (res) => {
        const chunks: Buffer[] = [];
        let size = 0;
        res.on('data', (chunk: Buffer) => {
          size += chunk.length;
          if (size > MAX_RESPONSE_BYTES) {
            res.destroy();
            reject(new RenewalError('invalid_response', 'the CA answer is too large'));
            return;
          }
          chunks.push(chunk);
        });
        res.on('error', (err) =>
          reject(new RenewalError('unreachable', `reading the CA answer failed: ${err.message}`)),
        );
        res.on('end', () => {
          const body = Buffer.concat(chunks).toString('utf8');
          const status = res.statusCode ?? 0;
          if (status !== 200) return reject(errorFrom(status, body));
          try {
            resolve(parseResponse(body));
          } catch (err) {
            reject(err instanceof Error ? err : new Error(String(err)));
          }
        });
      },
    );
    request.on('timeout', () => request.destroy(new Error(`no answer within ${req.timeoutMs} ms`)));
    request.on('error', (err: NodeJS.ErrnoException) => {
      if (/CERT|TLS|SELF_SIGNED|UNABLE_TO_/.test(err.code ?? '')) {
        reject(
          new RenewalError(
            'tls',
            `the CA at ${url.origin} is not trusted by the root file (${err.code ?? ''}: ${err.message})`,
          ),
        );
        return;
      }
      reject(
        new RenewalError('unreachable', `the CA at ${url.origin} is unreachable: ${err.message}`),
      );
    });
    request.end(payload);
  });
}
