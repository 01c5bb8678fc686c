// The inject thread pool with real worker_threads, running a stand-in thread script
// (test/fixtures/threads/review-thread.js) that speaks the protocol and fails on request. The
// real script (src/adapters/inject-thread.ts) is exercised through the compiled server in
// test/integration/inject-threads.test.ts.

import { join } from 'node:path';
import type { ReviewAnswer } from '../../../src/admission';
import { InjectThreadError, InjectThreads } from '../../../src/adapters/inject-threads';

const SCRIPT = join(__dirname, '..', '..', 'fixtures', 'threads', 'review-thread.js');

interface LogCall {
  level: 'info' | 'error';
  obj: object;
  msg: string;
}

function pool(size: number, workerData: unknown = {}, script = SCRIPT, reviewDeadlineMs = 8000) {
  const logs: LogCall[] = [];
  let restarts = 0;
  const threads = new InjectThreads({
    size,
    script,
    workerData,
    logger: {
      info: (obj, msg) => logs.push({ level: 'info', obj, msg }),
      error: (obj, msg) => logs.push({ level: 'error', obj, msg }),
    },
    onRestart: () => {
      restarts += 1;
    },
    restartDelayMs: () => 20,
    reviewDeadlineMs,
  });
  return { threads, logs, restarts: () => restarts };
}

/** The stand-in answers "<threadId>:<text>" as the message of a refusal. */
function said(answer: ReviewAnswer): { thread: string; text: string } {
  if (answer.kind !== 'refused') throw new Error('the stand-in thread only refuses');
  const [thread = '', text = ''] = answer.message.split(':');
  return { thread, text };
}

async function until(check: () => boolean, timeoutMs = 5000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!check()) {
    if (Date.now() > deadline) throw new Error('condition not met in time');
    await new Promise((r) => setTimeout(r, 10));
  }
}

describe('InjectThreads', () => {
  let open: InjectThreads[] = [];
  const started = async (size: number, workerData: unknown = {}, deadlineMs = 8000) => {
    const p = pool(size, workerData, SCRIPT, deadlineMs);
    open.push(p.threads);
    await p.threads.start();
    return p;
  };
  afterEach(async () => {
    await Promise.all(open.map((t) => t.close()));
    open = [];
  });

  it('answers each review from a thread, and gives the next review to the least busy thread', async () => {
    const { threads } = await started(2);
    expect(threads.readyCount()).toBe(2);
    const first = said(await threads.answer('a'));
    expect(first.text).toBe('a');
    // Both idle: 'hold' goes to the first thread and stays there; the next ones go to the other.
    const held = threads.answer('hold');
    const second = said(await threads.answer('b'));
    const third = said(await threads.answer('c'));
    expect(second.text).toBe('b');
    expect(second.thread).not.toBe(first.thread);
    expect(third.thread).toBe(second.thread);
    const heldFails = expect(held).rejects.toThrow(/stopping/);
    await threads.close();
    await heldFails;
  });

  it('passes an absent body through as undefined', async () => {
    const { threads } = await started(1);
    expect(said(await threads.answer(undefined)).text).toBe('undefined');
  });

  it('fails the reviews a dead thread held, replaces the thread, counts and logs it', async () => {
    const { threads, logs, restarts } = await started(1);
    const before = said(await threads.answer('x')).thread;
    const heldFails = expect(threads.answer('hold')).rejects.toThrow(/exit code 3/);
    const killer = threads.answer('exit');
    await expect(killer).rejects.toThrow(InjectThreadError);
    await expect(killer).rejects.toThrow(/the inject thread exited: exit code 3/);
    await heldFails;
    expect(restarts()).toBe(1);
    expect(logs).toContainEqual(
      expect.objectContaining({
        level: 'error',
        msg: 'an inject thread exited unexpectedly: starting a new one',
        obj: expect.objectContaining({ thread: 0, code: 3, restartInMs: 20 }),
      }),
    );
    await until(() => threads.readyCount() === 1);
    const after = said(await threads.answer('y'));
    expect(after.text).toBe('y');
    expect(after.thread).not.toBe(before);
  });

  it('replaces a thread that holds a review past the deadline, failing what it held', async () => {
    const { threads, logs, restarts } = await started(1, {}, 200);
    const before = said(await threads.answer('x')).thread;
    const heldAt = Date.now();
    await expect(threads.answer('hold')).rejects.toThrow(
      /the inject thread exited: held a review for more than 200 ms/,
    );
    expect(Date.now() - heldAt).toBeGreaterThanOrEqual(200);
    expect(restarts()).toBe(1);
    expect(logs.find((l) => l.level === 'error')?.obj).toMatchObject({
      cause: 'held a review for more than 200 ms',
    });
    await until(() => threads.readyCount() === 1);
    expect(said(await threads.answer('y')).thread).not.toBe(before);
  });

  it('names the uncaught error that killed a thread', async () => {
    const { threads } = await started(1);
    await expect(threads.answer('throw')).rejects.toThrow(
      /the inject thread exited: uncaught in the thread/,
    );
  });

  it('fails one review the thread reports as failed, and keeps the thread', async () => {
    const { threads, restarts } = await started(1);
    const id = said(await threads.answer('x')).thread;
    await expect(threads.answer('fail')).rejects.toThrow('inject thread: bad review');
    expect(said(await threads.answer('z')).thread).toBe(id);
    expect(restarts()).toBe(0);
  });

  it('rejects start() with the cause when a thread cannot load, and leaves none running', async () => {
    const p = pool(2, { failAtLoad: 'the injector is broken' });
    await expect(p.threads.start()).rejects.toThrow(
      /an inject thread failed to start: cannot load: the injector is broken/,
    );
    expect(p.threads.readyCount()).toBe(0);
    await expect(p.threads.answer('a')).rejects.toThrow(/no inject thread is running/);
  });

  it('rejects start() when the script does not exist', async () => {
    const p = pool(1, {}, join(__dirname, 'no-such-thread.js'));
    await expect(p.threads.start()).rejects.toThrow(/failed to start: .*Cannot find module/);
  });

  it('answers nothing after close()', async () => {
    const { threads } = await started(1);
    await threads.close();
    await expect(threads.answer('a')).rejects.toThrow(/no inject thread is running/);
    expect(threads.readyCount()).toBe(0);
  });

  it.each([0, -1, 1.5])('refuses a pool of %p threads', (size) => {
    expect(() => pool(size)).toThrow(/size must be a positive integer/);
  });
});
