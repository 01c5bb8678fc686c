// The ports of the CA core. Adapters implement them (file store, Secret store, TokenReview,
// system clock); the core and the HTTP shell only see these interfaces.

export interface Clock {
  now(): Date;
}

/** Cryptographically secure random bytes (serial numbers). */
export interface RandomSource {
  bytes(size: number): Buffer;
}

/**
 * Signs with a CA key. `algorithmIdentifierDer` is the DER AlgorithmIdentifier of the signatures
 * it makes (it goes into the TBSCertificate and the Certificate). Built from a parsed KeyObject
 * once; never re-parses a PEM per signature.
 */
export interface Signer {
  readonly algorithmIdentifierDer: Buffer;
  sign(data: Buffer): Buffer;
  /** The same signature computed off the calling thread (libuv's pool), when supported. */
  signInPool?(data: Buffer): Promise<Buffer>;
}

/** What a CA store holds (see src/ca/rotation.ts for CAState), with its optimistic version. */
export interface StoredCAState<S> {
  readonly state: S;
  /** Opaque; changes on every write (file: content hash; Secret: resourceVersion). */
  readonly version: string;
}

/**
 * Where the CA state lives: the file store in --data-dir (local mode) or the Secret (cluster
 * mode). `save` is optimistic: it fails with CA_ERR_CONFLICT when the stored version is no longer
 * `expectedVersion` (null: the store must still be empty), and resolves to the new version.
 */
export interface KeyStore<S> {
  load(): Promise<StoredCAState<S> | null>;
  save(state: S, expectedVersion: string | null): Promise<string>;
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
    /** active: issuing (or the plugged-in root); pending: in the bundle, not yet issuing;
     * retired: in the bundle until `removeAt`. Absent only in older fakes. */
    readonly status?: 'active' | 'pending' | 'retired';
    readonly notBefore?: Date;
    readonly keyType?: KeyAlgorithm;
    /** pending roots: when issuance moves to them. */
    readonly activateAt?: Date;
    /** retired roots: when they leave the trust bundle. */
    readonly removeAt?: Date;
  }[];
  readonly issuer: {
    readonly subject: string;
    readonly notAfter: Date;
    readonly fingerprint: string;
  };
  readonly intermediate: boolean;
  /** When the next root rotation starts automatically (null: plugged-in CA or auto off), or
   * when the pending one activates. */
  readonly nextRotationAt: Date | null;
}

/** What the HTTP shell needs from the CA. One implementation serves every mode. */
export interface CertificateService {
  /**
   * The SPIFFE ID of an authenticated workload under this CA's trust domain:
   * `spiffe://<trust-domain>/ns/<namespace>/sa/<service-account>`, validated (CA_ERR_SPIFFE_ID).
   */
  spiffeIdOf(identity: WorkloadIdentity): string;
  issueWorkload(req: WorkloadIssueRequest): Promise<IssuedChain>;
  issueServing(req: ServingIssueRequest): Promise<IssuedChain>;
  trustBundle(): readonly string[];
  status(): CAStatusView;
  /** Latest notAfter of roots and issuer, for metrics and readiness. */
  ready(): boolean;
}
