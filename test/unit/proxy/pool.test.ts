import net from 'node:net';
import {
  ConnectionPool,
  MAX_DIALS_PER_KEY,
  type ConnectionEvents,
  type ConnectionWaiter,
  type UpstreamConnection,
} from '../../../src/agent/proxy/l7/pool';

// The pool over real loopback sockets: a server that keeps every connection it accepts.
let server: net.Server;
let port = 0;
const accepted: net.Socket[] = [];
const clients: net.Socket[] = [];

beforeAll(async () => {
  server = net.createServer((s) => {
    accepted.push(s);
    s.on('error', () => {});
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  port = (server.address() as net.AddressInfo).port;
});

afterEach(() => {
  for (const s of [...accepted.splice(0), ...clients.splice(0)]) s.destroy();
});

afterAll(() => new Promise<void>((r) => server.close(() => r())));

async function connect(): Promise<net.Socket> {
  const s = net.connect(port, '127.0.0.1');
  clients.push(s);
  await new Promise<void>((resolve, reject) => {
    s.once('connect', resolve);
    s.once('error', reject);
  });
  return s;
}

const events: ConnectionEvents = {
  onHead: () => {},
  onBody: () => {},
  onMessageEnd: () => {},
  onUpstreamClose: () => {},
  onReadDone: () => {},
};

/** New connections the pool adopts for `keys`, each leased (as a request's). */
async function leased(pool: ConnectionPool, ...keys: string[]): Promise<UpstreamConnection[]> {
  const conns: UpstreamConnection[] = [];
  for (const key of keys) {
    const conn = pool.adopt(await connect(), key);
    conn.lease(events);
    conns.push(conn);
  }
  return conns;
}

/** Resolves once the pool has seen the connection close. */
async function closed(conn: UpstreamConnection): Promise<void> {
  while (!conn.closed) await sleep(5);
}
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

describe('the upstream connection pool', () => {
  it('reuses a released connection, and counts what it opened and reused', async () => {
    const pool = new ConnectionPool({ idleTimeoutMs: 10_000, maxIdlePerKey: 4 });
    const socket = await connect();
    const conn = pool.adopt(socket, 'e1');
    conn.lease(events);
    conn.release();
    expect(pool.take('e2')).toBeNull();
    const again = pool.take('e1');
    expect(again).toBe(conn);
    expect(again?.socket).toBe(socket);
    expect(pool.take('e1')).toBeNull();
    const stats = pool.stats();
    expect(stats).toMatchObject({ opened: 1, reused: 1, open: 1, idle: 0 });
  });

  it('closes a connection idle for its timeout, but not one leased across it', async () => {
    const pool = new ConnectionPool({ idleTimeoutMs: 150, maxIdlePerKey: 4 });
    const kept = pool.adopt(await connect(), 'e');
    const idle = pool.adopt(await connect(), 'e');
    for (const c of [kept, idle]) {
      c.lease(events);
      c.release();
    }
    // The most recently released is taken first: `idle` is leased through its timer.
    expect(pool.take('e')).toBe(idle);
    idle.lease(events);
    await closed(kept);
    await sleep(100);
    expect(idle.closed).toBe(false);
    expect(pool.stats().closed.idleTimeout).toBe(1);
    // Released again, its timer starts over, and it closes once idle for the whole timeout.
    idle.release();
    const since = Date.now();
    await closed(idle);
    expect(Date.now() - since).toBeGreaterThanOrEqual(140);
    expect(pool.stats()).toMatchObject({ open: 0, idle: 0 });
    expect(pool.stats().closed).toMatchObject({ idleTimeout: 2, peer: 0 });
  });

  it("takes a connection's own idle timeout over the pool's, 0 keeping it for ever (a DestinationRule's http.idleTimeout)", async () => {
    const pool = new ConnectionPool({ idleTimeoutMs: 10_000, maxIdlePerKey: 4 });
    const short = pool.adopt(await connect(), 'e');
    const never = pool.adopt(await connect(), 'e');
    short.idleTimeoutMs = 100;
    never.idleTimeoutMs = 0;
    const poolLong = new ConnectionPool({ idleTimeoutMs: 100, maxIdlePerKey: 4 });
    const forever = poolLong.adopt(await connect(), 'f');
    forever.idleTimeoutMs = 0;
    for (const c of [short, never, forever]) {
      c.lease(events);
      c.release();
    }
    await closed(short);
    await sleep(200);
    expect([never.closed, forever.closed]).toEqual([false, false]);
    never.close('shutdown');
    forever.close('shutdown');
  });

  it('keeps at most maxIdlePerKey idle connections per endpoint, and counts the rest as overflow', async () => {
    const pool = new ConnectionPool({ idleTimeoutMs: 10_000, maxIdlePerKey: 1 });
    const [a, b, c] = (await leased(pool, 'e', 'e', 'other')) as [
      UpstreamConnection,
      UpstreamConnection,
      UpstreamConnection,
    ];
    for (const conn of [a, b, c]) conn.release();
    await closed(b);
    expect(a.closed).toBe(false);
    expect(pool.stats()).toMatchObject({ opened: 3, open: 2, idle: 2 });
    expect(pool.stats().closed.overflow).toBe(1);
  });

  it('tells a close by the peer from its own (a discarded connection, a shutdown)', async () => {
    const pool = new ConnectionPool({ idleTimeoutMs: 10_000, maxIdlePerKey: 4 });
    const [byPeer, discarded, atShutdown] = (await leased(pool, 'e', 'e', 'e')) as [
      UpstreamConnection,
      UpstreamConnection,
      UpstreamConnection,
    ];
    byPeer.release();
    atShutdown.release();
    discarded.discard();
    // The server ends the first connection it accepted (byPeer's).
    accepted[0]?.end();
    await closed(byPeer);
    await closed(discarded);
    pool.closeIdle();
    await closed(atShutdown);
    expect(pool.stats().closed).toEqual({
      peer: 1,
      error: 0,
      idleTimeout: 0,
      overflow: 0,
      discarded: 1,
      unexpectedData: 0,
      maxDuration: 0,
      shutdown: 1,
    });
    expect(pool.stats()).toMatchObject({ open: 0, idle: 0 });
  });

  it('closes, instead of handing it out, an idle connection older than the maximum age asked', async () => {
    const pool = new ConnectionPool({ idleTimeoutMs: 10_000, maxIdlePerKey: 4 });
    const [conn] = (await leased(pool, 'e')) as [UpstreamConnection];
    conn.release();
    await new Promise((r) => setTimeout(r, 60));
    // Young enough for 10 s: handed out again.
    expect(pool.take('e', 10_000)).toBe(conn);
    conn.release();
    expect(pool.take('e', 50)).toBeNull();
    await closed(conn);
    expect(pool.stats().closed.maxDuration).toBe(1);
  });

  it('drops an idle connection that receives bytes nobody asked for', async () => {
    const pool = new ConnectionPool({ idleTimeoutMs: 10_000, maxIdlePerKey: 4 });
    const conn = pool.adopt(await connect(), 'e');
    conn.lease(events);
    conn.release();
    accepted[0]?.write('HTTP/1.1 408 Request Timeout\r\n\r\n');
    await closed(conn);
    expect(pool.take('e')).toBeNull();
    expect(pool.stats().closed.unexpectedData).toBe(1);
  });

  it('paces dials per endpoint: beyond MAX_DIALS_PER_KEY a request waits, in order, for a connection that comes free or a dial that ends', async () => {
    const pool = new ConnectionPool({ idleTimeoutMs: 10_000, maxIdlePerKey: 4 });
    for (let i = 0; i < MAX_DIALS_PER_KEY; i++) {
      expect(pool.mayDial('e')).toBe(true);
      pool.dialStarted('e');
    }
    expect(pool.mayDial('e')).toBe(false);
    expect(pool.mayDial('other')).toBe(true);
    const woken: string[] = [];
    const waiter = (name: string): ConnectionWaiter => ({
      wake: (conn) => woken.push(`${name}:${conn === null ? 'dial' : 'conn'}`),
    });
    const [w1, w2, w3] = [waiter('w1'), waiter('w2'), waiter('w3')];
    pool.wait('e', w1);
    pool.wait('e', w2);
    pool.wait('e', w3);
    pool.cancelWait('e', w2);
    // A connection released for 'e' goes to the first waiting request, not to the idle list.
    const conn = pool.adopt(await connect(), 'e');
    conn.lease(events);
    conn.release();
    expect(woken).toEqual(['w1:conn']);
    expect(pool.stats()).toMatchObject({ idle: 0, waiting: 1, waited: 3, reused: 1 });
    // A dial that ends makes room for the next one to dial.
    pool.dialEnded('e');
    expect(woken).toEqual(['w1:conn', 'w3:dial']);
    expect(pool.stats()).toMatchObject({ dialing: MAX_DIALS_PER_KEY - 1, waiting: 0 });
    expect(pool.mayDial('e')).toBe(true);
    // Room that a woken request does not use goes on to the next one waiting.
    const w4 = waiter('w4');
    pool.wait('e', w4);
    pool.passOn('e');
    expect(woken).toEqual(['w1:conn', 'w3:dial', 'w4:dial']);
    pool.passOn('e');
    expect(woken).toHaveLength(3);
    // Nobody waits: a released connection is idle again.
    conn.lease(events);
    conn.release();
    expect(pool.stats().idle).toBe(1);
  });
});
