// /healthz (the process answers) and /readyz (the CA is loaded, the serving certificate is
// valid, the mode's own checks pass, and the server is not shutting down) on the plain admin
// port.

import type { FastifyInstance } from 'fastify';
import type { ErrorCode } from '../../errors';

export interface Readiness {
  readonly ready: boolean;
  /** Each condition by name, true when met; shown in the /readyz answer. */
  readonly checks: Readonly<Record<string, boolean>>;
  /** What is wrong, by failing check, where there is more to say than its name (no secret). */
  readonly problems?: Readonly<Record<string, string>>;
}

export type ReadinessProbe = () => Readiness;

export function registerHealthRoutes(app: FastifyInstance, readiness: ReadinessProbe): void {
  app.get('/healthz', (_request, reply) => reply.send({ status: 'ok' }));
  app.get('/readyz', (_request, reply) => {
    const { ready, checks, problems = {} } = readiness();
    if (ready) return reply.send({ status: 'ready', checks });
    const failing = Object.keys(checks)
      .filter((k) => !checks[k])
      .map((k) => (problems[k] === undefined ? k : `${k} (${problems[k]})`));
    // Not an internal error: the failing checks are the message (no secret in them).
    const code: ErrorCode = 'CA_ERR_NOT_READY';
    return reply.code(503).send({ code, message: `not ready: ${failing.join(', ')}`, checks });
  });
}
