// Small request helpers shared by the routes: request ids, the JSON content-type check and
// bearer-token extraction.

import { randomUUID } from 'node:crypto';
import type { IncomingMessage } from 'node:http';
import type { FastifyReply, FastifyRequest } from 'fastify';
import { MooringError } from '../errors';
import { AREA_CODES, type RouteArea } from './error-handler';

export const REQUEST_ID_HEADER = 'x-request-id';
const SAFE_REQUEST_ID = /^[A-Za-z0-9._:-]{1,128}$/;

/** Keeps a caller's X-Request-Id when it is short and plain, else makes a new one. */
export function genReqId(req: IncomingMessage): string {
  const given = req.headers[REQUEST_ID_HEADER];
  if (typeof given === 'string' && SAFE_REQUEST_ID.test(given)) return given;
  return randomUUID();
}

/** True for `application/json`, with or without parameters (charset). */
export function isJsonContentType(header: string | undefined): boolean {
  if (header === undefined) return false;
  const semi = header.indexOf(';');
  const media = (semi === -1 ? header : header.slice(0, semi)).trim().toLowerCase();
  return media === 'application/json';
}

/** An onRequest hook: 415 with the area's code unless the body is declared as JSON. */
export function requireJson(area: RouteArea) {
  const code = AREA_CODES[area].contentType;
  return (request: FastifyRequest, _reply: FastifyReply, done: (err?: Error) => void): void => {
    if (isJsonContentType(request.headers['content-type'])) {
      done();
      return;
    }
    done(new MooringError(code, 'the content type must be application/json'));
  };
}

export type BearerResult =
  | { readonly ok: true; readonly token: string }
  | { readonly ok: false; readonly reason: 'missing' | 'malformed' };

/** `Authorization: Bearer <token>` (scheme case-insensitive; any visible characters, RFC 6750). */
export function bearerToken(header: string | undefined): BearerResult {
  if (header === undefined || header.trim() === '') return { ok: false, reason: 'missing' };
  const match = /^Bearer +([\x21-\x7e]+) *$/i.exec(header);
  if (match?.[1] === undefined) return { ok: false, reason: 'malformed' };
  return { ok: true, token: match[1] };
}
