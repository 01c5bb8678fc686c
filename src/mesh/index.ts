// The mesh model (pure): Kubernetes objects in, the configuration of each proxy out.

export { canonicalJson } from './canonical';
export { DEBOUNCE_MAX_MS, DEBOUNCE_QUIET_MS, debounceWait, type DebounceTimes } from './debounce';
export {
  isMeshFile,
  mergeMeshFiles,
  MeshFileSet,
  readMeshFile,
  type FileObjects,
  type ObjectProblem,
  type ProblemEffect,
} from './files';
export { routeStatusParents, MESH_CONTROLLER_NAME, type RouteFacts } from './route-status';
export { MeshModel, type BuiltService, type Commit, type MeshModelOptions } from './model';
export {
  MESH_API_VERSIONS,
  MESH_KINDS,
  nameKey,
  refKey,
  refOf,
  type MeshKind,
  type MeshObject,
  type ObjectRef,
} from './objects';
export { resolvePeerAuthentication, type ResolvedMtls } from './peer-authentication';
export { protocolOf } from './protocol';
export { lineText, ProxySync, type SyncLine } from './proxy-sync';
export { validateMeshObject, type FieldProblem, type Validation } from './validate';
export { isVisible } from './visibility';
export { workloadInfoOf, workloadOf } from './workload';
