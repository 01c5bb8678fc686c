// POST /inject: the mutating admission webhook. The HTTP part only: parse, decide (pure
// src/admission), count, log one line, answer.

import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import {
  admit,
  parseAdmissionReview,
  serializeAdmissionReviewResponse,
  type PodInjector,
} from '../../admission';
import { INJECT_PATH } from '../../constants';
import type { MooringMetrics } from '../metrics';
import { requireJson } from '../request';

export { INJECT_PATH };

export interface InjectRouteDeps {
  readonly injectPod: PodInjector;
  readonly failOpen: boolean;
  readonly metrics: MooringMetrics;
}

export function registerInjectRoute(app: FastifyInstance, deps: InjectRouteDeps): void {
  const { injectPod, failOpen, metrics } = deps;
  const options = { failOpen };

  app.post(
    INJECT_PATH,
    { config: { area: 'admission' }, onRequest: requireJson('admission') },
    (request: FastifyRequest, reply: FastifyReply) => {
      const start = performance.now();
      const review = parseAdmissionReview(request.body);
      const outcome = admit(review, injectPod, options);
      const seconds = (performance.now() - start) / 1000;

      metrics.injectionDuration.observe(seconds);
      metrics.injectionRequests.inc({ result: outcome.decision });
      if (outcome.decision === 'skipped') metrics.injectionSkipped.inc({ reason: outcome.reason });

      // One line per review, flat fields only: this is the hot path.
      const line = {
        uid: review.uid,
        namespace: outcome.namespace,
        pod: outcome.pod,
        decision: outcome.decision,
        reason: outcome.reason,
        dryRun: review.dryRun,
        durationMs: Math.round(seconds * 1e6) / 1e3,
      };
      if (outcome.error === undefined) {
        request.log.info(line, 'admission review');
      } else {
        request.log.error({ ...line, err: outcome.error }, 'admission review');
      }
      return reply
        .type('application/json; charset=utf-8')
        .send(serializeAdmissionReviewResponse(outcome.response));
    },
  );
}
