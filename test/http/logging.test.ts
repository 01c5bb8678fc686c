// Redaction of the process logger (src/observability/logger.ts), read from a sink stream.

import { createLogger } from '../../src/observability/logger';
import { LogSink } from './helpers';

const MARKER = 'SECRET-MARKER-4f1d';

describe('the logger', () => {
  it.each<[string, Record<string, unknown>]>([
    ['a CSR', { csr: MARKER }],
    ['a CSR inside a request', { body: { csr: MARKER } }],
    ['the CA request field csrPem', { req: { csrPem: MARKER } }],
    ['a token', { token: MARKER }],
    ['an admin token', { adminToken: MARKER }],
    ['a private key', { privateKey: MARKER, key: MARKER }],
    [
      'an authorization header of a request',
      { req: { headers: { authorization: `Bearer ${MARKER}` } } },
    ],
    ['an authorization header on its own', { headers: { authorization: `Bearer ${MARKER}` } }],
    ['a nested authorization', { client: { authorization: MARKER } }],
    ['a request body', { req: { body: { anything: MARKER } } }],
  ])('never writes %s in clear', (_name, fields) => {
    const sink = new LogSink();
    createLogger('info', sink).info(fields, 'something happened');
    expect(sink.raw).toHaveLength(1);
    expect(sink.text()).not.toContain(MARKER);
    expect(sink.text()).toContain('[redacted]');
  });

  it.each<[string, Record<string, unknown>]>([
    ['a header whatever its case', { headers: { Authorization: `Bearer ${MARKER}` } }],
    ['a key inside an array', { roots: [{ fingerprint: 'ab' }, { privateKey: MARKER }] }],
    ['a token four levels down', { a: { b: { c: { token: MARKER } } } }],
  ])('never writes %s in clear either', (_name, fields) => {
    const sink = new LogSink();
    createLogger('info', sink).info(fields, 'something happened');
    expect(sink.text()).not.toContain(MARKER);
    expect(sink.text()).toContain('[redacted]');
  });

  it('censors a secret field of an error and keeps its type and message', () => {
    const sink = new LogSink();
    const err = Object.assign(new TypeError('the request failed'), { token: MARKER });
    createLogger('info', sink).error({ err }, 'request failed');
    expect(sink.text()).not.toContain(MARKER);
    expect(sink.lines[0]).toMatchObject({
      err: { type: 'TypeError', message: 'the request failed', token: '[redacted]' },
    });
    // The caller's error is left as it was.
    expect(err.token).toBe(MARKER);
  });

  it('writes the message of a cause once, whether the error quotes it or not', () => {
    const sink = new LogSink();
    const root = new Error('unknown CA state schema undefined');
    const quoted = new Error(`Secret ns/mooring-ca does not hold a valid CA: ${root.message}`, {
      cause: root,
    });
    const unquoted = new Error('the store cannot be read', { cause: root });
    const logger = createLogger('info', sink);
    logger.error({ err: quoted }, 'failed');
    logger.error({ err: unquoted }, 'failed');
    expect(sink.lines.map((l) => (l.err as { message: string }).message)).toEqual([
      'Secret ns/mooring-ca does not hold a valid CA: unknown CA state schema undefined',
      'the store cannot be read: unknown CA state schema undefined',
    ]);
    // The chain itself is still logged, in the stack.
    expect((sink.lines[0]?.err as { stack: string }).stack).toContain(
      'caused by: Error: unknown CA state schema undefined',
    );
  });

  it('leaves the logged object unchanged and logs its other fields in clear', () => {
    const sink = new LogSink();
    const fields = { uid: 'u-1', request: { csrPem: MARKER, spiffeId: 'spiffe://x/y' } };
    createLogger('info', sink).info(fields, 'certificate issued');
    expect(fields.request.csrPem).toBe(MARKER);
    expect(sink.lines[0]).toMatchObject({
      uid: 'u-1',
      request: { csrPem: '[redacted]', spiffeId: 'spiffe://x/y' },
    });
  });

  it('writes JSON lines with level, time, pid and message', () => {
    const sink = new LogSink();
    createLogger('info', sink).info({ uid: 'u-1' }, 'admission review');
    expect(sink.lines[0]).toMatchObject({
      level: 30,
      pid: process.pid,
      uid: 'u-1',
      msg: 'admission review',
    });
    expect(typeof sink.lines[0]?.time).toBe('string');
  });
});
