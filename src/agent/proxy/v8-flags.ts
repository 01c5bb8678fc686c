// V8 flags of a process that runs the proxy, which it sets itself as it starts: NODE_OPTIONS (the
// injected PROXY_NODE_OPTIONS) accepts only a few of V8's flags, and these are not among them.
//
// A collection of the young generation (a scavenge) stops the event loop, and V8 shares it with
// background threads: the copying in parallel tasks, and the freeing of dead ArrayBuffers (each
// socket read is one) in a concurrent job that the next scavenge waits for. A sidecar's young
// generation is 1 MiB with little in it that survives (PROXY_NODE_OPTIONS), and its node's cores
// are busy: the loop then waits for those threads to be given a core, not for the work. Measured
// on loopback at the goals' load (bench/RESULTS.md): a scavenge stopped the loop 1-1.8 ms on
// average, mostly waiting; done by the loop's own thread alone, 0.25-0.3 ms.
//
// V8 also learns, per allocation site, whether what it allocates lives long, and then allocates
// it directly in the old generation ("pretenuring"). A sidecar's first seconds are slow (cold
// code, a storm of handshakes): a request's head, headers and plan then survive a scavenge or two,
// and V8 decided in about half of the loopback runs to pretenure such sites for good. From then on
// every request left its garbage in the old generation: a full collection every 1-2 s under load
// (of 5-15 ms of steps on the loop) and 25-30 MiB more memory per sidecar, measured. A proxy's
// long-lived objects (connections, the mesh) are few; its short-lived ones are the traffic.
//
// And V8 has two optimizing compilers: Maglev, quick, for code hot for a little while, then
// TurboFan for code that stays hot. A proxy's request path is the code that stays hot, so each
// function of it is compiled twice, and compiled again by both after a deoptimization (a new kind
// of request). Maglev's own code in Node's binary (1.7 MiB of pages a sidecar maps), its zones
// and its code objects cost a loaded sidecar about 2 MiB of its peak resident size on loopback
// (54.3-56.1 MiB against 56.1-58.8, five runs each, alternated), for the same CPU per request once
// compiled. What it costs is a sidecar's first seconds of load, which wait longer for optimized
// code: 20-25 µs more per request over the first 10 s in real Pods (bench/RESULTS.md).

import { setFlagsFromString } from 'node:v8';

export const PROXY_V8_FLAGS: readonly string[] = [
  '--no-parallel-scavenge',
  '--no-concurrent-array-buffer-sweeping',
  '--no-allocation-site-pretenuring',
  '--no-maglev',
];

/** Sets PROXY_V8_FLAGS (or the flags given) in this process; the next collection uses them. */
export function applyProxyV8Flags(flags: readonly string[] = PROXY_V8_FLAGS): void {
  for (const flag of flags) setFlagsFromString(flag);
}

// Node's pool for small Buffers. A Buffer under half the pool's size (a request head re-written,
// an answer's head and first bytes joined into one write, each TLS socket's ALPN list) is a slice
// of a shared slab of Buffer.poolSize bytes, 64 KiB in Node 24 (8 KiB until 2026:
// nodejs/node#63597), and the whole slab lives as long as its longest-lived slice: a slice a
// connection keeps pins 64 KiB. And a slab that lives across two scavenges (a few of a busy
// proxy's requests are enough) moves to the old generation, where only a full collection frees
// it, which a sidecar's small heap seldom needs: measured on loopback after the saturated run,
// 3.5-4.2 MiB of such dead slabs per sidecar (process.memoryUsage().arrayBuffers 4-4.7 MiB, 0.5
// after a full collection). With 8 KiB slabs, 0.3-1.4 MiB, and the loaded sidecar's resident
// size 1-1.5 MiB lower, the CPU per request the same (bench/RESULTS.md, 2026-12-07).

/** The proxy process's Buffer.poolSize. */
export const PROXY_BUFFER_POOL_BYTES = 8 * 1024;

/** Sets Buffer.poolSize (the next slab has that size). */
export function applyProxyBufferPool(bytes: number = PROXY_BUFFER_POOL_BYTES): void {
  Buffer.poolSize = bytes;
}
