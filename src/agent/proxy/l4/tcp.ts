// Opaque TCP through the proxy: bytes both ways, half-close kept (a client that shuts down its
// sending side still gets the whole reply: `allowHalfOpen` on every socket), and the byte counts
// of Istio's TCP metrics reported while the connection lives and when it ends.

import type net from 'node:net';

export interface TcpReport {
  /** Bytes since the last report: to the client (sent) and from it (received). */
  bytes(sent: number, received: number): void;
  closed(): void;
}

/** How often an open connection's bytes are added to the metrics (Envoy: periodic TCP stats). */
export const TCP_REPORT_MS = 10_000;

/**
 * Joins `client` and `upstream`. `first` holds bytes already read from the client (sniffing).
 * `plain` is the socket whose byte counts are the app's own bytes (the unencrypted side). With no
 * byte either way for `idleTimeoutMs` (0: never), both are closed.
 */
export function relayTcp(
  client: net.Socket,
  upstream: net.Socket,
  first: Buffer | null,
  report: TcpReport,
  plainIsClient: boolean,
  idleTimeoutMs: number,
  /** The connection is closed this long after it opened, busy or not (0: never). */
  maxDurationMs = 0,
): void {
  if (first !== null && first.length > 0) upstream.write(first);
  client.pipe(upstream);
  upstream.pipe(client);
  const plain = plainIsClient ? client : upstream;
  let sent = 0;
  let received = 0;
  const counts = (): [number, number] => {
    // From the plain socket's point of view: it read what the client sent when it is the client.
    const read = plain.bytesRead;
    const written = plain.bytesWritten;
    return plainIsClient ? [written, read] : [read, written];
  };
  const flush = (): void => {
    const [s, r] = counts();
    if (s !== sent || r !== received) {
      report.bytes(s - sent, r - received);
      sent = s;
      received = r;
    }
  };
  const timer = setInterval(flush, TCP_REPORT_MS);
  timer.unref();
  let done = false;
  const finish = (): void => {
    if (done) return;
    done = true;
    clearInterval(timer);
    flush();
    report.closed();
  };
  const destroyBoth = (): void => {
    client.destroy();
    upstream.destroy();
  };
  client.on('error', destroyBoth);
  upstream.on('error', destroyBoth);
  if (idleTimeoutMs > 0) {
    // The client's socket sees every byte: it reads what goes up and writes what comes down.
    client.setTimeout(idleTimeoutMs);
    client.once('timeout', destroyBoth);
  }
  if (maxDurationMs > 0) {
    const lifetime = setTimeout(destroyBoth, maxDurationMs);
    lifetime.unref();
    client.once('close', () => clearTimeout(lifetime));
  }
  // When one side is fully closed and the other has finished both ways, release both.
  const settle = (): void => {
    if (client.destroyed && upstream.destroyed) {
      finish();
      return;
    }
    const closedBoth = (s: net.Socket): boolean =>
      s.destroyed || (s.readableEnded && s.writableFinished);
    if (closedBoth(client) && closedBoth(upstream)) {
      client.destroy();
      upstream.destroy();
    }
  };
  // A side that closed takes no more bytes, and sends none (a client the proxy closed, one that
  // went away without ending): the other sends on what it holds, then closes (Envoy's flush
  // write), with no time limit of its own: a slow reader still gets all of it.
  const closeAfterFlush = (s: net.Socket): void => {
    if (s.destroyed) return;
    if (s.writableFinished) {
      s.destroy();
      return;
    }
    s.once('finish', () => s.destroy());
    s.end();
  };
  client.on('close', () => {
    closeAfterFlush(upstream);
    settle();
    if (upstream.destroyed) finish();
  });
  upstream.on('close', () => {
    closeAfterFlush(client);
    settle();
    if (client.destroyed) finish();
  });
  client.on('end', settle);
  upstream.on('end', settle);
  client.on('finish', settle);
  upstream.on('finish', settle);
}
