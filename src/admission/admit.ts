// The admission decision for one review: which requests go to the injector, how its result or
// its error becomes an answer, and the decision/reason pair used by the log line and metrics.
// Pure: the injector comes in as a function, the fail-open switch as a parameter.

import { ERROR_CATALOG, isMooringError, MooringError, type ErrorCode } from '../errors';
import {
  buildAdmissionReviewResponse,
  type AdmissionReviewResponse,
  type PatchOperation,
} from './response';
import { isJsonObject, podDisplayName, type AdmissionRequest } from './review';

/** The injector's answer (src/injector): the shape the webhook relies on. */
export type InjectionResult =
  | {
      readonly action: 'injected';
      readonly pod: unknown;
      readonly patch: readonly PatchOperation[];
      readonly warnings: readonly string[];
    }
  | {
      readonly action: 'skipped';
      readonly reason: string;
      readonly message: string;
      readonly warnings: readonly string[];
    };

/** Injects one Pod of `namespace`; throws MooringError INJ_ERR_* for a Pod it refuses. */
export type PodInjector = (pod: unknown, namespace: string) => InjectionResult;

/**
 * injected: a patch was returned; skipped: allowed unchanged (typed reason); denied: the Pod is
 * refused for its own content (4xx); error: refused because of an internal error; fail_open:
 * allowed unchanged despite an internal error (config injector.failOpen).
 */
export type Decision = 'injected' | 'skipped' | 'denied' | 'error' | 'fail_open';

/** Skip reasons decided before the injector is asked. */
export const ADMISSION_SKIP = {
  notPod: 'not_pod',
  notCreate: 'not_create',
  subresource: 'subresource',
} as const;

export interface ReviewOutcome {
  readonly response: AdmissionReviewResponse;
  readonly decision: Decision;
  /** 'injected', a skip reason, or the error code. */
  readonly reason: string;
  readonly namespace: string;
  /** Pod name, or its generateName. */
  readonly pod: string;
  /** The internal error behind `error` and `fail_open`, for the log (never sent to the client). */
  readonly error?: unknown;
}

export interface AdmitOptions {
  readonly failOpen: boolean;
}

function isPodCreate(request: AdmissionRequest): string | null {
  const { kind } = request;
  if (kind.group !== '' || kind.kind !== 'Pod') return ADMISSION_SKIP.notPod;
  if (request.subResource !== '') return ADMISSION_SKIP.subresource;
  if (request.operation !== 'CREATE') return ADMISSION_SKIP.notCreate;
  return null;
}

function internalCode(err: unknown): ErrorCode {
  return isMooringError(err) && err.status >= 500 ? err.code : 'INJ_ERR_INTERNAL';
}

/** Decides one review. Never throws: every failure of the injector becomes an answer. */
export function admit(
  request: AdmissionRequest,
  injectPod: PodInjector,
  options: AdmitOptions,
): ReviewOutcome {
  const { uid, namespace } = request;
  const pod = podDisplayName(request.object);
  const base = { namespace, pod };

  const notForUs = isPodCreate(request);
  if (notForUs !== null) {
    return {
      ...base,
      decision: 'skipped',
      reason: notForUs,
      response: buildAdmissionReviewResponse(uid, { allowed: true, patch: [], warnings: [] }),
    };
  }

  try {
    if (!isJsonObject(request.object)) {
      throw new MooringError('INJ_ERR_INPUT', 'request.object must be a Pod object');
    }
    const result = injectPod(request.object, namespace);
    if (result.action === 'skipped') {
      return {
        ...base,
        decision: 'skipped',
        reason: result.reason,
        response: buildAdmissionReviewResponse(uid, {
          allowed: true,
          patch: [],
          warnings: result.warnings,
        }),
      };
    }
    return {
      ...base,
      decision: 'injected',
      reason: 'injected',
      response: buildAdmissionReviewResponse(uid, {
        allowed: true,
        patch: result.patch,
        warnings: result.warnings,
      }),
    };
  } catch (err) {
    if (isMooringError(err) && err.status < 500) {
      return {
        ...base,
        decision: 'denied',
        reason: err.code,
        response: buildAdmissionReviewResponse(uid, {
          allowed: false,
          code: err.status,
          message: `${err.code}: ${err.message}`,
          warnings: [],
        }),
      };
    }
    const code = internalCode(err);
    if (options.failOpen) {
      return {
        ...base,
        decision: 'fail_open',
        reason: code,
        error: err,
        response: buildAdmissionReviewResponse(uid, {
          allowed: true,
          patch: [],
          warnings: [
            `mooring: the Pod was admitted without the sidecar after an internal error (${code})`,
          ],
        }),
      };
    }
    return {
      ...base,
      decision: 'error',
      reason: code,
      error: err,
      response: buildAdmissionReviewResponse(uid, {
        allowed: false,
        code: ERROR_CATALOG[code].status,
        message: `${code}: ${ERROR_CATALOG[code].summary}`,
        warnings: [],
      }),
    };
  }
}
