// The plain-HTTP admin app of `mooring serve`: /healthz, /readyz, /metrics, the mesh graph
// (/ui/graph). Never listens.

import Fastify, { LogController, type FastifyBaseLogger, type FastifyInstance } from 'fastify';
import { frameworkErrorOptions, installErrorHandler } from './error-handler';
import { registerGraphRoutes, type GraphDeps } from './plugins/graph';
import { registerHealthRoutes, type ReadinessProbe } from './plugins/health';
import { registerMeshDebugRoutes, type MeshDebug } from './plugins/mesh-debug';
import { registerMetricsRoute, type MetricsSource } from './plugins/metrics';
import { genReqId } from './request';

export interface AdminAppDeps {
  readonly logger: FastifyBaseLogger;
  readonly registry: MetricsSource;
  readonly readiness: ReadinessProbe;
  /** The mesh's debug views (/debug/mesh/...); absent: no such routes. */
  readonly meshDebug?: MeshDebug;
  /** The mesh graph; absent: no /ui/graph. */
  readonly graph?: GraphDeps;
}

export function buildAdminApp(deps: AdminAppDeps): FastifyInstance {
  const app = Fastify({
    loggerInstance: deps.logger,
    // One line per request of our own (the review line, 'certificate issued', 'request refused').
    logController: new LogController({ disableRequestLogging: true }),
    genReqId,
    ...frameworkErrorOptions(),
    bodyLimit: 1024,
    forceCloseConnections: true,
  }) as unknown as FastifyInstance;
  installErrorHandler(app);
  registerHealthRoutes(app, deps.readiness);
  registerMetricsRoute(app, deps.registry);
  if (deps.meshDebug !== undefined) registerMeshDebugRoutes(app, deps.meshDebug);
  if (deps.graph !== undefined) registerGraphRoutes(app, deps.graph);
  return app;
}
