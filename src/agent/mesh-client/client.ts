// The agent's side of the mesh push: `GET /v1/mesh/watch` on --mesh-url (default --ca-url), with
// the same service-account token as the certificate requests, TLS pinned to the roots the agent
// already follows (read at each connection: new roots apply at the next one). It keeps the
// current MeshState (src/api/mesh.ts) and tells the proxy of each change.
//
// The last good state stays while the server is away and after a bad line: a line that does not
// parse, or a delta that does not follow, ends the stream (the next one starts with a snapshot)
// and changes nothing. A stream silent for MESH_STREAM_IDLE_MS is dead. Reconnects wait with
// exponential backoff and full jitter (0.5 s doubling to 30 s, back to the start after a stream
// that gave a snapshot). The token is never logged.

import https from 'node:https';
import type { IncomingMessage } from 'node:http';
import {
  applyMeshMessage,
  MESH_CONTENT_TYPE,
  MESH_STREAM_IDLE_MS,
  MESH_WATCH_PATH,
  parseMeshMessage,
  type MeshMessage,
  type MeshState,
} from '../../api/mesh';
import { serverErrorForLog } from '../../api/certificates';

export interface MeshClientLogger {
  info(obj: object, msg: string): void;
  warn(obj: object, msg: string): void;
  debug(obj: object, msg: string): void;
}

export interface MeshClientOptions {
  /** The server's base URL (--mesh-url). */
  readonly url: URL;
  /** The Pod this proxy serves (--pod-name, --pod-namespace, --pod-ip). */
  readonly pod: { readonly name: string; readonly namespace: string; readonly ip: string | null };
  /** The service-account token, read again at each connection (it rotates). */
  readonly readToken: () => Promise<string>;
  /** The PEM roots the server's certificate must chain to, read at each connection. */
  readonly roots: () => readonly string[];
  readonly log: MeshClientLogger;
  /** A uniform number in [0, 1) (jitter). */
  readonly random?: () => number;
  readonly minBackoffMs?: number;
  readonly maxBackoffMs?: number;
  /** A stream silent this long is dead. Default MESH_STREAM_IDLE_MS. */
  readonly idleMs?: number;
  /** Time allowed to get the answer's headers. Default 15 s. */
  readonly connectTimeoutMs?: number;
  /** A longer line is refused. Default 64 MiB. */
  readonly maxLineBytes?: number;
}

export interface MeshChange {
  readonly state: MeshState;
  readonly previous: MeshState | null;
  readonly message: MeshMessage;
}

export interface MeshClientStatus {
  readonly connected: boolean;
  /** When the current stream (or the last one) opened. */
  readonly since: Date | null;
  readonly version: number | null;
  readonly reconnects: number;
  readonly lastError: string | null;
}

/** Why a stream ended: for the log and the status. */
export class MeshStreamError extends Error {
  constructor(
    message: string,
    readonly detail: { readonly status?: number; readonly code?: string } = {},
  ) {
    super(message);
    this.name = 'MeshStreamError';
  }
}

const MAX_ERROR_BODY = 64 * 1024;

function errorOf(status: number, body: string): MeshStreamError {
  const { code, message } = serverErrorForLog(status, body);
  return new MeshStreamError(`the mesh server refused the watch (${message})`, {
    status,
    ...(code === undefined ? {} : { code }),
  });
}

export class MeshClient {
  private current: MeshState | null = null;
  private readonly listeners = new Set<(change: MeshChange) => void>();
  private running: Promise<void> | null = null;
  private stopped = false;
  private request: ReturnType<typeof https.request> | null = null;
  private wake: (() => void) | null = null;
  private connected = false;
  private since: Date | null = null;
  private reconnects = 0;
  private lastError: string | null = null;
  private firstResolve: ((state: MeshState) => void) | null = null;
  /** Resolves with the first state received. */
  readonly firstState: Promise<MeshState>;

  constructor(private readonly options: MeshClientOptions) {
    this.firstState = new Promise((resolve) => {
      this.firstResolve = resolve;
    });
  }

  /** The current configuration; null until the first snapshot. */
  state(): MeshState | null {
    return this.current;
  }

  status(): MeshClientStatus {
    return {
      connected: this.connected,
      since: this.since,
      version: this.current?.version ?? null,
      reconnects: this.reconnects,
      lastError: this.lastError,
    };
  }

  /** Calls `listener` after each change of the state; returns the function that stops it. */
  onChange(listener: (change: MeshChange) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  start(): void {
    this.running ??= this.loop();
  }

  /** Ends the stream and the reconnects; the state stays readable. */
  async stop(): Promise<void> {
    this.stopped = true;
    this.request?.destroy();
    this.wake?.();
    await this.running;
  }

  private backoffMs(attempt: number): number {
    const min = this.options.minBackoffMs ?? 500;
    const max = this.options.maxBackoffMs ?? 30_000;
    const ceiling = Math.min(max, min * 2 ** attempt);
    // Full jitter, never below a tenth of the minimum (no tight loop).
    return Math.max(min / 10, (this.options.random ?? Math.random)() * ceiling);
  }

  private sleep(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const timer = setTimeout(done, ms);
      function done(): void {
        clearTimeout(timer);
        resolve();
      }
      this.wake = done;
    });
  }

  private async loop(): Promise<void> {
    let attempt = 0;
    while (!this.stopped) {
      let gotSnapshot: boolean;
      try {
        gotSnapshot = await this.stream();
        if (!this.stopped) this.lastError = 'the server ended the stream';
      } catch (err) {
        gotSnapshot = err instanceof StreamEnded && err.gotSnapshot;
        const cause = err instanceof StreamEnded ? err.cause : err;
        this.lastError = cause instanceof Error ? cause.message : String(cause);
      }
      this.connected = false;
      if (this.stopped) break;
      attempt = gotSnapshot ? 0 : attempt + 1;
      const delay = this.backoffMs(attempt);
      this.reconnects += 1;
      this.options.log.warn(
        {
          server: this.describeUrl(),
          reason: this.lastError,
          retryInMs: Math.round(delay),
          keptVersion: this.current?.version ?? null,
        },
        'mesh stream lost; keeping the last configuration',
      );
      await this.sleep(delay);
    }
  }

  /** Without user info or query: only where the server is. */
  private describeUrl(): string {
    return `${this.options.url.origin}${MESH_WATCH_PATH}`;
  }

  /** One stream: resolves when the server ends it; rejects on any failure. */
  private async stream(): Promise<boolean> {
    const { options } = this;
    let token: string;
    try {
      token = (await options.readToken()).trim();
    } catch (err) {
      throw new MeshStreamError(
        `the token cannot be read: ${(err as NodeJS.ErrnoException).code ?? 'error'}`,
      );
    }
    const roots = options.roots();
    if (roots.length === 0)
      throw new MeshStreamError('no trust bundle yet: waiting for the root file');
    const url = new URL(MESH_WATCH_PATH, options.url);
    url.searchParams.set('pod', options.pod.name);
    url.searchParams.set('namespace', options.pod.namespace);
    if (options.pod.ip !== null) url.searchParams.set('ip', options.pod.ip);

    return new Promise<boolean>((resolve, reject) => {
      let gotSnapshot = false;
      let settled = false;
      const fail = (err: unknown): void => {
        if (settled) return;
        settled = true;
        reject(new StreamEnded(err, gotSnapshot));
      };
      const req = https.request(url, {
        method: 'GET',
        ca: [...roots],
        agent: false,
        headers: { authorization: `Bearer ${token}`, accept: MESH_CONTENT_TYPE },
      });
      this.request = req;
      const connectTimer = setTimeout(
        () =>
          req.destroy(
            new MeshStreamError(`no answer within ${options.connectTimeoutMs ?? 15_000} ms`),
          ),
        options.connectTimeoutMs ?? 15_000,
      );
      let idleTimer: NodeJS.Timeout | null = null;
      const idleMs = options.idleMs ?? MESH_STREAM_IDLE_MS;
      const touch = (): void => {
        if (idleTimer !== null) clearTimeout(idleTimer);
        idleTimer = setTimeout(
          () => req.destroy(new MeshStreamError(`no message for ${idleMs} ms: the stream is dead`)),
          idleMs,
        );
      };
      const cleanup = (): void => {
        clearTimeout(connectTimer);
        if (idleTimer !== null) clearTimeout(idleTimer);
        this.request = null;
      };
      req.on('error', (err: NodeJS.ErrnoException) => {
        cleanup();
        if (err instanceof MeshStreamError) return fail(err);
        if (/CERT|TLS|SELF_SIGNED|UNABLE_TO_|HOSTNAME|ALTNAME/.test(err.code ?? '')) {
          return fail(
            new MeshStreamError(
              `the mesh server at ${url.origin} is not trusted by the root file (${err.code ?? ''}: ${err.message})`,
            ),
          );
        }
        fail(
          new MeshStreamError(`the mesh server at ${url.origin} is unreachable: ${err.message}`),
        );
      });
      req.on('response', (res: IncomingMessage) => {
        clearTimeout(connectTimer);
        if (res.statusCode !== 200) {
          const chunks: Buffer[] = [];
          let size = 0;
          res.on('data', (c: Buffer) => {
            size += c.length;
            if (size <= MAX_ERROR_BODY) chunks.push(c);
          });
          res.on('end', () => {
            cleanup();
            fail(errorOf(res.statusCode ?? 0, Buffer.concat(chunks).toString('utf8')));
          });
          res.on('error', (err) => {
            cleanup();
            fail(err);
          });
          return;
        }
        this.connected = true;
        this.since = new Date();
        this.options.log.info(
          { server: this.describeUrl(), pod: `${options.pod.namespace}/${options.pod.name}` },
          'mesh stream open',
        );
        touch();
        // This stream's state: a delta applies to this stream's snapshot, never to an older one.
        let streamState: MeshState | null = null;
        const maxLine = options.maxLineBytes ?? 64 * 1024 * 1024;
        let pending: Buffer[] = [];
        let pendingBytes = 0;
        const onLine = (line: string): void => {
          if (line.trim() === '') return;
          let message: MeshMessage;
          let next: MeshState | null;
          try {
            message = parseMeshMessage(line);
            if (message.type !== 'snapshot' && streamState === null) {
              throw new MeshStreamError(`a ${message.type} arrived before the stream's snapshot`);
            }
            next = applyMeshMessage(streamState, message);
          } catch (err) {
            res.destroy(
              new MeshStreamError(`bad message from the mesh server: ${(err as Error).message}`),
            );
            return;
          }
          streamState = next;
          if (message.type === 'heartbeat' || next === null) return;
          gotSnapshot ||= message.type === 'snapshot';
          const previous = this.current;
          this.current = next;
          this.firstResolve?.(next);
          this.firstResolve = null;
          for (const listener of this.listeners) {
            try {
              listener({ state: next, previous, message });
            } catch (err) {
              this.options.log.warn({ err: (err as Error).message }, 'a mesh listener failed');
            }
          }
        };
        res.on('data', (chunk: Buffer) => {
          touch();
          let start = 0;
          for (let i = chunk.indexOf(0x0a); i !== -1; i = chunk.indexOf(0x0a, start)) {
            pending.push(chunk.subarray(start, i));
            const line = Buffer.concat(pending).toString('utf8');
            pending = [];
            pendingBytes = 0;
            start = i + 1;
            onLine(line);
            if (res.destroyed) return;
          }
          if (start < chunk.length) {
            pending.push(chunk.subarray(start));
            pendingBytes += chunk.length - start;
            if (pendingBytes > maxLine) {
              res.destroy(new MeshStreamError(`a line is longer than ${maxLine} bytes`));
            }
          }
        });
        res.on('error', (err) => {
          cleanup();
          fail(err);
        });
        res.on('close', () => {
          cleanup();
          if (res.errored !== null && res.errored !== undefined) return fail(res.errored);
          if (settled) return;
          settled = true;
          resolve(gotSnapshot);
        });
      });
      req.end();
    });
  }
}

/** A stream's failure, with whether it had delivered a snapshot (for the backoff). */
class StreamEnded extends Error {
  constructor(
    override readonly cause: unknown,
    readonly gotSnapshot: boolean,
  ) {
    super(cause instanceof Error ? cause.message : String(cause));
    this.name = 'StreamEnded';
  }
}
