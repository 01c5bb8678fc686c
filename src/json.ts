// JSON request bodies, parsed with prototype poisoning refused (secure-json-parse, as Fastify's
// own parser), with messages of our own: JSON.parse's may quote the body, which may hold a CSR or
// a Pod's secrets, and never reaches a client or a log. The same care for YAML files' errors.

import { parse } from 'secure-json-parse';

const PARSE_OPTIONS = { protoAction: 'error', constructorAction: 'error' } as const;
/** secure-json-parse's error for a "__proto__" or "constructor.prototype" key. */
const FORBIDDEN_KEY_MESSAGE = 'Object contains forbidden prototype property';

export type ParsedJson =
  { readonly ok: true; readonly value: unknown } | { readonly ok: false; readonly message: string };

/** The value of a JSON body, or why it is refused. */
export function parseJsonBody(text: string | undefined): ParsedJson {
  if (text === undefined || text.length === 0) return { ok: false, message: 'the body is empty' };
  try {
    return { ok: true, value: parse(text, undefined, PARSE_OPTIONS) };
  } catch (err) {
    const forbidden = err instanceof SyntaxError && err.message === FORBIDDEN_KEY_MESSAGE;
    return {
      ok: false,
      message: forbidden
        ? 'the body holds a "__proto__" or "constructor.prototype" key'
        : 'the body is not valid JSON',
    };
  }
}

/**
 * A YAML parse error without the source lines the yaml library quotes after its message (a
 * manifest's Secret or a configuration's value): "Missing , between flow map items at line 2,
 * column 3".
 */
export function yamlErrorSummary(err: unknown): string {
  const message = err instanceof Error ? err.message : String(err);
  return (message.split('\n')[0] ?? '').replace(/:$/, '');
}
