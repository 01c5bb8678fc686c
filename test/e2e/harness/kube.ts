// kubectl against an e2e control plane, and the objects a fresh namespace needs here (without
// the node harness no controller-manager runs, so nothing creates a namespace's `default`
// ServiceAccount).
import { spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { DEFAULT_BIN_DIR } from './control-plane';
import type { ControlPlane } from './control-plane';

/** `.cache/bin/kubectl` when the build script put it there, else `kubectl` on PATH. */
export function kubectlPath(binDir: string = DEFAULT_BIN_DIR): string {
  const local = path.join(binDir, 'kubectl');
  try {
    fs.accessSync(local, fs.constants.X_OK);
    return local;
  } catch {
    return 'kubectl';
  }
}

export class KubectlError extends Error {
  constructor(
    readonly args: readonly string[],
    readonly exitCode: number | null,
    readonly stderr: string,
  ) {
    super(`kubectl ${args.join(' ')} failed (exit ${String(exitCode)}): ${stderr.trim()}`);
    this.name = 'KubectlError';
  }
}

/** Runs kubectl with the control plane's admin kubeconfig; resolves to stdout. */
export function kubectl(
  cp: Pick<ControlPlane, 'kubeconfigPath'>,
  args: readonly string[],
  stdin?: string,
): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = spawn(kubectlPath(), ['--kubeconfig', cp.kubeconfigPath, ...args], {
      stdio: ['pipe', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (chunk: string) => (stdout += chunk));
    child.stderr.setEncoding('utf8').on('data', (chunk: string) => (stderr += chunk));
    child.on('error', reject);
    child.on('close', (code) => {
      if (code === 0) resolve(stdout);
      else reject(new KubectlError(args, code, stderr));
    });
    // kubectl may exit before it reads stdin: the write then fails with EPIPE, and the exit
    // code says what happened.
    child.stdin.on('error', () => undefined);
    child.stdin.end(stdin ?? '');
  });
}

/** kubectl with `-o json` output parsed; the caller narrows the result. */
export async function kubectlJson(
  cp: Pick<ControlPlane, 'kubeconfigPath'>,
  args: readonly string[],
  stdin?: string,
): Promise<unknown> {
  const out = await kubectl(cp, [...args, '-o', 'json'], stdin);
  return JSON.parse(out) as unknown;
}

/** `kubectl create -f -` of one object given as a value; resolves to the created object. */
export function createObject(
  cp: Pick<ControlPlane, 'kubeconfigPath'>,
  object: object,
): Promise<unknown> {
  return kubectlJson(cp, ['create', '-f', '-'], JSON.stringify(object));
}

/**
 * Creates (or updates) a namespace with the given labels, and its `default` ServiceAccount, so
 * that Pods can be created in it (ServiceAccount admission requires the account to exist).
 */
export async function createNamespace(
  cp: Pick<ControlPlane, 'kubeconfigPath'>,
  name: string,
  labels: Readonly<Record<string, string>> = {},
): Promise<void> {
  const list = {
    apiVersion: 'v1',
    kind: 'List',
    items: [
      { apiVersion: 'v1', kind: 'Namespace', metadata: { name, labels } },
      { apiVersion: 'v1', kind: 'ServiceAccount', metadata: { name: 'default', namespace: name } },
    ],
  };
  try {
    await kubectl(cp, ['apply', '-f', '-'], JSON.stringify(list));
  } catch (err) {
    // With a controller-manager (the node harness), its ServiceAccount controller may create
    // `default` between apply's read and its create: apply again, which then finds it.
    if (!(err instanceof KubectlError && err.stderr.includes('AlreadyExists'))) throw err;
    await kubectl(cp, ['apply', '-f', '-'], JSON.stringify(list));
  }
}

/** Creates a ServiceAccount (other than `default`) in an existing namespace. */
export async function createServiceAccount(
  cp: Pick<ControlPlane, 'kubeconfigPath'>,
  namespace: string,
  name: string,
): Promise<void> {
  await kubectl(cp, ['create', 'serviceaccount', name, '-n', namespace]);
}
