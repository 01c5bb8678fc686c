// AdmissionReview admission.k8s.io/v1: parse and validate what the API server sends. Pure: the
// HTTP shell hands in the parsed JSON body and gets a typed request or a coded error back.

import { MooringError } from '../errors';

export const ADMISSION_API_VERSION = 'admission.k8s.io/v1';
export const ADMISSION_KIND = 'AdmissionReview';

/** The group/version/kind of the object under review, as the API server names it. */
export interface GroupVersionKind {
  readonly group: string;
  readonly version: string;
  readonly kind: string;
}

/** The parts of `request` the injector needs. Everything else in the review is ignored. */
export interface AdmissionRequest {
  readonly uid: string;
  readonly kind: GroupVersionKind;
  readonly subResource: string;
  readonly operation: string;
  /** `request.namespace`, or the object's own namespace, or '' when neither is set. */
  readonly namespace: string;
  readonly object: unknown;
  readonly dryRun: boolean;
}

/** Kubernetes UIDs are 36 characters; anything far longer is not from an API server. */
const MAX_UID_LENGTH = 256;

type JsonObject = Record<string, unknown>;

export function isJsonObject(value: unknown): value is JsonObject {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function bad(message: string): MooringError {
  return new MooringError('ADM_ERR_BODY', message);
}

function optionalString(obj: JsonObject, key: string, where: string): string {
  const value = obj[key];
  if (value === undefined || value === null) return '';
  if (typeof value !== 'string') throw bad(`${where}.${key} must be a string`);
  return value;
}

function parseKind(value: unknown): GroupVersionKind {
  if (!isJsonObject(value))
    throw bad('request.kind must be an object with group, version and kind');
  return {
    group: optionalString(value, 'group', 'request.kind'),
    version: optionalString(value, 'version', 'request.kind'),
    kind: optionalString(value, 'kind', 'request.kind'),
  };
}

function objectNamespace(object: unknown): string {
  if (!isJsonObject(object) || !isJsonObject(object.metadata)) return '';
  const ns = object.metadata.namespace;
  return typeof ns === 'string' ? ns : '';
}

/**
 * Validates a parsed AdmissionReview body. Throws MooringError ADM_ERR_BODY (HTTP 400) for
 * anything that is not an admission.k8s.io/v1 AdmissionReview with a request and its uid.
 */
export function parseAdmissionReview(body: unknown): AdmissionRequest {
  if (!isJsonObject(body)) throw bad('the body must be a JSON object (an AdmissionReview)');
  if (body.apiVersion !== ADMISSION_API_VERSION) {
    throw bad(`apiVersion must be ${ADMISSION_API_VERSION} (admissionReviewVersions: [v1])`);
  }
  if (body.kind !== ADMISSION_KIND) throw bad(`kind must be ${ADMISSION_KIND}`);
  const request = body.request;
  if (!isJsonObject(request)) throw bad('request is missing');
  const uid = request.uid;
  if (typeof uid !== 'string' || uid.length === 0) throw bad('request.uid is missing');
  if (uid.length > MAX_UID_LENGTH)
    throw bad(`request.uid is longer than ${MAX_UID_LENGTH} characters`);
  const operation = optionalString(request, 'operation', 'request');
  if (operation === '') throw bad('request.operation is missing');
  const dryRun = request.dryRun;
  if (dryRun !== undefined && dryRun !== null && typeof dryRun !== 'boolean') {
    throw bad('request.dryRun must be a boolean');
  }
  const namespace = optionalString(request, 'namespace', 'request');
  return {
    uid,
    kind: parseKind(request.kind),
    subResource: optionalString(request, 'subResource', 'request'),
    operation,
    namespace: namespace !== '' ? namespace : objectNamespace(request.object),
    object: request.object,
    dryRun: dryRun === true,
  };
}

/** `metadata.name`, else `metadata.generateName` (Pods made by controllers have only that). */
export function podDisplayName(object: unknown): string {
  if (!isJsonObject(object) || !isJsonObject(object.metadata)) return '';
  const { name, generateName } = object.metadata;
  if (typeof name === 'string' && name !== '') return name;
  return typeof generateName === 'string' ? generateName : '';
}
