// POST /validate: the validating admission webhook of the traffic kinds
// (src/admission/validate-mesh.ts). The HTTP part only: the parsed body in, the review out.

import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { answerMeshValidation, VALIDATE_PATH } from '../../admission/validate-mesh';
import { serializeAdmissionReviewResponse } from '../../admission/response';
import { requireJson } from '../request';

export function registerValidateRoute(app: FastifyInstance): void {
  app.post(
    VALIDATE_PATH,
    { config: { area: 'admission' }, onRequest: requireJson('admission') },
    (request: FastifyRequest, reply: FastifyReply) => {
      const review = answerMeshValidation(request.body);
      const { response } = review;
      request.log.info(
        {
          uid: response.uid,
          allowed: response.allowed,
          ...(response.status === undefined ? {} : { reason: response.status.message }),
        },
        'validation review',
      );
      return reply
        .type('application/json; charset=utf-8')
        .send(serializeAdmissionReviewResponse(review));
    },
  );
}
