// What never reaches a route: requests Node's HTTP parser refuses, URLs Fastify cannot route,
// unknown paths. The answer keeps the `{code, message}` shape; the log keeps no token, neither
// from a query string nor from the raw bytes of a request that failed to parse.

import { connect } from 'node:net';
import type { AddressInfo } from 'node:net';
import { createLogger } from '../../src/observability/logger';
import { ADMIN_TOKEN, buildTestWebhookApp, JSON_HEADERS, LogSink } from './helpers';

const MARKER = 'SECRET-QUERY-MARKER-77';

/** A webhook app listening on loopback (plain HTTP) that logs everything, down to trace. */
async function listening() {
  const sink = new LogSink();
  const { app } = buildTestWebhookApp({ logger: createLogger('trace', sink) });
  await app.listen({ host: '127.0.0.1', port: 0 });
  const { port } = app.server.address() as AddressInfo;
  return { app, sink, port };
}

/** Sends raw bytes and reads until the server closes the connection. */
function raw(port: number, request: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = connect(port, '127.0.0.1');
    let answer = '';
    socket.on('data', (d: Buffer) => (answer += d.toString('latin1')));
    socket.on('close', () => resolve(answer));
    socket.on('error', reject);
    socket.end(request);
  });
}

const bodyOf = (answer: string): unknown =>
  JSON.parse(answer.slice(answer.indexOf('\r\n\r\n') + 4));

describe('requests the HTTP parser refuses', () => {
  const auth = `Authorization: Bearer ${MARKER}\r\n`;
  it.each<[string, string, string, { code: string; message: string }]>([
    [
      'a bad header line (after an Authorization header)',
      `POST /v1/admin/certificates HTTP/1.1\r\nHost: x\r\n${auth}Bad Header Line\r\n\r\n`,
      '400 Bad Request',
      { code: 'HTTP_ERR_BAD_REQUEST', message: 'the request is not valid HTTP' },
    ],
    [
      'an unknown method',
      `BREW /v1/certificates HTTP/1.1\r\nHost: x\r\n${auth}\r\n`,
      '400 Bad Request',
      { code: 'HTTP_ERR_BAD_REQUEST', message: 'the request method is not valid' },
    ],
    [
      'headers over the size limit',
      `GET /v1/trust-bundle HTTP/1.1\r\nHost: x\r\n${auth}X-Big: ${'a'.repeat(20_000)}\r\n\r\n`,
      '431 Request Header Fields Too Large',
      { code: 'HTTP_ERR_HEADERS_TOO_LARGE', message: 'the request headers are too large' },
    ],
  ])(
    'answers %s in the shape of every error, and logs no byte of it',
    async (_n, req, status, body) => {
      const { app, sink, port } = await listening();
      try {
        const answer = await raw(port, req);
        expect(answer.startsWith(`HTTP/1.1 ${status}\r\n`)).toBe(true);
        expect(bodyOf(answer)).toEqual(body);
        expect(sink.lines).toContainEqual(
          expect.objectContaining({ msg: 'malformed request', code: body.code }),
        );
        expect(sink.text()).not.toContain(MARKER);
        expect(sink.text()).not.toContain('rawPacket');
      } finally {
        await app.close();
      }
    },
  );
});

describe('URLs and paths', () => {
  it('answers a URL with bad percent-encoding 400 HTTP_ERR_BAD_REQUEST', async () => {
    const { app } = buildTestWebhookApp();
    const res = await app.inject({ method: 'GET', url: '/v1/trust-bundle%zz' });
    expect(res.statusCode).toBe(400);
    expect(res.json()).toEqual({
      code: 'HTTP_ERR_BAD_REQUEST',
      message: 'the URL is not valid (bad percent-encoding)',
    });
  });

  it('neither logs nor echoes the query string of an unknown path', async () => {
    const { app, sink } = buildTestWebhookApp();
    const res = await app.inject({ method: 'GET', url: `/nope?access_token=${MARKER}` });
    expect(res.statusCode).toBe(404);
    expect(res.json()).toEqual({ code: 'HTTP_ERR_NOT_FOUND', message: 'no route GET /nope' });
    expect(sink.lines).toContainEqual(
      expect.objectContaining({ msg: 'no such route', path: '/nope' }),
    );
    expect(sink.text()).not.toContain(MARKER);
  });

  it('does not log the query string of a refused request (a token put in the URL)', async () => {
    const { app, sink } = buildTestWebhookApp();
    const res = await app.inject({
      method: 'POST',
      url: `/v1/admin/certificates?token=${MARKER}&admin=${ADMIN_TOKEN}`,
      headers: JSON_HEADERS,
      payload: '{}',
    });
    expect(res.statusCode).toBe(401);
    expect(sink.lines).toContainEqual(
      expect.objectContaining({ msg: 'request refused', path: '/v1/admin/certificates' }),
    );
    expect(sink.text()).not.toContain(MARKER);
    expect(sink.text()).not.toContain(ADMIN_TOKEN);
  });
});
