// The agent's mesh client: the configuration the server pushes, for the proxy.
export {
  MeshClient,
  MeshStreamError,
  type MeshChange,
  type MeshClientLogger,
  type MeshClientOptions,
  type MeshClientStatus,
} from './client';
