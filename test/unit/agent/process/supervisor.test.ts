import { EventEmitter } from 'node:events';
import { mkdtempSync, readFileSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import pino from 'pino';
import {
  ChildCommand,
  DRAIN_POLL_MS,
  exitCodeOf,
  supervise,
  type SignalSource,
} from '../../../../src/agent/process/supervisor';

const CHILD = path.join(__dirname, '../../../fixtures/agent-child.js');
const log = pino({ level: 'silent' });

class Signals extends EventEmitter implements SignalSource {
  send(signal: NodeJS.Signals): void {
    this.emit(signal);
  }
}

function childLog(): { file: string; lines(): string[] } {
  const file = path.join(mkdtempSync(path.join(tmpdir(), 'agent-child-')), 'child.log');
  return {
    file,
    lines: () => (existsSync(file) ? readFileSync(file, 'utf8').trim().split('\n') : []),
  };
}

async function until(check: () => boolean, ms = 3000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!check()) {
    if (Date.now() > deadline) throw new Error('condition not met in time');
    await new Promise((r) => setTimeout(r, 20));
  }
}

const children: ChildCommand[] = [];
function startChild(env: Record<string, string>): ChildCommand {
  const child = new ChildCommand([process.execPath, CHILD, 'arg1'], log, {
    ...process.env,
    ...env,
  });
  children.push(child);
  return child;
}

afterEach(() => {
  for (const child of children.splice(0)) child.signal('SIGKILL');
});

describe('exitCodeOf', () => {
  it.each([
    ['a code', { code: 3, signal: null }, 3],
    ['SIGTERM', { code: null, signal: 'SIGTERM' as NodeJS.Signals }, 143],
    ['SIGKILL', { code: null, signal: 'SIGKILL' as NodeJS.Signals }, 137],
  ])('maps %s', (_name, exit, code) => {
    expect(exitCodeOf(exit)).toBe(code);
  });
});

describe('supervise', () => {
  it('starts the command with its arguments and forwards signals to it', async () => {
    const out = childLog();
    const child = startChild({ CHILD_LOG: out.file });
    const signals = new Signals();
    const done = supervise({ child, signals, drainMs: 0, log, onDrain: () => undefined });
    await child.start();
    await until(() => out.lines().some((l) => l.startsWith('started')));
    expect(out.lines()[0]).toMatch(/started \d+ arg1/);
    for (const s of ['SIGHUP', 'SIGUSR2', 'SIGQUIT'] as const) signals.send(s);
    await until(() => out.lines().length >= 4);
    // Pending signals are delivered in signal-number order, not in sending order.
    expect(out.lines().slice(1).sort()).toEqual([
      'signal SIGHUP',
      'signal SIGQUIT',
      'signal SIGUSR2',
    ]);
    signals.send('SIGTERM');
    expect(await done).toBe(0);
  });

  it('on SIGTERM turns readiness off, keeps the command running through the drain, then stops it', async () => {
    const out = childLog();
    const child = startChild({ CHILD_LOG: out.file, CHILD_TERM_CODE: '0' });
    const signals = new Signals();
    let drainedAt = 0;
    const done = supervise({
      child,
      signals,
      drainMs: 400,
      log,
      onDrain: () => (drainedAt = Date.now()),
    });
    await child.start();
    await until(() => out.lines().length >= 1);
    const sentAt = Date.now();
    signals.send('SIGTERM');
    expect(drainedAt).toBeGreaterThanOrEqual(sentAt);
    await new Promise((r) => setTimeout(r, 200));
    expect(child.isRunning()).toBe(true);
    expect(out.lines()).not.toContain('signal SIGTERM');
    const code = await done;
    expect(Date.now() - sentAt).toBeGreaterThanOrEqual(390);
    expect(out.lines()).toContain('signal SIGTERM');
    expect(code).toBe(0);
  });

  it("exits with the command's own code after the drain", async () => {
    const out = childLog();
    const child = startChild({ CHILD_LOG: out.file, CHILD_TERM_CODE: '7' });
    const signals = new Signals();
    const done = supervise({ child, signals, drainMs: 10, log, onDrain: () => undefined });
    await child.start();
    await until(() => out.lines().length >= 1);
    signals.send('SIGTERM');
    expect(await done).toBe(7);
  });

  it('cuts the drain short on a second shutdown signal', async () => {
    const out = childLog();
    const child = startChild({ CHILD_LOG: out.file });
    const signals = new Signals();
    const done = supervise({ child, signals, drainMs: 60_000, log, onDrain: () => undefined });
    await child.start();
    await until(() => out.lines().length >= 1);
    const started = Date.now();
    signals.send('SIGTERM');
    signals.send('SIGINT');
    expect(await done).toBe(0);
    expect(Date.now() - started).toBeLessThan(5000);
  });

  /** A started command that ignores SIGTERM, under supervision. */
  async function stubborn(timing: { drainMs: number; killAfterMs: number }) {
    const out = childLog();
    const child = startChild({ CHILD_LOG: out.file, CHILD_IGNORE_TERM: '1' });
    const signals = new Signals();
    const done = supervise({ child, signals, ...timing, log, onDrain: () => undefined });
    await child.start();
    await until(() => out.lines().length >= 1);
    return { out, signals, done };
  }

  it('kills a command that ignores SIGTERM, after killAfterMs', async () => {
    const { out, signals, done } = await stubborn({ drainMs: 10, killAfterMs: 300 });
    signals.send('SIGTERM');
    expect(await done).toBe(137);
    expect(out.lines()).toContain('signal SIGTERM');
  });

  it('kills a command that ignores SIGTERM at the next shutdown signal', async () => {
    const { out, signals, done } = await stubborn({ drainMs: 60_000, killAfterMs: 60_000 });
    signals.send('SIGTERM'); // drain
    signals.send('SIGTERM'); // end the drain: SIGTERM to the command, which ignores it
    await until(() => out.lines().includes('signal SIGTERM'));
    signals.send('SIGINT'); // kill
    expect(await done).toBe(137);
  });

  it('exits non-zero when the command dies on its own, even with code 0', async () => {
    const child = startChild({ CHILD_EXIT_AFTER_MS: '50', CHILD_EXIT_CODE: '0' });
    const done = supervise({
      child,
      signals: new Signals(),
      drainMs: 0,
      log,
      onDrain: () => undefined,
    });
    await child.start();
    expect(await done).toBe(1);
  });

  it('passes on the code of a command that dies on its own with an error', async () => {
    const child = startChild({ CHILD_EXIT_AFTER_MS: '50', CHILD_EXIT_CODE: '42' });
    const done = supervise({
      child,
      signals: new Signals(),
      drainMs: 0,
      log,
      onDrain: () => undefined,
    });
    await child.start();
    expect(await done).toBe(42);
  });

  it('reports 128 + the signal of a command killed by a signal', async () => {
    const child = startChild({});
    const done = supervise({
      child,
      signals: new Signals(),
      drainMs: 0,
      log,
      onDrain: () => undefined,
    });
    await child.start();
    process.kill((child as unknown as { child: { pid: number } }).child.pid, 'SIGKILL');
    expect(await done).toBe(137);
  });

  it('exits 127 when the command does not exist', async () => {
    const child = new ChildCommand(['/nonexistent/proxy'], log);
    const done = supervise({
      child,
      signals: new Signals(),
      drainMs: 0,
      log,
      onDrain: () => undefined,
    });
    await expect(child.start()).rejects.toThrow(/cannot start/);
    expect(await done).toBe(127);
  });

  describe('the drain ends as soon as nothing is in flight', () => {
    beforeEach(() => jest.useFakeTimers());
    afterEach(() => jest.useRealTimers());

    /** Whether `promise` has settled, without letting any timer run. */
    async function settled(promise: Promise<unknown>): Promise<boolean> {
      let done = false;
      void promise.then(() => (done = true));
      await Promise.resolve();
      await Promise.resolve();
      return done;
    }

    it('without a command: readiness off, then exit 0 at once, not after the drain time', async () => {
      const signals = new Signals();
      let drained = false;
      const done = supervise({
        child: null,
        signals,
        drainMs: 60_000,
        log,
        onDrain: () => (drained = true),
      });
      signals.send('SIGTERM');
      expect(drained).toBe(true);
      expect(await settled(done)).toBe(true);
      expect(await done).toBe(0);
      expect(jest.getTimerCount()).toBe(0);
    });

    it("with the agent's own connections: once the last one is done", async () => {
      const signals = new Signals();
      let open = 2;
      const done = supervise({
        child: null,
        signals,
        drainMs: 60_000,
        log,
        onDrain: () => undefined,
        inFlight: () => open,
      });
      signals.send('SIGTERM');
      jest.advanceTimersByTime(DRAIN_POLL_MS * 3);
      expect(await settled(done)).toBe(false);
      open = 0;
      jest.advanceTimersByTime(DRAIN_POLL_MS);
      expect(await settled(done)).toBe(true);
      expect(await done).toBe(0);
    });

    it('after a quit request: readiness off and no drain at all, connections or not', async () => {
      let quit: () => void = () => undefined;
      let drained = false;
      const done = supervise({
        child: null,
        signals: new Signals(),
        drainMs: 60_000,
        log,
        onDrain: () => (drained = true),
        inFlight: () => 1,
        onQuitRequest: (q) => (quit = q),
      });
      expect(await settled(done)).toBe(false);
      quit();
      expect(drained).toBe(true);
      expect(await settled(done)).toBe(true);
      expect(await done).toBe(0);
      expect(jest.getTimerCount()).toBe(0);
    });

    it('with connections that never end: after the drain time', async () => {
      const signals = new Signals();
      const done = supervise({
        child: null,
        signals,
        drainMs: 5_000,
        log,
        onDrain: () => undefined,
        inFlight: () => 1,
      });
      signals.send('SIGTERM');
      jest.advanceTimersByTime(4_900);
      expect(await settled(done)).toBe(false);
      jest.advanceTimersByTime(100);
      expect(await done).toBe(0);
    });
  });

  it('never starts a command that had not started when the shutdown came', async () => {
    const child = startChild({});
    const signals = new Signals();
    const done = supervise({ child, signals, drainMs: 10, log, onDrain: () => undefined });
    signals.send('SIGTERM');
    expect(await done).toBe(0);
    await child.start();
    expect(child.hasStarted()).toBe(false);
  });

  it('removes its signal listeners when done', async () => {
    const signals = new Signals();
    const done = supervise({ child: null, signals, drainMs: 0, log, onDrain: () => undefined });
    expect(signals.listenerCount('SIGTERM')).toBe(1);
    signals.send('SIGTERM');
    await done;
    expect(signals.eventNames()).toEqual([]);
  });
});
