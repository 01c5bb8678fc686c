import http from 'node:http';
import {
  closeServer,
  createProxyAdminServer,
  listenOn,
  LOGGING_PATH,
  MEMORY_PATH,
} from '../../../src/agent/proxy/admin';

function get(
  port: number,
  path: string,
  method = 'GET',
): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    http
      .request({ host: '127.0.0.1', port, path, method }, (res) => {
        let body = '';
        res.setEncoding('utf8').on('data', (c: string) => (body += c));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
      })
      .on('error', reject)
      .end();
  });
}

describe('the proxy admin port', () => {
  let server: http.Server;
  let port: number;
  const logger = { level: 'info' };
  beforeAll(async () => {
    server = createProxyAdminServer({ configDump: () => ({}), ready: () => true, logger });
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

  it("reads the log level on GET /logging and sets it with POST ?level= (Envoy's names too)", async () => {
    const listing = (l: string) => ({ status: 200, body: `active loggers:\n  mooring: ${l}\n` });
    expect(await get(port, LOGGING_PATH)).toEqual(listing('info'));
    // GET reads only, as Envoy's admin: a change is a POST.
    expect(await get(port, `${LOGGING_PATH}?level=debug`)).toEqual(listing('info'));
    expect(await get(port, `${LOGGING_PATH}?level=debug`, 'POST')).toEqual(listing('debug'));
    expect(logger.level).toBe('debug');
    expect(await get(port, `${LOGGING_PATH}?level=warning`, 'POST')).toEqual(listing('warn'));
    expect(await get(port, `${LOGGING_PATH}?level=off`, 'POST')).toEqual(listing('off'));
    expect(logger.level).toBe('silent');
    const bad = await get(port, `${LOGGING_PATH}?level=loud`, 'POST');
    expect([bad.status, bad.body]).toEqual([400, expect.stringContaining("unknown level 'loud'")]);
    expect((await get(port, LOGGING_PATH, 'POST')).status).toBe(400);
    expect(logger.level).toBe('silent');
    // POST changes nothing else.
    expect((await get(port, '/config_dump', 'POST')).status).toBe(405);
  });
});
