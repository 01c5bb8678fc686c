// The certificate API between a workload (the agent, or anything with a token) and the CA
// (PRODUCT.md "HTTP API"). One definition for both ends: the server's routes
// (src/http/plugins/ca.ts) read requests and write answers with it, the agent's client
// (src/agent/identity/ca-client.ts) writes requests and reads answers with it.
//
//   POST /v1/certificates        {"csr": PEM, "ttlSeconds"?: n}                 workload token
//   POST /v1/admin/certificates  {"csr": PEM, "spiffeId": "spiffe://...", "ttlSeconds"?: n}   admin
//   GET  /v1/trust-bundle        no auth
//   200  {"certificateChain": [leaf, intermediates...], "trustBundle": [roots...], "expiresAt": RFC 3339}
//   4xx/5xx {"code": "CA_ERR_...", "message": "..."}
//
// Pure: no I/O. Parsers take what JSON.parse gave and say exactly which field is wrong.

import { MooringError } from '../errors';

export const CA_PATHS = {
  workload: '/v1/certificates',
  admin: '/v1/admin/certificates',
  trustBundle: '/v1/trust-bundle',
} as const;

/** A CSR is 1-2 KB; nothing on these routes needs more than this. */
export const CA_BODY_LIMIT_BYTES = 64 * 1024;

/** The body of POST /v1/certificates. */
export interface WorkloadCertificateRequest {
  readonly csr: string;
  readonly ttlSeconds?: number;
}

/** The body of POST /v1/admin/certificates. */
export interface AdminCertificateRequest extends WorkloadCertificateRequest {
  readonly spiffeId: string;
}

/** The 200 answer of both issuing routes. */
export interface CertificateResponse {
  /** Leaf first, then intermediates up to (not including) the root. */
  readonly certificateChain: readonly string[];
  readonly trustBundle: readonly string[];
  /** RFC 3339, UTC, whole seconds. */
  readonly expiresAt: string;
}

/** The 200 answer of GET /v1/trust-bundle. */
export interface TrustBundleResponse {
  readonly trustBundle: readonly string[];
}

/** Every error answer. */
export interface ErrorResponse {
  readonly code: string;
  readonly message: string;
}

// --- the server's side: requests in, answers out ------------------------------------------------

const bodyError = (message: string): MooringError => new MooringError('CA_ERR_BODY', message);

function parseRequestFields(body: unknown, fields: readonly string[]): Record<string, unknown> {
  if (typeof body !== 'object' || body === null || Array.isArray(body)) {
    throw bodyError('the body must be a JSON object');
  }
  const record = body as Record<string, unknown>;
  for (const key of Object.keys(record)) {
    if (!fields.includes(key)) throw bodyError(`unknown field "${key.slice(0, 64)}"`);
  }
  const { csr, ttlSeconds } = record;
  if (typeof csr !== 'string' || csr.trim() === '')
    throw bodyError('"csr" must be a PEM PKCS#10 string');
  if (
    ttlSeconds !== undefined &&
    (typeof ttlSeconds !== 'number' || !Number.isInteger(ttlSeconds) || ttlSeconds <= 0)
  ) {
    throw bodyError('"ttlSeconds" must be a positive integer');
  }
  return record;
}

/** `{csr, ttlSeconds?}`; throws CA_ERR_BODY naming the field. */
export function parseWorkloadRequest(body: unknown): WorkloadCertificateRequest {
  const r = parseRequestFields(body, ['csr', 'ttlSeconds']);
  return {
    csr: r.csr as string,
    ...(r.ttlSeconds === undefined ? {} : { ttlSeconds: r.ttlSeconds as number }),
  };
}

/** `{csr, spiffeId, ttlSeconds?}`; throws CA_ERR_BODY naming the field. */
export function parseAdminRequest(body: unknown): AdminCertificateRequest {
  const r = parseRequestFields(body, ['csr', 'spiffeId', 'ttlSeconds']);
  if (typeof r.spiffeId !== 'string') throw bodyError('"spiffeId" must be a string');
  if (r.spiffeId === '') throw bodyError('"spiffeId" must not be empty');
  return {
    csr: r.csr as string,
    spiffeId: r.spiffeId,
    ...(r.ttlSeconds === undefined ? {} : { ttlSeconds: r.ttlSeconds as number }),
  };
}

/** RFC 3339 in UTC, whole seconds (certificate times have no fractions). */
export function rfc3339(date: Date): string {
  return date.toISOString().replace(/\.\d{3}Z$/, 'Z');
}

/** The 200 answer for an issued chain. */
export function certificateResponse(chain: {
  readonly certificateChain: readonly string[];
  readonly trustBundle: readonly string[];
  readonly expiresAt: Date;
}): CertificateResponse {
  return {
    certificateChain: chain.certificateChain,
    trustBundle: chain.trustBundle,
    expiresAt: rfc3339(chain.expiresAt),
  };
}

// --- the client's side: requests out, answers in ------------------------------------------------

/** The JSON text of a workload's request. */
export function workloadRequestText(req: WorkloadCertificateRequest): string {
  return JSON.stringify(
    req.ttlSeconds === undefined ? { csr: req.csr } : { csr: req.csr, ttlSeconds: req.ttlSeconds },
  );
}

export type Parsed<T> =
  { readonly ok: true; readonly value: T } | { readonly ok: false; readonly problem: string };

const isStringList = (v: unknown): v is string[] =>
  Array.isArray(v) && v.every((s) => typeof s === 'string');

/** Reads a 200 answer's text; the problem says what is missing. */
export function parseCertificateResponse(text: string): Parsed<CertificateResponse> {
  let data: unknown;
  try {
    data = JSON.parse(text);
  } catch {
    return { ok: false, problem: 'the CA answered with invalid JSON' };
  }
  const r = (typeof data === 'object' && data !== null ? data : {}) as Partial<
    Record<keyof CertificateResponse, unknown>
  >;
  if (
    !isStringList(r.certificateChain) ||
    r.certificateChain.length === 0 ||
    !isStringList(r.trustBundle) ||
    typeof r.expiresAt !== 'string'
  ) {
    return { ok: false, problem: 'the CA answer lacks certificateChain, trustBundle or expiresAt' };
  }
  return {
    ok: true,
    value: {
      certificateChain: r.certificateChain,
      trustBundle: r.trustBundle,
      expiresAt: r.expiresAt,
    },
  };
}

/** The code and message of an error answer's text, as far as they are there. */
export function parseErrorResponse(text: string): Partial<ErrorResponse> {
  try {
    const e = JSON.parse(text) as { code?: unknown; message?: unknown } | null;
    return {
      ...(typeof e?.code === 'string' ? { code: e.code } : {}),
      ...(typeof e?.message === 'string' ? { message: e.message } : {}),
    };
  } catch {
    return {};
  }
}

/** Longest part of a server's error message an agent repeats. */
const MAX_SERVER_MESSAGE = 300;

/**
 * A server's error message fit for a log: a server (or a proxy in front of it) that echoes the
 * request would otherwise put the bearer token or the CSR there. Bearer tokens and PEM blocks
 * are cut out, and the rest is shortened.
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
 * A server's error answer (`{"code", "message"}`, the house's shape) fit for a log: `CODE:
 * message`, or `HTTP n` when the body is not one; the code alone for metrics.
 */
export function serverErrorForLog(
  status: number,
  body: string,
): { code?: string; message: string } {
  const e = parseErrorResponse(body);
  const code = e.code === undefined ? undefined : serverMessageForLog(e.code);
  const message =
    e.message === undefined
      ? `HTTP ${status}`
      : `${code ?? 'no code'}: ${serverMessageForLog(e.message)}`;
  return code === undefined ? { message } : { code, message };
}
