// The mesh graph on the admin port: GET /ui/graph (the page), its script and cytoscape.js (served
// from here: the page needs no other server), and GET /ui/graph/data?window=1m (the nodes and
// edges, from Prometheus with the queries of src/ui/graph.ts, which the answer repeats). Only
// those fixed queries reach Prometheus: the page cannot be used to run arbitrary PromQL.

import type { FastifyInstance } from 'fastify';
import { MooringError } from '../../errors';
import {
  buildGraph,
  DEFAULT_GRAPH_WINDOW,
  GRAPH_WINDOWS,
  graphQueries,
  type GraphWindow,
  type PromSample,
} from '../../ui/graph';
import {
  CYTOSCAPE_PATH,
  GRAPH_DATA_PATH,
  GRAPH_HTML,
  GRAPH_PATH,
  GRAPH_SCRIPT,
  GRAPH_SCRIPT_PATH,
} from '../../ui/graph-page';

export interface GraphDeps {
  /** Runs one instant query; null when no Prometheus is configured (`--prometheus-url`). */
  readonly query: ((promql: string) => Promise<readonly PromSample[]>) | null;
  /** cytoscape.min.js, read by the composition from the installed package. */
  readonly cytoscape: string;
  readonly now: () => Date;
}

/** The page may load only its own script and cytoscape; nothing from another origin. */
const CSP =
  "default-src 'none'; script-src 'self'; style-src 'unsafe-inline'; connect-src 'self'; img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

export function registerGraphRoutes(app: FastifyInstance, deps: GraphDeps): void {
  app.get(GRAPH_PATH, (_request, reply) =>
    reply
      .header('content-type', 'text/html; charset=utf-8')
      .header('content-security-policy', CSP)
      .header('cache-control', 'no-store')
      .send(GRAPH_HTML),
  );
  app.get(GRAPH_SCRIPT_PATH, (_request, reply) =>
    reply.header('content-type', 'text/javascript; charset=utf-8').send(GRAPH_SCRIPT),
  );
  app.get(CYTOSCAPE_PATH, (_request, reply) =>
    reply
      .header('content-type', 'text/javascript; charset=utf-8')
      .header('cache-control', 'public, max-age=86400')
      .send(deps.cytoscape),
  );
  app.get<{ Querystring: { window?: string } }>(GRAPH_DATA_PATH, async (request, reply) => {
    const asked = request.query.window ?? DEFAULT_GRAPH_WINDOW;
    if (!(GRAPH_WINDOWS as readonly string[]).includes(asked)) {
      throw new MooringError(
        'HTTP_ERR_BAD_REQUEST',
        `window must be one of ${GRAPH_WINDOWS.join(', ')}; got ${JSON.stringify(asked.slice(0, 32))}`,
      );
    }
    const query = deps.query;
    if (query === null) {
      throw new MooringError('UI_ERR_NO_PROMETHEUS', 'no Prometheus URL is configured');
    }
    const queries = graphQueries(asked as GraphWindow);
    let answers;
    try {
      const [requests, requestsFromOutside, p99, tcp] = await Promise.all([
        query(queries.requests),
        query(queries.requestsFromOutside),
        query(queries.p99),
        query(queries.tcp),
      ]);
      answers = { requests, requestsFromOutside, p99, tcp };
    } catch (err) {
      throw new MooringError('UI_ERR_PROMETHEUS', (err as Error).message, {
        cause: err,
        publicDetail: (err as { publicDetail?: string }).publicDetail ?? 'it could not be reached',
      });
    }
    const graph = buildGraph(answers);
    return reply
      .header('cache-control', 'no-store')
      .send({ window: asked, generatedAt: deps.now().toISOString(), queries, ...graph });
  });
}
