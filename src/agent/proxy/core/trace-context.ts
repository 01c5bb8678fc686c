// Trace context, pure: what a request carries (W3C `traceparent`/`tracestate`, Zipkin's B3 in
// its multi-header and single-header forms), the sampling decision, and the headers a sidecar
// sends on. Each sidecar opens one span per request (a client span outbound, a server span
// inbound) whose parent is the span the request came with, and replaces the trace headers with
// its own span's, in both formats, so that an app using either finds its parent.
//
// Read once per request in one pass over the raw header lines (`readTraceHeaders`); nothing is
// allocated for a request without trace headers beyond one small object.

/** Headers a sidecar replaces on every request it forwards (lowercase). */
export const TRACEPARENT = 'traceparent';
export const TRACESTATE = 'tracestate';
export const B3 = {
  traceId: 'x-b3-traceid',
  spanId: 'x-b3-spanid',
  parentSpanId: 'x-b3-parentspanid',
  sampled: 'x-b3-sampled',
  flags: 'x-b3-flags',
  single: 'b3',
} as const;
export const REQUEST_ID = 'x-request-id';
export const USER_AGENT = 'user-agent';

export const TRACE_HEADERS: readonly string[] = [
  TRACEPARENT,
  TRACESTATE,
  B3.traceId,
  B3.spanId,
  B3.parentSpanId,
  B3.sampled,
  B3.flags,
  B3.single,
];

/** The values of the headers tracing and the access log read, null when absent. */
export interface TraceHeaders {
  traceparent: string | null;
  tracestate: string | null;
  b3TraceId: string | null;
  b3SpanId: string | null;
  b3ParentSpanId: string | null;
  b3Sampled: string | null;
  b3Flags: string | null;
  b3: string | null;
  requestId: string | null;
  userAgent: string | null;
}

export const noTraceHeaders = (): TraceHeaders => ({
  traceparent: null,
  tracestate: null,
  b3TraceId: null,
  b3SpanId: null,
  b3ParentSpanId: null,
  b3Sampled: null,
  b3Flags: null,
  b3: null,
  requestId: null,
  userAgent: null,
});

/**
 * One pass over raw HTTP/1.1 header lines (name at 2i, value at 2i+1, any case): the first value
 * of each header tracing reads. Names are lower-cased only when their length matches one.
 */
export function readTraceHeaders(raw: readonly string[]): TraceHeaders {
  const h = noTraceHeaders();
  for (let i = 0; i < raw.length; i += 2) {
    const name = raw[i] as string;
    switch (name.length) {
      case 2:
        if (h.b3 === null && name.toLowerCase() === B3.single) h.b3 = raw[i + 1] as string;
        break;
      case 10: {
        const lower = name.toLowerCase();
        if (lower === TRACESTATE) h.tracestate ??= raw[i + 1] as string;
        else if (lower === USER_AGENT) h.userAgent ??= raw[i + 1] as string;
        else if (lower === B3.flags) h.b3Flags ??= raw[i + 1] as string;
        break;
      }
      case 11: {
        const lower = name.toLowerCase();
        if (lower === TRACEPARENT) h.traceparent ??= raw[i + 1] as string;
        else if (lower === B3.spanId) h.b3SpanId ??= raw[i + 1] as string;
        break;
      }
      case 12: {
        const lower = name.toLowerCase();
        if (lower === REQUEST_ID) h.requestId ??= raw[i + 1] as string;
        else if (lower === B3.traceId) h.b3TraceId ??= raw[i + 1] as string;
        else if (lower === B3.sampled) h.b3Sampled ??= raw[i + 1] as string;
        break;
      }
      case 17:
        if (name.toLowerCase() === B3.parentSpanId) h.b3ParentSpanId ??= raw[i + 1] as string;
        break;
      default:
        break;
    }
  }
  return h;
}

/** The same from HTTP/2 headers (node:http2's object: lowercase names, arrays for repeats). */
export function readH2TraceHeaders(
  headers: Readonly<Record<string, string | string[] | undefined>>,
): TraceHeaders {
  const first = (name: string): string | null => {
    const v = headers[name];
    if (v === undefined) return null;
    return typeof v === 'string' ? v : (v[0] ?? null);
  };
  return {
    traceparent: first(TRACEPARENT),
    tracestate: first(TRACESTATE),
    b3TraceId: first(B3.traceId),
    b3SpanId: first(B3.spanId),
    b3ParentSpanId: first(B3.parentSpanId),
    b3Sampled: first(B3.sampled),
    b3Flags: first(B3.flags),
    b3: first(B3.single),
    requestId: first(REQUEST_ID),
    userAgent: first(USER_AGENT),
  };
}

/** The context a request arrived with. */
export interface IncomingTrace {
  /** 32 lowercase hex digits. */
  readonly traceId: string;
  /** 16 lowercase hex digits: the caller's span, the parent of ours. */
  readonly spanId: string;
  /** The caller's decision; null: none was made (B3 without `x-b3-sampled`), decide here. */
  readonly sampled: boolean | null;
  /** W3C `tracestate`, passed on unchanged (only with a valid `traceparent`). */
  readonly traceState: string | null;
}

/** A lowercase hex digit's char code. */
const isHexCode = (c: number): boolean => (c >= 0x30 && c <= 0x39) || (c >= 0x61 && c <= 0x66);
const hexValue = (c: number): number => (c <= 0x39 ? c - 0x30 : c - 0x57);

/** Lowercase hex digits from `from` to `to` (excluded). */
function hexRun(s: string, from: number, to: number): boolean {
  for (let i = from; i < to; i++) if (!isHexCode(s.charCodeAt(i))) return false;
  return true;
}

/** `length` lowercase hex digits (a loop: cheaper per request than a regular expression). */
const isHex = (s: string, length: number): boolean => s.length === length && hexRun(s, 0, length);
const ZERO_TRACE = '0'.repeat(32);
const ZERO_SPAN = '0'.repeat(16);

/**
 * W3C Trace Context `traceparent`: `version-traceid-parentid-flags`. Version `ff`, all-zero ids,
 * upper-case hex or a wrong length make it invalid (null: a new trace starts). A version above
 * 00 is read by its first four fields, as the specification asks.
 */
export function parseTraceparent(value: string, traceState: string | null): IncomingTrace | null {
  const v = value.trim();
  if (v.length < 55) return null;
  // One pass over the four fields' characters, without a string per field until all are valid.
  const c0 = v.charCodeAt(0);
  const c1 = v.charCodeAt(1);
  if (!isHexCode(c0) || !isHexCode(c1) || (c0 === 0x66 && c1 === 0x66)) return null;
  const version00 = c0 === 0x30 && c1 === 0x30;
  if (version00 ? v.length !== 55 : v.length > 55 && v.charCodeAt(55) !== 0x2d) return null;
  if (v.charCodeAt(2) !== 0x2d || v.charCodeAt(35) !== 0x2d || v.charCodeAt(52) !== 0x2d) {
    return null;
  }
  if (!hexRun(v, 3, 35) || !hexRun(v, 36, 52) || !hexRun(v, 53, 55)) return null;
  if (allZero(v, 3, 35) || allZero(v, 36, 52)) return null;
  return {
    traceId: v.slice(3, 35),
    spanId: v.slice(36, 52),
    // The flags' low bit (sampled) is the low bit of their last hex digit.
    sampled: (hexValue(v.charCodeAt(54)) & 1) === 1,
    traceState: traceState === null || traceState.trim() === '' ? null : traceState,
  };
}

function allZero(s: string, from: number, to: number): boolean {
  for (let i = from; i < to; i++) if (s.charCodeAt(i) !== 0x30) return false;
  return true;
}

/** A B3 trace id of 16 or 32 hex digits, as 32 (a 64-bit id is left-padded with zeros). */
function b3TraceId(v: string): string | null {
  const id = v.trim().toLowerCase();
  if (isHex(id, 32)) return id === ZERO_TRACE ? null : id;
  if (isHex(id, 16)) return id === ZERO_SPAN ? null : `${ZERO_SPAN}${id}`;
  return null;
}

function b3SpanId(v: string): string | null {
  const id = v.trim().toLowerCase();
  return isHex(id, 16) && id !== ZERO_SPAN ? id : null;
}

function b3Sampled(sampled: string | null, flags: string | null): boolean | null {
  if (flags?.trim() === '1') return true; // debug
  switch (sampled?.trim().toLowerCase()) {
    case '1':
    case 'true':
    case 'd':
      return true;
    case '0':
    case 'false':
      return false;
    default:
      return null;
  }
}

/** B3 single header: `{traceid}-{spanid}[-{sampled}[-{parentspanid}]]` (a bare `0`/`1`/`d` carries only a decision). */
function parseB3Single(value: string): IncomingTrace | null {
  const parts = value.trim().split('-');
  if (parts.length < 2) return null;
  const traceId = b3TraceId(parts[0] as string);
  const spanId = b3SpanId(parts[1] as string);
  if (traceId === null || spanId === null) return null;
  return { traceId, spanId, sampled: b3Sampled(parts[2] ?? null, null), traceState: null };
}

/**
 * The context a request came with: `traceparent` first, then B3's headers, then B3's single
 * header; null when none is valid (a new trace starts here).
 */
export function incomingTrace(h: TraceHeaders): IncomingTrace | null {
  if (h.traceparent !== null) {
    const w3c = parseTraceparent(h.traceparent, h.tracestate);
    if (w3c !== null) return w3c;
  }
  if (h.b3TraceId !== null && h.b3SpanId !== null) {
    const traceId = b3TraceId(h.b3TraceId);
    const spanId = b3SpanId(h.b3SpanId);
    if (traceId !== null && spanId !== null) {
      return { traceId, spanId, sampled: b3Sampled(h.b3Sampled, h.b3Flags), traceState: null };
    }
  }
  if (h.b3 !== null) return parseB3Single(h.b3);
  return null;
}

/** Where new ids come from (the shell gives a CSPRNG-backed one; tests a fixed one). */
export interface IdSource {
  /** 32 lowercase hex digits, not all zero. */
  traceId(): string;
  /** 16 lowercase hex digits, not all zero. */
  spanId(): string;
}

/** The span a sidecar opens for one request. */
export interface SpanContext {
  readonly traceId: string;
  readonly spanId: string;
  /** The caller's span; null at the root of a trace. */
  readonly parentSpanId: string | null;
  readonly sampled: boolean;
  readonly traceState: string | null;
}

/**
 * Opens this sidecar's span: in the incoming trace when there is one, honouring its decision;
 * else a new trace, sampled when `random() * 100 < samplingPercent`.
 */
export function openSpan(
  incoming: IncomingTrace | null,
  ids: IdSource,
  samplingPercent: number,
  random: () => number,
): SpanContext {
  const decide = (): boolean => samplingPercent > 0 && random() * 100 < samplingPercent;
  if (incoming === null) {
    return {
      traceId: ids.traceId(),
      spanId: ids.spanId(),
      parentSpanId: null,
      sampled: decide(),
      traceState: null,
    };
  }
  return {
    traceId: incoming.traceId,
    spanId: ids.spanId(),
    parentSpanId: incoming.spanId,
    sampled: incoming.sampled ?? decide(),
    traceState: incoming.traceState,
  };
}

/**
 * Appends the trace headers of the request sent on ([name, value, ...]), this span as the parent
 * of the next hop: the W3C ones to `out`, the B3 ones to `b3` (the same list unless the caller
 * sends them only to some hops). The incoming ones are removed (TRACE_HEADERS).
 */
export function propagationHeaders(span: SpanContext, out: string[], b3: string[] = out): void {
  const sampled = span.sampled ? '1' : '0';
  out.push(TRACEPARENT, `00-${span.traceId}-${span.spanId}-0${sampled}`);
  if (span.traceState !== null) out.push(TRACESTATE, span.traceState);
  b3.push(B3.traceId, span.traceId, B3.spanId, span.spanId);
  if (span.parentSpanId !== null) b3.push(B3.parentSpanId, span.parentSpanId);
  b3.push(B3.sampled, sampled);
}
