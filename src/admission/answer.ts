// One admission review from its body text to the JSON text of the answer: parse (prototype
// poisoning refused, as Fastify's own JSON parser does), validate, decide, serialize. Pure and
// synchronous, so that it runs the same on the event loop and in an inject thread
// (src/adapters/inject-threads.ts): what crosses between threads is text in, text out.

import { isMooringError, type ErrorCode } from '../errors';
import { admit, type AdmitOptions, type Decision, type PodInjector } from './admit';
import { serializeAdmissionReviewResponse } from './response';
import { parseAdmissionReview } from './review';
import { parseJsonBody } from '../json';

/** An internal error as the log line needs it: plain data, so that it crosses threads. */
export interface ErrorRecord {
  readonly type: string;
  readonly message: string;
  readonly stack?: string;
  readonly code?: string;
}

export type ReviewAnswer =
  | {
      /** HTTP 200 with `body`, the AdmissionReview answer. */
      readonly kind: 'answer';
      readonly body: string;
      readonly uid: string;
      readonly dryRun: boolean;
      readonly namespace: string;
      readonly pod: string;
      readonly decision: Decision;
      readonly reason: string;
      /** Parse, decision and serialization, in milliseconds. */
      readonly durationMs: number;
      readonly error?: ErrorRecord;
    }
  | {
      /** Not an AdmissionReview: a 4xx with this code and message, no answer to the API server. */
      readonly kind: 'refused';
      readonly code: ErrorCode;
      readonly message: string;
    };

export function errorRecord(err: unknown): ErrorRecord {
  if (!(err instanceof Error)) return { type: typeof err, message: String(err) };
  const code = (err as { code?: unknown }).code;
  return {
    type: err.name,
    message: err.message,
    ...(err.stack === undefined ? {} : { stack: err.stack }),
    ...(typeof code === 'string' ? { code } : {}),
  };
}

export interface AnswerOptions extends AdmitOptions {
  /** Milliseconds of a monotonic clock (the shell's performance.now): the answer's durationMs. */
  readonly monotonicMs: () => number;
}

/** The review of `text` (the request body; undefined when there was none) answered. */
export function answerReview(
  text: string | undefined,
  injectPod: PodInjector,
  options: AnswerOptions,
): ReviewAnswer {
  const start = options.monotonicMs();
  const parsed = parseJsonBody(text);
  if (!parsed.ok) return { kind: 'refused', code: 'ADM_ERR_BODY', message: parsed.message };
  const body = parsed.value;
  let review;
  try {
    review = parseAdmissionReview(body);
  } catch (err) {
    if (isMooringError(err)) return { kind: 'refused', code: err.code, message: err.message };
    throw err;
  }
  const outcome = admit(review, injectPod, options);
  const answer = serializeAdmissionReviewResponse(outcome.response);
  return {
    kind: 'answer',
    body: answer,
    uid: review.uid,
    dryRun: review.dryRun,
    namespace: outcome.namespace,
    pod: outcome.pod,
    decision: outcome.decision,
    reason: outcome.reason,
    durationMs: options.monotonicMs() - start,
    ...(outcome.error === undefined ? {} : { error: errorRecord(outcome.error) }),
  };
}

/**
 * The answer when the review could not be decided where it was sent (an inject thread died with
 * it): the internal-error answer admit() gives, allowed or not by config injector.failOpen.
 */
export function answerAfterFailure(
  text: string | undefined,
  failure: unknown,
  options: AnswerOptions,
): ReviewAnswer {
  return answerReview(
    text,
    () => {
      throw failure;
    },
    options,
  );
}
