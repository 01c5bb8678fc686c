// The mesh's debug views on the admin port (like istiod's /debug/syncz and /debug/config_dump):
// every connected proxy with the version it was sent and since when; what the server pushes to
// one Pod (`?pod=<namespace>/<name>`), whether it is connected or not; the objects read and the
// invalid ones. `mooring proxy-config` prints them. No secret is in them: no token is kept.

import type { FastifyInstance } from 'fastify';
import { MESH_DEBUG_PATHS } from '../../api/mesh';
import { MooringError } from '../../errors';
import { isDnsLabel, isDnsSubdomain } from '../../mesh/validate';

/**
 * The debug views, as the server's composition provides them (src/server/mesh/runtime.ts; with
 * --workers, gathered from the workers). Each answer is sent as JSON.
 */
export interface MeshDebug {
  syncz(): Promise<object>;
  configDump(podKey: string): Promise<object | null>;
  objects(): Promise<object>;
}

/** `namespace/name` of a Pod, checked. */
export function parsePodRef(value: unknown): string {
  if (typeof value !== 'string' || value === '') {
    throw new MooringError('HTTP_ERR_BAD_REQUEST', '"pod" is required: <namespace>/<name>');
  }
  const [namespace = '', name = '', ...rest] = value.split('/');
  if (rest.length > 0 || !isDnsLabel(namespace) || !isDnsSubdomain(name)) {
    throw new MooringError(
      'HTTP_ERR_BAD_REQUEST',
      `"pod" must be <namespace>/<name>, not ${JSON.stringify(value.slice(0, 120))}`,
    );
  }
  return `${namespace}/${name}`;
}

export function registerMeshDebugRoutes(app: FastifyInstance, debug: MeshDebug): void {
  app.get(MESH_DEBUG_PATHS.syncz, () => debug.syncz());
  app.get(MESH_DEBUG_PATHS.objects, () => debug.objects());
  app.get(MESH_DEBUG_PATHS.configDump, async (request) => {
    const pod = parsePodRef((request.query as Record<string, unknown>).pod);
    const view = await debug.configDump(pod);
    if (view === null) {
      throw new MooringError('HTTP_ERR_NOT_FOUND', `the mesh does not know Pod ${pod}`);
    }
    return view;
  });
}
