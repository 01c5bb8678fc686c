// The CA API of PRODUCT.md: POST /v1/certificates (workload token), POST /v1/admin/certificates
// (admin credential), GET /v1/trust-bundle (no auth). Authentication runs before the body is
// read, so an unauthenticated caller never makes us buffer a body.

import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import type {
  AdminAuthorizer,
  Authenticator,
  CertificateService,
  WorkloadIdentity,
} from '../../ca/ports';
import {
  CA_BODY_LIMIT_BYTES,
  CA_PATHS,
  certificateResponse,
  parseAdminRequest,
  parseWorkloadRequest,
} from '../../api/certificates';
import { isMooringError, MooringError } from '../../errors';
import type { AuthFailureReason, MooringMetrics } from '../metrics';
import { bearerToken, requireJson } from '../request';

export interface CARouteDeps {
  readonly certificates: CertificateService;
  readonly authenticator: Authenticator;
  readonly adminAuthorizer: AdminAuthorizer;
  readonly metrics: MooringMetrics;
}

declare module 'fastify' {
  interface FastifyRequest {
    /** Set by the authentication hook: the workload, or the admin subject. */
    caller:
      | { readonly kind: 'workload'; readonly identity: WorkloadIdentity }
      | { readonly kind: 'admin'; readonly subject: string }
      | null;
  }
}

function authFailureReason(err: unknown): AuthFailureReason {
  if (!isMooringError(err)) return 'error';
  if (err.code === 'CA_ERR_UNAUTHENTICATED') return 'invalid';
  if (err.code === 'CA_ERR_FORBIDDEN') return 'forbidden';
  return 'error';
}

export function registerCARoutes(app: FastifyInstance, deps: CARouteDeps): void {
  const { certificates, authenticator, adminAuthorizer, metrics } = deps;
  app.decorateRequest('caller', null);

  const authenticate = (route: 'workload' | 'admin') => async (request: FastifyRequest) => {
    const bearer = bearerToken(request.headers.authorization);
    if (!bearer.ok) {
      metrics.authenticationFailures.inc({ reason: bearer.reason, route });
      throw new MooringError(
        'CA_ERR_UNAUTHENTICATED',
        bearer.reason === 'missing'
          ? 'the Authorization header is missing: send "Authorization: Bearer <token>"'
          : 'the Authorization header must be "Bearer <token>"',
      );
    }
    try {
      request.caller =
        route === 'workload'
          ? { kind: 'workload', identity: await authenticator.authenticateWorkload(bearer.token) }
          : {
              kind: 'admin',
              subject: (await adminAuthorizer.authorizeAdmin(bearer.token)).subject,
            };
    } catch (err) {
      metrics.authenticationFailures.inc({ reason: authFailureReason(err), route });
      throw err;
    }
  };

  const requireReady = (): void => {
    if (!certificates.ready()) {
      throw new MooringError('CA_ERR_NOT_READY', 'the certificate authority is not ready yet');
    }
  };

  const issue = async (
    request: FastifyRequest,
    logFields: { route: 'workload' | 'admin'; subject?: string },
    req: { csrPem: string; spiffeId: string; ttlSeconds?: number },
  ) => {
    requireReady();
    const start = performance.now();
    const chain = await certificates.issueWorkload(req);
    const seconds = (performance.now() - start) / 1000;
    metrics.certificateIssueDuration.observe({ key_type: chain.keyType }, seconds);
    metrics.certificatesIssued.inc({ result: 'issued', key_type: chain.keyType });
    const response = certificateResponse(chain);
    request.log.info(
      {
        ...logFields,
        spiffeId: req.spiffeId,
        keyType: chain.keyType,
        serial: chain.serialNumber,
        expiresAt: response.expiresAt,
        durationMs: Math.round(seconds * 1e6) / 1e3,
      },
      'certificate issued',
    );
    return response;
  };

  const routeOptions = (route: 'workload' | 'admin') => ({
    config: { area: 'ca' as const },
    bodyLimit: CA_BODY_LIMIT_BYTES,
    onRequest: [authenticate(route), requireJson('ca')],
  });

  app.post(CA_PATHS.workload, routeOptions('workload'), async (request: FastifyRequest) => {
    const body = parseWorkloadRequest(request.body);
    const caller = request.caller;
    if (caller?.kind !== 'workload')
      throw new MooringError('CA_ERR_UNAUTHENTICATED', 'not authenticated');
    return issue(
      request,
      { route: 'workload' },
      {
        csrPem: body.csr,
        spiffeId: certificates.spiffeIdOf(caller.identity),
        ...(body.ttlSeconds === undefined ? {} : { ttlSeconds: body.ttlSeconds }),
      },
    );
  });

  app.post(CA_PATHS.admin, routeOptions('admin'), async (request: FastifyRequest) => {
    const body = parseAdminRequest(request.body);
    const caller = request.caller;
    if (caller?.kind !== 'admin')
      throw new MooringError('CA_ERR_UNAUTHENTICATED', 'not authenticated');
    return issue(
      request,
      { route: 'admin', subject: caller.subject },
      {
        csrPem: body.csr,
        spiffeId: body.spiffeId,
        ...(body.ttlSeconds === undefined ? {} : { ttlSeconds: body.ttlSeconds }),
      },
    );
  });

  app.get(CA_PATHS.trustBundle, { config: { area: 'ca' } }, (_request, reply: FastifyReply) => {
    requireReady();
    return reply
      .header('cache-control', 'no-cache')
      .send({ trustBundle: certificates.trustBundle() });
  });
}
