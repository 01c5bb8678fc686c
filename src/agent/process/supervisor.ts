// Supervision of the proxy command: `mooring agent [flags] -- CMD ARGS...` starts CMD, forwards
// signals to it, and on SIGTERM (or SIGINT) turns readiness false and drains: CMD keeps serving
// for the drain time, then is stopped, and the agent exits with its code. The drain ends as soon
// as nothing is in flight: no command running (none given, or it has exited) and no connection
// of the agent's own (`inFlight`; what a command carries the agent cannot see, so a running
// command gets the whole drain time). If CMD dies on its own the agent exits non-zero so that the
// kubelet restarts the container.

import { spawn, type ChildProcess } from 'node:child_process';
import { constants } from 'node:os';
import type { Logger } from 'pino';

/** Signals passed straight on to the command. */
export const FORWARDED_SIGNALS: readonly NodeJS.Signals[] = [
  'SIGHUP',
  'SIGUSR1',
  'SIGUSR2',
  'SIGQUIT',
  'SIGWINCH',
];
/**
 * Keeps Node's inspector closed for the agent's whole life. A Node process with no 'SIGUSR1'
 * listener opens its inspector when it gets SIGUSR1: a debugger that runs any code it is sent,
 * without authentication, on 127.0.0.1:9229, which in a Pod is the app's loopback too, in the
 * process that holds the workload's private key. A listener, from the agent command's first
 * line, makes the signal an ordinary one (forwarded to the proxy command by `supervise`, or
 * ignored). Node's `--disable-sigusr1` would close the inspector too, but it also keeps the
 * signal from the agent's listeners: nothing could be forwarded.
 */
export function keepInspectorClosed(signals: SignalSource): void {
  signals.on('SIGUSR1', () => undefined);
}

/** Signals that start a graceful shutdown (a second one cuts the drain short). */
export const SHUTDOWN_SIGNALS: readonly NodeJS.Signals[] = ['SIGTERM', 'SIGINT'];

export interface ChildExit {
  readonly code: number | null;
  readonly signal: NodeJS.Signals | null;
}

/** A shell's exit code for a child's end: its code, or 128 + the number of the killing signal. */
export function exitCodeOf(exit: ChildExit): number {
  if (exit.code !== null) return exit.code;
  const n = exit.signal === null ? undefined : constants.signals[exit.signal];
  return n === undefined ? 1 : 128 + n;
}

/** Where signals come from: `process`, or an EventEmitter in tests. */
export interface SignalSource {
  on(signal: NodeJS.Signals, listener: () => void): unknown;
  off(signal: NodeJS.Signals, listener: () => void): unknown;
}

export class ChildCommand {
  private child: ChildProcess | null = null;
  private exit: ChildExit | null = null;
  private cancelled = false;
  readonly exited: Promise<ChildExit>;
  private resolveExit: (exit: ChildExit) => void = () => undefined;

  constructor(
    readonly command: readonly string[],
    private readonly log: Logger,
    /** The command's environment (the agent's own, in production). */
    private readonly env: NodeJS.ProcessEnv = process.env,
  ) {
    this.exited = new Promise((resolve) => {
      this.resolveExit = resolve;
    });
  }

  /** Spawns the command; resolves once it runs, rejects when it cannot be started. */
  start(): Promise<void> {
    const [file, ...args] = this.command;
    if (file === undefined) return Promise.reject(new Error('no command to run'));
    if (this.cancelled || this.child !== null) return Promise.resolve();
    return new Promise((resolve, reject) => {
      const child = spawn(file, args, { stdio: 'inherit', env: this.env });
      this.child = child;
      child.once('spawn', () => {
        this.log.info({ command: file, childPid: child.pid }, 'proxy command started');
        resolve();
      });
      child.once('error', (err: NodeJS.ErrnoException) => {
        if (child.pid === undefined) {
          this.exit = { code: err.code === 'ENOENT' ? 127 : 126, signal: null };
          this.resolveExit(this.exit);
          reject(new Error(`cannot start ${file}: ${err.message}`));
        } else {
          this.log.error({ err: err.message }, 'proxy command error');
        }
      });
      child.once('exit', (code, signal) => {
        this.exit = { code, signal };
        this.resolveExit(this.exit);
      });
    });
  }

  hasStarted(): boolean {
    return this.child !== null;
  }

  /** Never starts the command (shutdown before it started). */
  cancel(): void {
    this.cancelled = true;
  }

  isRunning(): boolean {
    return this.child !== null && this.exit === null;
  }

  /** Sends `signal` to the command when it runs. */
  signal(signal: NodeJS.Signals): void {
    if (this.isRunning()) this.child?.kill(signal);
  }
}

/** How long a stopping command may ignore SIGTERM (the kubelet's grace period is usually 30 s). */
export const DEFAULT_KILL_AFTER_MS = 10_000;

export interface SupervisionOptions {
  readonly child: ChildCommand | null;
  readonly signals: SignalSource;
  readonly drainMs: number;
  /** How long a command that was told to stop (SIGTERM) may take before it is killed. */
  readonly killAfterMs?: number;
  readonly log: Logger;
  /** Called when the drain starts: readiness goes false. */
  readonly onDrain: () => void;
  /**
   * Requests and connections the agent itself carries (its built-in proxy); none when absent.
   * Read when the drain starts and every DRAIN_POLL_MS during it.
   */
  readonly inFlight?: () => number;
  /**
   * Registers how a quit request (POST /quitquitquit on the agent's port, as pilot-agent has it:
   * a Job's last command) stops the agent: a shutdown with no drain to wait out.
   */
  readonly onQuitRequest?: (quit: () => void) => void;
}

/** How often a drain looks whether anything is still in flight. */
export const DRAIN_POLL_MS = 100;

/**
 * Runs until a shutdown signal or the command's end; resolves with the agent's exit code.
 * Signals in FORWARDED_SIGNALS are passed to the command all along.
 */
export function supervise(options: SupervisionOptions): Promise<number> {
  const { child, signals, log } = options;
  return new Promise((resolve) => {
    const listeners: [NodeJS.Signals, () => void][] = [];
    const listen = (signal: NodeJS.Signals, fn: () => void): void => {
      signals.on(signal, fn);
      listeners.push([signal, fn]);
    };
    let finished = false;
    const finish = (code: number): void => {
      if (finished) return;
      finished = true;
      for (const [signal, fn] of listeners) signals.off(signal, fn);
      clearTimeout(drainTimer);
      clearInterval(pollTimer);
      clearTimeout(killTimer);
      resolve(code);
    };

    let shuttingDown = false;
    let drainTimer: NodeJS.Timeout | undefined;
    let pollTimer: NodeJS.Timeout | undefined;
    let killTimer: NodeJS.Timeout | undefined;
    const nothingInFlight = (): boolean =>
      !(child?.isRunning() ?? false) && (options.inFlight?.() ?? 0) === 0;
    let endDrain: () => void = () => undefined;
    let drainEnded = false;
    // A command that ignores SIGTERM is killed (as pilot-agent does to Envoy), after
    // killAfterMs or at the next shutdown signal, so that the agent always ends.
    const kill = (why: string): void => {
      if (!child?.isRunning()) return;
      log.warn({ why }, 'the proxy command did not stop: killing it (SIGKILL)');
      child.signal('SIGKILL');
    };

    const stopChild = (): void => {
      if (child === null || !child.hasStarted()) {
        child?.cancel();
        finish(0);
        return;
      }
      // A command that already ended has finished the supervision through `exited`.
      if (!child.isRunning()) return;
      log.info({}, 'drain over; stopping the proxy command');
      child.signal('SIGTERM');
      const killAfterMs = options.killAfterMs ?? DEFAULT_KILL_AFTER_MS;
      killTimer = setTimeout(
        () => kill(`still running ${killAfterMs} ms after SIGTERM`),
        killAfterMs,
      );
    };

    for (const signal of FORWARDED_SIGNALS) {
      listen(signal, () => {
        if (child === null) {
          log.info({ signal }, 'no proxy command to forward the signal to: ignored');
          return;
        }
        log.info({ signal }, 'forwarding signal to the proxy command');
        child.signal(signal);
      });
    }
    /** A shutdown signal or a quit request: the first starts the drain, the next ends it. */
    const shutdown = (cause: Record<string, string>): void => {
      if (!shuttingDown) {
        shuttingDown = true;
        log.info({ ...cause, drainMs: options.drainMs }, 'shutting down: readiness off, draining');
        options.onDrain();
        endDrain = () => {
          drainEnded = true;
          endDrain = () => kill('another shutdown signal');
          clearTimeout(drainTimer);
          clearInterval(pollTimer);
          stopChild();
        };
        if (nothingInFlight()) {
          log.info({}, 'nothing in flight: the drain ends now');
          endDrain();
          return;
        }
        drainTimer = setTimeout(() => endDrain(), options.drainMs);
        pollTimer = setInterval(() => {
          if (!nothingInFlight()) return;
          log.info({}, 'nothing in flight any more: the drain ends now');
          endDrain();
        }, DRAIN_POLL_MS);
      } else {
        log.info(cause, 'second shutdown signal: ending the drain now');
        endDrain();
      }
    };
    for (const signal of SHUTDOWN_SIGNALS) listen(signal, () => shutdown({ signal }));
    options.onQuitRequest?.(() => {
      const cause = { request: 'POST /quitquitquit' };
      if (!shuttingDown) shutdown(cause);
      if (drainEnded) return;
      log.info(cause, 'quit requested: no drain (as pilot-agent), it ends now');
      endDrain();
    });

    if (child !== null) {
      void child.exited.then((exit) => {
        const code = exitCodeOf(exit);
        if (shuttingDown) {
          log.info({ code: exit.code, signal: exit.signal }, 'proxy command stopped');
          finish(code);
        } else {
          log.error(
            { code: exit.code, signal: exit.signal },
            'the proxy command exited on its own; the agent exits so that the container restarts',
          );
          finish(code === 0 ? 1 : code);
        }
      });
    }
  });
}
