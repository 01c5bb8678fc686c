// The ports of the CA core. Adapters implement them (file store, Secret store, TokenReview,
// system clock); the core and the HTTP shell only see these interfaces.

export interface Clock {
  now(): Date;
}

/** Key types a CSR may carry. Roots and intermediates use the first five. */
export type KeyAlgorithm =
  'ecdsa-p256' | 'ecdsa-p384' | 'rsa-2048' | 'rsa-3072' | 'rsa-4096' | 'ed25519';

/** Who called: a workload's service account, authenticated by token. */
export interface WorkloadIdentity {
  readonly namespace: string;
  readonly serviceAccount: string;
}

/** Checks a workload's bearer token. Rejects with MooringError CA_ERR_UNAUTHENTICATED. */
export interface Authenticator {
  authenticateWorkload(token: string): Promise<WorkloadIdentity>;
}

/**
 * Checks an admin credential. Rejects with CA_ERR_UNAUTHENTICATED (unknown credential) or
 * CA_ERR_FORBIDDEN (known but not allowed).
 */
export interface AdminAuthorizer {
  authorizeAdmin(token: string): Promise<{ readonly subject: string }>;
}

/** A certificate chain as the HTTP API returns it. */
export interface IssuedChain {
  /** Leaf first, then intermediates up to (not including) the root. */
  readonly certificateChain: readonly string[];
  readonly trustBundle: readonly string[];
  readonly expiresAt: Date;
  readonly serialNumber: string;
  /** Key type of the CSR, for metrics. */
  readonly keyType: KeyAlgorithm;
}

export interface WorkloadIssueRequest {
  readonly csrPem: string;
  readonly spiffeId: string;
  readonly ttlSeconds?: number;
}

export interface ServingIssueRequest {
  /** PEM PKCS#10 CSR whose SANs are ignored; the names below are put in instead. */
  readonly csrPem: string;
  readonly dnsNames: readonly string[];
  readonly ipAddresses: readonly string[];
  readonly ttlSeconds: number;
}

export interface CAStatusView {
  readonly roots: readonly {
    readonly subject: string;
    readonly notAfter: Date;
    readonly fingerprint: string;
  }[];
  readonly issuer: {
    readonly subject: string;
    readonly notAfter: Date;
    readonly fingerprint: string;
  };
  readonly intermediate: boolean;
  readonly nextRotationAt: Date | null;
}

/** What the HTTP shell needs from the CA. One implementation serves every mode. */
export interface CertificateService {
  issueWorkload(req: WorkloadIssueRequest): Promise<IssuedChain>;
  issueServing(req: ServingIssueRequest): Promise<IssuedChain>;
  trustBundle(): readonly string[];
  status(): CAStatusView;
  /** Latest notAfter of roots and issuer, for metrics and readiness. */
  ready(): boolean;
}
