// POST /v1/certificates over HTTPS, the CA's certificate verified against the roots of the root
// file (the CA's trust bundle). Verification is never turned off.

import https from 'node:https';

export interface CertificateResponse {
  readonly certificateChain: readonly string[];
  readonly trustBundle: readonly string[];
  readonly expiresAt: string;
}

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

const isStringList = (v: unknown): v is string[] =>
  Array.isArray(v) && v.every((s) => typeof s === 'string');

function parseResponse(body: string): CertificateResponse {
  let data: unknown;
  try {
    data = JSON.parse(body);
  } catch {
    throw new RenewalError('invalid_response', 'the CA answered with invalid JSON');
  }
  const r = data as Partial<Record<keyof CertificateResponse, unknown>>;
  if (
    typeof data !== 'object' ||
    data === null ||
    !isStringList(r.certificateChain) ||
    r.certificateChain.length === 0 ||
    !isStringList(r.trustBundle) ||
    typeof r.expiresAt !== 'string'
  ) {
    throw new RenewalError(
      'invalid_response',
      'the CA answer lacks certificateChain, trustBundle or expiresAt',
    );
  }
  return {
    certificateChain: r.certificateChain,
    trustBundle: r.trustBundle,
    expiresAt: r.expiresAt,
  };
}

/** Longest part of a CA's error message the agent repeats. */
const MAX_SERVER_MESSAGE = 300;

/**
 * A CA's error message fit for the log: a CA (or a proxy in front of it) that echoes the request
 * would otherwise put the bearer token or the CSR there. Bearer tokens and PEM blocks are cut
 * out, and the rest is shortened.
 */
export function serverMessageForLog(text: string): string {
  const cleaned = text
    .replace(/-----BEGIN [A-Z0-9 ]+-----[\s\S]*?(-----END [A-Z0-9 ]+-----|$)/g, '[PEM redacted]')
    .replace(/(bearer)(\s+|%20)[^\s"',;]+/gi, '$1 [redacted]')
    .replace(/\s+/g, ' ');
  return cleaned.length > MAX_SERVER_MESSAGE
    ? `${cleaned.slice(0, MAX_SERVER_MESSAGE)}...`
    : cleaned;
}

/**
 * A server's JSON error (`{"code", "message"}`) fit for the log: `CODE: message`, or `HTTP n`
 * when the body is not one; the code alone for metrics.
 */
export function serverErrorOf(status: number, body: string): { code?: string; message: string } {
  let code: string | undefined;
  let message = `HTTP ${status}`;
  try {
    const e = JSON.parse(body) as { code?: unknown; message?: unknown };
    if (typeof e.code === 'string') code = serverMessageForLog(e.code);
    if (typeof e.message === 'string') {
      message = `${code ?? 'no code'}: ${serverMessageForLog(e.message)}`;
    }
  } catch {
    // not a JSON error
  }
  return code === undefined ? { message } : { code, message };
}

function errorFrom(status: number, body: string): RenewalError {
  const { code, message } = serverErrorOf(status, body);
  const reason = status >= 500 || status === 429 ? 'unavailable' : 'rejected';
  return new RenewalError(reason, `the CA refused the request (${message})`, { status, code });
}

/** Asks the CA for a certificate. Rejects with RenewalError. */
export function requestCertificate(req: CertificateRequest): Promise<CertificateResponse> {
  const payload = JSON.stringify(
    req.ttlSeconds === undefined
      ? { csr: req.csrPem }
      : { csr: req.csrPem, ttlSeconds: req.ttlSeconds },
  );
  const url = new URL('/v1/certificates', req.caUrl);
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
