// The edges of the proxy's telemetry: span export over OTLP/HTTP and the access log's writes.
// Neither ever blocks a request: the request path only appends to a bounded queue; a timer (or a
// full batch) sends it on; what does not fit, or what the collector did not take, is dropped and
// counted (`mooring_proxy_spans_dropped_total`, `mooring_proxy_access_log_dropped_total`).

import { randomFillSync } from 'node:crypto';
import { write } from 'node:fs';
import http from 'node:http';
import https from 'node:https';
import type { IdSource } from '../core/trace-context';
import type { OtlpSpan } from '../core/request-facts';

/** Ids from the CSPRNG, drawn 4 KiB at a time (a span id costs a slice and a hex conversion). */
export class RandomIds implements IdSource {
  private readonly pool = Buffer.alloc(4096);
  private offset = this.pool.length;

  private take(n: number): string {
    for (;;) {
      if (this.offset + n > this.pool.length) {
        randomFillSync(this.pool);
        this.offset = 0;
      }
      const start = this.offset;
      this.offset += n;
      // An all-zero id is invalid: draw again (probability 2^-64).
      for (let i = start; i < start + n; i++) {
        if (this.pool[i] !== 0) return this.pool.toString('hex', start, start + n);
      }
    }
  }

  traceId(): string {
    return this.take(16);
  }

  spanId(): string {
    return this.take(8);
  }
}

/** Sends one body; resolves with the HTTP status (throws on a network error or time-out). */
export type Post = (url: string, body: string, timeoutMs: number) => Promise<number>;

// One kept-alive connection per collector, reused by every export of the proxy (made with the
// first export, not at import).
let agents: { http: http.Agent; https: https.Agent } | null = null;

/**
 * An export's POST with node:http(s) and a kept-alive connection: about a quarter of the CPU of a
 * `fetch` (undici, with its WASM parser loaded into every proxy) for the same POST, measured on
 * this machine (bench/RESULTS.md, Telemetry).
 */
export const httpPost: Post = (url, body, timeoutMs) =>
  new Promise((resolve, reject) => {
    const tls = url.startsWith('https:');
    agents ??= {
      http: new http.Agent({ keepAlive: true, maxSockets: 1 }),
      https: new https.Agent({ keepAlive: true, maxSockets: 1 }),
    };
    const req = (tls ? https : http).request(
      url,
      {
        method: 'POST',
        agent: tls ? agents.https : agents.http,
        timeout: timeoutMs,
        headers: { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) },
      },
      (res) => {
        res.resume();
        res.on('end', () => resolve(res.statusCode ?? 0));
        res.on('error', reject);
      },
    );
    req.on('timeout', () => req.destroy(new Error(`no answer within ${timeoutMs} ms`)));
    req.on('error', reject);
    req.end(body);
  });

export interface ExporterOptions {
  /** `<base>/v1/traces`. */
  readonly url: string;
  /** Spans held at most (OpenTelemetry's BatchSpanProcessor default). */
  readonly maxQueue: number;
  /** Spans per export. */
  readonly maxBatch: number;
  /** A partial batch waits at most this long. */
  readonly flushMs: number;
  readonly timeoutMs: number;
}

export const EXPORTER_DEFAULTS = {
  maxQueue: 2048,
  maxBatch: 512,
  flushMs: 1000,
  timeoutMs: 10_000,
} as const;

export interface ExportCounters {
  exported: number;
  droppedQueueFull: number;
  droppedExportFailed: number;
  exportFailures: number;
}

/**
 * Batches spans to an OTLP/HTTP collector. One export at a time; spans that arrive while the
 * queue is full are dropped at once (never waited for). A failed export (network error,
 * time-out, a status other than 2xx) drops its batch: no retry, so a collector that is down
 * costs one failed POST per batch and nothing else.
 */
export class OtlpExporter {
  private queue: OtlpSpan[] = [];
  private inflight: Promise<void> | null = null;
  private readonly timer: NodeJS.Timeout;
  private closed = false;

  constructor(
    readonly options: ExporterOptions,
    private readonly encode: (spans: readonly OtlpSpan[]) => string,
    private readonly counters: ExportCounters,
    private readonly post: Post = httpPost,
    private readonly onError: (err: string) => void = () => {},
  ) {
    this.timer = setInterval(() => void this.flush(), options.flushMs);
    this.timer.unref();
  }

  add(span: OtlpSpan): void {
    if (this.closed || this.queue.length >= this.options.maxQueue) {
      this.counters.droppedQueueFull++;
      return;
    }
    this.queue.push(span);
    if (this.queue.length >= this.options.maxBatch && this.inflight === null) void this.flush();
  }

  queued(): number {
    return this.queue.length;
  }

  /**
   * Sends what is queued, a batch at a time; resolves when the queue is empty or an export
   * failed. A call while an export is under way joins it.
   */
  flush(): Promise<void> {
    this.inflight ??= this.sendAll().finally(() => {
      this.inflight = null;
    });
    return this.inflight;
  }

  private async sendAll(): Promise<void> {
    while (this.queue.length > 0) {
      const batch = this.queue.slice(0, this.options.maxBatch);
      this.queue = this.queue.slice(batch.length);
      let why = '';
      try {
        const status = await this.post(
          this.options.url,
          this.encode(batch),
          this.options.timeoutMs,
        );
        if (status < 200 || status >= 300) why = `HTTP ${status}`;
      } catch (err) {
        why = (err as Error).message;
      }
      if (why === '') {
        this.counters.exported += batch.length;
      } else {
        this.counters.droppedExportFailed += batch.length;
        this.counters.exportFailures++;
        this.onError(why);
        return;
      }
    }
  }

  /** Stops the timer and sends what is left (once). */
  async close(): Promise<void> {
    if (this.closed) return;
    clearInterval(this.timer);
    await this.flush();
    this.closed = true;
  }
}

/** Writes `length` bytes of `buf` from `offset` to `fd`; calls back with the bytes written. */
export type WriteFn = (
  fd: number,
  buf: Buffer,
  offset: number,
  cb: (err: NodeJS.ErrnoException | null, written: number) => void,
) => void;

const fsWrite: WriteFn = (fd, buf, offset, cb) =>
  write(fd, buf, offset, buf.length - offset, null, (err, n) => cb(err, n));

/**
 * Lines to a file descriptor (stdout) without blocking the event loop: appended to a buffer,
 * written by libuv's thread pool a batch at a time (partial writes and EAGAIN on a non-blocking
 * pipe are continued). Above `maxPendingBytes` waiting, lines are dropped and counted: a reader
 * that stopped reading never stalls the proxy.
 */
export class LineSink {
  private pending: string[] = [];
  private pendingBytes = 0;
  private current: Buffer | null = null;
  /** Characters of `current`, counted in pendingBytes until it has left. */
  private currentChars = 0;
  private offset = 0;
  private writing = false;
  dropped = 0;

  constructor(
    private readonly fd: number,
    private readonly maxPendingBytes = 4 * 1024 * 1024,
    private readonly writeFn: WriteFn = fsWrite,
  ) {}

  write(line: string): void {
    if (this.pendingBytes + line.length > this.maxPendingBytes) {
      this.dropped++;
      return;
    }
    this.pending.push(line);
    this.pendingBytes += line.length;
    if (!this.writing) {
      this.writing = true;
      setImmediate(() => this.drain());
    }
  }

  private drain(): void {
    if (this.current === null) {
      if (this.pending.length === 0) {
        this.writing = false;
        return;
      }
      const text = this.pending.join('');
      this.current = Buffer.from(text, 'utf8');
      this.currentChars = text.length;
      this.offset = 0;
      this.pending = [];
    }
    const buf = this.current;
    this.writeFn(this.fd, buf, this.offset, (err, n) => {
      if (err !== null) {
        if (err.code === 'EAGAIN') {
          setTimeout(() => this.drain(), 10);
          return;
        }
        // The descriptor is gone (a closed pipe): what was waiting is lost.
        this.dropped += 1;
        this.done();
        this.drain();
        return;
      }
      this.offset += n;
      if (this.offset >= buf.length) this.done();
      this.drain();
    });
  }

  private done(): void {
    this.pendingBytes -= this.currentChars;
    this.current = null;
  }

  /** Resolves once everything written so far has left. */
  async flushed(): Promise<void> {
    while (this.writing) {
      await new Promise((resolve) => setTimeout(resolve, 5));
    }
  }
}
