import {
  forwardHeaderLines,
  hasBadValueChar,
  hasBareLf,
  Http1ParseError,
  isToken,
  RequestParser,
  ResponseParser,
  type RequestHead,
  type ResponseHead,
} from '../../../src/agent/proxy/l7/http1-codec';

interface Message<H> {
  head: H;
  body: string;
}

/** Frames `input`, fed in pieces of `split` bytes, into messages (body bytes as they came). */
function frame<H>(
  parser: 'request' | 'response',
  input: string,
  split = Infinity,
  method = 'GET',
): Message<H>[] {
  const out: Message<H>[] = [];
  let current: Message<H> | null = null;
  const handler = {
    onHead: (head: H) => {
      current = { head, body: '' };
    },
    onBody: (chunk: Buffer) => {
      (current as unknown as Message<H>).body += chunk.toString('latin1');
    },
    onMessageEnd: () => {
      out.push(current as unknown as Message<H>);
      current = null;
    },
  };
  const p =
    parser === 'request'
      ? new RequestParser(handler as never)
      : new ResponseParser(handler as never);
  if (p instanceof ResponseParser) p.requestMethod = method;
  const bytes = Buffer.from(input, 'latin1');
  const step = Number.isFinite(split) ? split : bytes.length;
  for (let i = 0; i < bytes.length; i += step) p.execute(bytes.subarray(i, i + step));
  p.finish();
  return out;
}

const requests = (input: string, split?: number) => frame<RequestHead>('request', input, split);
const responses = (input: string, split?: number, method?: string) =>
  frame<ResponseHead>('response', input, split, method);

describe('RequestParser', () => {
  const twoRequests =
    'POST /a?x=1 HTTP/1.1\r\nHost: svc\r\nContent-Length: 5\r\nX-A: 1\r\n\r\nhello' +
    'GET /b HTTP/1.1\r\nhost: svc\r\n\r\n';

  it.each([1, 2, 7, 1000])(
    'frames pipelined requests the same whatever the split (%i bytes)',
    (split) => {
      const got = requests(twoRequests, split);
      expect(got.map((m) => [m.head.method, m.head.target, m.head.host, m.body])).toEqual([
        ['POST', '/a?x=1', 'svc', 'hello'],
        ['GET', '/b', 'svc', ''],
      ]);
      expect(got[0]?.head.headers).toEqual(['Host', 'svc', 'Content-Length', '5', 'X-A', '1']);
    },
  );

  it('passes a chunked body through unchanged, extensions and trailers included', () => {
    const body = '5;ext=1\r\nhello\r\n0\r\nX-Trailer: t\r\n\r\n';
    const [m] = requests(
      `POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n${body}`,
      3,
    );
    expect(m?.head.chunked).toBe(true);
    expect(m?.body).toBe(body);
  });

  it('knows connection semantics: close, HTTP/1.0 keep-alive, upgrade, expect', () => {
    const [close] = requests('GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n');
    expect(close?.head.close).toBe(true);
    const [old] = requests('GET / HTTP/1.0\r\n\r\n');
    expect(old?.head.close).toBe(true);
    const [oldKeep] = requests('GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n');
    expect(oldKeep?.head.close).toBe(false);
    const [up] = requests(
      'GET / HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\nUpgrade: WebSocket\r\n\r\n',
    );
    expect(up?.head.upgrade).toBe('websocket');
    const [noConn] = requests('GET / HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\n\r\n');
    expect(noConn?.head.upgrade).toBeNull();
    const [expect100] = requests(
      'PUT / HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\nContent-Length: 0\r\n\r\n',
    );
    expect(expect100?.head.expectContinue).toBe(true);
    const [listed] = requests(
      'GET / HTTP/1.1\r\nHost: a\r\nConnection: keep-alive ,\tUPGRADE\r\nUpgrade: websocket\r\n\r\n',
    );
    expect(listed?.head.upgrade).toBe('websocket');
    expect(listed?.head.close).toBe(false);
    const [closeListed] = requests('GET / HTTP/1.1\r\nHost: a\r\nConnection: x-a, close\r\n\r\n');
    expect(closeListed?.head.close).toBe(true);
  });

  // A parser that frames these as a length (or as chunked) and one that refuses them would see
  // different bodies: refused in the head, whatever follows it.
  it.each([
    ['an empty Content-Length', 'Content-Length: ', 'abc', /invalid Content-Length/],
    ['16 digits', 'Content-Length: 1000000000000000', 'abc', /invalid Content-Length/],
    ['a list of differing lengths', 'Content-Length: 3, 4', 'abc', /differing Content-Length/],
    // Optional whitespace is space and tab: a no-break space is not trimmed away.
    [
      'a length ending in a no-break space',
      'Content-Length: 3\xa0',
      'abc',
      /invalid Content-Length/,
    ],
    ['a list with a no-break space', 'Content-Length: 3,\xa03', 'abc', /invalid Content-Length/],
    [
      'chunked ending in a no-break space',
      'Transfer-Encoding: chunked\xa0',
      '0\r\n\r\n',
      /does not end with chunked/,
    ],
  ])('refuses %s', (_name, field, body, message) => {
    expect(() => requests(`POST / HTTP/1.1\r\nHost: a\r\n${field}\r\n\r\n${body}`)).toThrow(
      message,
    );
  });

  it('takes a list of identical Content-Lengths as one, and reads up to 15 digits', () => {
    const [same] = requests('POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3 ,\t3\r\n\r\nabc');
    expect(same?.head.contentLength).toBe(3);
    expect(same?.body).toBe('abc');
    // A HEAD's answer has no body to wait for: its length is only read.
    const [large] = responses(
      'HTTP/1.1 200 OK\r\nContent-Length: 999999999999999\r\n\r\n',
      undefined,
      'HEAD',
    );
    expect(large?.head.contentLength).toBe(999_999_999_999_999);
  });

  // Each of these lets a request hide inside another when two parsers disagree (smuggling).
  it.each([
    [
      'Transfer-Encoding with Content-Length',
      'POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n',
    ],
    [
      'differing Content-Lengths',
      'POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\n',
    ],
    [
      'a Content-Length that is not a number',
      'POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3x\r\n\r\n',
    ],
    [
      'a coding after chunked',
      'POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked, gzip\r\n\r\n',
    ],
    [
      'chunked twice',
      'POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n',
    ],
    ['obsolete line folding', 'GET / HTTP/1.1\r\nHost: a\r\nX: 1\r\n  2\r\n\r\n'],
    ['a bare LF in the head', 'GET / HTTP/1.1\nHost: a\r\n\r\n'],
    ['a space before the colon', 'GET / HTTP/1.1\r\nHost : a\r\n\r\n'],
    ['a control character in a value', 'GET / HTTP/1.1\r\nHost: a\r\nX: a\x01b\r\n\r\n'],
    ['two Hosts', 'GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n'],
    ['an HTTP/1.1 request without Host', 'GET / HTTP/1.1\r\nX: 1\r\n\r\n'],
    ['an unknown version', 'GET / HTTP/2.0\r\nHost: a\r\n\r\n'],
    ['a bad chunk size', 'POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n'],
    [
      'a chunk without its CRLF',
      'POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabcX',
    ],
  ])('refuses %s', (_name, input) => {
    expect(() => requests(input)).toThrow(Http1ParseError);
  });

  it.each([
    ['a request', () => new RequestParser({} as never), 'GET / HTTP/1.1\nHost: a\n\n'],
    ['a response', () => new ResponseParser({} as never), 'HTTP/1.1 200 OK\nContent-Length: 0\n\n'],
  ])('refuses %s whose lines end in bare LFs as it arrives, not at its end', (_k, make, head) => {
    // Such a head never holds a CRLFCRLF: the parser must not wait for one.
    expect(() => make().execute(Buffer.from(head, 'latin1'))).toThrow(/a bare LF in the head/);
  });

  it('refuses a bare LF at the read that brings it, the earlier reads of the head scanned once', () => {
    const head = 'GET / HTTP/1.1\r\nHost: a\r\nX: 1\nY: 2\r\n\r\n';
    const p = new RequestParser({} as never);
    const at = head.indexOf('1\n') + 1;
    for (let i = 0; i < at; i++) p.execute(Buffer.from(head[i] ?? '', 'latin1'));
    expect(() => p.execute(Buffer.from('\n', 'latin1'))).toThrow(/a bare LF in the head/);
  });

  it('takes a CRLF split between two reads as a line end, not a bare LF', () => {
    const seen: string[] = [];
    const p = new RequestParser({
      onHead: (h: RequestHead) => seen.push(h.target),
      onBody: () => undefined,
      onMessageEnd: () => undefined,
    });
    for (const piece of ['GET /x HTTP/1.1\r', '\nHost: a\r', '\n\r', '\n'])
      p.execute(Buffer.from(piece, 'latin1'));
    expect(seen).toEqual(['/x']);
  });

  it('refuses a head over the limit as "too large" (431), even when it never ends', () => {
    const huge = `GET / HTTP/1.1\r\nHost: a\r\nX: ${'a'.repeat(70_000)}`;
    try {
      requests(huge, 4096);
      throw new Error('no error');
    } catch (err) {
      expect(err).toBeInstanceOf(Http1ParseError);
      expect((err as Http1ParseError).tooLarge).toBe(true);
    }
  });

  it('reads names in any case, and trims only spaces and tabs around a value', () => {
    const [m] = requests(
      'POST / HTTP/1.1\r\nHOST: svc\r\ncontent-LENGTH: \t 2 \r\nX-Obs:\xa0v\xa0\r\nX-Empty:\r\n\r\nhi',
    );
    expect(m?.head.host).toBe('svc');
    expect(m?.head.contentLength).toBe(2);
    expect(m?.body).toBe('hi');
    // obs-text (0xA0) is part of a value; String#trim would have taken it away.
    expect(m?.head.headers).toEqual([
      ...['HOST', 'svc', 'content-LENGTH', '2'],
      ...['X-Obs', '\xa0v\xa0', 'X-Empty', ''],
    ]);
  });

  it.each([
    [
      'a line without a colon, before one with a colon',
      'GET / HTTP/1.1\r\nHost: a\r\nX\r\nY: 1\r\n\r\n',
      /without a name/,
    ],
    ['an empty name', 'GET / HTTP/1.1\r\nHost: a\r\n: 1\r\n\r\n', /without a name/],
    [
      'a form feed at the end of a value',
      'GET / HTTP/1.1\r\nHost: a\r\nX: 1\f\r\n\r\n',
      /invalid value/,
    ],
    ['201 header lines', `GET / HTTP/1.1\r\nHost: a\r\n${'X: 1\r\n'.repeat(200)}\r\n`, /too many/],
    [
      'a CR alone in a value',
      'GET / HTTP/1.1\r\nHost: a\r\nX: 1\r2\r\n\r\n',
      /invalid value of header X/,
    ],
    [
      'a DEL in a value',
      'GET / HTTP/1.1\r\nHost: a\r\nX: 1\x7f\r\n\r\n',
      /invalid value of header X/,
    ],
    ['a CR alone in a name', 'GET / HTTP/1.1\r\nHost: a\r\nX\rY: 1\r\n\r\n', /invalid header name/],
    [
      'a control character after a bad name',
      'GET / HTTP/1.1\r\nHost: a\r\nX Y: 1\x01\r\n\r\n',
      /invalid header name "X Y"/,
    ],
  ])('refuses %s with a message that says so', (_name, input, message) => {
    expect(() => requests(input)).toThrow(message);
  });

  it('ends a name at its first colon; later colons and tabs belong to the value', () => {
    const [m] = requests('GET / HTTP/1.1\r\nHost: a:8080\r\nX-Time: 12:30:00\tZ\r\n\r\n');
    expect(m?.head.host).toBe('a:8080');
    expect(m?.head.headers).toEqual(['Host', 'a:8080', 'X-Time', '12:30:00\tZ']);
  });

  it('takes 200 header lines, and a request line with no header at all (HTTP/1.0)', () => {
    const [many] = requests(`GET / HTTP/1.1\r\nHost: a\r\n${'X: 1\r\n'.repeat(199)}\r\n`);
    expect(many?.head.headers).toHaveLength(400);
    const [bare] = requests('GET /only HTTP/1.0\r\n\r\n');
    expect(bare?.head).toMatchObject({ target: '/only', headers: [], host: null });
  });

  it('a body cut by the end of the connection is an error', () => {
    expect(() => requests('POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 10\r\n\r\nabc')).toThrow(
      /middle of a body/,
    );
  });
});

describe('ResponseParser', () => {
  it.each([
    ['a length', 'HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nhi', 'GET', 'hi'],
    [
      'chunks',
      'HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nhi\r\n0\r\n\r\n',
      'GET',
      '2\r\nhi\r\n0\r\n\r\n',
    ],
    ['no body for HEAD', 'HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n', 'HEAD', ''],
    ['no body for 204', 'HTTP/1.1 204 No Content\r\n\r\n', 'GET', ''],
    ['no body for 304', 'HTTP/1.1 304 Not Modified\r\nContent-Length: 9\r\n\r\n', 'GET', ''],
    [
      'a body until the connection closes',
      'HTTP/1.1 200 OK\r\n\r\nuntil close',
      'GET',
      'until close',
    ],
  ])('frames a response body with %s', (_name, input, method, body) => {
    const [m] = responses(input, 3, method);
    expect(m?.body).toBe(body);
  });

  it('frames a 100 Continue and then the response', () => {
    const got = responses(
      'HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 201 Created\r\nContent-Length: 0\r\n\r\n',
    );
    expect(got.map((m) => m.head.statusCode)).toEqual([100, 201]);
  });

  it('keeps a reason with spaces, and an empty one', () => {
    expect(
      responses('HTTP/1.1 404 Not Very Found\r\nContent-Length: 0\r\n\r\n')[0]?.head.reason,
    ).toBe('Not Very Found');
    expect(responses('HTTP/1.1 200\r\nContent-Length: 0\r\n\r\n')[0]?.head.reason).toBe('');
  });

  it.each([
    ['a status that is not three digits', 'HTTP/1.1 20 OK\r\n\r\n'],
    ['a CR in the reason phrase', 'HTTP/1.1 200 OK\rX-Injected: 1\r\nContent-Length: 0\r\n\r\n'],
    [
      'a control character in the reason phrase',
      'HTTP/1.1 200 O\x00K\r\nContent-Length: 0\r\n\r\n',
    ],
    [
      'Transfer-Encoding with Content-Length',
      'HTTP/1.1 200 OK\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n',
    ],
  ])('refuses %s', (_name, input) => {
    expect(() => responses(input)).toThrow(Http1ParseError);
  });
});

describe('forwardHeaderLines', () => {
  /** The head of a request with these lines after its request line, as the parser reads it. */
  const head = (...lines: string[]): RequestHead =>
    (
      requests(
        `GET / HTTP/1.1\r\n${lines.map((l) => `${l}\r\n`).join('')}\r\n`,
      )[0] as Message<RequestHead>
    ).head;

  it('drops hop-by-hop headers and those Connection names, and adds the proxy own', () => {
    const lines = forwardHeaderLines(
      head(
        'Host: a',
        'Connection: keep-alive, X-Hop',
        'X-Hop: 1',
        'Keep-Alive: timeout=5',
        'TE: trailers',
        'X-Forwarded-Client-Cert: forged',
        'X-Keep: yes',
      ),
      {
        remove: new Set(['x-forwarded-client-cert']),
        add: [['x-request-id', 'r1', 'x-b', '2'], [], ['x-envoy-attempt-count', '1']],
        connection: null,
      },
    );
    expect(lines).toBe(
      'Host: a\r\nX-Keep: yes\r\nx-request-id: r1\r\nx-b: 2\r\nx-envoy-attempt-count: 1\r\n',
    );
  });

  it('reads a Connection of one token (any case) and one naming a header in two lines alike', () => {
    const lines = forwardHeaderLines(
      head(
        ...['Host: a', 'Connection: Keep-Alive', 'X-Kept: 1', 'Connection: CLOSE'],
        ...['Connection: x-hop', 'X-Hop: 2', 'Connection: keep-alive-x', 'Keep-Alive-X: 3'],
      ),
      { connection: 'close' },
    );
    expect(lines).toBe('Host: a\r\nX-Kept: 1\r\nConnection: close\r\n');
  });

  it('matches hop-by-hop, removed and Connection-named headers whatever their case', () => {
    const lines = forwardHeaderLines(
      head(
        ...['HOST: a', 'CONNECTION: x-HOP', 'X-hop: 1', 'KEEP-ALIVE: t'],
        ...['x-forwarded-CLIENT-cert: forged', 'X-Hope: kept', 'Proxy-Connection: x'],
      ),
      { remove: new Set(['x-forwarded-client-cert']), connection: 'keep-alive' },
    );
    expect(lines).toBe('HOST: a\r\nX-Hope: kept\r\nConnection: keep-alive\r\n');
  });

  it('drops the names of a removal set given in any case, and only those', () => {
    const lines = forwardHeaderLines(head('Host: a', 'x-drop: 1', 'X-Dropped: 2', 'X-DROP: 3'), {
      remove: new Set(['X-Drop']),
      connection: null,
    });
    expect(lines).toBe('Host: a\r\nX-Dropped: 2\r\n');
  });

  it('does not take a name for another that differs only outside the letters (^ and ~)', () => {
    const lines = forwardHeaderLines(head('Host: a', 'x^: 1', 'x~: 2'), {
      remove: new Set(['x~']),
      connection: null,
    });
    expect(lines).toBe('Host: a\r\nx^: 1\r\n');
  });

  it('reads the names Connection lists once, as the head is parsed, without the proxy own tokens', () => {
    const h = head('Host: a', 'Connection: Keep-Alive, X-A , ,x-b', 'Connection: close, UPGRADE');
    expect([...(h.connectionNamed?.names ?? [])]).toEqual(['x-a', 'x-b']);
    expect(head('Host: a', 'Connection: keep-alive').connectionNamed).toBeNull();
  });

  it('keeps Upgrade and sets Connection for an upgrade', () => {
    const lines = forwardHeaderLines(head('Host: a', 'Upgrade: websocket', 'Connection: Upgrade'), {
      connection: 'upgrade',
      upgrade: 'websocket',
    });
    expect(lines).toBe('Host: a\r\nUpgrade: websocket\r\nConnection: upgrade\r\n');
  });

  it('makes no h2c upgrade, as Envoy: the request goes on as HTTP/1.1 without its upgrade headers', () => {
    // HTTP2-Settings dropped even when Connection does not name it.
    for (const connection of ['Upgrade, HTTP2-Settings', 'Upgrade']) {
      const h = head('Host: a', `Connection: ${connection}`, 'Upgrade: h2c', 'HTTP2-Settings: AAM');
      expect(h.upgrade).toBeNull();
      expect(forwardHeaderLines(h, { connection: null })).toBe('Host: a\r\n');
    }
  });

  it('copies the lines it keeps as they came, whichever lines around them it drops', () => {
    const remove = new Set(['x-drop']);
    const kept = ['Host:  a ', 'X-A:\tb\tc', 'x-b:d'];
    const all = (...l: string[]): string =>
      forwardHeaderLines(head(...l), { remove, connection: null });
    // the first line, the last, two in a row, a kept line between two dropped ones
    expect(all('X-Drop: 1', ...kept)).toBe(`${kept.join('\r\n')}\r\n`);
    expect(all(...kept, 'X-Drop: 1')).toBe(`${kept.join('\r\n')}\r\n`);
    expect(
      all(kept[0] as string, 'X-Drop: 1', 'Connection: close', kept[1] as string, 'x-b:d'),
    ).toBe(`${kept.join('\r\n')}\r\n`);
    expect(all('X-Drop: 1', kept[0] as string, 'X-Drop: 2', kept[1] as string, 'X-Drop: 3')).toBe(
      `${kept[0] as string}\r\n${kept[1] as string}\r\n`,
    );
    // nothing kept, nothing dropped
    expect(
      forwardHeaderLines(head('Host: a', 'X-Drop: 1'), {
        remove: new Set(['host', 'x-drop']),
        connection: null,
      }),
    ).toBe('');
    expect(all(...kept)).toBe(`${kept.join('\r\n')}\r\n`);
  });

  it('forwards a head without header lines (HTTP/1.0) with only what it adds', () => {
    const h = (requests('GET / HTTP/1.0\r\n\r\n')[0] as Message<RequestHead>).head;
    expect(forwardHeaderLines(h, { add: [['x-request-id', 'r1']], connection: 'keep-alive' })).toBe(
      'Connection: keep-alive\r\nx-request-id: r1\r\n',
    );
  });
});

describe('the character classes of a head (loops over char codes)', () => {
  const every = Array.from({ length: 256 }, (_, c) => String.fromCharCode(c));
  const TCHARS = "!#$%&'*+-.^_`|~";
  const isAlnum = (c: string): boolean =>
    (c >= '0' && c <= '9') || (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z');

  it('takes as a token character exactly the tchars of RFC 9110 5.6.2', () => {
    const tokens = every.filter((c) => isToken(`a${c}z`));
    expect(tokens.join('')).toBe(every.filter((c) => isAlnum(c) || TCHARS.includes(c)).join(''));
    expect(isToken('')).toBe(false);
    expect(isToken('Content-Type')).toBe(true);
    expect(isToken('x\u0100')).toBe(false);
  });

  it('refuses in a value every control character but tab, and DEL; keeps obs-text', () => {
    const bad = every.filter((c) => hasBadValueChar(`ok ${c} ok`)).map((c) => c.charCodeAt(0));
    const expected = [...Array.from({ length: 32 }, (_, i) => i).filter((i) => i !== 9), 0x7f];
    expect(bad).toEqual(expected);
    expect(hasBadValueChar('')).toBe(false);
  });

  it('finds an LF without its CR anywhere in a head', () => {
    expect(hasBareLf('GET / HTTP/1.1\r\nHost: a\r\nX: 1')).toBe(false);
    expect(hasBareLf('\nGET / HTTP/1.1')).toBe(true);
    expect(hasBareLf('GET / HTTP/1.1\r\nHost: a\nX: 1')).toBe(true);
    expect(hasBareLf('GET / HTTP/1.1\r\nX: 1\r\n\n')).toBe(true);
  });

  it('answers a response with a status code that is not three digits from 100 as a parse error', () => {
    for (const code of ['099', '1000', '20x', ' 20', '2']) {
      expect(() => frame('response', `HTTP/1.1 ${code} X\r\nContent-Length: 0\r\n\r\n`)).toThrow(
        Http1ParseError,
      );
    }
    expect(
      frame<ResponseHead>('response', 'HTTP/1.1 100 Continue\r\n\r\n')[0]?.head.statusCode,
    ).toBe(100);
  });

  it('refuses a request target with a control character, a space or DEL', () => {
    for (const c of ['\x00', '\x1f', ' ', '\x7f']) {
      expect(() => frame('request', `GET /a${c}b HTTP/1.1\r\nHost: a\r\n\r\n`)).toThrow(
        Http1ParseError,
      );
    }
    expect(frame('request', 'GET /a\x80b HTTP/1.1\r\nHost: a\r\n\r\n')).toHaveLength(1);
  });
});
