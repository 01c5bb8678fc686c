// `mooring serve` (dist/) with inject threads against the same server with none: the real
// thread script answers every admission fixture byte for byte like the event loop, over TLS
// pinned to the trust bundle, and the thread shows in /metrics.

import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  buildDist,
  httpGet,
  httpsCall,
  readyPorts,
  spawnLocalServe,
  type Spawned,
} from './serve-helpers';

const ROOT = join(__dirname, '..', '..');
const FIXTURES = join(ROOT, 'test', 'fixtures', 'admission');

beforeAll(buildDist, 120_000);

interface Running {
  readonly spawned: Spawned;
  readonly webhook: number;
  readonly admin: number;
  readonly ca: string;
}

describe('mooring serve --inject-threads', () => {
  let dir: string;
  const running: Spawned[] = [];

  async function serve(name: string, threads: string): Promise<Running> {
    const store = join(dir, name);
    const spawned = spawnLocalServe(store, '--inject-threads', threads);
    running.push(spawned);
    const ports = await readyPorts(spawned);
    return { spawned, ...ports, ca: readFileSync(join(store, 'root-cert.pem'), 'utf8') };
  }

  const post = (server: Running, body: string) =>
    httpsCall({
      port: server.webhook,
      ca: server.ca,
      method: 'POST',
      path: '/inject',
      headers: { 'content-type': 'application/json' },
      body,
    });

  const metric = async (server: Running, name: string): Promise<number> => {
    const { body } = await httpGet(server.admin, '/metrics');
    const line = body.split('\n').find((l) => l.startsWith(`${name} `));
    return Number(line?.split(' ')[1]);
  };

  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), 'mooring-threads-'));
  });
  afterEach(async () => {
    for (const s of running.splice(0)) {
      s.child.kill('SIGTERM');
      await s.exit;
    }
    rmSync(dir, { recursive: true, force: true });
  });

  it('answers every admission fixture exactly like the event loop does', async () => {
    const [threaded, inline] = await Promise.all([serve('a', '2'), serve('b', '0')]);
    expect(await metric(threaded, 'mooring_inject_threads')).toBe(2);
    expect(await metric(inline, 'mooring_inject_threads')).toBe(0);

    const fixtures = readdirSync(FIXTURES).filter((f) => f.endsWith('.json'));
    expect(fixtures.length).toBeGreaterThan(5);
    const bodies = [
      ...fixtures.map((f) => readFileSync(join(FIXTURES, f), 'utf8')),
      '{"apiVersion": ',
      '{"__proto__": {"x": 1}}',
      '',
    ];
    let injected = 0;
    for (const body of bodies) {
      const [a, b] = await Promise.all([post(threaded, body), post(inline, body)]);
      expect({ status: a.status, body: a.body }).toEqual({ status: b.status, body: b.body });
      if (a.body.includes('"patchType":"JSONPatch"')) injected += 1;
    }
    expect(injected).toBeGreaterThan(0);
    expect(await metric(threaded, 'mooring_inject_thread_restarts_total')).toBe(0);
  }, 60_000);

  it('keeps answering reviews sent all at once over many connections', async () => {
    const server = await serve('c', '1');
    const body = readFileSync(join(FIXTURES, 'pod-create-8k.json'), 'utf8');
    const uid = (JSON.parse(body) as { request: { uid: string } }).request.uid;
    const answers = await Promise.all(Array.from({ length: 64 }, () => post(server, body)));
    for (const answer of answers) {
      expect(answer.status).toBe(200);
      const { response } = JSON.parse(answer.body) as {
        response: { uid: string; allowed: boolean; patch?: string };
      };
      expect(response).toMatchObject({ uid, allowed: true });
      expect(response.patch).toBeDefined();
    }
  }, 60_000);
});
