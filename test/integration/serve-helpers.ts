// Real-TLS clients for the serve tests: every request pins the trust bundle (never
// rejectUnauthorized: false) and reports the serving certificate it saw.

import { request as httpRequest } from 'node:http';
import type { Agent } from 'node:https';
import { request as httpsRequest } from 'node:https';
import type { TLSSocket } from 'node:tls';

export interface TlsAnswer {
  readonly status: number;
  readonly body: string;
  readonly serial: string;
  readonly socket: TLSSocket;
  readonly reusedSocket: boolean;
}

export function httpsCall(options: {
  port: number;
  ca: string;
  method: string;
  path: string;
  headers?: Record<string, string>;
  body?: string;
  agent?: Agent | false;
  host?: string;
}): Promise<TlsAnswer> {
  return new Promise((resolve, reject) => {
    const req = httpsRequest(
      {
        host: options.host ?? '127.0.0.1',
        port: options.port,
        method: options.method,
        path: options.path,
        headers:
          options.body === undefined
            ? options.headers
            : { ...options.headers, 'content-length': Buffer.byteLength(options.body) },
        ca: options.ca,
        agent: options.agent ?? false,
      },
      (res) => {
        // Read the socket now: a kept-alive socket goes back to the agent at 'end'.
        const socket = res.socket as TLSSocket;
        const serial = socket.getPeerCertificate().serialNumber;
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => {
          resolve({
            status: res.statusCode ?? 0,
            body: Buffer.concat(chunks).toString('utf8'),
            serial,
            socket,
            reusedSocket: req.reusedSocket,
          });
        });
      },
    );
    req.on('error', reject);
    req.end(options.body);
  });
}

export function httpGet(port: number, path: string): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = httpRequest({ host: '127.0.0.1', port, path, agent: false }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () =>
        resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks).toString('utf8') }),
      );
    });
    req.on('error', reject);
    req.end();
  });
}

export async function waitFor<T>(
  what: string,
  probe: () => Promise<T | undefined> | T | undefined,
  timeoutMs = 15_000,
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await probe();
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}
