export { buildWebhookApp, type WebhookAppDeps } from './webhook-app';
export { buildAdminApp, type AdminAppDeps } from './admin-app';
export { createMooringMetrics, type MooringMetrics } from './metrics';
export type { Readiness, ReadinessProbe } from './plugins/health';
export type { ReviewThreads } from './plugins/inject';
