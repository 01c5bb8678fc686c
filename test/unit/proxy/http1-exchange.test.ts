// HTTP/1.1 exchanges through the proxy's mechanics. How many writes a message makes: a head and the
// body bytes that came with it in one read leave in one write (one TLS record between sidecars, one
// system call), a request on its way upstream (on a connection opened for it or found in the pool)
// as a response on its way back; a head that came alone is not held back waiting for its body. And
// a pooled connection the app closes as a request reaches it: the request goes again on a new one.

import net from 'node:net';
import { ALPN } from '../../../src/agent/proxy/core/identity';
import { newUpstreamEndpoint } from '../../../src/agent/proxy/core/endpoints';
import { forwardPlan } from '../../../src/agent/proxy/l7/exchange-plan';
import {
  Http1Downstream,
  type ExchangeRecord,
  type Http1Handler,
} from '../../../src/agent/proxy/l7/http1-proxy';
import { ConnectionPool } from '../../../src/agent/proxy/l7/pool';
import { endpoint as fixtureEndpoint } from '../../fixtures/mesh';

type WriteMethod = (this: net.Socket, ...args: unknown[]) => unknown;

/** Writes made on sockets whose peer is `match` (Writable's _write and _writev, each one write). */
function countWrites(match: (s: net.Socket) => boolean): {
  readonly count: () => number;
  readonly restore: () => void;
} {
  const proto = net.Socket.prototype as unknown as Record<'_write' | '_writev', WriteMethod>;
  const original = { _write: proto._write, _writev: proto._writev };
  let n = 0;
  for (const name of ['_write', '_writev'] as const) {
    const write = original[name];
    proto[name] = function (this: net.Socket, ...args: unknown[]): unknown {
      if (match(this)) n++;
      return write.apply(this, args);
    };
  }
  return {
    count: () => n,
    restore: () => Object.assign(proto, original),
  };
}

/** Waits for `done`, failing after 5 s (a test that fails does not hang the run). */
const until = async (done: () => boolean): Promise<void> => {
  const deadline = Date.now() + 5000;
  while (!done()) {
    if (Date.now() > deadline) throw new Error('not done within 5 s');
    await new Promise((r) => setTimeout(r, 5));
  }
};

describe('HTTP/1.1 exchanges: their writes, and a pooled connection closed under a request', () => {
  let app: net.Server;
  let port: number;
  /** What the app received, per request (it answers once it has the whole body). */
  const received: string[] = [];
  /** `/slow`: the head of the answer now, its body once `sendBody` is called. */
  let sendBody: (() => void) | null = null;

  let proxy: net.Server;
  let pool: ConnectionPool;
  let client: net.Socket;
  /** What the client received. */
  let answer = '';
  /** What the handler learnt of each exchange. */
  const records: ExchangeRecord[] = [];

  beforeAll(async () => {
    app = net.createServer((s) => {
      let text = '';
      let served = 0;
      s.on('data', (d: Buffer) => {
        text += d.toString('latin1');
        const end = text.indexOf('\r\n\r\n');
        const length = Number(/content-length: (\d+)/i.exec(text)?.[1] ?? 0);
        if (end === -1 || text.length < end + 4 + length) return;
        const request = text.slice(0, end + 4 + length);
        received.push(request);
        text = text.slice(end + 4 + length);
        // `/stale`: a kept-alive connection closed as the request arrives (an idle timeout's race).
        if (request.startsWith('GET /stale ') && served > 0) {
          s.destroy();
          return;
        }
        served++;
        if (request.startsWith('GET /malformed ')) {
          // Two Content-Lengths that differ: no proxy may guess which one frames the body.
          s.write('HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\nok');
        } else if (request.startsWith('GET /slow ')) {
          s.write('HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\n');
          sendBody = () => s.write('late');
        } else {
          s.write('HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok');
        }
      });
    });
    await new Promise<void>((r) => app.listen(0, '127.0.0.1', r));
    port = (app.address() as net.AddressInfo).port;
    const endpoint = newUpstreamEndpoint(
      fixtureEndpoint('127.0.0.1', { [port]: port }),
      port,
      'plain',
    );
    const handler: Http1Handler = {
      plan: () =>
        forwardPlan({
          pick: () => endpoint,
          alpn: ALPN.http1,
          tls: null,
          connectTimeoutMs: 1000,
          removeHeaders: new Set(),
          addHeaders: ['x-added', '1'],
          retries: { attempts: 0, retryOn: [] },
          timeoutMs: null,
          attemptCountHeader: false,
        }),
      finished: (record) => records.push(record),
      refused: (record) => records.push(record),
    };
    pool = new ConnectionPool({ idleTimeoutMs: 10_000, maxIdlePerKey: 4 });
    proxy = net.createServer((s) => new Http1Downstream(s, handler, pool, {}, null, 0));
    await new Promise<void>((r) => proxy.listen(0, '127.0.0.1', r));
    client = net.connect((proxy.address() as net.AddressInfo).port, '127.0.0.1');
    await new Promise((r) => client.once('connect', r));
    client.on('data', (d: Buffer) => (answer += d.toString('latin1')));
  });

  afterAll(async () => {
    client.destroy();
    await new Promise<void>((r) => proxy.close(() => r()));
    pool.closeIdle();
    await new Promise<void>((r) => app.close(() => r()));
  });

  const answers = (): number => answer.split('HTTP/1.1 200').length - 1;

  it('sends a request head and the body read with it in one write, opened or pooled', async () => {
    const writes = countWrites((s) => s.remotePort === port);
    try {
      const perRequest: number[] = [];
      for (const body of ['first', 'second', 'third']) {
        const before = writes.count();
        const n = received.length;
        client.write(
          `POST /p HTTP/1.1\r\nHost: a\r\nContent-Length: ${body.length}\r\n\r\n${body}`,
        );
        await until(() => received.length > n);
        perRequest.push(writes.count() - before);
        await until(() => answers() === received.length);
      }
      // The first request waits for its connection (the body is kept, then sent with the head);
      // the next ones find it in the pool and are written while their read is framed.
      expect(perRequest).toEqual([1, 1, 1]);
      expect(received.slice(-3)).toEqual(
        ['first', 'second', 'third'].map(
          (b) =>
            `POST /p HTTP/1.1\r\nHost: a\r\nContent-Length: ${b.length}\r\nx-added: 1\r\n\r\n${b}`,
        ),
      );
      expect(pool.stats()).toMatchObject({ opened: 1, reused: 2 });
    } finally {
      writes.restore();
    }
  });

  it('answers with the response head and the body read with it in one write', async () => {
    const writes = countWrites((s) => s.remotePort === client.localPort);
    try {
      const perAnswer: number[] = [];
      for (let i = 0; i < 3; i++) {
        const before = writes.count();
        answer = '';
        client.write('GET /p HTTP/1.1\r\nHost: a\r\n\r\n');
        await until(() => answer.endsWith('ok') && answers() === 1);
        perAnswer.push(writes.count() - before);
      }
      expect(perAnswer).toEqual([1, 1, 1]);
      expect(answer).toBe('HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok');
    } finally {
      writes.restore();
    }
  });

  it('sends again, on a new connection, a request whose pooled connection closes before answering', async () => {
    const opened = pool.stats().opened;
    const n = received.length;
    answer = '';
    client.write('GET /stale HTTP/1.1\r\nHost: a\r\n\r\n');
    await until(() => answer.endsWith('ok'));
    expect(answer).toBe('HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok');
    // Received twice: on the pooled connection, which closed, then on a new one.
    expect(received.slice(n).map((r) => r.split('\r\n')[0])).toEqual([
      'GET /stale HTTP/1.1',
      'GET /stale HTTP/1.1',
    ]);
    expect(pool.stats().opened).toBe(opened + 1);
  });

  it('writes a response head that came alone at once, without waiting for its body', async () => {
    answer = '';
    sendBody = null;
    client.write('GET /slow HTTP/1.1\r\nHost: a\r\n\r\n');
    await until(() => answer.includes('\r\n\r\n'));
    expect(answer).toBe('HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\n');
    expect(sendBody).not.toBeNull();
    (sendBody as unknown as () => void)();
    await until(() => answer.endsWith('late'));
    expect(answer).toBe('HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nlate');
  });

  /** Sends `bytes` on a connection of its own; what came back once the proxy ended it. */
  const alone = async (bytes: string): Promise<string> => {
    const other = net.connect((proxy.address() as net.AddressInfo).port, '127.0.0.1');
    let got = '';
    let ended = false;
    other.on('data', (d: Buffer) => (got += d.toString('latin1')));
    other.on('end', () => (ended = true));
    await new Promise((r) => other.once('connect', r));
    other.write(bytes);
    await until(() => ended);
    other.destroy();
    return got;
  };

  it('answers 400 and closes when a request body cannot be framed after its head went on (DPE)', async () => {
    const n = records.length;
    // The head is framed and sent on; the chunk size that follows is not hexadecimal.
    const got = await alone(
      'POST /p HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nabc\r\n',
    );
    expect(got).toMatch(/^HTTP\/1\.1 400 Bad Request\r\n/);
    expect(got).toContain('\r\nconnection: close\r\n');
    expect(records.slice(n).map((r) => [r.status, r.flags])).toEqual([[400, ['DPE']]]);
  });

  it('answers a head over the limit 431 by itself, with no plan, and tells the handler (DPE)', async () => {
    const n = records.length;
    const sent = received.length;
    const got = await alone(`GET /big HTTP/1.1\r\nHost: a\r\nX: ${'a'.repeat(70_000)}\r\n\r\n`);
    expect(got).toMatch(/^HTTP\/1\.1 431 Request Header Fields Too Large\r\n/);
    expect(records.slice(n).map((r) => [r.head, r.status, r.flags])).toEqual([
      [null, 431, ['DPE']],
    ]);
    expect(received.length).toBe(sent);
  });

  it('answers 502 with flag UPE, as Envoy does, to a response that cannot be read', async () => {
    const n = records.length;
    const got = await alone('GET /malformed HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n');
    expect(got).toMatch(/^HTTP\/1\.1 502 Bad Gateway\r\n/);
    expect(got).toMatch(
      /\r\n\r\nupstream connect error or disconnect\/reset before headers\. reset reason: protocol error$/,
    );
    expect(records.slice(n).map((r) => [r.status, r.flags])).toEqual([[502, ['UPE']]]);
  });
});
