// The proxy's two plain-HTTP endpoints, on node:http:
//   admin   127.0.0.1:15000  GET /config_dump   the configuration, endpoints, TLS and connection
//                                                state, as Envoy's admin port has it (loopback only:
//                                                it shows the mesh the proxy knows)
//                            GET /ready          200 when the proxy carries traffic, else 503
//                            GET /memory         where the process's memory is (Envoy's /memory):
//                                                V8's heap by space, Buffers, handles by kind
//                            GET /logging        the log level; POST /logging?level=debug sets
//                                                it at run time (Envoy's /logging)
//   stats   :15090           GET /stats/prometheus  Istio's standard metrics (Prometheus text)

import http from 'node:http';
import type { AddressInfo } from 'node:net';
import v8 from 'node:v8';
import { LOG_LEVEL_NAMES } from '../../observability/logger';

export const CONFIG_DUMP_PATH = '/config_dump';
export const PROXY_READY_PATH = '/ready';
export const PROXY_STATS_PATH = '/stats/prometheus';
export const MEMORY_PATH = '/memory';
export const LOGGING_PATH = '/logging';

/** The logger's level as Envoy's /logging lists its loggers (one logger: `mooring`). */
const loggingText = (level: string): string =>
  `active loggers:\n  mooring: ${level === 'silent' ? 'off' : level}\n`;

/**
 * The process's memory, in bytes: resident (`rss`; the Node binary's pages included), V8's heap
 * (`heapTotal`, `heapUsed`, and per space), memory held outside it for JS objects (`external`,
 * of which `arrayBuffers`: socket and TLS buffers, and the slabs of small Buffers, each
 * `bufferPoolBytes`), the peak resident size, and the open handles by kind (sockets, timers...).
 * Resident minus heap and external is the native side (OpenSSL, libuv, the allocator's free
 * lists).
 */
export function memoryReport(): Record<string, unknown> {
  const usage = process.memoryUsage();
  const handles: Record<string, number> = {};
  for (const kind of process.getActiveResourcesInfo()) handles[kind] = (handles[kind] ?? 0) + 1;
  return {
    ...usage,
    maxRss: process.resourceUsage().maxRSS * 1024,
    bufferPoolBytes: Buffer.poolSize,
    heapSpaces: Object.fromEntries(
      v8
        .getHeapSpaceStatistics()
        .map((s) => [s.space_name, { size: s.space_size, used: s.space_used_size }]),
    ),
    handles,
  };
}

export interface AdminSource {
  configDump(): Record<string, unknown>;
  ready(): boolean;
  /** More of /memory (the C heap trimmer's counts, the C heap's free bytes). */
  memory?(): Record<string, unknown>;
  /** The agent's logger, whose level /logging reads and sets (absent: no /logging). */
  readonly logger?: { level: string };
}

type Route = (req: http.IncomingMessage, res: http.ServerResponse) => void;

function reply(res: http.ServerResponse, status: number, type: string, body: string): void {
  res.writeHead(status, {
    'content-type': type,
    'content-length': Buffer.byteLength(body),
    'cache-control': 'no-store',
  });
  res.end(res.req.method === 'HEAD' ? undefined : body);
}

function jsonError(res: http.ServerResponse, status: number, code: string, message: string): void {
  reply(res, status, 'application/json', `${JSON.stringify({ code, message })}\n`);
}

/** GET and HEAD `routes`, and POST `postRoutes` (changes, as Envoy's admin asks). */
function serve(routes: Record<string, Route>, postRoutes: Record<string, Route> = {}): http.Server {
  const server = http.createServer((req, res) => {
    const path = (req.url ?? '/').split('?')[0] ?? '/';
    const post = req.method === 'POST' ? postRoutes[path] : undefined;
    if (req.method !== 'GET' && req.method !== 'HEAD' && post === undefined) {
      res.setHeader('allow', 'GET, HEAD');
      jsonError(res, 405, 'HTTP_ERR_METHOD', 'only GET and HEAD are served');
      return;
    }
    const route = post ?? routes[path];
    if (route === undefined) {
      jsonError(res, 404, 'HTTP_ERR_NOT_FOUND', `no route ${path.slice(0, 128)}`);
      return;
    }
    try {
      route(req, res);
    } catch {
      if (!res.headersSent) jsonError(res, 500, 'HTTP_ERR_INTERNAL', 'internal error');
    }
  });
  server.keepAliveTimeout = 5000;
  server.headersTimeout = 10_000;
  return server;
}

/** Envoy's /logging on `logger`: GET lists its level, POST `?level=` sets it. */
function loggingRoutes(logger: { level: string }): { get: Route; post: Route } {
  return {
    get: (_req, res) => reply(res, 200, 'text/plain; charset=utf-8', loggingText(logger.level)),
    post: (req, res) => {
      const asked = new URL(req.url ?? '/', 'http://admin').searchParams.get('level');
      const level = asked === null ? undefined : LOG_LEVEL_NAMES[asked];
      if (level === undefined) {
        const known = Object.keys(LOG_LEVEL_NAMES).join(', ');
        const what = asked === null ? 'no level given' : `unknown level '${asked.slice(0, 32)}'`;
        jsonError(res, 400, 'HTTP_ERR_QUERY', `${what}: ?level= one of ${known}`);
        return;
      }
      logger.level = level;
      reply(res, 200, 'text/plain; charset=utf-8', loggingText(level));
    },
  };
}

export function createProxyAdminServer(source: AdminSource): http.Server {
  const logging = source.logger === undefined ? null : loggingRoutes(source.logger);
  return serve(
    {
      ...(logging === null ? {} : { [LOGGING_PATH]: logging.get }),
      [CONFIG_DUMP_PATH]: (_req, res) =>
        reply(res, 200, 'application/json', `${JSON.stringify(source.configDump(), null, 2)}\n`),
      [MEMORY_PATH]: (_req, res) =>
        reply(
          res,
          200,
          'application/json',
          `${JSON.stringify({ ...memoryReport(), ...source.memory?.() }, null, 2)}\n`,
        ),
      [PROXY_READY_PATH]: (_req, res) =>
        source.ready()
          ? reply(res, 200, 'text/plain; charset=utf-8', 'LIVE\n')
          : reply(res, 503, 'text/plain; charset=utf-8', 'not ready\n'),
    },
    logging === null ? {} : { [LOGGING_PATH]: logging.post },
  );
}

/** `render` returns the whole Prometheus text (Istio's metrics and the proxy's own). */
export function createProxyStatsServer(render: () => Promise<string> | string): http.Server {
  return serve({
    [PROXY_STATS_PATH]: (_req, res) => {
      Promise.resolve(render()).then(
        (text) => reply(res, 200, 'text/plain; version=0.0.4; charset=utf-8', text),
        () => jsonError(res, 500, 'HTTP_ERR_INTERNAL', 'internal error'),
      );
    },
  });
}

export async function listenOn(
  server: http.Server,
  host: string,
  port: number,
): Promise<AddressInfo> {
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => {
      server.removeListener('error', reject);
      resolve();
    });
  });
  return server.address() as AddressInfo;
}

export function closeServer(server: http.Server): Promise<void> {
  return new Promise((resolve) => {
    server.closeAllConnections();
    server.close(() => resolve());
  });
}
