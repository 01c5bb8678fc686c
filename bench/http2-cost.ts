// Would HTTP/2 between sidecars lower the CPU of a request? What Node's own servers cost per
// request at a fixed rate over TLS 1.3: node:https (HTTP/1.1, 16 kept-alive connections) against
// node:http2 (one connection, a stream per request), 1 KB answers (bench/RESULTS.md, Sidecar
// proxy). The server runs alone on CPU 1, the client on CPU 0; the server's CPU (user + system)
// is read from /proc over the measured seconds, after a warm-up at the same rate.
//
//   node .cache/bench/bench/http2-cost.js [--rates 1000,4000] [--seconds 10] [--rounds 2]
//
// The same file is the server (`serve h1|h2`) and the client (`load h1|h2 <port> <rate> <s>`).

import { execFileSync, spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import http2 from 'node:http2';
import https from 'node:https';
import type { AddressInfo } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { treeCpuSeconds } from './proc';

type Mode = 'h1' | 'h2';
const args = process.argv.slice(2);
const flag = (name: string, fallback: string): string => {
  const i = args.indexOf(`--${name}`);
  return i === -1 ? fallback : (args[i + 1] ?? fallback);
};

function serve(mode: Mode, dir: string): void {
  const tls = {
    key: readFileSync(path.join(dir, 'key.pem')),
    cert: readFileSync(path.join(dir, 'cert.pem')),
    minVersion: 'TLSv1.3' as const,
  };
  const body = Buffer.alloc(1024, 'a');
  const server =
    mode === 'h2'
      ? http2.createSecureServer(tls).on('stream', (stream) => {
          stream.respond({ ':status': 200, 'content-type': 'text/plain' });
          stream.end(body);
        })
      : https.createServer(tls, (_req, res) => {
          res.writeHead(200, { 'content-type': 'text/plain', 'content-length': body.length });
          res.end(body);
        });
  server.listen(0, '127.0.0.1', () => {
    process.stdout.write(`${(server.address() as AddressInfo).port}\n`);
  });
}

/** Sends `rate` requests a second (in ticks of 10 ms) for `seconds`; prints how many came back 200. */
function load(mode: Mode, dir: string, port: number, rate: number, seconds: number): void {
  const ca = readFileSync(path.join(dir, 'cert.pem'));
  let ok = 0;
  let one: () => void;
  let close = (): void => {};
  if (mode === 'h2') {
    const session = http2.connect(`https://localhost:${port}`, { ca });
    one = () => {
      const req = session.request({ ':path': '/' });
      let status = 0;
      req.on('response', (h) => (status = Number(h[':status'])));
      req.resume();
      req.on('end', () => {
        if (status === 200) ok++;
      });
      req.end();
    };
    close = () => session.close();
  } else {
    const agent = new https.Agent({ keepAlive: true, maxSockets: 16, ca });
    one = () => {
      https.get({ host: 'localhost', port, agent, path: '/' }, (res) => {
        res.resume();
        res.on('end', () => {
          if (res.statusCode === 200) ok++;
        });
      });
    };
    close = () => agent.destroy();
  }
  const perTick = rate / 100;
  const timer = setInterval(() => {
    for (let i = 0; i < perTick; i++) one();
  }, 10);
  setTimeout(() => {
    clearInterval(timer);
    setTimeout(() => {
      process.stdout.write(`${ok}\n`);
      close();
      process.exit(0);
    }, 500);
  }, seconds * 1000);
}

function run(cpu: number, ...rest: string[]): ReturnType<typeof spawn> {
  return spawn('taskset', ['-c', String(cpu), process.execPath, __filename, ...rest], {
    stdio: ['ignore', 'pipe', 'inherit'],
  });
}

const firstLine = (child: ReturnType<typeof spawn>): Promise<string> =>
  new Promise((resolve, reject) => {
    let out = '';
    child.stdout?.on('data', (d: Buffer) => {
      out += d.toString();
      const nl = out.indexOf('\n');
      if (nl !== -1) resolve(out.slice(0, nl));
    });
    child.on('exit', (code) => reject(new Error(`exited with ${code} before answering`)));
  });

async function measure(mode: Mode, dir: string, rate: number, seconds: number): Promise<string> {
  const server = run(1, 'serve', mode, dir);
  try {
    const port = await firstLine(server);
    await firstLine(run(0, 'load', mode, dir, port, String(rate), '3'));
    const before = treeCpuSeconds(server.pid as number);
    const ok = Number(
      await firstLine(run(0, 'load', mode, dir, port, String(rate), String(seconds))),
    );
    const cpu = treeCpuSeconds(server.pid as number) - before;
    if (ok < rate * seconds * 0.95)
      throw new Error(`${mode} at ${rate}/s: only ${ok} answers of 200`);
    return `| ${mode === 'h1' ? 'HTTP/1.1 (node:https)' : 'HTTP/2 (node:http2)'} | ${rate} | ${ok} | ${Math.round((cpu * 1e6) / ok)} |`;
  } finally {
    server.kill();
  }
}

async function main(): Promise<void> {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'mooring-h2-cost-'));
  execFileSync(
    'openssl',
    [
      ...['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes'],
      ...['-keyout', path.join(dir, 'key.pem'), '-out', path.join(dir, 'cert.pem')],
      ...['-days', '1', '-subj', '/CN=localhost', '-addext', 'subjectAltName=DNS:localhost'],
    ],
    { stdio: 'ignore' },
  );
  const rates = flag('rates', '1000,4000').split(',').map(Number);
  const seconds = Number(flag('seconds', '10'));
  const rounds = Number(flag('rounds', '2'));
  console.log('| server | requests/s | answers 200 | server CPU µs/request |');
  console.log('| ------ | ---------: | ----------: | --------------------: |');
  try {
    for (const rate of rates) {
      for (let r = 0; r < rounds; r++) {
        for (const mode of ['h1', 'h2'] as const)
          console.log(await measure(mode, dir, rate, seconds));
      }
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

const [role, mode, dir, port, rate, seconds] = args;
if (role === 'serve') serve(mode as Mode, dir as string);
else if (role === 'load')
  load(mode as Mode, dir as string, Number(port), Number(rate), Number(seconds));
else
  main().catch((err: unknown) => {
    console.error(err);
    process.exit(1);
  });
