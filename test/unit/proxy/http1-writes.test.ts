// How many writes a request makes on its way upstream: the head and the body bytes that came with
// it in one read leave in one write (one TLS record between sidecars, one system call), whether
// the connection was waiting in the pool or is opened for the request.

import net from 'node:net';
import { ALPN } from '../../../src/agent/proxy/core/identity';
import { endpointKey, type UpstreamEndpoint } from '../../../src/agent/proxy/core/endpoints';
import { forwardPlan } from '../../../src/agent/proxy/l7/exchange-plan';
import { Http1Downstream, type Http1Handler } from '../../../src/agent/proxy/l7/http1-proxy';
import { ConnectionPool } from '../../../src/agent/proxy/l7/pool';

type WriteMethod = (this: net.Socket, ...args: unknown[]) => unknown;

/** Writes made on sockets to `port` (Writable's _write and _writev, each one write). */
function countWrites(port: number): { readonly count: () => number; readonly restore: () => void } {
  const proto = net.Socket.prototype as unknown as Record<'_write' | '_writev', WriteMethod>;
  const original = { _write: proto._write, _writev: proto._writev };
  let n = 0;
  for (const name of ['_write', '_writev'] as const) {
    const write = original[name];
    proto[name] = function (this: net.Socket, ...args: unknown[]): unknown {
      if (this.remotePort === port) n++;
      return write.apply(this, args);
    };
  }
  return {
    count: () => n,
    restore: () => Object.assign(proto, original),
  };
}

describe('writes of a request to its upstream', () => {
  let app: net.Server;
  let port: number;
  /** What the app received, per request (it answers once it has the whole body). */
  const received: string[] = [];

  beforeAll(async () => {
    app = net.createServer((s) => {
      let text = '';
      s.on('data', (d: Buffer) => {
        text += d.toString('latin1');
        const end = text.indexOf('\r\n\r\n');
        const length = Number(/content-length: (\d+)/i.exec(text)?.[1] ?? 0);
        if (end === -1 || text.length < end + 4 + length) return;
        received.push(text.slice(0, end + 4 + length));
        text = text.slice(end + 4 + length);
        s.write('HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok');
      });
    });
    await new Promise<void>((r) => app.listen(0, '127.0.0.1', r));
    port = (app.address() as net.AddressInfo).port;
  });
  afterAll(() => new Promise<void>((r) => app.close(() => r())));

  it('sends a head and the body that came in the same read in one write, opened or pooled', async () => {
    const endpoint: UpstreamEndpoint = {
      key: endpointKey('127.0.0.1', port, null),
      address: '127.0.0.1',
      port,
      identity: null,
      workload: null,
      pod: null,
      ready: true,
      active: 0,
      attempts: 0,
      failures: 0,
      ejectedUntil: 0,
      ejections: 0,
      consecutive5xx: 0,
      consecutiveGatewayErrors: 0,
    };
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
      finished: () => {},
    };
    const pool = new ConnectionPool({ idleTimeoutMs: 10_000, maxIdlePerKey: 4 });
    const proxy = net.createServer((s) => new Http1Downstream(s, handler, pool, {}, null));
    await new Promise<void>((r) => proxy.listen(0, '127.0.0.1', r));
    const client = net.connect((proxy.address() as net.AddressInfo).port, '127.0.0.1');
    await new Promise((r) => client.once('connect', r));
    const answers: string[] = [];
    client.on('data', (d: Buffer) => answers.push(d.toString('latin1')));
    const writes = countWrites(port);
    try {
      const post = (body: string) =>
        `POST /p HTTP/1.1\r\nHost: a\r\nContent-Length: ${body.length}\r\n\r\n${body}`;
      const perRequest: number[] = [];
      for (const body of ['first', 'second', 'third']) {
        const before = writes.count();
        const n = received.length;
        client.write(post(body));
        while (received.length === n) await new Promise((r) => setTimeout(r, 5));
        perRequest.push(writes.count() - before);
        while (answers.join('').split('HTTP/1.1 200').length - 1 < received.length) {
          await new Promise((r) => setTimeout(r, 5));
        }
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
      client.destroy();
      await new Promise<void>((r) => proxy.close(() => r()));
      pool.closeIdle();
    }
  });
});
