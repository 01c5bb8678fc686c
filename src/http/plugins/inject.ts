// POST /inject: the mutating admission webhook. The HTTP part only: hand the body text to the
// review (src/admission/answer.ts, here or in an inject thread), count, log one line, answer.

import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import {
  answerAfterFailure,
  answerReview,
  type PodInjector,
  type ReviewAnswer,
} from '../../admission';
import { INJECT_PATH } from '../../constants';
import { MooringError } from '../../errors';
import type { MooringMetrics } from '../metrics';
import { requireJson } from '../request';

export { INJECT_PATH };

/** Where reviews are answered off the event loop (src/adapters/inject-threads.ts). */
export interface ReviewThreads {
  answer(text: string | undefined): Promise<ReviewAnswer>;
}

export interface InjectRouteDeps {
  /** The injector, run on the event loop when there are no threads. */
  readonly injectPod: PodInjector;
  /** Inject threads: when given, reviews are answered there. */
  readonly threads?: ReviewThreads;
  readonly failOpen: boolean;
  readonly metrics: MooringMetrics;
}

export function registerInjectRoute(app: FastifyInstance, deps: InjectRouteDeps): void {
  const { injectPod, threads, failOpen, metrics } = deps;
  const options = { failOpen, monotonicMs: () => performance.now() };

  const answerOf = (text: string | undefined): ReviewAnswer | Promise<ReviewAnswer> =>
    threads === undefined
      ? answerReview(text, injectPod, options)
      : threads.answer(text).catch((err: unknown) => answerAfterFailure(text, err, options));

  const send = (request: FastifyRequest, reply: FastifyReply, answer: ReviewAnswer) => {
    if (answer.kind === 'refused') throw new MooringError(answer.code, answer.message);
    const seconds = answer.durationMs / 1000;
    metrics.injectionDuration.observe(seconds);
    metrics.injectionRequests.inc({ result: answer.decision });
    if (answer.decision === 'skipped') metrics.injectionSkipped.inc({ reason: answer.reason });

    // One line per review, flat fields only: this is the hot path.
    const line = {
      uid: answer.uid,
      namespace: answer.namespace,
      pod: answer.pod,
      decision: answer.decision,
      reason: answer.reason,
      dryRun: answer.dryRun,
      durationMs: Math.round(answer.durationMs * 1e3) / 1e3,
    };
    if (answer.error === undefined) {
      request.log.info(line, 'admission review');
    } else {
      request.log.error({ ...line, err: answer.error }, 'admission review');
    }
    return reply.type('application/json; charset=utf-8').send(answer.body);
  };

  // The body reaches the review as text: parsing it is part of the work an inject thread does.
  app.register((scope, _options, done) => {
    scope.removeContentTypeParser('application/json');
    scope.addContentTypeParser('application/json', { parseAs: 'string' }, (_request, body, done) =>
      done(null, body),
    );
    scope.post(
      INJECT_PATH,
      { config: { area: 'admission' }, onRequest: requireJson('admission') },
      (request: FastifyRequest, reply: FastifyReply) => {
        const text = request.body as string | undefined;
        const answer = answerOf(text);
        return answer instanceof Promise
          ? answer.then((a) => send(request, reply, a))
          : send(request, reply, answer);
      },
    );
    done();
  });
}
