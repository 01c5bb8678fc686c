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

/** The labels of UTF-8 (the WHATWG Encoding Standard's two common ones). */
const UTF8_LABELS = new Set(['utf-8', 'utf8']);
const MAX_CHARSET_IN_MESSAGE = 40;

/**
 * The charset a Content-Type declares, lower case and unquoted; undefined when it declares none.
 * A repeated charset parameter counts as its first value that is not UTF-8.
 */
export function declaredCharset(header: string): string | undefined {
  let found: string | undefined;
  for (const parameter of header.split(';').slice(1)) {
    const eq = parameter.indexOf('=');
    if (eq === -1 || parameter.slice(0, eq).trim().toLowerCase() !== 'charset') continue;
    const value = parameter
      .slice(eq + 1)
      .trim()
      .replace(/^"(.*)"$/, '$1')
      .toLowerCase();
    if (found === undefined || UTF8_LABELS.has(found)) found = value;
  }
  return found;
}

/**
 * An onRequest hook: 415 with the area's code unless the body is declared as JSON in UTF-8, the
 * encoding of JSON (RFC 8259 8.1): the body is read as UTF-8, so a body declared in another
 * charset would be read as something it is not.
 */
export function requireJson(area: RouteArea) {
  const code = AREA_CODES[area].contentType;
  return (request: FastifyRequest, _reply: FastifyReply, done: (err?: Error) => void): void => {
    const header = request.headers['content-type'];
    if (header === undefined || !isJsonContentType(header)) {
      done(new MooringError(code, 'the content type must be application/json'));
      return;
    }
    const charset = declaredCharset(header);
    if (charset !== undefined && !UTF8_LABELS.has(charset)) {
      const shown = JSON.stringify(charset.slice(0, MAX_CHARSET_IN_MESSAGE));
      done(
        new MooringError(
          code,
          `the body must be JSON in UTF-8: charset ${shown} is not accepted (send charset=utf-8 or none)`,
        ),
      );
      return;
    }
    done();
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
