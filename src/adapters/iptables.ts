// Applies an iptables plan (src/injector/iptables-plan.ts) with iptables-restore, through a small
// executor port so that the translation from plan to commands is tested with a recorded executor
// (test/unit/iptables-plan.test.ts) and proven for real in a network namespace
// (test/netns/iptables.test.ts).
//
// Per family: read the nat table (`iptables-save -t nat`), then one `iptables-restore --noflush`
// whose input declares our chains (which flushes them if they exist), deletes every jump into
// them that an earlier run left in the built-in chains, and appends the plan. One restore is one
// atomic transaction, so a failed run changes nothing and a second run leaves the same rules.

import { execFile } from 'node:child_process';
import { MooringError } from '../errors';
import {
  renderRestore,
  staleJumpDeletions,
  type FamilyPlan,
  type IpFamily,
  type IptablesPlan,
} from '../injector/iptables-plan';

export interface CommandResult {
  /** Exit code; 127 when the command cannot be started (not installed). */
  readonly code: number;
  readonly stdout: string;
  readonly stderr: string;
}

/** The port every iptables command goes through. */
export interface CommandExecutor {
  run(command: string, args: readonly string[], input?: string): Promise<CommandResult>;
}

const NOT_FOUND = 127;

/** Runs commands with child_process.execFile (no shell), feeding `input` on stdin. */
export function childProcessExecutor(timeoutMs = 30_000): CommandExecutor {
  return {
    run: (command, args, input) =>
      new Promise((resolve) => {
        const child = execFile(
          command,
          [...args],
          { timeout: timeoutMs, maxBuffer: 64 * 1024 * 1024, encoding: 'utf8' },
          (err, stdout, stderr) => {
            if (err === null) {
              resolve({ code: 0, stdout, stderr });
              return;
            }
            const errno = (err as NodeJS.ErrnoException).code;
            const code =
              typeof err.code === 'number' ? err.code : errno === 'ENOENT' ? NOT_FOUND : 1;
            const why = errno === 'ENOENT' ? `${command}: command not found` : err.message;
            resolve({ code, stdout, stderr: stderr === '' ? why : stderr });
          },
        );
        // A command that dies before reading stdin makes the write fail with EPIPE: its exit
        // code reports the failure.
        child.stdin?.on('error', () => undefined);
        child.stdin?.end(input ?? '');
      }),
  };
}

export type BackendChoice = 'auto' | 'nft' | 'legacy';
export type Ipv6Mode = 'auto' | 'on' | 'off';
/** `default` is whatever `iptables` on the PATH is. */
export type BackendName = 'nft' | 'legacy' | 'default';

export interface Backend {
  readonly name: BackendName;
  save(family: IpFamily): string;
  restore(family: IpFamily): string;
}

export function backendCommands(name: BackendName): Backend {
  const infix = name === 'default' ? '' : `-${name}`;
  const base = (family: IpFamily): string => (family === 4 ? 'iptables' : 'ip6tables');
  return {
    name,
    save: (family) => `${base(family)}${infix}-save`,
    restore: (family) => `${base(family)}${infix}-restore`,
  };
}

/** Number of rules (`-A` lines) a save command prints, or undefined when it does not work. */
async function ruleCount(exec: CommandExecutor, command: string): Promise<number | undefined> {
  const result = await exec.run(command, []);
  if (result.code !== 0) return undefined;
  return result.stdout.split('\n').filter((line) => line.startsWith('-A ')).length;
}

export interface BackendDetection {
  readonly backend: Backend;
  /** Rules found per backend (IPv4 + IPv6); absent when its save command does not work. */
  readonly counts: { readonly legacy?: number; readonly nft?: number };
}

/**
 * Like Istio and the Kubernetes iptables-wrapper: use the backend that already holds rules in this
 * namespace (the one with more rules), so that ours sit next to them; when neither has any (a
 * fresh pod), use `iptables` on the PATH.
 */
export async function detectBackend(exec: CommandExecutor): Promise<BackendDetection> {
  const count = async (name: 'legacy' | 'nft'): Promise<number | undefined> => {
    const b = backendCommands(name);
    const [v4, v6] = await Promise.all([ruleCount(exec, b.save(4)), ruleCount(exec, b.save(6))]);
    return v4 === undefined && v6 === undefined ? undefined : (v4 ?? 0) + (v6 ?? 0);
  };
  const legacy = await count('legacy');
  const nft = await count('nft');
  const counts = {
    ...(legacy === undefined ? {} : { legacy }),
    ...(nft === undefined ? {} : { nft }),
  };
  const l = legacy ?? 0;
  const n = nft ?? 0;
  const name: BackendName = l > n ? 'legacy' : n > l ? 'nft' : 'default';
  return { backend: backendCommands(name), counts };
}

export interface FamilyReport {
  readonly family: IpFamily;
  readonly applied: boolean;
  /** Why the family was skipped (only with `--ipv6 auto` or `off`). */
  readonly skipped?: string;
  /** Stale jumps into our chains deleted before appending ours. */
  readonly deletedJumps: number;
  readonly rules: number;
}

export interface ApplyReport {
  readonly backend: BackendName;
  /** `iptables-save --version` of the backend used, for the log. */
  readonly version: string;
  readonly counts: BackendDetection['counts'];
  readonly families: readonly FamilyReport[];
}

export interface ApplyOptions {
  readonly backend: BackendChoice;
  readonly ipv6: Ipv6Mode;
  /**
   * The network namespace's IPv6 addresses other than loopback and link-local. With `--ipv6
   * auto` IPv6 may be skipped only when there is none: a Pod with one would send its IPv6
   * traffic around the proxy.
   */
  readonly routableIPv6?: readonly string[];
}

/** Routable IPv6 addresses among a host's interfaces (os.networkInterfaces()). */
export function routableIPv6Addresses(
  interfaces: NodeJS.Dict<
    readonly { address: string; family: string | number; internal: boolean }[]
  >,
): string[] {
  return Object.values(interfaces)
    .flatMap((list) => list ?? [])
    .filter((a) => (a.family === 'IPv6' || a.family === 6) && !a.internal)
    .map((a) => a.address)
    .filter((address) => !/^fe[89ab]/i.test(address));
}

function firstLine(text: string): string {
  return text.trim().split('\n')[0] ?? '';
}

/** What to do about a failure iptables explains badly. */
function hint(stderr: string): string {
  if (/can't open lock file/.test(stderr)) {
    return (
      ' (the legacy backend locks /run/xtables.lock: /run must be writable; injected Pods mount' +
      ' the emptyDir mooring-xtables-lock there)'
    );
  }
  if (/Permission denied|Operation not permitted/.test(stderr)) {
    return ' (the program needs the capabilities NET_ADMIN and NET_RAW: mooring-init adds them in its securityContext)';
  }
  return '';
}

function failure(command: string, args: readonly string[], result: CommandResult): MooringError {
  const stderr = result.stderr.trim();
  return new MooringError(
    'IPT_ERR_APPLY',
    `${[command, ...args].join(' ')} failed (exit ${result.code}): ${stderr}${hint(stderr)}`,
  );
}

async function applyFamily(
  plan: FamilyPlan,
  exec: CommandExecutor,
  backend: Backend,
  optional: { readonly skippable: boolean; readonly whyNot?: string },
): Promise<FamilyReport> {
  const save = backend.save(plan.family);
  const current = await exec.run(save, ['-t', 'nat']);
  if (current.code !== 0) {
    if (optional.skippable) {
      const skipped = `${save} -t nat failed (exit ${current.code}): ${firstLine(current.stderr)}`;
      return { family: plan.family, applied: false, skipped, deletedJumps: 0, rules: 0 };
    }
    const err = failure(save, ['-t', 'nat'], current);
    if (optional.whyNot === undefined) throw err;
    throw new MooringError('IPT_ERR_APPLY', `${err.message}; ${optional.whyNot}`);
  }
  const cleanup = staleJumpDeletions(current.stdout);
  const restore = backend.restore(plan.family);
  const result = await exec.run(restore, ['--noflush'], renderRestore(plan, cleanup));
  if (result.code !== 0) throw failure(restore, ['--noflush'], result);
  return {
    family: plan.family,
    applied: true,
    deletedJumps: cleanup.length,
    rules: plan.rules.length,
  };
}

/**
 * Installs the plan: IPv4 always; IPv6 with `on`, never with `off`, and with `auto` when the
 * backend's ip6tables-save can read the nat table. With `auto` a failing ip6tables is skipped only
 * when the namespace has no routable IPv6 address (a kernel without IPv6 NAT on an IPv4 Pod);
 * with one it is an error, as Istio's does: its IPv6 traffic would go around the proxy.
 */
export async function applyPlan(
  plan: IptablesPlan,
  exec: CommandExecutor,
  options: ApplyOptions,
): Promise<ApplyReport> {
  const detection: BackendDetection =
    options.backend === 'auto'
      ? await detectBackend(exec)
      : { backend: backendCommands(options.backend), counts: {} };
  const { backend } = detection;
  const versionResult = await exec.run(backend.save(4), ['--version']);
  const version = firstLine(versionResult.stdout) || firstLine(versionResult.stderr);
  const families: FamilyReport[] = [
    await applyFamily(plan.v4, exec, backend, { skippable: false }),
  ];
  const routable = options.routableIPv6 ?? [];
  if (options.ipv6 === 'off') {
    families.push({ family: 6, applied: false, skipped: '--ipv6 off', deletedJumps: 0, rules: 0 });
  } else {
    families.push(
      await applyFamily(plan.v6, exec, backend, {
        skippable: options.ipv6 === 'auto' && routable.length === 0,
        ...(options.ipv6 === 'auto'
          ? {
              whyNot: `the Pod has the IPv6 address ${routable.join(', ')}: its IPv6 traffic would bypass the proxy (--ipv6 off to accept that)`,
            }
          : {}),
      }),
    );
  }
  return { backend: backend.name, version, counts: detection.counts, families };
}
