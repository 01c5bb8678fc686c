// One catalog of coded errors: stable code, HTTP status, and the generic message a client sees
// for 5xx. The detail of a 4xx is the error's own message; the detail of a 5xx goes to the log.
// test/unit/errors.test.ts checks this catalog against README.md.

export const ERROR_CATALOG = {
  // configuration
  CFG_ERR_INVALID: { status: 400, summary: 'the configuration is invalid' },
  CFG_ERR_READ: { status: 400, summary: 'the configuration file cannot be read' },
  // injection
  INJ_ERR_ANNOTATION: { status: 400, summary: 'an annotation has an invalid value' },
  INJ_ERR_INPUT: { status: 400, summary: 'the input is not a valid object' },
  INJ_ERR_INTERNAL: { status: 500, summary: 'injection failed' },
  // admission
  ADM_ERR_BODY: { status: 400, summary: 'the body is not a valid AdmissionReview' },
  ADM_ERR_CONTENT_TYPE: { status: 415, summary: 'the content type must be application/json' },
  ADM_ERR_TOO_LARGE: { status: 413, summary: 'the AdmissionReview is larger than the body limit' },
  // certificate authority
  CA_ERR_BODY: { status: 400, summary: 'the request body is invalid' },
  CA_ERR_CONTENT_TYPE: { status: 415, summary: 'the content type must be application/json' },
  CA_ERR_TOO_LARGE: { status: 413, summary: 'the request body is too large' },
  CA_ERR_CSR: { status: 400, summary: 'the CSR cannot be parsed' },
  CA_ERR_CSR_SIGNATURE: { status: 400, summary: 'the CSR signature does not verify' },
  CA_ERR_KEY_TYPE: { status: 400, summary: 'the CSR key type is not accepted' },
  CA_ERR_SAN: { status: 400, summary: 'the CSR names an identity other than the caller' },
  CA_ERR_SPIFFE_ID: {
    status: 400,
    summary: 'the SPIFFE ID is invalid or outside the trust domain',
  },
  CA_ERR_TTL: { status: 400, summary: 'the requested lifetime is above the maximum' },
  CA_ERR_UNAUTHENTICATED: { status: 401, summary: 'missing or invalid credential' },
  CA_ERR_FORBIDDEN: { status: 403, summary: 'the caller is not allowed to do this' },
  CA_ERR_NOT_READY: { status: 503, summary: 'the certificate authority is not ready' },
  CA_ERR_PLUGIN: { status: 500, summary: 'the plugged-in CA is invalid' },
  CA_ERR_STORE: { status: 500, summary: 'the CA store is unusable' },
  CA_ERR_ROTATION: { status: 409, summary: 'a root rotation is already under way' },
  CA_ERR_CONFLICT: { status: 409, summary: 'the CA store was changed by someone else' },
  CA_ERR_INTERNAL: { status: 500, summary: 'internal error' },
  // iptables (the init container's program)
  IPT_ERR_APPLY: { status: 500, summary: 'the iptables rules could not be applied' },
  // the mesh push (GET /v1/mesh/watch)
  MESH_ERR_QUERY: { status: 400, summary: 'the watch request does not name a valid Pod' },
  MESH_ERR_FORBIDDEN: { status: 403, summary: 'the token may not watch the mesh of this Pod' },
  MESH_ERR_POD_NOT_FOUND: { status: 404, summary: 'the mesh does not know this Pod' },
  MESH_ERR_NOT_READY: { status: 503, summary: 'the mesh is not loaded yet' },
  MESH_ERR_SOURCE: { status: 500, summary: 'the mesh cannot be read' },
  // the server process
  SRV_ERR_LISTEN: { status: 500, summary: 'the server cannot listen on its address' },
  // the mesh graph (/ui/graph)
  UI_ERR_NO_PROMETHEUS: {
    status: 503,
    summary: 'the mesh graph needs Prometheus: start mooring serve with --prometheus-url',
  },
  UI_ERR_PROMETHEUS: { status: 502, summary: 'Prometheus did not answer the graph queries' },
  // http
  HTTP_ERR_NOT_FOUND: { status: 404, summary: 'no such route' },
  HTTP_ERR_METHOD: { status: 405, summary: 'method not allowed' },
  HTTP_ERR_BAD_REQUEST: { status: 400, summary: 'the request is malformed' },
  HTTP_ERR_TIMEOUT: { status: 408, summary: 'the request was not received in time' },
  HTTP_ERR_HEADERS_TOO_LARGE: { status: 431, summary: 'the request headers are too large' },
  HTTP_ERR_INTERNAL: { status: 500, summary: 'internal error' },
} as const;

export type ErrorCode = keyof typeof ERROR_CATALOG;

export class MooringError extends Error {
  readonly code: ErrorCode;
  readonly status: number;
  readonly details: readonly string[];
  /** For a 5xx: what the client may see besides the summary (the kind of problem, no detail). */
  readonly publicDetail: string | undefined;

  constructor(
    code: ErrorCode,
    message: string,
    options?: { cause?: unknown; details?: readonly string[]; publicDetail?: string },
  ) {
    super(message, options?.cause === undefined ? undefined : { cause: options.cause });
    this.name = 'MooringError';
    this.code = code;
    this.status = ERROR_CATALOG[code].status;
    this.details = options?.details ?? [];
    this.publicDetail = options?.publicDetail;
  }

  /**
   * What a client may see: the message for 4xx; for 5xx the generic summary, followed by the
   * public detail when there is one.
   */
  toJSON(): { code: ErrorCode; message: string } {
    const { summary } = ERROR_CATALOG[this.code];
    return {
      code: this.code,
      message:
        this.status < 500
          ? this.message
          : this.publicDetail === undefined
            ? summary
            : `${summary}: ${this.publicDetail}`,
    };
  }
}

export function isMooringError(err: unknown): err is MooringError {
  return err instanceof MooringError;
}
