// How the TLS sockets the proxy dials read: into one buffer of the process, each read copied out
// at its own size and pushed as Node would have pushed it (the `onread` option of tls.connect).
//
// Without it, Node 24 hands a TLS socket's reads to JavaScript as views of a 64 KiB read slab,
// and a plain socket's read reserves what is left of the slab (then copies a small read out): a
// proxy alternating the two (the app's plain request, the other sidecar's TLS answer) starts a
// new slab for nearly every request, each kept alive by its one view until the next scavenge.
// Measured in a loaded outbound sidecar at 1,000 requests/s: 909-955 slabs a second, up to 6 MiB
// of them alive between two scavenges; with the dialled TLS side reading here, none (the plain
// side reuses one slab), and the sidecar's peak resident size about 1 MiB lower
// (bench/RESULTS.md, 2026-12-07, midday).
//
// Plain sockets the proxy dials (the inbound side's app) keep Node's reads: with them reading
// here, the slab serves the inbound TLS reads (accepted sockets cannot be given `onread`) one
// after the other, lives through two scavenges, is promoted, and waits for a full collection
// with its neighbours: 0.3-0.4 MiB more each second in the same bench, the inbound sidecar's
// peak 2.6-7.1 MiB higher in two runs.

import type tls from 'node:tls';

/** The largest read: libuv's, four TLS records. */
const READ_BUFFER_BYTES = 64 * 1024;

let shared: Buffer | null = null;

export interface CopyingReads {
  readonly buffer: Buffer;
  readonly callback: (this: tls.TLSSocket, bytes: number, buf: Uint8Array) => boolean;
}

/**
 * The `onread` option for a dialled TLS socket. Every socket shares the one buffer: a read is
 * copied out before the next begins. The copy goes through `push`, as Node's own reads do:
 * buffered until a 'data' listener comes, and false when the stream is full, which makes Node
 * stop reading until the stream is read again.
 */
export function copyingReads(): CopyingReads {
  shared ??= Buffer.allocUnsafeSlow(READ_BUFFER_BYTES);
  return { buffer: shared, callback: pushCopy };
}

function pushCopy(this: tls.TLSSocket, bytes: number, buf: Uint8Array): boolean {
  return this.push(Buffer.from(buf.subarray(0, bytes)));
}
