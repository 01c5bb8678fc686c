import { createServer } from 'node:net';
import { connect } from 'node:tls';
import { sniff } from '../../../src/agent/proxy/core/sniff';

/** The first bytes a real Node TLS client sends (its ClientHello), captured on a raw server. */
async function clientHello(options: {
  ALPNProtocols?: string[];
  servername?: string;
}): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const server = createServer((socket) => {
      socket.once('data', (d: Buffer) => {
        resolve(d);
        socket.destroy();
        server.close();
      });
    });
    server.listen(0, '127.0.0.1', () => {
      const port = (server.address() as { port: number }).port;
      const c = connect({ host: '127.0.0.1', port, rejectUnauthorized: true, ...options });
      c.on('error', () => {});
    });
    server.on('error', reject);
  });
}

describe('sniff', () => {
  it.each([
    ['GET / HTTP/1.1\r\nHost: a\r\n\r\n', 'http1'],
    ['PROPFIND /x HTTP/1.1\r\n', 'http1'],
    ['GET / HTTP/1.0\r\n', 'http1'],
    ['PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n', 'http2'],
    ['SSH-2.0-OpenSSH_9.2\r\n', 'other'],
    ['\x00\x00\x00\x08', 'other'],
    ['GET /x HTTP/2.0\r\n', 'other'],
    ['get / HTTP/1.1\r\n', 'http1'],
  ])('%j is %s', (text, kind) => {
    expect(sniff(Buffer.from(text, 'latin1')).kind).toBe(kind);
  });

  it.each(['G', 'GET', 'GET /', 'GET /path HT', 'PRI * HTTP', '\x16', '\x16\x03\x01'])(
    'waits for more after %j',
    (text) => {
      expect(sniff(Buffer.from(text, 'latin1')).kind).toBe('more');
    },
  );

  it('reads the ALPN list and the server name of a real ClientHello, byte by byte too', async () => {
    const hello = await clientHello({
      ALPNProtocols: ['mooring/http1', 'h2'],
      servername: 'svc.example',
    });
    expect(sniff(hello)).toEqual({
      kind: 'tls',
      alpn: ['mooring/http1', 'h2'],
      serverName: 'svc.example',
    });
    for (let n = 1; n < hello.length; n += 37)
      expect(sniff(hello.subarray(0, n)).kind).toBe('more');
  });

  it('a ClientHello without ALPN offers nothing', async () => {
    const hello = await clientHello({});
    const s = sniff(hello);
    expect(s.kind).toBe('tls');
    expect(s.kind === 'tls' && s.alpn).toEqual([]);
  });
});
