// The trace context core on tables: W3C traceparent and B3 in, the sampling decision, the headers
// sent on.

import {
  incomingTrace,
  noTraceHeaders,
  openSpan,
  parseTraceparent,
  propagationHeaders,
  readH2TraceHeaders,
  readTraceHeaders,
  type IdSource,
  type TraceHeaders,
} from '../../../src/agent/proxy/core/trace-context';

const TRACE = '4bf92f3577b34da6a3ce929d0e0e4736';
const SPAN = '00f067aa0ba902b7';

/** Ids counted up from 1, so that a test can name each. */
function countingIds(): IdSource & { spans: number } {
  let n = 0;
  return {
    spans: 0,
    traceId: () => `${'f'.repeat(31)}${(++n).toString(16)}`.slice(-32),
    spanId() {
      this.spans++;
      return `${'a'.repeat(15)}${this.spans.toString(16)}`.slice(-16);
    },
  };
}

const headers = (h: Partial<TraceHeaders>): TraceHeaders => ({ ...noTraceHeaders(), ...h });

describe('traceparent', () => {
  it.each([
    [
      'a sampled context',
      `00-${TRACE}-${SPAN}-01`,
      { traceId: TRACE, spanId: SPAN, sampled: true },
    ],
    ['an unsampled one', `00-${TRACE}-${SPAN}-00`, { sampled: false }],
    ['other flag bits beside sampled', `00-${TRACE}-${SPAN}-03`, { sampled: true }],
    ['a later version with more fields', `01-${TRACE}-${SPAN}-01-extra`, { traceId: TRACE }],
  ])('reads %s', (_name, value, expected) => {
    expect(parseTraceparent(value, null)).toMatchObject(expected);
  });

  it.each([
    ['version ff', `ff-${TRACE}-${SPAN}-01`],
    ['an all-zero trace id', `00-${'0'.repeat(32)}-${SPAN}-01`],
    ['an all-zero span id', `00-${TRACE}-${'0'.repeat(16)}-01`],
    ['upper-case hex', `00-${TRACE.toUpperCase()}-${SPAN}-01`],
    // The characters next to the hex digits' ranges.
    ...['/', ':', '`', 'g'].map((c): [string, string] => [
      `a trace id with "${c}"`,
      `00-${c}${TRACE.slice(1)}-${SPAN}-01`,
    ]),
    ['a span id with "g"', `00-${TRACE}-${SPAN.slice(1)}g-01`],
    ['a short trace id', `00-${TRACE.slice(1)}-${SPAN}-01`],
    ['version 00 with a suffix', `00-${TRACE}-${SPAN}-01-x`],
    ['a later version whose fifth field does not follow a dash', `01-${TRACE}-${SPAN}-01x`],
    ['a version with "g"', `0g-${TRACE}-${SPAN}-01`],
    ['flags with "g"', `00-${TRACE}-${SPAN}-0g`],
    ['no dash before the span id', `00-${TRACE}x${SPAN}-01`],
    ['garbage', 'hello'],
  ])('refuses %s (a new trace starts)', (_name, value) => {
    expect(parseTraceparent(value, 'k=v')).toBeNull();
  });

  it('keeps tracestate only beside a valid traceparent', () => {
    expect(
      incomingTrace(headers({ traceparent: `00-${TRACE}-${SPAN}-01`, tracestate: 'a=1' })),
    ).toMatchObject({ traceState: 'a=1' });
    expect(incomingTrace(headers({ traceparent: 'bad', tracestate: 'a=1' }))).toBeNull();
  });
});

describe('B3', () => {
  it('reads the multi headers, a 64-bit trace id padded to 128', () => {
    expect(incomingTrace(headers({ b3TraceId: SPAN, b3SpanId: SPAN, b3Sampled: '1' }))).toEqual({
      traceId: `${'0'.repeat(16)}${SPAN}`,
      spanId: SPAN,
      sampled: true,
      traceState: null,
    });
  });

  it.each([
    ['1', null, true],
    ['0', null, false],
    ['true', null, true],
    [null, null, null],
    ['0', '1', true], // debug wins
  ])('x-b3-sampled %s with x-b3-flags %s gives %s', (sampled, flags, expected) => {
    expect(
      incomingTrace(
        headers({ b3TraceId: TRACE, b3SpanId: SPAN, b3Sampled: sampled, b3Flags: flags }),
      )?.sampled,
    ).toBe(expected);
  });

  it('reads the single b3 header', () => {
    expect(incomingTrace(headers({ b3: `${TRACE}-${SPAN}-0-${'1'.repeat(16)}` }))).toEqual({
      traceId: TRACE,
      spanId: SPAN,
      sampled: false,
      traceState: null,
    });
    expect(incomingTrace(headers({ b3: '1' }))).toBeNull();
  });

  it('prefers traceparent when both are present', () => {
    const other = 'b'.repeat(32);
    expect(
      incomingTrace(
        headers({ traceparent: `00-${TRACE}-${SPAN}-01`, b3TraceId: other, b3SpanId: SPAN }),
      )?.traceId,
    ).toBe(TRACE);
  });
});

describe('reading the headers', () => {
  it('finds them in raw HTTP/1.1 lines whatever their case, the first value of each', () => {
    const h = readTraceHeaders([
      'Host',
      'x',
      'TraceParent',
      `00-${TRACE}-${SPAN}-01`,
      'traceparent',
      'second',
      'X-B3-TraceId',
      TRACE,
      'x-b3-spanid',
      SPAN,
      'X-B3-ParentSpanId',
      SPAN,
      'X-B3-Sampled',
      '1',
      'X-B3-Flags',
      '1',
      'B3',
      '1',
      'X-Request-Id',
      'rid',
      'User-Agent',
      'curl/8',
      'TraceState',
      'a=1',
    ]);
    expect(h).toEqual({
      traceparent: `00-${TRACE}-${SPAN}-01`,
      tracestate: 'a=1',
      b3TraceId: TRACE,
      b3SpanId: SPAN,
      b3ParentSpanId: SPAN,
      b3Sampled: '1',
      b3Flags: '1',
      b3: '1',
      requestId: 'rid',
      userAgent: 'curl/8',
    });
  });

  it('finds them in HTTP/2 headers', () => {
    expect(
      readH2TraceHeaders({ traceparent: `00-${TRACE}-${SPAN}-00`, 'x-request-id': ['a', 'b'] }),
    ).toMatchObject({ traceparent: `00-${TRACE}-${SPAN}-00`, requestId: 'a', b3: null });
  });
});

describe('opening a span and the headers sent on', () => {
  it('starts a trace where none came, sampled by the percentage', () => {
    const ids = countingIds();
    const low = openSpan(null, ids, 1, () => 0.0099);
    const high = openSpan(null, ids, 1, () => 0.01);
    expect(low).toMatchObject({ parentSpanId: null, sampled: true });
    expect(high.sampled).toBe(false);
    expect(low.traceId).not.toBe(high.traceId);
    expect(openSpan(null, ids, 0, () => 0).sampled).toBe(false);
    expect(openSpan(null, ids, 100, () => 0.999999).sampled).toBe(true);
  });

  it('joins an incoming trace and honours its decision whatever the percentage', () => {
    const ids = countingIds();
    const sampled = parseTraceparent(`00-${TRACE}-${SPAN}-01`, null);
    const unsampled = parseTraceparent(`00-${TRACE}-${SPAN}-00`, null);
    expect(openSpan(sampled, ids, 0, () => 0.5)).toMatchObject({
      traceId: TRACE,
      parentSpanId: SPAN,
      sampled: true,
    });
    expect(openSpan(unsampled, ids, 100, () => 0).sampled).toBe(false);
  });

  it('decides here when B3 came without a decision', () => {
    const ids = countingIds();
    const undecided = incomingTrace(headers({ b3TraceId: TRACE, b3SpanId: SPAN }));
    expect(openSpan(undecided, ids, 50, () => 0.2).sampled).toBe(true);
    expect(openSpan(undecided, ids, 50, () => 0.7).sampled).toBe(false);
  });

  it('sends this span as the parent of the next hop, in W3C and B3 form', () => {
    const ids = countingIds();
    const span = openSpan(parseTraceparent(`00-${TRACE}-${SPAN}-01`, 'v=1'), ids, 1, () => 1);
    const out: string[] = [];
    propagationHeaders(span, out);
    expect(out).toEqual([
      'traceparent',
      `00-${TRACE}-${span.spanId}-01`,
      'tracestate',
      'v=1',
      'x-b3-traceid',
      TRACE,
      'x-b3-spanid',
      span.spanId,
      'x-b3-parentspanid',
      SPAN,
      'x-b3-sampled',
      '1',
    ]);
    const root: string[] = [];
    propagationHeaders(
      openSpan(null, ids, 0, () => 0),
      root,
    );
    expect(root).toHaveLength(8); // no tracestate, no parent
    expect(root[1]).toMatch(/^00-[0-9a-f]{32}-[0-9a-f]{16}-00$/);
  });

  it('puts the B3 form in a list of its own when given one', () => {
    const span = openSpan(
      parseTraceparent(`00-${TRACE}-${SPAN}-00`, null),
      countingIds(),
      1,
      () => 1,
    );
    const w3c: string[] = [];
    const b3: string[] = [];
    propagationHeaders(span, w3c, b3);
    expect(w3c).toEqual(['traceparent', `00-${TRACE}-${span.spanId}-00`]);
    expect(b3).toEqual([
      ...['x-b3-traceid', TRACE, 'x-b3-spanid', span.spanId],
      ...['x-b3-parentspanid', SPAN, 'x-b3-sampled', '0'],
    ]);
  });
});
