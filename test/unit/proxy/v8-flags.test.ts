// The proxy's V8 flags are set by the running process (NODE_OPTIONS refuses them): this checks, on
// this Node binary, that flags set that way do change how the young generation is collected and
// which of V8's compilers optimizes hot code.
// V8's GC trace (--trace-gc-nvp) gives, for each scavenge, the time its background tasks spent;
// its pretenuring statistics, which allocation sites it moved to the old generation. Then the
// proxy's Buffer pool (how much a kept slice pins), and the NODE_OPTIONS the injector gives the
// proxy container (V8's worker threads, counted in /proc).

import { execFileSync } from 'node:child_process';
import { PROXY_NODE_OPTIONS } from '../../../src/constants';
import { PROXY_BUFFER_POOL_BYTES, PROXY_V8_FLAGS } from '../../../src/agent/proxy/v8-flags';

// Sets the flags given as JSON the way applyProxyV8Flags does, then makes garbage with survivors
// (objects kept for a while, each holding an ArrayBuffer of its own, as socket reads do).
const script = `
  const v8 = require('node:v8');
  for (const flag of JSON.parse(process.argv[1])) v8.setFlagsFromString(flag);
  const kept = [];
  for (let i = 0; i < 200000; i++) {
    kept.push({ i, buffer: Buffer.allocUnsafeSlow(64), text: 'x' + i });
    if (kept.length > 20000) kept.splice(0, 10000);
  }
`;

interface Scavenge {
  readonly backgroundMs: number;
}

function scavenges(flags: readonly string[]): Scavenge[] {
  const out = execFileSync(
    process.execPath,
    // A young generation of 8 MiB: room for several parallel tasks when they are allowed.
    [
      '--trace-gc-nvp',
      '--min-semi-space-size=8',
      '--max-semi-space-size=8',
      '-e',
      script,
      JSON.stringify(flags),
    ],
    { encoding: 'utf8', maxBuffer: 64 * 1024 * 1024 },
  );
  return out
    .split('\n')
    .filter((line) => line.includes(' gc=s '))
    .map((line) => {
      const m = / background\.scavenge\.parallel=([\d.]+)/.exec(line);
      if (m === null) throw new Error(`no background time in the GC trace line: ${line}`);
      return { backgroundMs: Number(m[1]) };
    });
}

describe("the proxy's V8 flags, set by the process itself", () => {
  it('make every scavenge run on the main thread alone, where without them background tasks help', () => {
    const without = scavenges([]);
    const withFlags = scavenges(PROXY_V8_FLAGS);
    expect(without.length).toBeGreaterThan(3);
    expect(withFlags.length).toBeGreaterThan(3);
    // The control: V8's default shares scavenges with background tasks on this machine.
    expect(without.filter((s) => s.backgroundMs > 0).length).toBeGreaterThan(0);
    expect(withFlags.filter((s) => s.backgroundMs > 0)).toEqual([]);
  });

  it("keep V8 from allocating a site's objects in the old generation after a burst of survivors", () => {
    // Objects of one literal site that all live a while, then die: as a request's head during
    // a slow start. V8's trace of its pretenuring statistics says when it tenures a site.
    const burst = `
      const v8 = require('node:v8');
      for (const flag of JSON.parse(process.argv[1])) v8.setFlagsFromString(flag);
      const make = (i) => ({ i, headers: ['host', 'x' + i] });
      let kept = [];
      for (let round = 0; round < 20; round++) {
        for (let i = 0; i < 50000; i++) kept.push(make(i));
        kept = [];
      }
    `;
    const tenured = (flags: readonly string[]): number =>
      execFileSync(
        process.execPath,
        [
          '--max-semi-space-size=1',
          '--trace-pretenuring-statistics',
          '-e',
          burst,
          JSON.stringify(flags),
        ],
        { encoding: 'utf8', maxBuffer: 64 * 1024 * 1024 },
      )
        .split('\n')
        .filter((line) => line.endsWith('=> tenure')).length;
    // The control: V8's default tenures the site.
    expect(tenured([])).toBeGreaterThan(0);
    expect(tenured(PROXY_V8_FLAGS)).toBe(0);
  });

  it('leave a hot function to TurboFan alone, where V8 first compiles it with Maglev', () => {
    // V8's trace of its optimizing compilers names each compile's target.
    const hot = `
      const v8 = require('node:v8');
      for (const flag of JSON.parse(process.argv[1])) v8.setFlagsFromString(flag);
      function work(s) { let n = 0; for (let i = 0; i < s.length; i++) n += s.charCodeAt(i) * (i & 7); return n; }
      let total = 0;
      for (let i = 0; i < 300000; i++) total += work('abcdefghijklmnop' + (i & 255));
      process.stdout.write(String(total > 0));
    `;
    const targets = (flags: readonly string[]): string[] =>
      execFileSync(process.execPath, ['--trace-opt', '-e', hot, JSON.stringify(flags)], {
        encoding: 'utf8',
        maxBuffer: 64 * 1024 * 1024,
      })
        .split('\n')
        .filter(
          (line) => line.startsWith('[compiling method') && line.includes('<JSFunction work '),
        )
        .map((line) => /\(target (\w+)\)/.exec(line)?.[1] ?? line);
    // The control: V8's default compiles it with Maglev first.
    expect(targets([])).toContain('MAGLEV');
    const withFlags = targets(PROXY_V8_FLAGS);
    expect(withFlags).toContain('TURBOFAN_JS');
    expect(withFlags).not.toContain('MAGLEV');
  });

  it('are flags this V8 knows (an unknown one would be ignored without a word)', () => {
    const out = execFileSync(process.execPath, ['--v8-options'], { encoding: 'utf8' });
    for (const flag of PROXY_V8_FLAGS) {
      expect(out).toContain(`  --${flag.replace(/^--no-/, '')} (`);
    }
  });
});

describe("the proxy's Buffer pool", () => {
  // 50 connections, each keeping one small slice made among its requests' Buffers (as a TLS
  // socket keeps its ALPN list), which die; then a full collection: what is left is what the kept
  // slices pin. The pool's size is set the way applyProxyBufferPool does.
  const script = `
    Buffer.poolSize = Number(process.argv[1]);
    const before = (gc(), process.memoryUsage().arrayBuffers);
    const kept = [];
    for (let c = 0; c < 50; c++) {
      kept.push(Buffer.from([8, 109, 111, 111, 114, 105, 110, 103]));
      for (let r = 0; r < 50; r++) Buffer.allocUnsafe(1200).fill(c);
    }
    gc();
    process.stdout.write(String(process.memoryUsage().arrayBuffers - before));
  `;
  const pinned = (poolBytes: number): number =>
    Number(
      execFileSync(process.execPath, ['--expose-gc', '-e', script, String(poolBytes)], {
        encoding: 'utf8',
      }),
    );

  it('lets a slice a connection keeps pin 8 KiB, where Node 24 pins 64 KiB', () => {
    expect(PROXY_BUFFER_POOL_BYTES).toBe(8 * 1024);
    // The control: with Node's own pool, nearly every connection pins a slab of 64 KiB.
    expect(pinned(64 * 1024)).toBeGreaterThan(40 * 64 * 1024);
    expect(pinned(PROXY_BUFFER_POOL_BYTES)).toBeLessThanOrEqual(51 * PROXY_BUFFER_POOL_BYTES);
  });
});

describe("the proxy's NODE_OPTIONS", () => {
  // The V8 platform's worker threads of a Node process, by their name (Node 24 names them).
  const workers = (nodeOptions: string | undefined): number => {
    const env = { ...process.env };
    delete env.NODE_OPTIONS;
    if (nodeOptions !== undefined) env.NODE_OPTIONS = nodeOptions;
    const script = `
      const fs = require('node:fs');
      const names = fs.readdirSync('/proc/self/task')
        .map((t) => fs.readFileSync('/proc/self/task/' + t + '/comm', 'utf8').trim());
      process.stdout.write(String(names.filter((n) => n === 'V8Worker').length));
    `;
    return Number(execFileSync(process.execPath, ['-e', script], { encoding: 'utf8', env }));
  };

  it('give the proxy one V8 worker thread, where Node starts four', () => {
    // The control: Node's own pool (4 on this machine's Node; at least 2 anywhere).
    expect(workers(undefined)).toBeGreaterThanOrEqual(2);
    expect(workers(PROXY_NODE_OPTIONS)).toBe(1);
  });
});
