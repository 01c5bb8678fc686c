// Runs an app's original probe from inside the Pod, with Kubernetes semantics: HTTP success is a
// status in [200, 400) once redirects to the same host are followed (up to 10), TCP success is an
// accepted connection, gRPC success is SERVING; each within timeoutSeconds, or it fails.

import http from 'node:http';
import http2 from 'node:http2';
import https from 'node:https';
import net from 'node:net';
import {
  decodeHealthCheckResponse,
  encodeHealthCheckRequest,
  frameMessage,
  HEALTH_CHECK_PATH,
  SERVING_STATUS,
  unframeMessage,
} from './grpc-health';
import type { AppProbe, GrpcProbe, HttpGetProbe, TcpSocketProbe } from '../../api/app-probes';

export interface ProbeResult {
  readonly ok: boolean;
  /** One line for the probe's answer body and the log: never secret (no header values). */
  readonly detail: string;
}

/** Where a probe without a host goes when the Pod's IP is unknown: the Pod's own loopback. */
export const DEFAULT_PROBE_HOST = '127.0.0.1';
const USER_AGENT = 'kube-probe/mooring';
/** The kubelet reads at most 10 KiB of a probe's body; so do we, and discard it. */
const MAX_BODY_BYTES = 10 * 1024;

type Settle = (result: ProbeResult) => void;

/**
 * Runs `start` with a deadline: the first of its own answer or the timeout wins; `cleanup` runs
 * once either way (closing sockets, sessions).
 */
function withDeadline(
  timeoutMs: number,
  what: string,
  start: (settle: Settle) => () => void,
): Promise<ProbeResult> {
  return new Promise((resolve) => {
    let done = false;
    let cleanup: () => void = () => undefined;
    const settle: Settle = (result) => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      cleanup();
      resolve(result);
    };
    const timer = setTimeout(
      () => settle({ ok: false, detail: `${what}: timeout after ${timeoutMs} ms` }),
      timeoutMs,
    );
    cleanup = start(settle);
    if (done) cleanup();
  });
}

/** Redirects followed, as the kubelet (its 11th is a failure). */
const MAX_REDIRECTS = 10;

/** A request target the kubelet would send: characters not allowed in one are escaped. */
function escapePath(path: string): string {
  return Array.from(path, (c) => (/[\x21-\x7e]/.test(c) ? c : encodeURIComponent(c))).join('');
}

function httpProbe(
  action: HttpGetProbe,
  timeoutMs: number,
  defaultHost: string,
): Promise<ProbeResult> {
  const host = action.host ?? defaultHost;
  const scheme = (action.scheme ?? 'HTTP').toLowerCase() === 'https' ? 'https' : 'http';
  const path = action.path ?? '/';
  const what = `${scheme.toUpperCase()} GET ${host}:${action.port}${path}`;
  return withDeadline(timeoutMs, what, (settle) => {
    // A repeated header is sent as many times as it is given, as the kubelet does.
    const headers: Record<string, string | string[]> = { 'user-agent': USER_AGENT, accept: '*/*' };
    const given = new Map<string, string[]>();
    for (const h of action.httpHeaders ?? []) {
      const name = h.name.toLowerCase();
      given.set(name, [...(given.get(name) ?? []), h.value]);
    }
    for (const [name, values] of given) headers[name] = values.length === 1 ? values[0]! : values;
    let req: http.ClientRequest | undefined;
    const get = (url: URL, redirects: number): void => {
      const options: https.RequestOptions = {
        host: url.hostname.replace(/^\[(.*)\]$/, '$1'),
        port: url.port === '' ? action.port : Number(url.port),
        path: `${url.pathname}${url.search}`,
        method: 'GET',
        headers,
        agent: false,
        // The kubelet does not verify an app's serving certificate on HTTPS probes (Kubernetes
        // semantics; apps often serve self-signed or mesh certificates on their probe port). This
        // is the one place the agent does not verify TLS: it is the app's own endpoint, reached
        // inside the Pod, and the probe only reads a status code.
        rejectUnauthorized: false,
      };
      try {
        req = (url.protocol === 'https:' ? https : http).request(options, (res) => {
          const status = res.statusCode ?? 0;
          let read = 0;
          res.on('data', (chunk: Buffer) => {
            read += chunk.length;
            if (read > MAX_BODY_BYTES) res.destroy();
          });
          res.on('error', () => undefined);
          const location = res.headers.location;
          if (status >= 300 && status < 400 && location !== undefined) {
            res.resume();
            let next: URL;
            try {
              next = new URL(location, url);
            } catch {
              return settle({
                ok: false,
                detail: `${what}: HTTP ${status} to an invalid Location`,
              });
            }
            // Like the kubelet: a redirect to another host is not followed and counts as success.
            if (next.hostname !== url.hostname) {
              return settle({ ok: true, detail: `${what}: HTTP ${status} to another host` });
            }
            if (redirects >= MAX_REDIRECTS) {
              return settle({
                ok: false,
                detail: `${what}: stopped after ${MAX_REDIRECTS} redirects`,
              });
            }
            return get(next, redirects + 1);
          }
          const ok = status >= 200 && status < 400;
          settle({
            ok,
            detail: `${what}: HTTP ${status}${redirects > 0 ? ` after ${redirects} redirect(s)` : ''}`,
          });
        });
      } catch (err) {
        // An invalid header name or value: the kubelet fails the probe; so do we.
        return settle({ ok: false, detail: `${what}: ${(err as Error).message}` });
      }
      req.on('error', (err) => settle({ ok: false, detail: `${what}: ${err.message}` }));
      req.end();
    };
    const hostInUrl = host.includes(':') ? `[${host}]` : host;
    get(new URL(`${scheme}://${hostInUrl}:${action.port}${escapePath(path)}`), 0);
    return () => req?.destroy();
  });
}

function tcpProbe(
  action: TcpSocketProbe,
  timeoutMs: number,
  defaultHost: string,
): Promise<ProbeResult> {
  const host = action.host ?? defaultHost;
  const what = `TCP ${host}:${action.port}`;
  return withDeadline(timeoutMs, what, (settle) => {
    const socket = net.connect({ host, port: action.port });
    socket.on('connect', () => settle({ ok: true, detail: `${what}: connected` }));
    socket.on('error', (err) => settle({ ok: false, detail: `${what}: ${err.message}` }));
    return () => socket.destroy();
  });
}

const SERVING_NAMES = Object.fromEntries(Object.entries(SERVING_STATUS).map(([k, v]) => [v, k]));

function grpcProbe(action: GrpcProbe, timeoutMs: number, host: string): Promise<ProbeResult> {
  const service = action.service ?? '';
  const what = `gRPC ${host}:${action.port} health(${JSON.stringify(service)})`;
  return withDeadline(timeoutMs, what, (settle) => {
    const fail = (reason: string): void => settle({ ok: false, detail: `${what}: ${reason}` });
    const session = http2.connect(
      `http://${host.includes(':') ? `[${host}]` : host}:${action.port}`,
    );
    session.on('error', (err: Error) => fail(err.message));
    const stream = session.request({
      ':method': 'POST',
      ':path': HEALTH_CHECK_PATH,
      'content-type': 'application/grpc',
      te: 'trailers',
      'grpc-timeout': `${Math.max(1, Math.floor(timeoutMs))}m`,
      'user-agent': USER_AGENT,
    });
    const chunks: Buffer[] = [];
    let grpcStatus: string | undefined;
    let httpStatus = 0;
    stream.on('response', (headers) => {
      httpStatus = Number(headers[':status'] ?? 0);
      // A trailers-only answer (an error) carries grpc-status in the headers.
      if (headers['grpc-status'] !== undefined) grpcStatus = String(headers['grpc-status']);
    });
    stream.on('trailers', (trailers: http2.IncomingHttpHeaders) => {
      if (trailers['grpc-status'] !== undefined) grpcStatus = String(trailers['grpc-status']);
    });
    stream.on('data', (chunk: Buffer) => chunks.push(chunk));
    stream.on('error', (err: Error) => fail(err.message));
    stream.on('end', () => {
      if (httpStatus !== 200) return fail(`HTTP/2 status ${httpStatus}`);
      if (grpcStatus !== '0') return fail(`grpc-status ${grpcStatus ?? 'missing'}`);
      try {
        const status = decodeHealthCheckResponse(unframeMessage(Buffer.concat(chunks)));
        const name = SERVING_NAMES[status] ?? String(status);
        settle({ ok: status === SERVING_STATUS.SERVING, detail: `${what}: ${name}` });
      } catch (err) {
        fail((err as Error).message);
      }
    });
    stream.end(frameMessage(encodeHealthCheckRequest(service)));
    return () => {
      stream.destroy();
      session.destroy();
    };
  });
}

/**
 * Runs one app probe; never rejects. A probe without a host goes to `defaultHost`: the Pod's IP
 * (the kubelet's target) when the agent knows it.
 */
export function runProbe(probe: AppProbe, defaultHost = DEFAULT_PROBE_HOST): Promise<ProbeResult> {
  const timeoutMs = Math.round(probe.timeoutSeconds * 1000);
  if ('httpGet' in probe) return httpProbe(probe.httpGet, timeoutMs, defaultHost);
  if ('tcpSocket' in probe) return tcpProbe(probe.tcpSocket, timeoutMs, defaultHost);
  return grpcProbe(probe.grpc, timeoutMs, defaultHost);
}
