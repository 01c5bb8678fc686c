// GET /v1/mesh/watch (src/api/mesh.ts): the stream of the mesh configuration to one proxy.
// Authenticated like POST /v1/certificates, with the workload's service-account token (local
// mode: tokens.json; cluster mode: TokenReview, audience mooring-ca); the query names the Pod
// (`pod`, `namespace`, `ip`), which must run as the token's service account in the token's
// namespace. Refusals are the house's JSON errors; an accepted watch is answered 200 with NDJSON
// lines until either side closes it (src/server/mesh/push.ts writes them).

import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { MESH_CONTENT_TYPE, MESH_WATCH_PATH } from '../../api/mesh';
import type { ServerResponse } from 'node:http';
import type { Authenticator, WorkloadIdentity } from '../../ca/ports';
import { isMooringError, MooringError } from '../../errors';
import { isDnsLabel, isDnsSubdomain, isIP } from '../../mesh/validate';
import type { AuthFailureReason, MooringMetrics } from '../metrics';
import { bearerToken, REQUEST_ID_HEADER } from '../request';

/** The Pod a watch is for, from the query string. */
export interface WatchQuery {
  readonly pod: string;
  readonly namespace: string;
  readonly ip: string | null;
}

/** A watch the push accepted for a caller: which Pod, under which identity. */
export interface WatchAdmission {
  readonly podKey: string;
  readonly identity: string;
}

/**
 * The push, as the route needs it (src/server/mesh/push.ts): `admit` refuses with a coded error a
 * caller that may not watch the Pod; `attach` starts writing the stream into the response.
 */
export interface MeshWatchService {
  admit(caller: WorkloadIdentity, query: WatchQuery): WatchAdmission;
  attach(
    admission: WatchAdmission,
    target: ServerResponse,
    info: { readonly ip: string | null; readonly remote: string | null },
  ): { readonly id: number; readonly remote: string | null };
}

export interface MeshRouteDeps {
  readonly authenticator: Authenticator;
  readonly watch: MeshWatchService;
  readonly metrics: MooringMetrics;
}

const queryError = (message: string): MooringError => new MooringError('MESH_ERR_QUERY', message);

function one(query: Record<string, unknown>, name: string): string | undefined {
  const value = query[name];
  if (value === undefined) return undefined;
  if (typeof value !== 'string') throw queryError(`"${name}" must be given once`);
  return value;
}

/** `pod`, `namespace` (required) and `ip` (optional) of the query string. */
export function parseWatchQuery(raw: unknown): WatchQuery {
  const query = (typeof raw === 'object' && raw !== null ? raw : {}) as Record<string, unknown>;
  for (const key of Object.keys(query)) {
    if (!['pod', 'namespace', 'ip'].includes(key)) {
      throw queryError(`unknown query parameter "${key.slice(0, 64)}" (known: pod, namespace, ip)`);
    }
  }
  const pod = one(query, 'pod');
  const namespace = one(query, 'namespace');
  const ip = one(query, 'ip');
  if (pod === undefined || pod === '') throw queryError('"pod" is required: the Pod\'s name');
  if (namespace === undefined || namespace === '') {
    throw queryError('"namespace" is required: the Pod\'s namespace');
  }
  if (!isDnsSubdomain(pod))
    throw queryError(`"pod" ${JSON.stringify(pod.slice(0, 80))} is not a Pod name`);
  if (!isDnsLabel(namespace)) {
    throw queryError(
      `"namespace" ${JSON.stringify(namespace.slice(0, 80))} is not a namespace name`,
    );
  }
  if (ip !== undefined && ip !== '' && !isIP(ip)) {
    throw queryError(`"ip" ${JSON.stringify(ip.slice(0, 80))} is not an IP address`);
  }
  return { pod, namespace, ip: ip === undefined || ip === '' ? null : ip };
}

function failureReason(err: unknown): AuthFailureReason {
  if (!isMooringError(err)) return 'error';
  return err.code === 'CA_ERR_UNAUTHENTICATED' ? 'invalid' : 'error';
}

export function registerMeshRoutes(app: FastifyInstance, deps: MeshRouteDeps): void {
  const { authenticator, watch, metrics } = deps;
  app.get(
    MESH_WATCH_PATH,
    { config: { area: 'mesh' } },
    async (request: FastifyRequest, reply: FastifyReply) => {
      const bearer = bearerToken(request.headers.authorization);
      if (!bearer.ok) {
        metrics.authenticationFailures.inc({ reason: bearer.reason, route: 'mesh' });
        throw new MooringError(
          'CA_ERR_UNAUTHENTICATED',
          bearer.reason === 'missing'
            ? 'the Authorization header is missing: send "Authorization: Bearer <token>"'
            : 'the Authorization header must be "Bearer <token>"',
        );
      }
      let caller;
      try {
        caller = await authenticator.authenticateWorkload(bearer.token);
      } catch (err) {
        metrics.authenticationFailures.inc({ reason: failureReason(err), route: 'mesh' });
        throw err;
      }
      const query = parseWatchQuery(request.query);
      const admission = watch.admit(caller, query);
      // The client may have gone while its token was reviewed.
      if (request.socket.destroyed) return reply.hijack();

      void reply.hijack();
      const res = reply.raw;
      res.writeHead(200, {
        'content-type': MESH_CONTENT_TYPE,
        'cache-control': 'no-store',
        'x-accel-buffering': 'no',
        [REQUEST_ID_HEADER]: request.id,
      });
      request.socket.setNoDelay(true);
      request.socket.setKeepAlive(true, 30_000);
      try {
        const stream = watch.attach(admission, res, {
          ip: query.ip,
          remote: request.socket.remoteAddress ?? null,
        });
        request.log.info(
          {
            pod: admission.podKey,
            identity: admission.identity,
            stream: stream.id,
            remote: stream.remote,
          },
          'mesh watch opened',
        );
      } catch (err) {
        request.log.warn({ err, pod: admission.podKey }, 'mesh watch could not start');
        res.destroy();
      }
    },
  );
}
