import pino, { type DestinationStream, type Logger, type LoggerOptions } from 'pino';

/**
 * Paths never logged in clear: CSRs, keys, tokens, authorization headers, wherever they appear
 * in a logged object (top level, request bodies and headers, one level of nesting).
 */
export const REDACT_PATHS = [
  'csr',
  'key',
  'privateKey',
  'token',
  'adminToken',
  'authorization',
  '*.csr',
  '*.key',
  '*.privateKey',
  '*.token',
  '*.authorization',
  'req.headers.authorization',
  'req.headers.cookie',
  'req.body',
  'body.csr',
  'request.body',
  // The CA's request objects, and headers logged on their own.
  'csrPem',
  '*.csrPem',
  'headers.authorization',
  '*.headers.authorization',
];

export function loggerOptions(level: string): LoggerOptions {
  return {
    level,
    redact: { paths: REDACT_PATHS, censor: '[redacted]' },
    base: { pid: process.pid },
    timestamp: pino.stdTimeFunctions.isoTime,
  };
}

/** A JSON logger to stderr (or to `destination` in tests). Built by composition roots only. */
export function createLogger(level: string, destination?: DestinationStream): Logger {
  return pino(loggerOptions(level), destination ?? pino.destination({ fd: 2, sync: false }));
}
