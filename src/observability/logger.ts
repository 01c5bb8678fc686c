import pino, { type DestinationStream, type Logger, type LoggerOptions } from 'pino';

// Redaction. pino's `redact` option (@pinojs/redact) clones and walks every logged object for
// wildcard paths such as `*.token`: 20 µs per line, a tenth of a whole admission review (see
// bench/RESULTS.md). redactSecrets does the same job in one pass over the keys that copies only
// what it censors, and logs without secrets pass through untouched.

/** Keys whose values never reach a log, at any depth up to MAX_DEPTH (case-insensitive). */
export const SECRET_KEYS: ReadonlySet<string> = new Set([
  'csr',
  'csrpem',
  'key',
  'privatekey',
  'token',
  'admintoken',
  'authorization',
  'cookie',
  // Request bodies carry CSRs and Pods: never logged whole.
  'body',
]);

export const CENSOR = '[redacted]';

/** Objects are searched this deep (the top level is 0); deeper values are logged as they are. */
const MAX_DEPTH = 4;

const isSecretKey = (key: string): boolean =>
  SECRET_KEYS.has(key) || SECRET_KEYS.has(key.toLowerCase());

function isSearchable(value: unknown): value is object {
  if (value === null || typeof value !== 'object') return false;
  if (Array.isArray(value) || value instanceof Error) return true;
  const proto: unknown = Object.getPrototypeOf(value);
  return proto === Object.prototype || proto === null;
}

function redactValue(value: unknown, depth: number): unknown {
  if (depth > MAX_DEPTH || !isSearchable(value)) return value;
  if (Array.isArray(value)) {
    let out: unknown[] | null = null;
    for (let i = 0; i < value.length; i++) {
      const item: unknown = value[i];
      const redacted = redactValue(item, depth + 1);
      if (redacted !== item) {
        out ??= value.slice();
        out[i] = redacted;
      }
    }
    return out ?? value;
  }
  const redacted = redactSecrets(value as Record<string, unknown>, depth);
  if (redacted === value || !(value instanceof Error)) return redacted;
  // An error with a secret among its own fields: a copy of the same class, secret censored.
  const copy = Object.create(Object.getPrototypeOf(value) as object) as Error;
  Object.defineProperties(copy, Object.getOwnPropertyDescriptors(value));
  return Object.assign(copy, redacted);
}

/**
 * `obj` with the value of every secret key (SECRET_KEYS) replaced by CENSOR, in nested objects,
 * arrays and errors too. Copy-on-write: `obj` itself when nothing is secret; never mutated.
 */
export function redactSecrets(obj: Record<string, unknown>, depth = 0): Record<string, unknown> {
  let out: Record<string, unknown> | null = null;
  for (const key of Object.keys(obj)) {
    const value = obj[key];
    const redacted = isSecretKey(key)
      ? value === undefined
        ? value
        : CENSOR
      : redactValue(value, depth + 1);
    if (redacted !== value) {
      out ??= { ...obj };
      out[key] = redacted;
    }
  }
  return out ?? obj;
}

/**
 * pino's error serializer, except that a cause's message is not added again when the error's own
 * message already quotes it (`cannot read x: ENOENT...` caused by the ENOENT error): pino joins
 * the messages of the whole cause chain, and most of Mooring's errors quote their cause.
 */
export function serializeError(err: Error): Record<string, unknown> {
  const out = pino.stdSerializers.err(err) as unknown as Record<string, unknown>;
  if (!(err instanceof Error)) return out;
  let message = err.message;
  const seen = new Set<unknown>([err]);
  for (let cause = err.cause; cause instanceof Error && !seen.has(cause); cause = cause.cause) {
    seen.add(cause);
    if (!message.includes(cause.message)) message += `: ${cause.message}`;
  }
  return { ...out, message };
}

/**
 * The log levels a user may name (the agent's, and Envoy's `warning`, `critical` and `off` as its
 * /logging takes them), to the logger's.
 */
export const LOG_LEVEL_NAMES: Readonly<Record<string, string>> = {
  trace: 'trace',
  debug: 'debug',
  info: 'info',
  warning: 'warn',
  warn: 'warn',
  error: 'error',
  critical: 'fatal',
  off: 'silent',
};

export function loggerOptions(level: string): LoggerOptions {
  return {
    level,
    formatters: { log: (obj) => redactSecrets(obj) },
    serializers: { err: serializeError },
    base: { pid: process.pid },
    timestamp: pino.stdTimeFunctions.isoTime,
  };
}

/** A JSON logger to stderr (or to `destination` in tests). Built by composition roots only. */
export function createLogger(level: string, destination?: DestinationStream): Logger {
  return pino(loggerOptions(level), destination ?? pino.destination({ fd: 2, sync: false }));
}
