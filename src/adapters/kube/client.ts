// The Kubernetes API over HTTPS, authenticated the way kubectl is: a KubeConfig from
// --kubeconfig, or the in-cluster service account. @kubernetes/client-node gives the kubeconfig
// parsing and credentials (tokens, client certificates, exec plugins, token files that rotate);
// the requests themselves go through one keep-alive agent, so that a burst of TokenReviews reuses
// connections, and every request is counted (verb, resource, status code).

import * as fs from 'node:fs';
import * as http from 'node:http';
import * as https from 'node:https';
import { KubeConfig } from '@kubernetes/client-node';
import { MooringError } from '../../errors';
import {
  KubeApiError,
  resourceOfPath,
  type KubeApi,
  type KubeRequest,
  type KubeStatus,
  type WatchEvent,
} from './api';

/** Where the kubelet mounts a Pod's service-account credentials. */
export const IN_CLUSTER_SA_DIR = '/var/run/secrets/kubernetes.io/serviceaccount';

/** True when this process runs in a Pod with a service account (and its API environment). */
export function inClusterAvailable(
  env: NodeJS.ProcessEnv = process.env,
  saDir: string = IN_CLUSTER_SA_DIR,
): boolean {
  return (
    env.KUBERNETES_SERVICE_HOST !== undefined &&
    env.KUBERNETES_SERVICE_PORT !== undefined &&
    fs.existsSync(`${saDir}/token`)
  );
}

/** The namespace of the in-cluster service account, or null out of a cluster. */
export function inClusterNamespace(saDir: string = IN_CLUSTER_SA_DIR): string | null {
  try {
    const ns = fs.readFileSync(`${saDir}/namespace`, 'utf8').trim();
    return ns === '' ? null : ns;
  } catch {
    return null;
  }
}

/** A KubeConfig from a file (`--kubeconfig`), else from the in-cluster service account. */
export function loadKubeConfig(kubeconfigPath: string | null): KubeConfig {
  const kc = new KubeConfig();
  try {
    if (kubeconfigPath !== null) kc.loadFromFile(kubeconfigPath);
    else kc.loadFromCluster();
  } catch (err) {
    const where = kubeconfigPath ?? 'the in-cluster service account';
    throw new MooringError(
      'CFG_ERR_READ',
      `cannot load the kubeconfig from ${where}: ${message(err)}`,
      {
        cause: err,
      },
    );
  }
  if (kc.getCurrentCluster() === null) {
    throw new MooringError(
      'CFG_ERR_INVALID',
      `the kubeconfig ${kubeconfigPath ?? '(in-cluster)'} has no current context with a cluster`,
    );
  }
  return kc;
}

/** Observes every request: verb, resource (see resourceOfPath), status code (0: no answer). */
export type RequestObserver = (verb: string, resource: string, code: number) => void;

export interface KubeClientOptions {
  /** Per request (not watches); default 30 s. */
  readonly timeoutMs?: number;
  readonly observe?: RequestObserver;
  readonly userAgent?: string;
}

function message(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

function buildUrl(server: string, path: string, query?: KubeRequest['query']): URL {
  const url = new URL(server.replace(/\/+$/, '') + path);
  for (const [key, value] of Object.entries(query ?? {})) {
    if (value !== undefined) url.searchParams.set(key, value);
  }
  return url;
}

function statusOf(body: string): KubeStatus {
  try {
    const parsed = JSON.parse(body) as unknown;
    if (typeof parsed === 'object' && parsed !== null) return parsed;
  } catch {
    // not JSON
  }
  return {};
}

/** TLS material (PEM strings, Buffers, lists of them) as one string, to notice a change. */
function material(value: unknown): string {
  if (typeof value === 'string') return value;
  if (Buffer.isBuffer(value)) return value.toString('base64');
  if (Array.isArray(value)) return value.map(material).join('|');
  return '';
}

function headerRecord(headers: https.RequestOptions['headers']): Record<string, string> {
  const out: Record<string, string> = {};
  if (headers === undefined || Array.isArray(headers)) return out;
  for (const [key, value] of Object.entries(headers)) {
    if (typeof value === 'string' || typeof value === 'number') out[key] = String(value);
  }
  return out;
}

/** KubeApi over a KubeConfig. */
export class KubeClient implements KubeApi {
  private agent: https.Agent | null = null;
  private agentKey = '';
  private readonly server: string;
  private readonly timeoutMs: number;

  constructor(
    private readonly kc: KubeConfig,
    private readonly options: KubeClientOptions = {},
  ) {
    const cluster = kc.getCurrentCluster();
    if (cluster === null)
      throw new MooringError('CFG_ERR_INVALID', 'the kubeconfig has no cluster');
    this.server = cluster.server;
    this.timeoutMs = options.timeoutMs ?? 30_000;
  }

  /** The apiserver URL. */
  get serverUrl(): string {
    return this.server;
  }

  /** Closes idle keep-alive connections. */
  close(): void {
    this.agent?.destroy();
    this.agent = null;
  }

  /** Credentials for one request: headers (token) and TLS material, on our keep-alive agent. */
  private async connection(): Promise<{ headers: Record<string, string>; agent: http.Agent }> {
    const opts: https.RequestOptions = {};
    await this.kc.applyToHTTPSOptions(opts);
    const headers = headerRecord(opts.headers);
    if (opts.auth !== undefined && opts.auth !== null) {
      headers.Authorization = `Basic ${Buffer.from(opts.auth).toString('base64')}`;
    }
    // A proxy from the kubeconfig: keep the client's own agent (it speaks to the proxy).
    if (this.kc.getCurrentCluster()?.proxyUrl !== undefined && opts.agent instanceof http.Agent) {
      return { headers, agent: opts.agent };
    }
    const tls = {
      ca: opts.ca,
      cert: opts.cert,
      key: opts.key,
      servername: opts.servername,
      rejectUnauthorized: opts.rejectUnauthorized,
    };
    const key = JSON.stringify([
      material(tls.ca),
      material(tls.cert),
      material(tls.key),
      tls.servername,
      tls.rejectUnauthorized,
    ]);
    if (this.agent === null || key !== this.agentKey) {
      this.agent?.destroy();
      this.agent = new https.Agent({
        keepAlive: true,
        maxSockets: 32,
        ...Object.fromEntries(Object.entries(tls).filter(([, v]) => v !== undefined)),
      });
      this.agentKey = key;
    }
    return { headers, agent: this.agent };
  }

  async request<T>(req: KubeRequest): Promise<T> {
    const url = buildUrl(this.server, req.path, req.query);
    const resource = resourceOfPath(req.path);
    const { headers, agent } = await this.connection();
    const payload = req.body === undefined ? undefined : Buffer.from(JSON.stringify(req.body));
    const requestHeaders: Record<string, string> = {
      ...headers,
      Accept: 'application/json',
      'User-Agent': this.options.userAgent ?? 'mooring',
    };
    if (payload !== undefined) {
      requestHeaders['Content-Type'] = req.contentType ?? 'application/json';
      requestHeaders['Content-Length'] = String(payload.length);
    }
    return new Promise<T>((resolve, reject) => {
      const client = url.protocol === 'http:' ? http : https;
      const r = client.request(
        url,
        { method: req.method, headers: requestHeaders, agent, timeout: this.timeoutMs },
        (res) => {
          const chunks: Buffer[] = [];
          res.on('data', (c: Buffer) => chunks.push(c));
          res.on('error', (err) => {
            this.options.observe?.(req.method, resource, 0);
            reject(err);
          });
          res.on('end', () => {
            const status = res.statusCode ?? 0;
            this.options.observe?.(req.method, resource, status);
            const body = Buffer.concat(chunks).toString('utf8');
            if (status >= 200 && status < 300) {
              try {
                resolve((body === '' ? {} : JSON.parse(body)) as T);
              } catch (err) {
                reject(new Error(`invalid JSON from ${req.method} ${req.path}: ${message(err)}`));
              }
              return;
            }
            const s = statusOf(body);
            reject(
              new KubeApiError(
                status,
                s.reason ?? res.statusMessage ?? 'Unknown',
                `${req.method} ${req.path}: ${status} ${s.message ?? res.statusMessage ?? ''}`.trim(),
                req.method,
                req.path,
              ),
            );
          });
        },
      );
      r.on('timeout', () => r.destroy(new Error(`${req.method} ${req.path}: timed out`)));
      r.on('error', (err) => {
        if (!r.writableEnded || r.destroyed) this.options.observe?.(req.method, resource, 0);
        reject(err);
      });
      r.end(payload);
    });
  }

  async watch(
    path: string,
    query: Readonly<Record<string, string | undefined>>,
    onEvent: (event: WatchEvent) => void,
    signal: AbortSignal,
  ): Promise<void> {
    if (signal.aborted) return;
    const url = buildUrl(this.server, path, { ...query, watch: 'true' });
    const resource = resourceOfPath(path);
    const { headers, agent } = await this.connection();
    // A watch has no per-request timeout, only an idle one: the server ends it at timeoutSeconds.
    const serverTimeout = Number(query.timeoutSeconds ?? 0);
    const idleMs = (serverTimeout > 0 ? serverTimeout : 600) * 1000 + 30_000;
    await new Promise<void>((resolve, reject) => {
      const client = url.protocol === 'http:' ? http : https;
      let settled = false;
      const done = (err?: Error): void => {
        if (settled) return;
        settled = true;
        signal.removeEventListener('abort', onAbort);
        if (err === undefined || signal.aborted) resolve();
        else reject(err);
      };
      const r = client.request(
        url,
        {
          method: 'GET',
          headers: {
            ...headers,
            Accept: 'application/json',
            'User-Agent': this.options.userAgent ?? 'mooring',
          },
          agent,
          timeout: idleMs,
        },
        (res) => {
          const status = res.statusCode ?? 0;
          this.options.observe?.('WATCH', resource, status);
          res.setEncoding('utf8');
          if (status < 200 || status >= 300) {
            let body = '';
            res.on('data', (c: string) => (body += c));
            res.on('end', () => {
              const s = statusOf(body);
              done(
                new KubeApiError(
                  status,
                  s.reason ?? 'Unknown',
                  `WATCH ${path}: ${status} ${s.message ?? ''}`.trim(),
                  'WATCH',
                  path,
                ),
              );
            });
            return;
          }
          let buffer = '';
          res.on('data', (chunk: string) => {
            buffer += chunk;
            let newline = buffer.indexOf('\n');
            while (newline !== -1) {
              const line = buffer.slice(0, newline).trim();
              buffer = buffer.slice(newline + 1);
              newline = buffer.indexOf('\n');
              if (line === '') continue;
              let event: WatchEvent;
              try {
                event = JSON.parse(line) as WatchEvent;
              } catch {
                continue;
              }
              try {
                onEvent(event);
              } catch (err) {
                r.destroy(err instanceof Error ? err : new Error(String(err)));
                return;
              }
            }
          });
          res.on('end', () => done());
          res.on('error', (err) => done(err));
          res.on('close', () =>
            done(res.complete ? undefined : new Error(`WATCH ${path}: connection closed`)),
          );
        },
      );
      const onAbort = (): void => {
        r.destroy();
        done();
      };
      signal.addEventListener('abort', onAbort);
      r.on('timeout', () => r.destroy(new Error(`WATCH ${path}: idle timeout`)));
      r.on('error', (err) => done(err));
      r.end();
    });
  }
}
