// `mooring proxy-config <namespace>/<pod>`: what the server pushes to a Pod's proxy (from its
// admin port, /debug/mesh/config_dump), or, with --proxy-admin, what the proxy itself holds (its
// own /config_dump on 127.0.0.1:15000, e.g. after `kubectl port-forward pod/<pod> 15000`). Both
// carry the configuration under `mesh` in one shape (src/api/mesh.ts MeshConfigDump), so one
// printer serves both: a summary (default), or the whole answer as JSON or YAML. Like
// `istioctl proxy-config`, whose data comes from istiod or from Envoy's admin port.

import http from 'node:http';
import https from 'node:https';
import type { Command } from 'commander';
import { stringify } from 'yaml';
import {
  MESH_DEBUG_PATHS,
  PROXY_ADMIN_PORT,
  PROXY_CONFIG_DUMP_PATH,
  type MeshConfigDump,
  type MeshService,
} from '../api/mesh';
import { EXIT, UsageError, type CliIO, type RegisterCommand } from './io';

export const DEFAULT_ADMIN_URL = 'http://127.0.0.1:9090';
const OUTPUTS = ['summary', 'json', 'yaml'] as const;
type Output = (typeof OUTPUTS)[number];

/** A stream of the Pod's proxy, as /debug/mesh/syncz and config_dump list it. */
interface StreamView {
  readonly connectedSince?: string;
  readonly versionSent?: number;
  readonly versionSynced?: number;
  readonly waitingForReader?: boolean;
  readonly worker?: number;
}

/** What both config dumps answer (the server's has streams, the proxy's may have more). */
export interface ConfigDumpAnswer {
  readonly source?: string;
  readonly pod?: string;
  readonly mesh: MeshConfigDump;
  readonly streams?: readonly StreamView[];
}

function table(rows: readonly (readonly string[])[]): string {
  const widths: number[] = [];
  for (const row of rows)
    row.forEach((cell, i) => (widths[i] = Math.max(widths[i] ?? 0, cell.length)));
  return rows
    .map((row) =>
      row
        .map((cell, i) => (i === row.length - 1 ? cell : cell.padEnd((widths[i] ?? 0) + 2)))
        .join(''),
    )
    .join('\n');
}

const portsOf = (s: MeshService): string => s.ports.map((p) => `${p.port}/${p.protocol}`).join(',');

/** The human summary of a config dump. */
export function formatProxyConfig(answer: ConfigDumpAnswer, from: string): string {
  const { mesh } = answer;
  const { proxy, settings } = mesh;
  const inbound = proxy.inbound;
  const portModes = Object.entries(inbound.portMtls ?? {}).map(([port, mode]) => `${port} ${mode}`);
  const lines = [
    `Pod            ${proxy.pod.namespace}/${proxy.pod.name}${proxy.pod.ip === null ? '' : ` (${proxy.pod.ip})`}, version ${mesh.version}, from ${from}`,
    `Identity       ${proxy.identity}`,
    `Workload       ${proxy.workload.name} (app ${proxy.workload.app ?? '-'}, version ${proxy.workload.version ?? '-'})`,
    `Inbound mTLS   ${inbound.mtlsMode}${inbound.source === undefined ? '' : ` (${inbound.source})`}${portModes.length === 0 ? '' : `; ports ${portModes.join(', ')}`}`,
    `Inbound ports  ${(inbound.ports ?? []).map((p) => `${p.port}/${p.protocol}`).join(', ') || '- (sniffed)'}`,
    `Authorization  ${(inbound.authorization ?? []).map((p) => `${p.action} ${p.name} (${p.rules.length} ${p.rules.length === 1 ? 'rule' : 'rules'})`).join(', ') || 'no policy: every caller allowed'}`,
    `JWT            ${(inbound.jwt ?? []).map((p) => `${p.issuer} (${p.source}${p.jwks === null ? ', keys not fetched: its tokens refused' : ''})`).join(', ') || 'no RequestAuthentication: tokens not read'}`,
    `Settings       tracing ${settings.tracing.otlpEndpoint ?? 'off'} (${proxy.traceSamplingPercent ?? settings.tracing.samplingPercent}%), access log ${(proxy.accessLog ?? settings.accessLog) ? 'on' : 'off'}, protocol detection ${settings.protocolDetectionTimeoutMs} ms`,
  ];
  if (answer.streams !== undefined) {
    const streams = answer.streams.map(
      (s) =>
        `since ${s.connectedSince ?? '?'}, version sent ${s.versionSent ?? '?'}${s.versionSynced === mesh.version ? ' (up to date)' : ''}${s.waitingForReader === true ? ', waiting for a slow reader' : ''}${s.worker === undefined ? '' : `, worker ${s.worker}`}`,
    );
    lines.push(
      `Streams        ${streams.length === 0 ? 'none: the proxy is not connected' : streams.join('\n               ')}`,
    );
  }
  const services = [...mesh.services].sort((a, b) => (a.key < b.key ? -1 : 1));
  lines.push(
    '',
    table([
      ['SERVICE', 'ADDRESSES', 'PORTS', 'ENDPOINTS'],
      ...services.map((s) => {
        const ready = s.endpoints.filter((e) => e.ready).length;
        const mtls = s.endpoints.filter((e) => e.identity !== null).length;
        const entry = s.entry;
        if (entry !== undefined) {
          return [
            `${s.hostname} (ServiceEntry ${entry.source.namespace}/${entry.source.name})`,
            [...s.addresses, ...(entry.subnets ?? [])].join(',') ||
              '(none: by server name, Host or port)',
            portsOf(s),
            entry.resolution === 'NONE'
              ? 'where the app dialled'
              : `${s.endpoints.length} (${entry.resolution}), ${mtls} mTLS`,
          ];
        }
        return [
          s.key,
          s.addresses.join(',') || '(headless)',
          portsOf(s),
          `${ready}/${s.endpoints.length} ready, ${mtls} mTLS`,
        ];
      }),
    ]),
    '',
    table([
      ['ENDPOINT', 'SERVICE', 'READY', 'IDENTITY', 'WORKLOAD'],
      ...services.flatMap((s) =>
        s.endpoints.map((e) => [
          `${e.address}:${Object.values(e.ports).join(',')}`,
          s.key,
          e.ready ? 'yes' : 'no',
          e.identity === null
            ? 'plain text'
            : `${e.identity}${e.plaintextPorts === undefined ? '' : ` (plain on ${e.plaintextPorts.join(',')})`}`,
          e.workload?.name ?? '-',
        ]),
      ),
    ]),
  );
  const traffic = services.filter((s) => s.routes !== undefined || s.policy !== undefined);
  if (traffic.length > 0) {
    lines.push(
      '',
      table([
        ['SERVICE', 'ROUTES', 'POLICY', 'NOT USED'],
        ...traffic.map((s) => [
          s.key,
          s.routes === undefined
            ? '-'
            : `${s.routes.source.kind} ${s.routes.source.namespace}/${s.routes.source.name} (${s.routes.rules.length} rules)`,
          s.policy === undefined
            ? '-'
            : [s.policy.source, ...(s.policy.merged ?? [])]
                .map((x) => `DestinationRule ${x.namespace}/${x.name}`)
                .join(' + '),
          [
            ...(s.routes?.shadowed ?? []).map((x) => `${x.kind} ${x.namespace}/${x.name}`),
            ...(s.policy?.shadowed ?? []).map((x) => `DestinationRule ${x.namespace}/${x.name}`),
          ].join(', ') || '-',
        ]),
      ]),
    );
  }
  return `${lines.join('\n')}\n`;
}

/** GET a JSON document; rejects with a sentence that names the URL. */
function getJson(url: URL): Promise<{ status: number; body: unknown }> {
  const get = url.protocol === 'https:' ? https.get : http.get;
  return new Promise((resolve, reject) => {
    const req = get(url, { timeout: 10_000 }, (res) => {
      let text = '';
      res.setEncoding('utf8');
      res.on('data', (c: string) => (text += c));
      res.on('end', () => {
        try {
          resolve({ status: res.statusCode ?? 0, body: JSON.parse(text) as unknown });
        } catch {
          reject(
            new Error(
              `${url.href} answered ${res.statusCode ?? 0} with something that is not JSON`,
            ),
          );
        }
      });
    });
    req.on('timeout', () => req.destroy(new Error('no answer within 10 s')));
    req.on('error', (err) => reject(new Error(`cannot reach ${url.origin}: ${err.message}`)));
  });
}

function parseUrl(value: string, flag: string): URL {
  try {
    const url = new URL(value);
    if (url.protocol === 'http:' || url.protocol === 'https:') return url;
  } catch {
    // below
  }
  throw new UsageError(`${flag} must be an http:// or https:// URL, not "${value}"`);
}

function isDump(body: unknown): body is ConfigDumpAnswer {
  const mesh = (body as { mesh?: { proxy?: unknown; services?: unknown } } | null)?.mesh;
  return (
    typeof mesh === 'object' &&
    mesh !== null &&
    typeof mesh.proxy === 'object' &&
    Array.isArray(mesh.services)
  );
}

interface Flags {
  readonly adminUrl: string;
  readonly proxyAdmin?: string;
  readonly output: string;
}

export const registerProxyConfig: RegisterCommand = (program: Command, io: CliIO, setExit) => {
  program
    .command('proxy-config')
    .argument('[namespace/pod]', 'the Pod whose proxy configuration to print')
    .description(
      "print a Pod's proxy configuration: what the server pushes to it (--admin-url), or what the proxy holds (--proxy-admin)",
    )
    .option('--admin-url <url>', "the server's admin port", DEFAULT_ADMIN_URL)
    .option(
      '--proxy-admin <url>',
      `read the proxy's own ${PROXY_CONFIG_DUMP_PATH} instead (its admin port, 127.0.0.1:${PROXY_ADMIN_PORT} in the Pod)`,
    )
    .option('-o, --output <format>', 'summary, json or yaml', 'summary')
    .action(async (podArg: string | undefined, flags: Flags) => {
      if (!OUTPUTS.includes(flags.output as Output)) {
        throw new UsageError(
          `--output must be one of ${OUTPUTS.join(', ')}, not "${flags.output}"`,
        );
      }
      let url: URL;
      if (flags.proxyAdmin !== undefined) {
        url = new URL(PROXY_CONFIG_DUMP_PATH, parseUrl(flags.proxyAdmin, '--proxy-admin'));
      } else {
        if (podArg === undefined)
          throw new UsageError('name the Pod: mooring proxy-config <namespace>/<pod>');
        if (!/^[a-z0-9-]+\/[a-z0-9.-]+$/.test(podArg)) {
          throw new UsageError(`the Pod must be <namespace>/<name>, not "${podArg}"`);
        }
        url = new URL(MESH_DEBUG_PATHS.configDump, parseUrl(flags.adminUrl, '--admin-url'));
        url.searchParams.set('pod', podArg);
      }
      const { status, body } = await getJson(url);
      if (status !== 200) {
        const e = body as { code?: unknown; message?: unknown };
        io.stderr.write(
          `mooring: ${typeof e.code === 'string' ? `${e.code}: ` : ''}${typeof e.message === 'string' ? e.message : `HTTP ${status}`}\n`,
        );
        setExit(EXIT.failure);
        return;
      }
      if (flags.output === 'json') io.stdout.write(`${JSON.stringify(body, null, 2)}\n`);
      else if (flags.output === 'yaml') io.stdout.write(stringify(body, { lineWidth: 0 }));
      else if (!isDump(body)) {
        io.stderr.write(
          `mooring: ${url.origin} answered no mesh configuration (use -o json to see it)\n`,
        );
        setExit(EXIT.failure);
        return;
      } else {
        io.stdout.write(
          formatProxyConfig(
            body,
            flags.proxyAdmin === undefined
              ? `the server at ${url.origin}`
              : `the proxy at ${url.origin}`,
          ),
        );
      }
      setExit(EXIT.ok);
    });
};
