import http from 'node:http';
import {
  closeServer,
  createProxyAdminServer,
  listenOn,
  MEMORY_PATH,
} from '../../../src/agent/proxy/admin';

function get(port: number, path: string): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    http
      .get({ host: '127.0.0.1', port, path }, (res) => {
        let body = '';
        res.setEncoding('utf8').on('data', (c: string) => (body += c));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
      })
      .on('error', reject);
  });
}

describe('the proxy admin port', () => {
  let server: http.Server;
  let port: number;
  beforeAll(async () => {
    server = createProxyAdminServer({ configDump: () => ({}), ready: () => true });
    port = (await listenOn(server, '127.0.0.1', 0)).port;
  });
  afterAll(() => closeServer(server));

  it('tells where the memory is on /memory: V8 heap by space, Buffers, handles by kind', async () => {
    const res = await get(port, MEMORY_PATH);
    expect(res.status).toBe(200);
    const m = JSON.parse(res.body) as {
      rss: number;
      heapUsed: number;
      heapTotal: number;
      external: number;
      arrayBuffers: number;
      maxRss: number;
      heapSpaces: Record<string, { size: number; used: number }>;
      handles: Record<string, number>;
    };
    expect(m.heapUsed).toBeGreaterThan(0);
    expect(m.heapUsed).toBeLessThanOrEqual(m.heapTotal);
    expect(m.arrayBuffers).toBeLessThanOrEqual(m.external);
    expect(m.maxRss).toBeGreaterThanOrEqual(m.heapTotal);
    expect(m.heapSpaces.old_space?.used).toBeGreaterThan(0);
    expect(m.heapSpaces.new_space?.size).toBeGreaterThan(0);
    // The server itself and the request being answered are open handles.
    expect(m.handles.TCPServerWrap).toBeGreaterThanOrEqual(1);
    expect(m.handles.TCPSocketWrap).toBeGreaterThanOrEqual(1);
  });
});
