// The original-destination loader and its errors, with the real addon that `make addon` builds.
// The answers for redirected connections are proven in network namespaces with mooring's own
// iptables rules: test/netns/original-dst.test.ts.

import { execFileSync, spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { copyFileSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, connect, type AddressInfo, type Server, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  loadDropPages,
  loadHeapFreeBytes,
  loadMemoryTrim,
  loadOriginalDestination,
  loadTcpKeepalive,
  ORIGINAL_DST_ADDON,
  OriginalDstAddonError,
  OriginalDstError,
} from '../../../src/agent/proxy/l4/original-dst';
import { dropColdPages } from '../../../src/agent/proxy/memory-trim';

let dir: string;
beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), 'mooring-original-dst-'));
});
afterAll(() => {
  rmSync(dir, { recursive: true, force: true });
});

function loadError(file: string): OriginalDstAddonError {
  try {
    loadOriginalDestination(file);
  } catch (err) {
    if (err instanceof OriginalDstAddonError) return err;
    throw err;
  }
  throw new Error(`${file} loaded`);
}

describe('loading the addon', () => {
  it('loads the addon that make addon built', () => {
    expect(typeof loadOriginalDestination()).toBe('function');
  });

  it('names the missing file and how to build it', () => {
    const file = join(dir, 'absent/original_dst.node');
    const err = loadError(file);
    expect(err.file).toBe(file);
    expect(err.message).toBe(
      `the original-destination addon is missing: ${file} does not exist; \`make addon\` builds ` +
        'it on this machine (node-gyp, python3, make and g++: native/original-dst/build.sh)',
    );
  });

  it('names the architecture an addon was built for when it is not this one', () => {
    // The real addon with the ELF header of an arm64 build (e_machine 183, EM_AARCH64).
    const file = join(dir, 'arm64.node');
    const elf = readFileSync(ORIGINAL_DST_ADDON);
    elf.writeUInt16LE(process.arch === 'arm64' ? 62 : 183, 18);
    writeFileSync(file, elf);
    const err = loadError(file);
    const other = process.arch === 'arm64' ? 'x64' : 'arm64';
    expect(err.message).toContain(
      `the original-destination addon ${file} cannot be loaded by Node ${process.version} ` +
        `(linux-${process.arch}, Node-API ${process.versions.napi}): it was built for ${other} ` +
        `(64-bit), not ${process.arch}; `,
    );
    expect(err.message).toContain('`make addon` builds it on this machine');
    expect((err.cause as { code?: string }).code).toBe('ERR_DLOPEN_FAILED');
  });

  it('says a file that is not a shared object is not one', () => {
    const file = join(dir, 'text.node');
    writeFileSync(file, 'not an addon, but long enough to have a header\n');
    expect(loadError(file).message).toMatch(
      /cannot be loaded by Node .*: it is not an ELF shared object; .*text\.node: file too short; `make addon` builds it/,
    );
  });

  it('passes on why Node refused a shared object of this architecture that is not an addon', () => {
    writeFileSync(join(dir, 'plain.c'), 'int mooring_not_an_addon;\n');
    const file = join(dir, 'plain.node');
    execFileSync('cc', ['-shared', '-fPIC', '-o', file, join(dir, 'plain.c')]);
    expect(loadError(file).message).toMatch(
      /cannot be loaded by Node [^:]*\): Module did not self-register: '.*plain\.node'; `make addon`/,
    );
  });

  it('loads a copy of the addon from another place (a container image lays it out anew)', () => {
    const file = join(dir, 'copy.node');
    copyFileSync(ORIGINAL_DST_ADDON, file);
    expect(typeof loadOriginalDestination(file)).toBe('function');
  });
});

describe('giving freed C heap memory back (malloc_trim)', () => {
  it('returns to the system the pages of memory freed below memory still in use', () => {
    expect(typeof loadMemoryTrim()).toBe('function');
    // A child: 60 MiB of Buffers from the C heap (48 KiB each: below glibc's mmap threshold),
    // one more kept above them, the 60 MiB freed: the heap cannot shrink from its top, and
    // the freed pages stay resident until the trim.
    const script = `
      const fs = require('node:fs');
      const m = { exports: {} };
      process.dlopen(m, process.argv[1]);
      const anon = () => Number(/RssAnon:\\s+(\\d+)/.exec(fs.readFileSync('/proc/self/status', 'utf8'))[1]) * 1024;
      let many = Array.from({ length: 1280 }, () => Buffer.allocUnsafeSlow(48 * 1024).fill(1));
      const kept = Buffer.allocUnsafeSlow(48 * 1024).fill(2);
      many = null;
      globalThis.gc();
      setTimeout(() => {
        globalThis.gc();
        const before = anon();
        const released = m.exports.trimMemory();
        const after = anon();
        process.stdout.write(JSON.stringify({ before, after, released, kept: kept[0] }));
      }, 300);
    `;
    const out = execFileSync(process.execPath, ['--expose-gc', '-e', script, ORIGINAL_DST_ADDON], {
      encoding: 'utf8',
    });
    const r = JSON.parse(out) as { before: number; after: number; released: boolean };
    expect(r.released).toBe(true);
    expect(r.before - r.after).toBeGreaterThan(40 * 1024 * 1024);
  });

  it('tells how many bytes the C heap holds free: the memory freed, before and after a trim', () => {
    expect(typeof loadHeapFreeBytes()).toBe('function');
    // The same child as above, reading the free bytes: none of the 60 MiB before they are
    // freed; all of them once freed, and still after the trim (free, their pages given back).
    const script = `
      const m = { exports: {} };
      process.dlopen(m, process.argv[1]);
      let many = Array.from({ length: 1280 }, () => Buffer.allocUnsafeSlow(48 * 1024).fill(1));
      const kept = Buffer.allocUnsafeSlow(48 * 1024).fill(2);
      const inUse = m.exports.heapFreeBytes();
      many = null;
      globalThis.gc();
      setTimeout(() => {
        globalThis.gc();
        const freed = m.exports.heapFreeBytes();
        m.exports.trimMemory();
        const trimmed = m.exports.heapFreeBytes();
        process.stdout.write(JSON.stringify({ inUse, freed, trimmed, kept: kept[0] }));
      }, 300);
    `;
    const out = execFileSync(process.execPath, ['--expose-gc', '-e', script, ORIGINAL_DST_ADDON], {
      encoding: 'utf8',
    });
    const r = JSON.parse(out) as { inUse: number; freed: number; trimmed: number };
    expect(r.freed - r.inUse).toBeGreaterThan(55 * 1024 * 1024);
    expect(Math.abs(r.trimmed - r.freed)).toBeLessThan(4 * 1024 * 1024);
  });
});

describe("dropping the pages of Node's binary only the start used (madvise)", () => {
  it("takes a real process's read-only file pages out of its resident set, and the process goes on", async () => {
    expect(typeof loadDropPages()).toBe('function');
    // A child prints its smaps, drops the ranges chosen from them, then works (crypto, zlib,
    // code of the binary it had not run): the pages it needs come back from the page cache.
    const script = `
      const fs = require('node:fs');
      const m = { exports: {} };
      process.dlopen(m, process.argv[1]);
      const file = () => Number(/RssFile:\\s+(\\d+)/.exec(fs.readFileSync('/proc/self/status', 'utf8'))[1]) * 1024;
      process.stdout.write(JSON.stringify(fs.readFileSync('/proc/self/smaps', 'utf8')) + '\\n');
      let input = '';
      process.stdin.on('data', (d) => {
        input += d;
        if (!input.endsWith('\\n')) return;
        const before = file();
        const rcs = JSON.parse(input).map(([start, length]) => m.exports.dropPages(start, length));
        const after = file();
        const digest = require('node:crypto').createHash('sha256').update('mooring').digest('hex');
        const zipped = require('node:zlib').gunzipSync(require('node:zlib').gzipSync('x'.repeat(1000))).length;
        process.stdout.write(JSON.stringify({ before, after, rcs, digest, zipped }) + '\\n');
        process.exit(0);
      });
    `;
    const child = spawn(process.execPath, ['-e', script, ORIGINAL_DST_ADDON]);
    const lines: string[] = [];
    let buffered = '';
    child.stdout.on('data', (d: Buffer) => {
      buffered += d.toString();
      let nl: number;
      while ((nl = buffered.indexOf('\n')) !== -1) {
        lines.push(buffered.slice(0, nl));
        buffered = buffered.slice(nl + 1);
        if (lines.length === 1) {
          const ranges: [number, number][] = [];
          const report = dropColdPages(
            JSON.parse(lines[0] as string) as string,
            (start, length) => {
              ranges.push([start, length]);
              return 0;
            },
          );
          expect(report.mappings).toBe(ranges.length);
          child.stdin.write(`${JSON.stringify(ranges)}\n`);
        }
      }
    });
    const code = await new Promise((resolve) => child.on('exit', resolve));
    expect(code).toBe(0);
    const r = JSON.parse(lines[1] as string) as {
      before: number;
      after: number;
      rcs: number[];
      digest: string;
      zipped: number;
    };
    expect(r.rcs.length).toBeGreaterThan(0);
    expect(r.rcs.every((rc) => rc === 0)).toBe(true);
    // Most of a fresh Node's file pages were the start's (about 40 of 45 MiB here).
    expect(r.before - r.after).toBeGreaterThan(10 * 1024 * 1024);
    expect(r.digest).toBe(createHash('sha256').update('mooring').digest('hex'));
    expect(r.zipped).toBe(1000);
  });
});

describe("TCP keepalive with its three settings (a DestinationRule's tcpKeepalive)", () => {
  it('sets SO_KEEPALIVE, the idle time, the interval and the probes on a socket, and reads them back', async () => {
    const control = loadTcpKeepalive();
    expect(control).not.toBeNull();
    const server = createServer((s) => s.on('error', () => {}));
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const socket = connect((server.address() as AddressInfo).port, '127.0.0.1');
    await new Promise((r) => socket.once('connect', r));
    try {
      const before = control?.read(socket) as number[];
      expect(before[0]).toBe(0);
      expect(control?.set(socket, { timeS: 600, intervalS: 75, probes: 3 })).toBe(0);
      expect(control?.read(socket)).toEqual([1, 600, 75, 3]);
      // Unset settings stay the system's.
      expect(control?.set(socket, { timeS: 30 })).toBe(0);
      expect(control?.read(socket)).toEqual([1, 30, 75, 3]);
    } finally {
      socket.destroy();
      await new Promise((r) => server.close(r));
    }
    // A closed socket has no descriptor: EBADF, nothing thrown.
    expect(control?.set(socket, { timeS: 5 })).toBe(-9);
  });
});

describe('reading a socket that cannot have an original destination', () => {
  const read = loadOriginalDestination();
  let server: Server;
  let path: string;
  const accepted: Socket[] = [];

  beforeAll(async () => {
    path = join(dir, 'unix.sock');
    server = createServer((s) => accepted.push(s));
    await new Promise<void>((resolve) => server.listen(path, resolve));
  });
  afterAll(async () => {
    for (const s of accepted) s.destroy();
    await new Promise((resolve) => server.close(resolve));
  });

  it('refuses a Unix socket with EAFNOSUPPORT', async () => {
    const client = connect(path);
    await new Promise((resolve) => client.once('connect', resolve));
    try {
      expect(() => read(client)).toThrow(OriginalDstError);
      expect(() => read(client)).toThrow(
        /getsockopt\(SO_ORIGINAL_DST\) failed with EAFNOSUPPORT: the socket is neither IPv4 nor IPv6$/,
      );
    } finally {
      client.destroy();
    }
  });

  it('refuses a closed socket with EBADF', async () => {
    const client = connect(path);
    await new Promise((resolve) => client.once('connect', resolve));
    client.destroy();
    let caught: unknown;
    try {
      read(client);
    } catch (err) {
      caught = err;
    }
    expect(caught).toBeInstanceOf(OriginalDstError);
    expect(caught).toMatchObject({
      code: 'EBADF',
      message:
        'cannot read the original destination of a socket that has no file descriptor (it is ' +
        'closed, or not a TCP socket)',
    });
  });
});
