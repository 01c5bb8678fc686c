import { createHash } from 'node:crypto';
import net from 'node:net';
import tls from 'node:tls';
import { ALPN } from '../../../src/agent/proxy/core/identity';
import {
  newUpstreamEndpoint,
  type UpstreamEndpoint,
} from '../../../src/agent/proxy/core/endpoints';
import { dial } from '../../../src/agent/proxy/l4/dial';
import { createTlsContexts, MESH_TLS } from '../../../src/agent/proxy/l4/tls';
import { spiffe } from '../../fixtures/mesh';
import { workloadCredentials } from '../../fixtures/sidecars';

// How a dialled mesh TLS socket reads (l4/read-copies.ts), over real loopback sockets: a sidecar
// (a TLS server with its own workload certificate) and, beside it, a plain echo server whose
// reads alternate with the TLS ones, as an app's requests do in an outbound sidecar.

const client = createTlsContexts(workloadCredentials('caller'), new Date());
const callee = workloadCredentials('callee');
const closers: Array<() => void> = [];

afterEach(() => {
  for (const close of closers.splice(0)) close();
});

/** A sidecar stand-in: `onSocket` gets each verified connection. */
async function tlsServer(onSocket: (s: tls.TLSSocket) => void): Promise<number> {
  const srv = tls.createServer(
    {
      key: callee.keyPem,
      cert: callee.chainPem,
      ca: [...callee.roots],
      requestCert: true,
      rejectUnauthorized: true,
      ALPNProtocols: [ALPN.tcp],
      ...MESH_TLS,
    },
    (s) => {
      s.on('error', () => {});
      closers.push(() => s.destroy());
      onSocket(s);
    },
  );
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r));
  closers.push(() => srv.close());
  return (srv.address() as net.AddressInfo).port;
}

const endpoint = (port: number): UpstreamEndpoint =>
  newUpstreamEndpoint(
    {
      address: '127.0.0.1',
      ports: {},
      ready: true,
      identity: spiffe('callee'),
      workload: null,
      pod: null,
    },
    port,
    'mesh',
  );

function dialMesh(port: number): Promise<net.Socket> {
  return new Promise((resolve, reject) => {
    dial(
      { endpoint: endpoint(port), alpn: ALPN.tcp, tls: client, connectTimeoutMs: 2_000 },
      (err, socket) => {
        if (err !== null || socket === null) {
          reject(err ?? new Error('no socket'));
          return;
        }
        closers.push(() => socket.destroy());
        resolve(socket);
      },
    );
  });
}

const nextChunk = (s: net.Socket): Promise<Buffer> =>
  new Promise((resolve) => s.once('data', resolve));

describe("a dialled mesh TLS socket's reads", () => {
  it("are copies at their size, not views that each keep one of Node's 64 KiB read slabs", async () => {
    const port = await tlsServer((s) => s.on('data', (d) => s.write(d)));
    const echo = net.createServer((s) => {
      s.on('error', () => {});
      s.on('data', (d) => s.write(d));
      closers.push(() => s.destroy());
    });
    await new Promise<void>((r) => echo.listen(0, '127.0.0.1', r));
    closers.push(() => echo.close());
    const plain = net.connect((echo.address() as net.AddressInfo).port, '127.0.0.1');
    closers.push(() => plain.destroy());
    await new Promise((r) => plain.once('connect', r));
    const mesh = await dialMesh(port);

    // A plain read, then a TLS one, a hundred times; every TLS chunk kept, as a proxy keeps a
    // chunk while the other side is slow.
    const kept: Buffer[] = [];
    for (let i = 0; i < 100; i++) {
      const p = nextChunk(plain);
      plain.write('p');
      await p;
      const t = nextChunk(mesh);
      mesh.write(`t${i % 10}`);
      kept.push(await t);
    }
    expect(kept.map((c) => c.toString()).join('')).toBe(
      Array.from({ length: 100 }, (_, i) => `t${i % 10}`).join(''),
    );
    // The memory behind the kept chunks: views of Node's slabs would hold one slab each
    // (100 x 64 KiB); copies share Buffer's pool, a slab or two of it.
    const behind = [...new Set(kept.map((c) => c.buffer))].reduce((n, b) => n + b.byteLength, 0);
    expect(behind).toBeLessThan(1024 * 1024);
  });

  it('keeps what the endpoint sends before the caller listens, and delivers it in order', async () => {
    const port = await tlsServer((s) => {
      for (let i = 0; i < 5; i++) s.write(`first-${i};`);
    });
    const mesh = await dialMesh(port);
    await new Promise((r) => setTimeout(r, 100));
    let got = '';
    mesh.on('data', (d: Buffer) => (got += d.toString()));
    const deadline = Date.now() + 2_000;
    while (got.length < 'first-0;'.length * 5 && Date.now() < deadline) {
      await new Promise((r) => setTimeout(r, 5));
    }
    expect(got).toBe('first-0;first-1;first-2;first-3;first-4;');
  });

  it('stops reading while the caller does not read, and then delivers every byte intact, and the end', async () => {
    const total = 8 * 1024 * 1024;
    const body = Buffer.alloc(total);
    for (let i = 0; i < total; i += 4) body.writeUInt32BE(i, i);
    const port = await tlsServer((s) => s.end(body));
    const mesh = await dialMesh(port);
    const first = await nextChunk(mesh);
    mesh.pause();
    await new Promise((r) => setTimeout(r, 300));
    // Paused, the socket holds what came before Node stopped reading: its high-water mark and
    // the reads in flight, not the 8 MiB the endpoint has sent.
    expect(mesh.readableLength).toBeLessThan(1024 * 1024);
    const parts: Buffer[] = [first];
    const ended = new Promise((r) => mesh.once('end', r));
    mesh.on('data', (d: Buffer) => parts.push(d));
    mesh.resume();
    await ended;
    const received = Buffer.concat(parts);
    expect(received.length).toBe(total);
    expect(createHash('sha256').update(received).digest('hex')).toBe(
      createHash('sha256').update(body).digest('hex'),
    );
  });
});
