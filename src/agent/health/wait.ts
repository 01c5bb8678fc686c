// `mooring agent wait`: polls the agent's readiness endpoint until it answers 200, for the
// postStart hook of the proxy container in classic (non-native) sidecar mode, which holds the
// app containers until the proxy is ready.

import http from 'node:http';
import { READY_PATH } from './servers';

export interface WaitOptions {
  readonly host: string;
  readonly port: number;
  readonly timeoutMs: number;
  readonly intervalMs: number;
}

function probeOnce(options: WaitOptions, timeoutMs: number): Promise<number> {
  return new Promise((resolve) => {
    const req = http.get(
      {
        host: options.host,
        port: options.port,
        path: READY_PATH,
        agent: false,
        timeout: timeoutMs,
      },
      (res) => {
        res.resume();
        resolve(res.statusCode ?? 0);
      },
    );
    req.on('timeout', () => req.destroy());
    req.on('error', () => resolve(0));
  });
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/**
 * Resolves true once the agent is ready, false when the timeout passes first. It asks at least
 * once, whatever the timeout (`--timeout 0` checks once).
 */
export async function waitForReady(
  options: WaitOptions,
  now: () => number = Date.now,
): Promise<boolean> {
  const deadline = now() + options.timeoutMs;
  for (let attempt = 0; ; attempt++) {
    const left = deadline - now();
    if (attempt > 0 && left <= 0) return false;
    if ((await probeOnce(options, attempt === 0 ? 1000 : Math.min(left, 1000))) === 200) {
      return true;
    }
    const pause = Math.min(options.intervalMs, deadline - now());
    if (pause <= 0) return false;
    await sleep(pause);
  }
}
