// The injector's public API, shared by the webhook (src/admission, src/http) and `mooring inject`.

export {
  inject,
  podInjector,
  type InjectionContext,
  type InjectOutcome,
  type InjectionSummary,
} from './inject';
export { SKIP_REASONS, SKIP_CODES, type SkipCode } from './decide';
export {
  ANNOTATIONS,
  annotationTable,
  resolveSettings,
  type AnnotationDefinition,
  type PodSettings,
} from './annotations';
export { createPatch, POD_NAMED_ARRAYS, type PathSegments } from './patch';
export {
  injectWorkload,
  TEMPLATE_PATHS,
  type WorkloadContext,
  type WorkloadReport,
  type WorkloadResult,
} from './workload';
export { injectManifests, type ManifestsResult, type DocumentResult } from './manifests';
export { assertPod, type Pod, type Container, type PodSpec, type ObjectMeta } from './pod';
export { WAIT_COMMAND, READY_PATH, type InjectionStatus } from './sidecar';
