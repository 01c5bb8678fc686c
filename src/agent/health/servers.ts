// The agent's two plain-HTTP servers, on node:http (no framework: the agent runs in every Pod):
//   readiness (15021)  GET /healthz/ready                           200 ready / 503 not ready
//   agent     (15020)  GET /metrics                                 Prometheus text (the agent's)
//                      GET /stats/prometheus                        the app's, the proxy's and the
//                                                                   agent's metrics (merging)
//                      GET /app-health/<container>/<livez|readyz|startupz>   the app's probe
//                      GET /healthz/ready                          readiness, as on 15021 (pilot-
//                                                                   agent serves it here too)
//                      POST /quitquitquit                          stops the agent, from
//                                                                   loopback only (pilot-agent's:
//                                                                   a Job's last command)

import http from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Logger } from 'pino';
import type { Registry } from 'prom-client';
import { MERGED_METRICS_PATH } from '../../api/app-metrics';
import type { ProbeResult } from './probe-runner';
import {
  APP_HEALTH_PREFIX,
  PROBE_KINDS,
  probeKey,
  type AppProbe,
  type AppProbes,
} from '../../api/app-probes';

export const READY_PATH = '/healthz/ready';
export const METRICS_PATH = '/metrics';
export const QUIT_PATH = '/quitquitquit';

/** A loopback address (IPv4, IPv6, or IPv4 mapped into IPv6): the Pod itself. */
export const isLoopback = (address: string | undefined): boolean =>
  address !== undefined &&
  (address.startsWith('127.') || address === '::1' || address.startsWith('::ffff:127.'));

export interface Readiness {
  readonly ready: boolean;
  /** Why not ready (empty when ready). */
  readonly reasons: readonly string[];
}

type Handler = (req: http.IncomingMessage, res: http.ServerResponse) => Promise<void> | void;

function send(
  res: http.ServerResponse,
  status: number,
  body: string,
  type = 'text/plain; charset=utf-8',
): void {
  res.writeHead(status, {
    'content-type': type,
    'content-length': Buffer.byteLength(body),
    'cache-control': 'no-store',
  });
  res.end(res.req.method === 'HEAD' ? undefined : body);
}

function sendError(res: http.ServerResponse, status: 403 | 404 | 405 | 500, message: string): void {
  const code =
    status === 403
      ? 'HTTP_ERR_FORBIDDEN'
      : status === 404
        ? 'HTTP_ERR_NOT_FOUND'
        : status === 405
          ? 'HTTP_ERR_METHOD'
          : 'HTTP_ERR_INTERNAL';
  send(res, status, `${JSON.stringify({ code, message })}\n`, 'application/json');
}

function server(log: Logger, handle: Handler): http.Server {
  const s = http.createServer((req, res) => {
    // POST is for the quit request alone.
    const post = req.method === 'POST' && pathOf(req) === QUIT_PATH;
    if (req.method !== 'GET' && req.method !== 'HEAD' && !post) {
      res.setHeader('allow', 'GET, HEAD');
      sendError(res, 405, 'only GET and HEAD are served');
      return;
    }
    Promise.resolve(handle(req, res)).catch((err: Error) => {
      log.error({ err: err.message, url: req.url }, 'request failed');
      if (!res.headersSent) sendError(res, 500, 'internal error');
    });
  });
  s.keepAliveTimeout = 5000;
  s.headersTimeout = 10_000;
  s.requestTimeout = 60_000;
  return s;
}

const pathOf = (req: http.IncomingMessage): string => (req.url ?? '/').split('?')[0] ?? '/';

/** 200 `ready`, or 503 with the reasons. */
function sendReadiness(res: http.ServerResponse, readiness: () => Readiness): void {
  const { ready, reasons } = readiness();
  send(res, ready ? 200 : 503, ready ? 'ready\n' : `not ready: ${reasons.join('; ')}\n`);
}

export function createReadinessServer(deps: {
  readiness: () => Readiness;
  log: Logger;
}): http.Server {
  return server(deps.log, (req, res) => {
    if (pathOf(req) !== READY_PATH) return sendError(res, 404, `no route ${pathOf(req)}`);
    sendReadiness(res, deps.readiness);
  });
}

export interface AgentServerDeps {
  readonly registry: Registry;
  readonly probes: AppProbes;
  readonly runProbe: (probe: AppProbe) => Promise<ProbeResult>;
  readonly log: Logger;
  /** The merged scrape (merged-metrics.ts); absent: the agent's own metrics there. */
  readonly mergedMetrics?: () => Promise<string>;
  /** What POST /quitquitquit does (the agent's shutdown, no drain); absent: 404. */
  readonly quit?: () => void;
  /** GET /healthz/ready here too (tools written for pilot-agent poll it on 15020); absent: 404. */
  readonly readiness?: () => Readiness;
}

/** The probe a path names, `undefined` for an unknown one (404). */
export function probeForPath(path: string, probes: AppProbes): AppProbe | undefined {
  if (!path.startsWith(APP_HEALTH_PREFIX)) return undefined;
  const rest = path.slice(APP_HEALTH_PREFIX.length);
  const slash = rest.lastIndexOf('/');
  if (slash <= 0) return undefined;
  let container: string;
  try {
    container = decodeURIComponent(rest.slice(0, slash));
  } catch {
    return undefined;
  }
  const kind = rest.slice(slash + 1);
  if (!(PROBE_KINDS as readonly string[]).includes(kind)) return undefined;
  return probes.get(probeKey(container, kind));
}

export function createAgentServer(deps: AgentServerDeps): http.Server {
  return server(deps.log, async (req, res) => {
    const path = pathOf(req);
    if (path === READY_PATH && deps.readiness !== undefined)
      return sendReadiness(res, deps.readiness);
    if (path === QUIT_PATH && deps.quit !== undefined) {
      if (req.method !== 'POST') {
        res.setHeader('allow', 'POST');
        return sendError(res, 405, 'only POST is served');
      }
      if (!isLoopback(req.socket.remoteAddress))
        return sendError(res, 403, 'only requests from localhost are allowed');
      deps.log.info({}, 'quit requested (POST /quitquitquit)');
      const quit = deps.quit;
      res.on('finish', () => quit());
      return send(res, 200, 'OK\n');
    }
    if (path === METRICS_PATH) {
      const body = await deps.registry.metrics();
      return send(res, 200, body, deps.registry.contentType);
    }
    if (path === MERGED_METRICS_PATH) {
      const body =
        deps.mergedMetrics === undefined
          ? await deps.registry.metrics()
          : await deps.mergedMetrics();
      return send(res, 200, body, 'text/plain; version=0.0.4; charset=utf-8');
    }
    if (path.startsWith(APP_HEALTH_PREFIX)) {
      const probe = probeForPath(path, deps.probes);
      if (probe === undefined)
        return sendError(res, 404, `no app probe ${path.slice(APP_HEALTH_PREFIX.length)}`);
      const result = await deps.runProbe(probe);
      if (!result.ok) deps.log.debug({ path, detail: result.detail }, 'app probe failed');
      return send(res, result.ok ? 200 : 503, `${result.detail}\n`);
    }
    sendError(res, 404, `no route ${path}`);
  });
}

/** Listens; resolves with the bound address (port 0 picks a free port). */
export function listen(s: http.Server, host: string, port: number): Promise<AddressInfo> {
  return new Promise((resolve, reject) => {
    s.once('error', reject);
    s.listen(port, host, () => {
      s.off('error', reject);
      resolve(s.address() as AddressInfo);
    });
  });
}

export function close(s: http.Server): Promise<void> {
  return new Promise((resolve) => {
    s.close(() => resolve());
    s.closeAllConnections();
  });
}
