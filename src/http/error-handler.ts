// Every error of the HTTP apps becomes `{code, message}` with the catalog's status. Framework
// errors (body too large, wrong content type, unparsable JSON) get the code of the route's area;
// anything unexpected is a 5xx with the generic summary, its detail logged, never sent. Requests
// Node cannot parse (a bad header line or method, headers too large, too slow) and URLs Fastify
// cannot route get the same shape (frameworkErrorOptions). The log names the path of a request,
// never its query string, and never the raw bytes of a request: either may hold a token.

import type { Socket } from 'node:net';
import type {
  FastifyError,
  FastifyInstance,
  FastifyReply,
  FastifyRequest,
  FastifyServerOptions,
} from 'fastify';
import { isMooringError, MooringError, type ErrorCode } from '../errors';

/** Which family of codes a route answers with. */
export type RouteArea = 'admission' | 'ca' | 'mesh' | 'none';

declare module 'fastify' {
  interface FastifyContextConfig {
    area?: RouteArea;
  }
}

interface AreaCodes {
  readonly body: ErrorCode;
  readonly contentType: ErrorCode;
  readonly tooLarge: ErrorCode;
  readonly internal: ErrorCode;
}

export const AREA_CODES: Readonly<Record<RouteArea, AreaCodes>> = {
  admission: {
    body: 'ADM_ERR_BODY',
    contentType: 'ADM_ERR_CONTENT_TYPE',
    tooLarge: 'ADM_ERR_TOO_LARGE',
    internal: 'INJ_ERR_INTERNAL',
  },
  ca: {
    body: 'CA_ERR_BODY',
    contentType: 'CA_ERR_CONTENT_TYPE',
    tooLarge: 'CA_ERR_TOO_LARGE',
    internal: 'CA_ERR_INTERNAL',
  },
  mesh: {
    body: 'MESH_ERR_QUERY',
    contentType: 'MESH_ERR_QUERY',
    tooLarge: 'MESH_ERR_QUERY',
    internal: 'HTTP_ERR_INTERNAL',
  },
  none: {
    body: 'HTTP_ERR_BAD_REQUEST',
    contentType: 'HTTP_ERR_BAD_REQUEST',
    tooLarge: 'HTTP_ERR_BAD_REQUEST',
    internal: 'HTTP_ERR_INTERNAL',
  },
};

function statusOf(err: unknown): number | undefined {
  if (typeof err !== 'object' || err === null) return undefined;
  const { statusCode } = err as { statusCode?: unknown };
  return typeof statusCode === 'number' ? statusCode : undefined;
}

function fastifyCode(err: unknown): string | undefined {
  if (typeof err !== 'object' || err === null) return undefined;
  const { code } = err as { code?: unknown };
  return typeof code === 'string' ? code : undefined;
}

/** Messages of our own, so that a parser's message (which may quote the body) never leaks. */
function bodyMessage(code: string | undefined): string {
  switch (code) {
    case 'FST_ERR_CTP_EMPTY_JSON_BODY':
      return 'the body is empty';
    case 'FST_ERR_CTP_INVALID_CONTENT_LENGTH':
      return 'the Content-Length does not match the body';
    case 'FST_ERR_CTP_INVALID_JSON_BODY':
    case undefined:
      return 'the body is not valid JSON';
    default:
      return 'the request is malformed';
  }
}

/** The coded error a client sees for `err` on a route of `area`. */
export function toMooringError(err: unknown, area: RouteArea, bodyLimit: number): MooringError {
  if (isMooringError(err)) return err;
  const codes = AREA_CODES[area];
  const status = statusOf(err);
  const code = fastifyCode(err);
  if (status === 413 || code === 'FST_ERR_CTP_BODY_TOO_LARGE') {
    return new MooringError(
      codes.tooLarge,
      `the body is larger than the limit of ${bodyLimit} bytes`,
    );
  }
  if (status === 415 || code === 'FST_ERR_CTP_INVALID_MEDIA_TYPE') {
    return new MooringError(codes.contentType, 'the content type must be application/json');
  }
  if (status !== undefined && status >= 400 && status < 500) {
    return new MooringError(codes.body, bodyMessage(code));
  }
  return new MooringError(codes.internal, 'unexpected error', { cause: err });
}

export function routeArea(request: FastifyRequest): RouteArea {
  return (request.routeOptions.config as { area?: RouteArea } | undefined)?.area ?? 'none';
}

const MAX_URL_IN_MESSAGE = 200;

/** The path of a request, without its query string (which may carry a token), cut short. */
const pathOf = (url: string): string => (url.split('?')[0] ?? '').slice(0, MAX_URL_IN_MESSAGE);

/** What Node's HTTP parser refuses, as the catalog's code and a message of our own. */
function clientErrorOf(code: string | undefined): MooringError {
  switch (code) {
    case 'ERR_HTTP_REQUEST_TIMEOUT':
      return new MooringError('HTTP_ERR_TIMEOUT', 'the request was not received in time');
    case 'HPE_HEADER_OVERFLOW':
      return new MooringError('HTTP_ERR_HEADERS_TOO_LARGE', 'the request headers are too large');
    case 'HPE_INVALID_METHOD':
      return new MooringError('HTTP_ERR_BAD_REQUEST', 'the request method is not valid');
    default:
      return new MooringError('HTTP_ERR_BAD_REQUEST', 'the request is not valid HTTP');
  }
}

/**
 * Fastify options for requests that never reach a route: the answer in our shape, and a log line
 * with the parser's code only (Node's error holds the raw request, `Authorization` included).
 */
export function frameworkErrorOptions(): Pick<
  FastifyServerOptions,
  'clientErrorHandler' | 'frameworkErrors'
> {
  return {
    clientErrorHandler(this: FastifyInstance, err: Error & { code?: string }, socket: Socket) {
      if (err.code === 'ECONNRESET' || socket.destroyed) return;
      const coded = clientErrorOf(err.code);
      this.log.debug({ code: coded.code, parserCode: err.code }, 'malformed request');
      if (socket.writable) {
        const body = JSON.stringify(coded.toJSON());
        socket.write(
          `HTTP/1.1 ${coded.status} ${STATUS_TEXT[coded.status] ?? 'Error'}\r\nContent-Type: application/json\r\n` +
            `Content-Length: ${Buffer.byteLength(body)}\r\nConnection: close\r\n\r\n${body}`,
        );
      }
      socket.destroy();
    },
    frameworkErrors(err, request, reply) {
      const coded =
        err.code === 'FST_ERR_BAD_URL'
          ? new MooringError('HTTP_ERR_BAD_REQUEST', 'the URL is not valid (bad percent-encoding)')
          : new MooringError('HTTP_ERR_BAD_REQUEST', 'the request is malformed');
      request.log.info(
        { code: coded.code, status: coded.status, method: request.method },
        'request refused',
      );
      void (reply as FastifyReply).code(coded.status).send(coded.toJSON());
    },
  };
}

const STATUS_TEXT: Readonly<Record<number, string>> = {
  400: 'Bad Request',
  408: 'Request Timeout',
  431: 'Request Header Fields Too Large',
};
const METHODS = ['GET', 'HEAD', 'POST', 'PUT', 'PATCH', 'DELETE'] as const;

/** Called once per error answer, for metrics. */
export type ErrorObserver = (area: RouteArea, err: MooringError, request: FastifyRequest) => void;

export function installErrorHandler(app: FastifyInstance, observe?: ErrorObserver): void {
  app.setErrorHandler((err: FastifyError, request: FastifyRequest, reply: FastifyReply) => {
    const area = routeArea(request);
    const limit = request.routeOptions.bodyLimit ?? app.initialConfig.bodyLimit ?? 0;
    const coded = toMooringError(err, area, limit);
    if (coded.status >= 500) {
      request.log.error({ err: coded.cause ?? coded, code: coded.code }, 'request failed');
    } else {
      request.log.info(
        {
          code: coded.code,
          status: coded.status,
          method: request.method,
          path: pathOf(request.url),
        },
        'request refused',
      );
    }
    observe?.(area, coded, request);
    if (coded.status === 401) void reply.header('www-authenticate', 'Bearer');
    return reply.code(coded.status).send(coded.toJSON());
  });
  app.setNotFoundHandler((request, reply) => {
    const path = pathOf(request.url);
    const allowed = METHODS.filter((method) => app.hasRoute({ method, url: path }));
    if (allowed.length > 0) {
      request.log.info({ method: request.method, path }, 'method not allowed');
      return reply
        .code(405)
        .header('allow', allowed.join(', '))
        .send(
          new MooringError(
            'HTTP_ERR_METHOD',
            `${request.method} is not allowed on ${path}: use ${allowed.join(', ')}`,
          ).toJSON(),
        );
    }
    request.log.info({ method: request.method, path }, 'no such route');
    return reply
      .code(404)
      .send(new MooringError('HTTP_ERR_NOT_FOUND', `no route ${request.method} ${path}`).toJSON());
  });
}
