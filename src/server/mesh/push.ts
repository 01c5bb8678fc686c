// The push of the mesh to the connected proxies (`GET /v1/mesh/watch`, src/http/plugins/mesh.ts
// opens the streams). Sources change the model and call `changed()`; after Istio's debounce
// (100 ms of quiet, at most 10 s) the model commits and every stream gets the delta of what it
// sees (src/mesh/proxy-sync.ts builds the lines, each change serialized once). A line is written
// in chunks of at most CHUNK_BYTES as the socket takes them (a snapshot of a large mesh is never
// copied whole); a stream whose reader is slow (its socket buffer is full) gets nothing more
// until it drains, then one delta brings it from the version it holds to the current one. So
// the server holds at most one chunk per stream beyond what the socket took, whatever the number
// of changes. A stream that takes nothing for `stallMs` is closed (the agent reconnects and gets
// a snapshot). Heartbeats every `heartbeatMs` while nothing changes.

import type { MeshService, MeshSettings, ProxyScope } from '../../api/mesh';
import { MESH_HEARTBEAT_MS, MESH_STREAM_IDLE_MS } from '../../api/mesh';
import type { WorkloadIdentity } from '../../ca/ports';
import { MooringError } from '../../errors';
import {
  debounceWait,
  DEBOUNCE_MAX_MS,
  DEBOUNCE_QUIET_MS,
  ProxySync,
  type Commit,
  type MeshModel,
  type SyncLine,
} from '../../mesh';

export interface PushLogger {
  info(obj: object, msg: string): void;
  warn(obj: object, msg: string): void;
  debug(obj: object, msg: string): void;
}

/** What a stream is written to: an HTTP response (or, in tests, any Writable). */
export interface PushTarget {
  write(chunk: string): boolean;
  end(): void;
  destroy(error?: Error): void;
  once(event: 'drain' | 'close', listener: () => void): unknown;
  readonly writableLength: number;
  readonly destroyed: boolean;
}

/** Hooks for metrics (src/server/mesh/metrics.ts). */
export interface PushObserver {
  message?(type: SyncLine['type'], bytes: number): void;
  /** From the first change of a burst to the delta written to one proxy. */
  latency?(seconds: number): void;
  commit?(commit: Commit): void;
  stalled?(): void;
}

export interface MeshPushOptions {
  readonly model: MeshModel;
  readonly log: PushLogger;
  readonly observer?: PushObserver;
  /** Monotonic milliseconds (performance.now by default). */
  readonly now?: () => number;
  readonly quietMs?: number;
  readonly maxMs?: number;
  readonly heartbeatMs?: number;
  /** A stream that takes nothing for this long is closed. Default 2 × MESH_STREAM_IDLE_MS. */
  readonly stallMs?: number;
}

/** The Pod a watch request names. */
export interface WatchQuery {
  readonly pod: string;
  readonly namespace: string;
  readonly ip: string | null;
}

export interface Admission {
  readonly podKey: string;
  readonly namespace: string;
  readonly identity: string;
}

/** One connected proxy, as the debug view shows it. */
export interface StreamView {
  readonly id: number;
  readonly pod: string;
  readonly ip: string | null;
  readonly remote: string | null;
  readonly connectedSince: string;
  /** The version of the last snapshot or delta written. */
  readonly versionSent: number;
  /** The model version the proxy is up to date with (what it sees did not change since). */
  readonly versionSynced: number;
  /** Its socket is full: it gets the coalesced delta when it drains. */
  readonly waitingForReader: boolean;
  /** Bytes the server holds for it beyond what its socket took. */
  readonly buffered: number;
  readonly messages: number;
  readonly bytes: number;
}

/** Most bytes handed to the socket at once. */
export const CHUNK_BYTES = 64 * 1024;

interface Stream {
  readonly id: number;
  readonly sync: ProxySync;
  readonly target: PushTarget;
  readonly ip: string | null;
  readonly remote: string | null;
  readonly since: Date;
  lastWriteAt: number;
  /** Since when the socket refused more (null: it takes writes). */
  blockedSince: number | null;
  /** The pieces of the line being written, and where the next write starts. */
  pending: { readonly pieces: readonly string[]; next: number; offset: number } | null;
  /** A commit touched its Pod while it was busy. */
  scopeStale: boolean;
  messages: number;
  bytes: number;
}

export class MeshPush {
  private readonly streams = new Map<number, Stream>();
  private nextId = 1;
  private synced = false;
  private closed = false;
  private burst: { firstAt: number; lastAt: number } | null = null;
  private debounceTimer: NodeJS.Timeout | null = null;
  private readonly ticker: NodeJS.Timeout;
  private readonly now: () => number;
  private readonly heartbeatMs: number;
  private readonly stallMs: number;

  constructor(private readonly options: MeshPushOptions) {
    this.now = options.now ?? (() => performance.now());
    this.heartbeatMs = options.heartbeatMs ?? MESH_HEARTBEAT_MS;
    this.stallMs = options.stallMs ?? 2 * MESH_STREAM_IDLE_MS;
    this.ticker = setInterval(() => this.tick(), Math.min(1000, this.heartbeatMs));
    this.ticker.unref();
  }

  get model(): MeshModel {
    return this.options.model;
  }

  /** Sources loaded everything once: watches are accepted from now on. */
  markSynced(): void {
    if (this.synced) return;
    this.synced = true;
    this.flush(null);
  }

  isSynced(): boolean {
    return this.synced;
  }

  /** The model changed: push after the debounce. */
  changed(): void {
    if (this.closed) return;
    const now = this.now();
    if (this.burst === null) this.burst = { firstAt: now, lastAt: now };
    else this.burst.lastAt = now;
    this.schedule();
  }

  private schedule(): void {
    if (this.debounceTimer !== null || this.burst === null) return;
    const wait = debounceWait(
      this.burst,
      this.now(),
      this.options.quietMs ?? DEBOUNCE_QUIET_MS,
      this.options.maxMs ?? DEBOUNCE_MAX_MS,
    );
    this.debounceTimer = setTimeout(() => {
      this.debounceTimer = null;
      const burst = this.burst;
      if (burst === null) return;
      const left = debounceWait(
        burst,
        this.now(),
        this.options.quietMs ?? DEBOUNCE_QUIET_MS,
        this.options.maxMs ?? DEBOUNCE_MAX_MS,
      );
      if (left > 0) {
        this.schedule();
        return;
      }
      this.burst = null;
      this.flush(burst.firstAt);
    }, wait);
  }

  /** What was last said of each Service's shadowed traffic objects. */
  private readonly precedenceLogged = new Map<string, string>();

  /** One log line when objects for the same host lose to another (the precedence rules). */
  private logPrecedence(commit: Commit): void {
    for (const key of [...commit.services, ...commit.removed]) {
      const service = this.options.model.service(key)?.service;
      const routes = service?.routes;
      const policy = service?.policy;
      const shadowed = [
        ...(routes?.shadowed ?? []).map((s) => ({ ...s, winner: routes?.source })),
        ...(policy?.shadowed ?? []).map((s) => ({
          kind: 'DestinationRule',
          ...s,
          winner: { kind: 'DestinationRule', ...policy?.source },
        })),
      ];
      const text = JSON.stringify(shadowed);
      if ((this.precedenceLogged.get(key) ?? '[]') === text) continue;
      if (shadowed.length === 0) this.precedenceLogged.delete(key);
      else this.precedenceLogged.set(key, text);
      for (const s of shadowed) {
        this.options.log.info(
          {
            service: key,
            used: s.winner,
            shadowed: { kind: s.kind, namespace: s.namespace, name: s.name },
          },
          `traffic rules for ${key} not used: ${s.reason}`,
        );
      }
    }
  }

  /** Commits the model and writes the deltas now. `startedAt`: when the burst began. */
  flush(startedAt: number | null = null): Commit | null {
    if (!this.synced) return null;
    const commit = this.options.model.commit();
    if (commit !== null) {
      this.options.observer?.commit?.(commit);
      this.logPrecedence(commit);
      const pods = new Set(commit.pods);
      for (const stream of this.streams.values()) {
        if (stream.pending === null) {
          this.sendDelta(stream, startedAt, pods.has(stream.sync.podKey));
        } else if (pods.has(stream.sync.podKey)) {
          // Busy: its scope is looked at again when it catches up.
          stream.scopeStale = true;
        }
      }
    }
    this.prune();
    return commit;
  }

  /** Drops history no connected proxy needs. */
  private prune(): void {
    let oldest = this.options.model.version;
    for (const stream of this.streams.values()) oldest = Math.min(oldest, stream.sync.version);
    this.options.model.prune(oldest);
  }

  // --- streams ---------------------------------------------------------------------------------

  /**
   * Checks that the caller (authenticated as `caller`) may watch the Pod of `query`: the Pod is
   * known, in the token's namespace, and runs as the token's service account.
   */
  admit(caller: WorkloadIdentity, query: WatchQuery): Admission {
    if (!this.synced) {
      throw new MooringError('MESH_ERR_NOT_READY', 'the mesh is not loaded yet: retry shortly');
    }
    const podKey = `${query.namespace}/${query.pod}`;
    if (caller.namespace !== query.namespace) {
      throw new MooringError(
        'MESH_ERR_FORBIDDEN',
        `the token is of namespace ${caller.namespace}; it may not watch Pod ${podKey}`,
      );
    }
    const pod = this.options.model.pod(podKey);
    if (pod === undefined) {
      throw new MooringError(
        'MESH_ERR_POD_NOT_FOUND',
        `Pod ${podKey} is not known to the mesh (not created yet, or not among the mesh's objects)`,
      );
    }
    if (pod.serviceAccount !== caller.serviceAccount) {
      throw new MooringError(
        'MESH_ERR_FORBIDDEN',
        `Pod ${podKey} runs as service account ${pod.serviceAccount}, not ${caller.serviceAccount}`,
      );
    }
    if (query.ip !== null && pod.ips.length > 0 && !pod.ips.includes(query.ip)) {
      throw new MooringError(
        'MESH_ERR_FORBIDDEN',
        `Pod ${podKey} has the address ${pod.ips.join(', ')}, not ${query.ip}`,
      );
    }
    const scope = this.options.model.proxyScope(podKey);
    if (scope === null) {
      throw new MooringError('MESH_ERR_FORBIDDEN', `Pod ${podKey} has no valid identity`);
    }
    return { podKey, namespace: query.namespace, identity: scope.identity };
  }

  /** Starts a stream: writes the snapshot, then keeps the proxy up to date until it closes. */
  attach(
    admission: Admission,
    target: PushTarget,
    info: { readonly ip: string | null; readonly remote: string | null },
  ): StreamView {
    if (this.closed) throw new MooringError('MESH_ERR_NOT_READY', 'the server is shutting down');
    // Gone while it was authenticated: its 'close' has already been emitted.
    if (target.destroyed) throw new MooringError('MESH_ERR_NOT_READY', 'the client went away');
    const stream: Stream = {
      id: this.nextId++,
      sync: new ProxySync(this.options.model, admission.podKey, admission.namespace),
      target,
      ip: info.ip,
      remote: info.remote,
      since: new Date(),
      lastWriteAt: this.now(),
      blockedSince: null,
      pending: null,
      scopeStale: false,
      messages: 0,
      bytes: 0,
    };
    const snapshot = stream.sync.snapshot();
    if (snapshot === null) {
      throw new MooringError('MESH_ERR_POD_NOT_FOUND', `Pod ${admission.podKey} is gone`);
    }
    this.streams.set(stream.id, stream);
    target.once('close', () => {
      this.streams.delete(stream.id);
      this.options.log.info(
        {
          pod: admission.podKey,
          stream: stream.id,
          messages: stream.messages,
          bytes: stream.bytes,
        },
        'mesh watch closed',
      );
    });
    this.write(stream, snapshot, null);
    return this.view(stream);
  }

  private sendDelta(stream: Stream, startedAt: number | null, scopeMayHaveChanged: boolean): void {
    const delta = stream.sync.delta(scopeMayHaveChanged || stream.scopeStale);
    stream.scopeStale = false;
    if (delta !== null) this.write(stream, delta, startedAt);
  }

  private write(stream: Stream, line: SyncLine, startedAt: number | null): void {
    if (stream.target.destroyed) return;
    stream.messages += 1;
    stream.bytes += line.bytes;
    stream.lastWriteAt = this.now();
    this.options.observer?.message?.(line.type, line.bytes);
    if (startedAt !== null && line.type === 'delta') {
      this.options.observer?.latency?.((stream.lastWriteAt - startedAt) / 1000);
    }
    stream.pending = { pieces: line.pieces, next: 0, offset: 0 };
    this.pump(stream);
  }

  /** Writes the pending line's pieces while the socket takes them. */
  private pump(stream: Stream): void {
    const pending = stream.pending;
    if (pending === null) return;
    const { pieces } = pending;
    while (pending.next < pieces.length) {
      if (stream.target.destroyed) return;
      // Up to CHUNK_BYTES characters: small pieces joined, a large one cut.
      let chunk = '';
      while (pending.next < pieces.length && chunk.length < CHUNK_BYTES) {
        const piece = pieces[pending.next] ?? '';
        let take = Math.min(piece.length - pending.offset, CHUNK_BYTES - chunk.length);
        // Never between the two halves of a surrogate pair (each chunk is encoded alone).
        const last = piece.charCodeAt(pending.offset + take - 1);
        if (take > 1 && pending.offset + take < piece.length && last >= 0xd800 && last <= 0xdbff) {
          take -= 1;
        }
        chunk +=
          pending.offset === 0 && take === piece.length
            ? piece
            : piece.slice(pending.offset, pending.offset + take);
        pending.offset += take;
        if (pending.offset >= piece.length) {
          pending.next += 1;
          pending.offset = 0;
        }
      }
      if (!stream.target.write(chunk)) {
        stream.blockedSince = this.now();
        stream.target.once('drain', () => {
          stream.blockedSince = null;
          if (!this.streams.has(stream.id)) return;
          this.pump(stream);
          // Everything that changed meanwhile, in one delta.
          if (stream.pending === null) this.sendDelta(stream, null, false);
        });
        return;
      }
    }
    stream.pending = null;
  }

  /** Heartbeats for quiet streams; closes streams stalled too long. */
  private tick(): void {
    const now = this.now();
    for (const stream of this.streams.values()) {
      if (stream.pending !== null) {
        if (stream.blockedSince !== null && now - stream.blockedSince > this.stallMs) {
          this.options.log.warn(
            {
              pod: stream.sync.podKey,
              stream: stream.id,
              stalledMs: Math.round(now - stream.blockedSince),
            },
            'mesh watch closed: the proxy reads nothing',
          );
          this.options.observer?.stalled?.();
          this.streams.delete(stream.id);
          stream.target.destroy();
        }
        continue;
      }
      if (now - stream.lastWriteAt >= this.heartbeatMs)
        this.write(stream, stream.sync.heartbeat(), null);
    }
  }

  /** Ends every stream (the agents reconnect, to another replica if there is one). */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    clearInterval(this.ticker);
    if (this.debounceTimer !== null) clearTimeout(this.debounceTimer);
    for (const stream of this.streams.values()) stream.target.end();
    this.streams.clear();
  }

  // --- views -----------------------------------------------------------------------------------

  count(): number {
    return this.streams.size;
  }

  waiting(): number {
    let n = 0;
    for (const stream of this.streams.values()) if (stream.pending !== null) n += 1;
    return n;
  }

  private view(stream: Stream): StreamView {
    return {
      id: stream.id,
      pod: stream.sync.podKey,
      ip: stream.ip,
      remote: stream.remote,
      connectedSince: stream.since.toISOString(),
      versionSent: stream.sync.sentVersion,
      versionSynced: stream.sync.version,
      waitingForReader: stream.pending !== null,
      buffered: stream.target.writableLength,
      messages: stream.messages,
      bytes: stream.bytes,
    };
  }

  streamViews(podKey?: string): StreamView[] {
    return [...this.streams.values()]
      .filter((s) => podKey === undefined || s.sync.podKey === podKey)
      .map((s) => this.view(s));
  }

  /** What the server pushes to the proxy of a Pod now (whether it is connected or not). */
  configOf(podKey: string): {
    version: number;
    proxy: ProxyScope;
    settings: MeshSettings;
    services: MeshService[];
  } | null {
    const { model } = this.options;
    const proxy = model.proxyScope(podKey);
    if (proxy === null) return null;
    return {
      version: model.version,
      proxy,
      settings: model.settings,
      services: model
        .visibleServices(proxy.pod.namespace, model.sidecarOfPod(podKey))
        .map((b) => b.service),
    };
  }
}
