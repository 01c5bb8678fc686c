// The original destination of a connection that mooring-init's iptables rules REDIRECTed to one of
// the proxy's listeners (15001 outbound, 15006 inbound): where the app meant to connect before the
// kernel sent it to the proxy. Node has no getsockopt, so a small N-API addon of our own
// (native/original-dst/original_dst.c) reads SO_ORIGINAL_DST / IP6T_SO_ORIGINAL_DST, as Envoy's
// original_dst listener filter does. It needs no capability (the proxy runs as UID 1337 with every
// capability dropped). This module is the only one that loads the addon (which also gives freed C
// heap memory back to the system, and drops the pages only the start used: loadMemoryTrim and
// loadDropPages, for memory-trim.ts).

import { closeSync, existsSync, openSync, readSync } from 'node:fs';
import type { Socket } from 'node:net';
import { join } from 'node:path';
import { getSystemErrorMessage, getSystemErrorName } from 'node:util';
import type { TcpKeepalive } from '../../../api/mesh';

export interface OriginalDestination {
  readonly address: string;
  readonly port: number;
  readonly family: 4 | 6;
}

/** Reads a socket's original destination: null when the connection was not redirected. */
export type OriginalDestinationReader = (socket: Socket) => OriginalDestination | null;

/** Where `make addon` builds the addon; the same path from src/ (tests) and dist/. */
export const ORIGINAL_DST_ADDON = join(
  __dirname,
  '../../../../native/original-dst/build/Release/original_dst.node',
);

const BUILD_HINT =
  '`make addon` builds it on this machine (node-gyp, python3, make and g++: native/original-dst/build.sh)';

// ELF e_machine of each Node architecture, to name the one an addon was built for.
const ELF_MACHINES: Record<number, string> = {
  3: 'ia32',
  21: 'ppc64',
  22: 's390x',
  40: 'arm',
  62: 'x64',
  183: 'arm64',
  243: 'riscv64',
};

/** Why a file dlopen refused is not an addon for this process, read from its ELF header. */
function elfMismatch(file: string): string | undefined {
  const header = Buffer.alloc(20);
  let length: number;
  try {
    const fd = openSync(file, 'r');
    try {
      length = readSync(fd, header, 0, header.length, 0);
    } finally {
      closeSync(fd);
    }
  } catch {
    return undefined;
  }
  if (length < header.length || header.readUInt32BE(0) !== 0x7f454c46) {
    return 'it is not an ELF shared object';
  }
  const machine = header[5] === 2 ? header.readUInt16BE(18) : header.readUInt16LE(18);
  const arch = ELF_MACHINES[machine] ?? `ELF machine ${machine}`;
  const bits = header[4] === 1 ? 32 : 64;
  if (arch !== process.arch) return `it was built for ${arch} (${bits}-bit), not ${process.arch}`;
  return undefined;
}

/** The addon is missing, or this Node cannot load it (another Node, architecture or system). */
export class OriginalDstAddonError extends Error {
  override readonly name = 'OriginalDstAddonError';
  constructor(
    readonly file: string,
    message: string,
    options?: { cause: unknown },
  ) {
    super(message, options);
  }
}

/** getsockopt failed for a reason other than "not redirected"; `code` is the errno's name. */
export class OriginalDstError extends Error {
  override readonly name = 'OriginalDstError';
  constructor(
    readonly code: string,
    message: string,
  ) {
    super(message);
  }
}

interface Addon {
  /** The address (port and family in out[0], out[1]), null if not redirected, or -errno. */
  originalDst(fd: number, out: Int32Array): string | null | number;
  /** glibc's malloc_trim(0): true when pages were given back (absent from older builds). */
  trimMemory?: () => boolean;
  /** The bytes glibc holds free in its heaps, or -1 (absent from older builds). */
  heapFreeBytes?: () => number;
  /** madvise(MADV_DONTNEED) on a range: 0 or a negative errno (absent from older builds). */
  dropPages?: (start: number, length: number) => number;
  /** SO_KEEPALIVE and the three TCP_KEEP* (0: the system's): 0 or a negative errno. */
  setKeepalive?: (fd: number, idleS: number, intervalS: number, probes: number) => number;
  /** [on, idle, interval, probes], or a negative errno. */
  keepaliveOf?: (fd: number) => number[] | number;
}

function isAddon(value: unknown): value is Addon {
  return (
    typeof value === 'object' &&
    value !== null &&
    typeof (value as { originalDst?: unknown }).originalDst === 'function'
  );
}

const loaded = new Map<string, Addon>();

function loadAddon(file: string): Addon {
  const known = loaded.get(file);
  if (known !== undefined) return known;
  if (!existsSync(file)) {
    throw new OriginalDstAddonError(
      file,
      `the original-destination addon is missing: ${file} does not exist; ${BUILD_HINT}`,
    );
  }
  const module = { exports: {} as unknown };
  try {
    process.dlopen(module, file);
  } catch (err) {
    // dlopen's own words (Jest's realms make `instanceof Error` unreliable here), no final period.
    const cause = String((err as { message?: unknown } | null)?.message ?? err).replace(/\.$/, '');
    const mismatch = elfMismatch(file);
    throw new OriginalDstAddonError(
      file,
      `the original-destination addon ${file} cannot be loaded by Node ${process.version} ` +
        `(${process.platform}-${process.arch}, Node-API ${process.versions.napi}): ` +
        `${mismatch === undefined ? '' : `${mismatch}; `}${cause}; ${BUILD_HINT}`,
      { cause: err },
    );
  }
  if (!isAddon(module.exports)) {
    throw new OriginalDstAddonError(
      file,
      `${file} is a Node addon but not the original-destination one (it exports no ` +
        `originalDst function); ${BUILD_HINT}`,
    );
  }
  loaded.set(file, module.exports);
  return module.exports;
}

/**
 * The addon's malloc_trim(0) (true when pages were given back), or null when the addon was
 * built before it had one. Loads the addon like loadOriginalDestination (and fails like it).
 */
export function loadMemoryTrim(file: string = ORIGINAL_DST_ADDON): (() => boolean) | null {
  const trim = loadAddon(file).trimMemory;
  return typeof trim === 'function' ? trim : null;
}

/**
 * The addon's count of the bytes glibc holds free in its heaps (mallinfo2), or null when the
 * addon was built before it had one or the C library cannot tell (not glibc 2.33 or later).
 * Loads the addon like loadOriginalDestination (and fails like it).
 */
export function loadHeapFreeBytes(file: string = ORIGINAL_DST_ADDON): (() => number) | null {
  const free = loadAddon(file).heapFreeBytes;
  return typeof free === 'function' && free() >= 0 ? free : null;
}

/**
 * The addon's madvise(MADV_DONTNEED) of a range (0 or a negative errno), or null when the addon
 * was built before it had one. Loads the addon like loadOriginalDestination (and fails like it).
 */
export function loadDropPages(
  file: string = ORIGINAL_DST_ADDON,
): ((start: number, length: number) => number) | null {
  const drop = loadAddon(file).dropPages;
  return typeof drop === 'function' ? drop : null;
}

/** TCP keepalive with its three settings, through the addon. */
export interface KeepaliveControl {
  /** Sets it on the socket: 0, or a negative errno (a socket without descriptor: -EBADF). */
  set(socket: Socket, k: TcpKeepalive): number;
  /** [on, idle s, interval s, probes] as the kernel has them, or a negative errno. */
  read(socket: Socket): readonly number[] | number;
}

const EBADF = 9;

/** The descriptor of a TCP socket or of a TLS socket over one, or null (closed). */
function fdOf(socket: Socket): number | null {
  const fd = (socket as unknown as { _handle?: { fd?: unknown } | null })._handle?.fd;
  return typeof fd === 'number' && fd >= 0 ? fd : null;
}

/** The addon's keepalive control, or null when it was built before it had one. */
export function loadTcpKeepalive(file: string = ORIGINAL_DST_ADDON): KeepaliveControl | null {
  const addon = loadAddon(file);
  const set = addon.setKeepalive;
  const of = addon.keepaliveOf;
  if (typeof set !== 'function' || typeof of !== 'function') return null;
  return {
    set: (socket, k) => {
      const fd = fdOf(socket);
      return fd === null ? -EBADF : set(fd, k.timeS ?? 0, k.intervalS ?? 0, k.probes ?? 0);
    },
    read: (socket) => {
      const fd = fdOf(socket);
      return fd === null ? -EBADF : of(fd);
    },
  };
}

const HINTS: Record<string, string> = {
  ENOPROTOOPT:
    "the kernel's connection tracking (nf_conntrack) is not loaded for this address family, so " +
    'no iptables rule can have redirected the connection',
  EBADF: 'the socket is closed',
  ENOTSOCK: 'the descriptor is not a socket',
  EAFNOSUPPORT: 'the socket is neither IPv4 nor IPv6',
};

function failure(socket: Socket, errno: number): OriginalDstError {
  const code = getSystemErrorName(errno);
  const hint = HINTS[code] ?? getSystemErrorMessage(errno);
  const peer = `${socket.remoteAddress}:${socket.remotePort}`;
  const local = `${socket.localAddress}:${socket.localPort}`;
  return new OriginalDstError(
    code,
    `cannot read the original destination of the connection from ${peer} to ${local}: ` +
      `getsockopt(SO_ORIGINAL_DST) failed with ${code}: ${hint}`,
  );
}

/** The socket's file descriptor; Node keeps it on the TCP handle. */
function descriptor(socket: Socket): number {
  const fd = fdOf(socket);
  if (fd === null) {
    throw new OriginalDstError(
      'EBADF',
      'cannot read the original destination of a socket that has no file descriptor (it is ' +
        'closed, or not a TCP socket)',
    );
  }
  return fd;
}

/**
 * Loads the addon (by default the one `make addon` builds) and returns its reader. Call it at
 * startup: a missing or incompatible addon is an OriginalDstAddonError naming the file and how
 * to build it.
 */
export function loadOriginalDestination(
  file: string = ORIGINAL_DST_ADDON,
): OriginalDestinationReader {
  const addon = loadAddon(file);
  const out = new Int32Array(2); // port and family, reused: the answer is the only allocation
  return (socket) => {
    const answer = addon.originalDst(descriptor(socket), out);
    if (typeof answer === 'string') {
      return { address: answer, port: out[0] as number, family: out[1] === 6 ? 6 : 4 };
    }
    if (answer === null) return null;
    throw failure(socket, answer);
  };
}

let defaultReader: OriginalDestinationReader | undefined;

/**
 * The original destination of a redirected connection: `{ address, port, family }`, the IPv4
 * destination for an IPv4 connection to a dual-stack listener; null when the connection was not
 * redirected. Loads the default addon on first use (an OriginalDstAddonError if it cannot).
 */
export function originalDestination(socket: Socket): OriginalDestination | null {
  defaultReader ??= loadOriginalDestination();
  return defaultReader(socket);
}
