// The HTTPS app of `mooring serve`: POST /inject, POST /validate and the CA API. It never listens: the
// composition root (src/server/server.ts) does, and tests call app.inject().

import type { SecureContextOptions } from 'node:tls';
import Fastify, { LogController, type FastifyBaseLogger, type FastifyInstance } from 'fastify';
import type { PodInjector } from '../admission';
import type { AdminAuthorizer, Authenticator, CertificateService } from '../ca/ports';
import type { MooringMetrics } from './metrics';
import { AREA_CODES, frameworkErrorOptions, installErrorHandler, routeArea } from './error-handler';
import { parseJsonBody } from '../json';
import { MooringError } from '../errors';
import { registerCARoutes } from './plugins/ca';
import { registerInjectRoute, type ReviewThreads } from './plugins/inject';
import { registerMeshRoutes, type MeshWatchService } from './plugins/mesh';
import { registerValidateRoute } from './plugins/validate';
import { genReqId, REQUEST_ID_HEADER } from './request';

export interface WebhookAppDeps {
  readonly logger: FastifyBaseLogger;
  readonly metrics: MooringMetrics;
  /** config.server.bodyLimitBytes (at least 10 MiB). */
  readonly bodyLimitBytes: number;
  /** config.injector.failOpen. */
  readonly failOpen: boolean;
  readonly injectPod: PodInjector;
  /** Inject threads (config server.injectThreads); absent: reviews run on the event loop. */
  readonly injectThreads?: ReviewThreads;
  readonly certificates: CertificateService;
  readonly authenticator: Authenticator;
  readonly adminAuthorizer: AdminAuthorizer;
  /** The mesh push (GET /v1/mesh/watch); absent: no such route. */
  readonly meshWatch?: MeshWatchService;
  /** Key and certificate of the HTTPS server; absent: plain HTTP (tests with app.inject()). */
  readonly tls?: SecureContextOptions;
}

/** Slow or stuck clients are cut after this long (a 10 MiB review takes well under it). */
export const REQUEST_TIMEOUT_MS = 60_000;

export function buildWebhookApp(deps: WebhookAppDeps): FastifyInstance {
  const app = Fastify({
    loggerInstance: deps.logger,
    // One line per request of our own (the review line, 'certificate issued', 'request refused').
    logController: new LogController({ disableRequestLogging: true }),
    genReqId,
    ...frameworkErrorOptions(),
    bodyLimit: deps.bodyLimitBytes,
    requestTimeout: REQUEST_TIMEOUT_MS,
    forceCloseConnections: 'idle',
    return503OnClosing: true,
    ...(deps.tls === undefined ? {} : { https: deps.tls }),
  }) as unknown as FastifyInstance;

  // Only JSON is accepted; without this parser text/plain would reach the handlers.
  app.removeContentTypeParser('text/plain');
  // Fastify's JSON parser, with our messages (a "__proto__" key is named as what is refused).
  // The /inject route has a parser of its own (the review is parsed where it is answered).
  app.removeContentTypeParser('application/json');
  app.addContentTypeParser('application/json', { parseAs: 'string' }, (request, body, done) => {
    const parsed = parseJsonBody(body as string);
    if (parsed.ok) done(null, parsed.value);
    else done(new MooringError(AREA_CODES[routeArea(request)].body, parsed.message), undefined);
  });
  app.addHook('onRequest', (request, reply, done) => {
    void reply.header(REQUEST_ID_HEADER, request.id);
    done();
  });

  const { metrics } = deps;
  installErrorHandler(app, (area, err, request) => {
    if (area === 'admission') metrics.injectionRequests.inc({ result: 'invalid' });
    if (area === 'ca' && request.method === 'POST') {
      metrics.certificatesIssued.inc({
        result: err.status >= 500 ? 'error' : 'rejected',
        key_type: 'unknown',
      });
    }
  });

  registerInjectRoute(app, {
    injectPod: deps.injectPod,
    ...(deps.injectThreads === undefined ? {} : { threads: deps.injectThreads }),
    failOpen: deps.failOpen,
    metrics,
  });
  registerValidateRoute(app);
  registerCARoutes(app, {
    certificates: deps.certificates,
    authenticator: deps.authenticator,
    adminAuthorizer: deps.adminAuthorizer,
    metrics,
  });
  if (deps.meshWatch !== undefined) {
    registerMeshRoutes(app, { authenticator: deps.authenticator, watch: deps.meshWatch, metrics });
  }
  return app;
}
