// Cluster-mode credentials. Workloads: a service-account token with audience `mooring-ca`,
// checked by TokenReview, cached (see token-cache.ts). Admins: any Kubernetes identity that RBAC
// allows to `create` `certificates` in API group `mooring.dev`, checked by TokenReview then
// SubjectAccessReview. The admin's token may be for the apiserver's own audiences (a kubeconfig's
// token) or for audience `mooring-ca` (`kubectl create token SA --audience mooring-ca`, which
// keeps a credential for the whole Kubernetes API away from Mooring).

import type { AdminAuthorizer, Authenticator, Clock, WorkloadIdentity } from '../../ca/ports';
import { ADMIN_API_GROUP, ADMIN_RESOURCE, CA_TOKEN_AUDIENCE } from '../../constants';
import { MooringError } from '../../errors';
import type { KubeApi } from './api';
import { SERVICE_ACCOUNTS_GROUP, serviceAccountOfUsername } from './identity';
import { TokenCache } from './token-cache';

export const TOKEN_REVIEW_PATH = '/apis/authentication.k8s.io/v1/tokenreviews';
export const SUBJECT_ACCESS_REVIEW_PATH = '/apis/authorization.k8s.io/v1/subjectaccessreviews';

export interface UserInfo {
  readonly username?: string;
  readonly uid?: string;
  readonly groups?: readonly string[];
  readonly extra?: Readonly<Record<string, readonly string[]>>;
}

export interface TokenReviewStatus {
  readonly authenticated?: boolean;
  readonly user?: UserInfo;
  readonly audiences?: readonly string[];
  readonly error?: string;
}

interface TokenReview {
  readonly status?: TokenReviewStatus;
}

/** Counts reviews and cache use; wired to Prometheus by the composition root. */
export interface TokenReviewObserver {
  cache(result: 'hit' | 'miss'): void;
  review(kind: 'workload' | 'admin', result: 'authenticated' | 'rejected' | 'error'): void;
}

const unauthenticated = (message: string): MooringError =>
  new MooringError('CA_ERR_UNAUTHENTICATED', message);

/** The reason a reviewed workload token is refused, or its identity. Pure. */
export function workloadIdentityOfReview(
  status: TokenReviewStatus | undefined,
  audience: string,
): { ok: true; identity: WorkloadIdentity } | { ok: false; reason: string } {
  if (status?.authenticated !== true) {
    return {
      ok: false,
      reason: 'the token is not valid (expired, revoked, forged or for another audience)',
    };
  }
  // When audiences are asked for, the apiserver answers with those the token is good for.
  if (!(status.audiences ?? []).includes(audience)) {
    return { ok: false, reason: `the token is not meant for audience "${audience}"` };
  }
  if (!(status.user?.groups ?? []).includes(SERVICE_ACCOUNTS_GROUP)) {
    return { ok: false, reason: 'the token does not belong to a service account' };
  }
  const identity = serviceAccountOfUsername(status.user?.username);
  if (identity === null) {
    return { ok: false, reason: 'the token does not belong to a service account' };
  }
  return { ok: true, identity };
}

async function review(
  api: KubeApi,
  token: string,
  audiences: readonly string[] | undefined,
): Promise<TokenReviewStatus | undefined> {
  try {
    const answer = await api.request<TokenReview>({
      method: 'POST',
      path: TOKEN_REVIEW_PATH,
      body: {
        apiVersion: 'authentication.k8s.io/v1',
        kind: 'TokenReview',
        spec: audiences === undefined ? { token } : { token, audiences },
      },
    });
    return answer.status;
  } catch (err) {
    // The apiserver is unreachable or refuses us: not the caller's fault, and not cached.
    throw new MooringError('CA_ERR_NOT_READY', 'the Kubernetes API cannot review the token now', {
      cause: err,
    });
  }
}

export interface TokenReviewAuthenticatorOptions {
  readonly api: KubeApi;
  readonly clock: Clock;
  /** config.cluster.tokenReviewCacheSeconds (at most 60). */
  readonly cacheSeconds: number;
  /** config.cluster.tokenReviewCacheSize. */
  readonly cacheSize: number;
  readonly audience?: string;
  readonly observer?: TokenReviewObserver;
}

/** Workload authentication by TokenReview, audience `mooring-ca`, with a bounded cache. */
export class TokenReviewAuthenticator implements Authenticator {
  private readonly cache: TokenCache<WorkloadIdentity>;
  /** Concurrent requests with the same token share one review. */
  private readonly inFlight = new Map<string, Promise<WorkloadIdentity>>();
  private readonly audience: string;

  constructor(private readonly options: TokenReviewAuthenticatorOptions) {
    this.audience = options.audience ?? CA_TOKEN_AUDIENCE;
    this.cache = new TokenCache({
      clock: options.clock,
      maxSeconds: Math.min(60, options.cacheSeconds),
      maxEntries: options.cacheSize,
    });
  }

  get cacheSize(): number {
    return this.cache.size;
  }

  authenticateWorkload(token: string): Promise<WorkloadIdentity> {
    const cached = this.cache.get(token);
    if (cached !== undefined) {
      this.options.observer?.cache('hit');
      return Promise.resolve(cached);
    }
    this.options.observer?.cache('miss');
    const pending = this.inFlight.get(token);
    if (pending !== undefined) return pending;
    const promise = this.reviewWorkload(token).finally(() => this.inFlight.delete(token));
    this.inFlight.set(token, promise);
    return promise;
  }

  private async reviewWorkload(token: string): Promise<WorkloadIdentity> {
    let status: TokenReviewStatus | undefined;
    try {
      status = await review(this.options.api, token, [this.audience]);
    } catch (err) {
      this.options.observer?.review('workload', 'error');
      throw err;
    }
    const decision = workloadIdentityOfReview(status, this.audience);
    if (!decision.ok) {
      // Refusals are not cached: the next try asks again (and a token is rarely retried).
      this.options.observer?.review('workload', 'rejected');
      throw unauthenticated(decision.reason);
    }
    this.options.observer?.review('workload', 'authenticated');
    this.cache.set(token, decision.identity);
    return decision.identity;
  }
}

export interface SubjectAccessReviewAuthorizerOptions {
  readonly api: KubeApi;
  readonly observer?: TokenReviewObserver;
}

interface SubjectAccessReview {
  readonly status?: {
    readonly allowed?: boolean;
    readonly denied?: boolean;
    readonly reason?: string;
  };
}

/** The SubjectAccessReview body for "may USER create certificates.mooring.dev". Pure. */
export function adminAccessReview(user: UserInfo): object {
  return {
    apiVersion: 'authorization.k8s.io/v1',
    kind: 'SubjectAccessReview',
    spec: {
      user: user.username,
      ...(user.uid === undefined ? {} : { uid: user.uid }),
      groups: user.groups ?? [],
      ...(user.extra === undefined ? {} : { extra: user.extra }),
      resourceAttributes: { verb: 'create', group: ADMIN_API_GROUP, resource: ADMIN_RESOURCE },
    },
  };
}

/**
 * Admin: TokenReview (the apiserver's default audiences, then audience `mooring-ca`) +
 * SubjectAccessReview. Uncached.
 */
export class SubjectAccessReviewAuthorizer implements AdminAuthorizer {
  constructor(private readonly options: SubjectAccessReviewAuthorizerOptions) {}

  async authorizeAdmin(token: string): Promise<{ readonly subject: string }> {
    const { api, observer } = this.options;
    let status: TokenReviewStatus | undefined;
    try {
      status = await review(api, token, undefined);
      if (status?.authenticated !== true) {
        const bound = await review(api, token, [CA_TOKEN_AUDIENCE]);
        // Asked for an audience, the apiserver answers with those the token is good for.
        if ((bound?.audiences ?? []).includes(CA_TOKEN_AUDIENCE)) status = bound;
      }
    } catch (err) {
      observer?.review('admin', 'error');
      throw err;
    }
    const username = status?.user?.username;
    if (status?.authenticated !== true || username === undefined || username === '') {
      observer?.review('admin', 'rejected');
      throw unauthenticated(
        `the credential is not valid for the Kubernetes API nor for audience "${CA_TOKEN_AUDIENCE}"`,
      );
    }
    let sar: SubjectAccessReview;
    try {
      sar = await api.request<SubjectAccessReview>({
        method: 'POST',
        path: SUBJECT_ACCESS_REVIEW_PATH,
        body: adminAccessReview(status.user ?? {}),
      });
    } catch (err) {
      observer?.review('admin', 'error');
      throw new MooringError('CA_ERR_NOT_READY', 'the Kubernetes API cannot authorize now', {
        cause: err,
      });
    }
    if (sar.status?.allowed !== true) {
      observer?.review('admin', 'rejected');
      throw new MooringError(
        'CA_ERR_FORBIDDEN',
        `${username} may not create certificates.${ADMIN_API_GROUP} (Kubernetes RBAC)`,
      );
    }
    observer?.review('admin', 'authenticated');
    return { subject: username };
  }
}
