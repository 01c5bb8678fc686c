// The validating admission webhook for the traffic kinds (POST /validate): a VirtualService,
// DestinationRule, ServiceEntry, Sidecar, WorkloadEntry, HTTPRoute, GRPCRoute, TCPRoute, TLSRoute,
// PeerAuthentication, AuthorizationPolicy, RequestAuthentication or Telemetry that the mesh would
// skip (or, an AuthorizationPolicy, put in closed) is refused at `kubectl apply` with the same
// message the server logs (kind, namespace/name, field, what is wrong); warnings (fields Mooring
// ignores) come back as admission warnings. Deletes, status updates and kinds the mesh does not
// read are allowed. Pure.

import { validateMeshObject } from '../mesh/validate';
import { buildAdmissionReviewResponse, type AdmissionReviewResponse } from './response';
import { isJsonObject, parseAdmissionReview } from './review';

export const VALIDATE_PATH = '/validate';

/** The answer to one AdmissionReview body (throws MooringError ADM_ERR_BODY for a bad body). */
export function answerMeshValidation(body: unknown): AdmissionReviewResponse {
  const req = parseAdmissionReview(body);
  const allow = (warnings: readonly string[] = []): AdmissionReviewResponse =>
    buildAdmissionReviewResponse(req.uid, { allowed: true, patch: [], warnings });
  if (req.operation === 'DELETE' || req.subResource !== '' || !isJsonObject(req.object)) {
    return allow();
  }
  const { group, version, kind } = req.kind;
  const apiVersion = group === '' ? version : `${group}/${version}`;
  const v = validateMeshObject(
    { ...req.object, apiVersion, kind },
    req.namespace === '' ? 'default' : req.namespace,
  );
  if (v.status === 'ignored') return allow();
  if (v.status === 'valid') {
    return allow(v.warnings.map((w) => `${w.field}: ${w.message}`));
  }
  const { namespace, name } = v.identity;
  const problems = v.problems.map((p) => (p.field === '' ? p.message : `${p.field}: ${p.message}`));
  return buildAdmissionReviewResponse(req.uid, {
    allowed: false,
    code: 422,
    message: `${kind} ${namespace}/${name} is invalid for Mooring: ${problems.join('; ')}`,
    warnings: [],
  });
}
