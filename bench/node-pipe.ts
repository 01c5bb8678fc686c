// The floor of a proxy pair written on Node.js, for bench/pods.ts: what Node itself costs to carry
// the same requests with the same mutual TLS, with nothing of a proxy's own work. A takes plain
// TCP and opens one mutual TLS 1.3 connection to B per connection it accepts; B accepts them and
// opens one plain connection to the app for each. Bytes go through as they come ('data', then
// write), both ways: no HTTP parsing, no routing, no pool, no metrics. One process per side.
//
//   node node-pipe.js '{"role":"a","listen":"127.0.0.1:18081","target":"10.0.0.2:8444","files":{...}}'

import { readFileSync } from 'node:fs';
import net from 'node:net';
import tls from 'node:tls';
import type { MtlsFiles } from './nginx';

interface Setup {
  /** a: plain in, TLS out; b: TLS in (a client certificate required), plain out. */
  readonly role: 'a' | 'b';
  readonly listen: string;
  readonly target: string;
  readonly files: MtlsFiles;
}

const setup = JSON.parse(process.argv[2] ?? '{}') as Setup;
const hostPort = (s: string): { host: string; port: number } => {
  const i = s.lastIndexOf(':');
  return { host: s.slice(0, i), port: Number(s.slice(i + 1)) };
};
const listen = hostPort(setup.listen);
const target = hostPort(setup.target);
// Read once: a connection costs the pipe its handshake, not a read of the files as well.
const [root, clientCert, clientKey, serverCert, serverKey] = [
  setup.files.root,
  setup.files.clientCert,
  setup.files.clientKey,
  setup.files.serverCert,
  setup.files.serverKey,
].map((file) => readFileSync(file));

/** Each side's bytes written to the other; either closing closes both. */
function pipe(a: net.Socket, b: net.Socket): void {
  a.on('data', (d: Buffer) => b.write(d));
  b.on('data', (d: Buffer) => a.write(d));
  a.on('close', () => b.destroy());
  b.on('close', () => a.destroy());
  a.on('error', () => a.destroy());
  b.on('error', () => b.destroy());
}

const server =
  setup.role === 'a'
    ? net.createServer({ noDelay: true }, (down) => {
        const up = tls.connect({
          ...target,
          ca: root,
          cert: clientCert,
          key: clientKey,
          servername: 'server.mesh',
          minVersion: 'TLSv1.3',
        });
        up.setNoDelay(true);
        pipe(down, up);
      })
    : tls.createServer(
        {
          ca: root,
          cert: serverCert,
          key: serverKey,
          requestCert: true,
          rejectUnauthorized: true,
          minVersion: 'TLSv1.3',
        },
        (down) => {
          down.setNoDelay(true);
          pipe(down, net.connect({ ...target, noDelay: true }));
        },
      );
server.listen(listen.port, listen.host);
process.on('SIGTERM', () => process.exit(0));
