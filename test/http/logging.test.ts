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
