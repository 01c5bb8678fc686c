// The agent's mesh client in the test process, against `mooring serve` in cluster mode: a client
// for a Pod (its token bound to the Pod, as the kubelet gives it), and a wait for its state.
import { MeshClient } from '../../../src/agent/mesh-client';
import type { MeshState } from '../../../src/api/mesh';
import type { ControlPlane } from '../harness/control-plane';
import { tokenFor, type MooringServer } from './mooring';

/**
 * Makes started mesh clients for Pods of `namespace`; `stopAll` stops them. The control plane,
 * the server and its trust bundle are read when a client is made (they start in beforeAll).
 */
export function meshClients(
  cp: () => ControlPlane,
  mooring: () => MooringServer,
  bundle: () => string[],
  namespace: string,
): {
  client(podName: string, serviceAccount: string, uid: string): Promise<MeshClient>;
  stopAll(): Promise<void>;
} {
  const clients: MeshClient[] = [];
  return {
    async client(podName, serviceAccount, uid) {
      const token = await tokenFor(cp(), namespace, serviceAccount, {
        audience: 'mooring-ca',
        pod: { name: podName, uid },
      });
      const client = new MeshClient({
        url: new URL(mooring().url),
        pod: { name: podName, namespace, ip: null },
        readToken: () => Promise.resolve(token),
        roots: bundle,
        log: { info: () => undefined, warn: () => undefined, debug: () => undefined },
        minBackoffMs: 100,
        maxBackoffMs: 1000,
      });
      clients.push(client);
      client.start();
      return client;
    },
    async stopAll() {
      for (const c of clients.splice(0)) await c.stop();
    },
  };
}

/** Resolves when the client's state satisfies `predicate`, with the time it took from now. */
export function stateWhere(
  client: MeshClient,
  predicate: (s: MeshState) => boolean,
  timeoutMs = 20_000,
): Promise<number> {
  const started = performance.now();
  return new Promise((resolve, reject) => {
    const check = (): boolean => {
      const state = client.state();
      if (state !== null && predicate(state)) {
        stop();
        clearTimeout(timer);
        resolve(performance.now() - started);
        return true;
      }
      return false;
    };
    const stop = client.onChange(() => void check());
    const timer = setTimeout(() => {
      stop();
      reject(new Error(`the mesh client did not see the change within ${timeoutMs} ms`));
    }, timeoutMs);
    check();
  });
}
