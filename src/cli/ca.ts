// `mooring ca init | status | rotate | issue`: CA operations on the local store in --data-dir
// (or on the plugged-in CA of config.ca.pluginDir). They work beside a running `mooring serve`
// on the same directory: writes are atomic and locked, and the server picks a change up on its
// next tick (every ca.rotation.checkIntervalSeconds, at most 10 s).
//
//   init    creates the CA (a new root) and the admin token; an existing CA is left as it is
//           and reported (exit 0), so that init is safe to run again.
//   status  roots, issuer, expiry dates, next rotation; `-o json` for machines. Read-only.
//   rotate  starts a root rotation now (after applying any step that is due).
//   issue   issues a workload certificate for --spiffe-id to the CSR of --csr; the chain (leaf
//           first) goes to stdout. Applies due rotation steps first.

import { readFileSync } from 'node:fs';
import { Option, type Command } from 'commander';
import { openLocalCA, openLocalCredentials, type LocalCA } from '../adapters/local-ca';
import { FileCAStore } from '../adapters/file-store';
import type { Authority, TickResult } from '../ca/authority';
import { fingerprintOf, parseCertificatePem } from '../ca/issuer';
import type { CAStatusView } from '../ca/ports';
import { readConfigFile } from '../adapters/config-file';
import type { Config } from '../config/types';
import { MooringError } from '../errors';
import { UsageError, type CliIO } from './io';

interface CommonOptions {
  dataDir?: string;
  config?: string;
  kubeconfig?: string;
}

interface Context {
  readonly config: Config;
  readonly dataDir: string;
  /** Cluster mode: the CA in Secret mooring-ca of that cluster. */
  readonly kubeconfig?: string;
}

function context(raw: CommonOptions): Context {
  const config = readConfigFile(raw.config);
  return {
    config,
    dataDir: raw.dataDir ?? config.server.dataDir,
    ...(raw.kubeconfig === undefined ? {} : { kubeconfig: raw.kubeconfig }),
  };
}

const rfc3339 = (d: Date): string => d.toISOString().replace(/\.\d{3}Z$/, 'Z');

/** `3d4h`, `24h`, `90m`, `3600s` or `3600` (seconds). */
export function parseDuration(text: string): number {
  const trimmed = text.trim();
  if (/^\d+$/.test(trimmed)) return Number(trimmed);
  const units: Record<string, number> = { d: 86400, h: 3600, m: 60, s: 1 };
  const re = /(\d+)([dhms])/g;
  let total = 0;
  let consumed = 0;
  for (const m of trimmed.matchAll(re)) {
    total += Number(m[1]) * (units[m[2] as string] as number);
    consumed += m[0].length;
  }
  if (trimmed === '' || consumed !== trimmed.length) {
    throw new UsageError(`invalid duration "${text}": use seconds or units like 24h, 90m, 7d`);
  }
  return total;
}

/** `3d 4h`, `12m`, `expired`. */
export function humanDuration(ms: number): string {
  if (ms <= 0) return 'now';
  const s = Math.floor(ms / 1000);
  const d = Math.floor(s / 86400);
  const h = Math.floor((s % 86400) / 3600);
  const m = Math.floor((s % 3600) / 60);
  if (d > 0) return `${d}d ${h}h`;
  if (h > 0) return `${h}h ${m}m`;
  if (m > 0) return `${m}m`;
  return `${s}s`;
}

function describeEvents(result: TickResult): string[] {
  return result.events.map((e) => {
    const fp = fingerprintOf(parseCertificatePem(e.certPem, 'root'));
    switch (e.event) {
      case 'rotation-started':
        return `rotation started: new root ${fp} is in the trust bundle; issuance moves to it at ${rfc3339(e.activateAt)}`;
      case 'root-activated':
        return `root ${fp} is now issuing; the previous root stays in the trust bundle until what it signed has expired`;
      case 'root-removed':
        return `root ${fp} left the trust bundle`;
    }
  });
}

function reportEvents(io: CliIO, result: TickResult): void {
  for (const line of describeEvents(result)) io.stderr.write(`mooring: ${line}\n`);
}

/** The status as JSON: dates as RFC 3339. */
export function statusJson(
  view: CAStatusView,
  extra: Record<string, unknown>,
): Record<string, unknown> {
  return JSON.parse(
    JSON.stringify({ ...extra, ...view }, (_k, v: unknown) =>
      typeof v === 'string' && /^\d{4}-\d\d-\d\dT.*\.\d{3}Z$/.test(v)
        ? v.replace(/\.\d{3}Z$/, 'Z')
        : v,
    ),
  ) as Record<string, unknown>;
}

/** The status for people. */
export function statusText(view: CAStatusView, now: Date, where: string, rotation: string): string {
  const until = (d: Date): string =>
    `${rfc3339(d)} (${d > now ? `in ${humanDuration(d.getTime() - now.getTime())}` : 'expired'})`;
  const lines = [
    `CA:            ${where}`,
    `Issuer:        ${view.issuer.subject}${view.intermediate ? ' (plugged-in intermediate)' : ''}`,
    `  expires      ${until(view.issuer.notAfter)}`,
    `  fingerprint  ${view.issuer.fingerprint}`,
    `Trust bundle:  ${view.roots.length} root${view.roots.length === 1 ? '' : 's'}`,
  ];
  for (const root of view.roots) {
    lines.push(
      `  - ${(root.status ?? 'trusted').padEnd(7)}  ${root.subject}${root.keyType === undefined ? '' : `  [${root.keyType}]`}`,
    );
    lines.push(`      expires      ${until(root.notAfter)}`);
    if (root.activateAt !== undefined) lines.push(`      issues from  ${until(root.activateAt)}`);
    if (root.removeAt !== undefined) lines.push(`      leaves       ${until(root.removeAt)}`);
    lines.push(`      fingerprint  ${root.fingerprint}`);
  }
  const next = view.nextRotationAt;
  const pending = view.roots.some((r) => r.status === 'pending');
  lines.push(
    `Next rotation: ${
      next === null
        ? rotation
        : `${pending ? 'under way, new root issues from ' : ''}${until(next)}`
    }`,
  );
  return `${lines.join('\n')}\n`;
}

function describeWhere(ctx: Context, local: OpenedCA): string {
  if (local.where !== undefined) return local.where;
  return local.plugin === undefined
    ? `local store ${ctx.dataDir}`
    : `plugged in from ${ctx.config.ca.pluginDir ?? ''}`;
}

function rotationNote(ctx: Context, local: OpenedCA): string {
  if (local.plugin !== undefined)
    return 'managed outside Mooring (plugged-in CA: replace its files)';
  return ctx.config.ca.rotation.auto
    ? 'none scheduled'
    : 'automatic rotation is off (ca.rotation.auto: false)';
}

function readCsrFile(path: string, io: CliIO): Promise<string> {
  if (path !== '-') {
    try {
      return Promise.resolve(readFileSync(path, 'utf8'));
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code ?? (err as Error).message;
      throw new MooringError('CA_ERR_CSR', `cannot read the CSR file ${path}: ${code}`);
    }
  }
  return new Promise((resolve, reject) => {
    let text = '';
    io.stdin.on('data', (d: Buffer | string) => (text += d.toString()));
    io.stdin.on('end', () => resolve(text));
    io.stdin.on('error', reject);
  });
}

const commonOptions = (command: Command): Command =>
  command
    .option('--data-dir <dir>', 'the local CA store (default: server.dataDir of the config, .data)')
    .option('--config <file>', 'configuration file (YAML or JSON)')
    .option(
      '--kubeconfig <file>',
      'the CA of this cluster instead: Secret mooring-ca in $POD_NAMESPACE or cluster.namespace',
    );

/** A local CA, or (--kubeconfig) the cluster's: `where` describes it, `existed` before open. */
type OpenedCA = LocalCA & { readonly where?: string; readonly existed?: boolean };

async function open(ctx: Context, create: boolean): Promise<OpenedCA> {
  if (ctx.kubeconfig !== undefined) {
    // Cluster mode: loaded on demand (the Kubernetes client). A write is a compare-and-swap on
    // the Secret's resourceVersion; running replicas follow it by watch.
    const { connectClusterCA } = await import('../adapters/kube/cluster-ca');
    const cluster = await connectClusterCA({
      kubeconfig: ctx.kubeconfig,
      config: ctx.config,
      env: process.env,
      create,
    });
    return {
      authority: cluster.authority,
      store: undefined,
      plugin: undefined,
      existed: cluster.existed,
      where:
        cluster.store === undefined
          ? `plugged in from ${ctx.config.ca.pluginDir ?? ''}`
          : `Secret ${cluster.namespace}/mooring-ca on ${cluster.apiserver}`,
    };
  }
  return openLocalCA({ config: ctx.config, dataDir: ctx.dataDir, create });
}

export function registerCA(program: Command, io: CliIO): void {
  const ca = program
    .command('ca')
    .description(
      "CA operations on the local store, or with --kubeconfig on the cluster's: init, status, rotate, issue",
    );

  commonOptions(ca.command('init'))
    .description(
      'create the CA (a new root) and the admin token in --data-dir; an existing CA is kept',
    )
    .action(async (raw: CommonOptions) => {
      const ctx = context(raw);
      const existedLocally =
        ctx.kubeconfig === undefined &&
        ctx.config.ca.pluginDir === null &&
        (await new FileCAStore(ctx.dataDir).exists());
      const local = await open(ctx, true);
      const existed = local.existed ?? existedLocally;
      // The admin token is local mode's credential; in a cluster, RBAC is.
      if (ctx.kubeconfig === undefined) await openLocalCredentials(ctx.dataDir);
      const issuer = local.authority.status().issuer;
      const verb =
        local.plugin !== undefined
          ? 'plugged-in CA checked'
          : existed
            ? 'CA already exists, nothing changed'
            : 'CA created';
      io.stdout.write(
        `${verb}: ${describeWhere(ctx, local)}\n` +
          `issuer ${issuer.subject}, expires ${rfc3339(issuer.notAfter)}, fingerprint ${issuer.fingerprint}\n`,
      );
    });

  commonOptions(ca.command('status'))
    .description('show the roots, the issuer, expiry dates and the next rotation')
    .addOption(
      new Option('-o, --output <format>', 'output format')
        .choices(['text', 'json'])
        .default('text'),
    )
    .action(async (raw: CommonOptions & { output: 'text' | 'json' }) => {
      const ctx = context(raw);
      const local = await open(ctx, false);
      const view = local.authority.status();
      if (raw.output === 'json') {
        const extra = {
          mode:
            ctx.kubeconfig !== undefined
              ? 'cluster'
              : local.plugin === undefined
                ? 'local'
                : 'plugin',
          location:
            local.where ?? (local.plugin === undefined ? ctx.dataDir : ctx.config.ca.pluginDir),
        };
        io.stdout.write(`${JSON.stringify(statusJson(view, extra), null, 2)}\n`);
      } else {
        io.stdout.write(
          statusText(view, new Date(), describeWhere(ctx, local), rotationNote(ctx, local)),
        );
      }
    });

  commonOptions(ca.command('rotate'))
    .description(
      "start a root rotation now: the new root joins the trust bundle, issues after the propagation delay (key type, lifetime and delay from --config: pass the server's)",
    )
    .action(async (raw: CommonOptions) => {
      const ctx = context(raw);
      const { authority } = await open(ctx, false);
      const result = await authority.rotate();
      reportEvents(io, {
        ...result,
        events: result.events.filter((e) => e.event !== 'rotation-started'),
      });
      const pending = authority.status().roots.find((r) => r.status === 'pending');
      io.stdout.write(
        `rotation started: new root ${pending?.fingerprint ?? '?'} issues from ${pending?.activateAt === undefined ? '?' : rfc3339(pending.activateAt)}\n`,
      );
    });

  commonOptions(ca.command('issue'))
    .description('issue a workload certificate for a CSR; prints the chain (leaf first) as PEM')
    .requiredOption('--csr <file>', 'PEM PKCS#10 CSR ("-" for stdin)')
    .requiredOption('--spiffe-id <id>', 'spiffe://<trust-domain>/...: the identity to certify')
    .option(
      '--ttl <duration>',
      'lifetime: seconds or 24h, 90m, 7d (default ca.workloadDefaultTtlSeconds)',
    )
    .action(async (raw: CommonOptions & { csr: string; spiffeId: string; ttl?: string }) => {
      const ttlSeconds = raw.ttl === undefined ? undefined : parseDuration(raw.ttl);
      const ctx = context(raw);
      const csrPem = await readCsrFile(raw.csr, io);
      const { authority } = await open(ctx, false);
      await tickQuietly(authority, io);
      const chain = await authority.issueWorkload({
        csrPem,
        spiffeId: raw.spiffeId,
        ...(ttlSeconds === undefined ? {} : { ttlSeconds }),
      });
      io.stdout.write(chain.certificateChain.join(''));
      io.stderr.write(
        `mooring: issued ${raw.spiffeId}, serial ${chain.serialNumber}, expires ${rfc3339(chain.expiresAt)}\n`,
      );
    });
}

async function tickQuietly(authority: Authority, io: CliIO): Promise<void> {
  reportEvents(io, await authority.tick());
}
