// Benchmark of the CA.
//
//   npx tsc -p bench/tsconfig.json && node .cache/bench/bench/ca.js core
//   make build && npx tsc -p bench/tsconfig.json && node .cache/bench/bench/ca.js http
//   options: --seconds N (per measurement, default 3)  --duration N (HTTP runs, default 10)
//            --connections N (default 10)  --loader wrk|autocannon|both (default both)  --json
//            --rounds N (HTTP: repeat, alternating the servers; medians reported)
//            --cas ecdsa|rsa|both (HTTP: CA key types)  --workers N|auto (HTTP: serve's
//            --workers, default auto)  --warmup N (HTTP: seconds of unmeasured load before
//            each measured run, for every server, default 3)
//            --server NAME=DIR[@NODE] (HTTP, repeatable: `mooring serve` from the build in DIR,
//            run by the node binary NODE; default: this checkout with this node), e.g.
//            --server node24=. --server node20=/tmp/n20@/usr/bin/node
//            --cfssl-plain (HTTP: cfssl over plain HTTP instead of TLS)
//
// core: in one process, one core:
//   - the ceiling: raw node:crypto signatures with an ECDSA P-256 key and an RSA 2048 key;
//   - what a CSR costs: parse (our DER reader vs node-forge ASN.1), public-key import (raw
//     createPublicKey of the SPKI vs ours: our checks, then the cheapest import), signature check;
//   - TBSCertificate building: direct DER (what we ship) vs node-forge ASN.1 objects;
//   - Authority.issueWorkload() end to end, for P-256 and RSA 2048 CSRs, ECDSA and RSA CAs.
// http: each `mooring serve` (local mode) and `cfssl serve` (Debian golang-cfssl) side by side,
//   same machine, same CSRs, same load generator, like for like: both over TLS with keep-alive,
//   POST /v1/admin/certificates with the admin token against POST /api/v1/cfssl/sign, for P-256
//   and RSA 2048 CSRs, each with an ECDSA P-256 CA and an RSA 2048 CA. Each run also reports the
//   CPU time the server (its whole process tree) used per certificate. `--url URL --token T`
//   targets a running server instead.

import { execFileSync, spawn, spawnSync, type ChildProcess } from 'node:child_process';
import {
  createPublicKey,
  generateKeyPairSync,
  KeyObject,
  sign,
  verify,
  webcrypto,
} from 'node:crypto';
import { existsSync, mkdtempSync, openSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { request as httpRequest } from 'node:http';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import forge from 'node-forge';
import { nextTurn, systemClock, systemRandom } from '../src/adapters/system-clock';
import { Authority } from '../src/ca/authority';
import { csrDerFromPem, parseCsr } from '../src/ca/csr';
import { importPublicKey, keyIdentifier } from '../src/ca/keys';
import { compileIssuer, buildRoot, signLeaf } from '../src/ca/issuer';
import { serialNumber, workloadTemplate } from '../src/ca/profile';
import type { KeyStore, StoredCAState } from '../src/ca/ports';
import type { CAState } from '../src/ca/rotation';
import { buildTbs } from '../src/ca/x509';
import { treeCpuSeconds } from './proc';
import { luaPost, runWrkOnce } from './wrk';
import { defaultConfig } from '../src/config/validate';

const ROOT = process.cwd();
const ID = 'spiffe://cluster.local/ns/bench/sa/bench';

interface Options {
  mode: 'core' | 'http';
  seconds: number;
  duration: number;
  connections: number;
  loader: 'wrk' | 'autocannon' | 'both';
  json: boolean;
  rounds: number;
  /** `mooring serve --workers`: a number or auto. */
  workers: string;
  /** Seconds of load before each measured run (JIT warm-up for Mooring, the same for cfssl). */
  warmup: number;
  /** Which CA key types to run the HTTP comparison with. */
  cas: 'ecdsa' | 'rsa' | 'both';
  url?: string;
  token?: string;
  /** The builds of `mooring serve` to compare. */
  servers: ServerBuild[];
  /** cfssl over plain HTTP (as in the earlier results) instead of TLS. */
  cfsslPlain: boolean;
}

/** A build of Mooring: its checkout (with dist/ built) and the node binary that runs it. */
interface ServerBuild {
  readonly name: string;
  readonly dir: string;
  readonly node: string;
}

/** `NAME=DIR[@NODE]` */
function parseServer(spec: string): ServerBuild {
  const eq = spec.indexOf('=');
  if (eq <= 0) throw new Error(`--server ${spec}: expected NAME=DIR[@NODE]`);
  const [dir = '.', node = process.execPath] = spec.slice(eq + 1).split('@');
  return { name: spec.slice(0, eq), dir: resolve(dir), node };
}

function parseArgs(argv: string[]): Options {
  const o: Options = {
    mode: 'core',
    seconds: 3,
    duration: 10,
    connections: 10,
    loader: 'both',
    json: false,
    rounds: 1,
    workers: 'auto',
    warmup: 3,
    cas: 'both',
    servers: [],
    cfsslPlain: false,
  };
  for (let i = 0; i < argv.length; i += 1) {
    const a = argv[i];
    if (a === 'core' || a === 'http') o.mode = a;
    else if (a === '--seconds') o.seconds = Number(argv[++i]);
    else if (a === '--duration') o.duration = Number(argv[++i]);
    else if (a === '--connections') o.connections = Number(argv[++i]);
    else if (a === '--loader') o.loader = argv[++i] as Options['loader'];
    else if (a === '--json') o.json = true;
    else if (a === '--rounds') o.rounds = Number(argv[++i]);
    else if (a === '--workers') o.workers = argv[++i] ?? 'auto';
    else if (a === '--warmup') o.warmup = Number(argv[++i]);
    else if (a === '--cas') o.cas = argv[++i] as Options['cas'];
    else if (a === '--url') o.url = argv[++i];
    else if (a === '--token') o.token = argv[++i];
    else if (a === '--server') o.servers.push(parseServer(argv[++i] ?? ''));
    else if (a === '--cfssl-plain') o.cfsslPlain = true;
  }
  if (o.servers.length === 0)
    o.servers.push({ name: 'mooring', dir: ROOT, node: process.execPath });
  return o;
}

// --- measuring ------------------------------------------------------------------------------

interface Rate {
  readonly name: string;
  readonly perSecond: number;
  readonly microseconds: number;
}

/** Runs `fn` for `seconds` (after a short warm-up) and reports operations per second. */
async function rate(name: string, seconds: number, fn: () => unknown): Promise<Rate> {
  const isAsync = fn() instanceof Promise;
  const deadline = (s: number): bigint => process.hrtime.bigint() + BigInt(Math.round(s * 1e9));
  const warm = deadline(Math.min(0.5, seconds / 4));
  while (process.hrtime.bigint() < warm) {
    if (isAsync) await fn();
    else fn();
  }
  let n = 0;
  const start = process.hrtime.bigint();
  const end = deadline(seconds);
  while (process.hrtime.bigint() < end) {
    for (let i = 0; i < 50; i++) {
      if (isAsync) await fn();
      else fn();
    }
    n += 50;
  }
  const elapsed = Number(process.hrtime.bigint() - start) / 1e9;
  const r = {
    name,
    perSecond: Math.round(n / elapsed),
    microseconds: Math.round((elapsed / n) * 1e7) / 10,
  };
  process.stderr.write(`  ${name}: ${r.perSecond}/s (${r.microseconds} µs)\n`);
  return r;
}

class MemoryStore implements KeyStore<CAState> {
  private data: StoredCAState<CAState> | null = null;
  load(): Promise<StoredCAState<CAState> | null> {
    return Promise.resolve(this.data);
  }
  save(state: CAState): Promise<string> {
    this.data = { state, version: 'v1' };
    return Promise.resolve('v1');
  }
}

function opensslCsr(dir: string, kind: 'p256' | 'rsa2048'): string {
  const keyFile = join(dir, `${kind}.key`);
  const { privateKey } =
    kind === 'p256'
      ? generateKeyPairSync('ec', { namedCurve: 'prime256v1' })
      : generateKeyPairSync('rsa', { modulusLength: 2048 });
  writeFileSync(keyFile, privateKey.export({ format: 'pem', type: 'pkcs8' }));
  return execFileSync('openssl', ['req', '-new', '-key', keyFile, '-subj', '/CN=bench', '-batch'], {
    encoding: 'utf8',
  });
}

// --- node-forge variants, for comparison only -------------------------------------------------

const A = forge.asn1;
// The typings lack the options form; `decodeBitStrings: false` keeps signatures intact.
const asn1FromDer = A.fromDer as unknown as (
  bytes: forge.util.ByteStringBuffer,
  options: { decodeBitStrings: boolean },
) => forge.asn1.Asn1;

/** Parses a CSR with forge ASN.1 and re-encodes what must be exact bytes (info, SPKI). */
function forgeParseCsr(der: Buffer): { info: Buffer; spki: Buffer } {
  const root = asn1FromDer(forge.util.createBuffer(der.toString('binary')), {
    decodeBitStrings: false,
  });
  const info = (root.value as forge.asn1.Asn1[])[0] as forge.asn1.Asn1;
  const spki = (info.value as forge.asn1.Asn1[])[2] as forge.asn1.Asn1;
  return {
    info: Buffer.from(A.toDer(info).getBytes(), 'binary'),
    spki: Buffer.from(A.toDer(spki).getBytes(), 'binary'),
  };
}

const fromDer = (b: Buffer): forge.asn1.Asn1 =>
  asn1FromDer(forge.util.createBuffer(b.toString('binary')), { decodeBitStrings: false });
const seq = (v: forge.asn1.Asn1[]): forge.asn1.Asn1 =>
  A.create(A.Class.UNIVERSAL, A.Type.SEQUENCE, true, v);
const oidNode = (o: string): forge.asn1.Asn1 =>
  A.create(A.Class.UNIVERSAL, A.Type.OID, false, A.oidToDer(o).getBytes());
const octets = (b: string): forge.asn1.Asn1 =>
  A.create(A.Class.UNIVERSAL, A.Type.OCTETSTRING, false, b);
const bool = (): forge.asn1.Asn1 => A.create(A.Class.UNIVERSAL, A.Type.BOOLEAN, false, '\xff');
const ext = (o: string, critical: boolean, value: forge.asn1.Asn1): forge.asn1.Asn1 =>
  seq([oidNode(o), ...(critical ? [bool()] : []), octets(A.toDer(value).getBytes())]);

/** The same TBSCertificate as buildTbs() builds, as forge ASN.1 objects. */
function forgeTbs(p: {
  serial: Buffer;
  alg: Buffer;
  issuer: Buffer;
  spki: Buffer;
  notBefore: Date;
  notAfter: Date;
  akid: Buffer;
}): Buffer {
  const ski = keyIdentifier(p.spki).toString('binary');
  const tbs = seq([
    A.create(A.Class.CONTEXT_SPECIFIC, 0, true, [
      A.create(A.Class.UNIVERSAL, A.Type.INTEGER, false, '\x02'),
    ]),
    A.create(A.Class.UNIVERSAL, A.Type.INTEGER, false, p.serial.toString('binary')),
    fromDer(p.alg),
    fromDer(p.issuer),
    seq([
      A.create(A.Class.UNIVERSAL, A.Type.UTCTIME, false, A.dateToUtcTime(p.notBefore)),
      A.create(A.Class.UNIVERSAL, A.Type.UTCTIME, false, A.dateToUtcTime(p.notAfter)),
    ]),
    seq([]),
    fromDer(p.spki),
    A.create(A.Class.CONTEXT_SPECIFIC, 3, true, [
      seq([
        ext('2.5.29.19', true, seq([])),
        ext('2.5.29.15', true, A.create(A.Class.UNIVERSAL, A.Type.BITSTRING, false, '\x07\x80')),
        ext('2.5.29.37', false, seq([oidNode('1.3.6.1.5.5.7.3.1'), oidNode('1.3.6.1.5.5.7.3.2')])),
        ext('2.5.29.17', true, seq([A.create(A.Class.CONTEXT_SPECIFIC, 6, false, ID)])),
        ext('2.5.29.14', false, octets(ski)),
        ext(
          '2.5.29.35',
          false,
          seq([A.create(A.Class.CONTEXT_SPECIFIC, 0, false, p.akid.toString('binary'))]),
        ),
      ]),
    ]),
  ]);
  return Buffer.from(A.toDer(tbs).getBytes(), 'binary');
}

// --- core -----------------------------------------------------------------------------------

async function core(o: Options): Promise<Record<string, Rate[]>> {
  const dir = mkdtempSync(join(tmpdir(), 'mooring-bench-ca-'));
  const csrs = { p256: opensslCsr(dir, 'p256'), rsa2048: opensslCsr(dir, 'rsa2048') };
  const tbsLike = Buffer.alloc(450, 7);
  const ec = generateKeyPairSync('ec', { namedCurve: 'prime256v1' });
  const rsa = generateKeyPairSync('rsa', { modulusLength: 2048 });
  const out: Record<string, Rate[]> = {};

  process.stderr.write('ceiling: raw node:crypto signatures over 450 bytes\n');
  out.ceiling = [
    await rate('sign ECDSA P-256', o.seconds, () => sign('sha256', tbsLike, ec.privateKey)),
    await rate('sign RSA 2048', o.seconds, () => sign('sha256', tbsLike, rsa.privateKey)),
  ];

  process.stderr.write('CSR: parse, key import, signature check\n');
  out.csr = [];
  for (const [kind, pem] of Object.entries(csrs)) {
    const der = csrDerFromPem(pem);
    const parsed = parseCsr(der);
    const { key } = importPublicKey(parsed.spki);
    const hash = 'sha256';
    out.csr.push(
      await rate(`${kind} parse, our DER reader`, o.seconds, () => parseCsr(der)),
      await rate(`${kind} parse, node-forge ASN.1 + re-encode`, o.seconds, () =>
        forgeParseCsr(der),
      ),
      await rate(`${kind} import, SPKI DER (createPublicKey)`, o.seconds, () =>
        createPublicKey({ key: parsed.spki, format: 'der', type: 'spki' }),
      ),
      await rate(`${kind} import, our checks + import (shipped)`, o.seconds, () =>
        importPublicKey(parsed.spki),
      ),
      ...(kind === 'p256'
        ? [
            // The previous way: the raw point through WebCrypto, then a KeyObject.
            await rate(`${kind} import, raw point through WebCrypto`, o.seconds, async () =>
              KeyObject.from(
                await webcrypto.subtle.importKey(
                  'raw',
                  parsed.spki.subarray(-65),
                  { name: 'ECDSA', namedCurve: 'P-256' },
                  true,
                  ['verify'],
                ),
              ),
            ),
          ]
        : []),
      await rate(`${kind} verify`, o.seconds, () =>
        verify(hash, parsed.info, key, parsed.signature),
      ),
    );
  }

  process.stderr.write('TBSCertificate building (P-256 CSR, P-256 CA)\n');
  const rootKey = generateKeyPairSync('ec', { namedCurve: 'prime256v1' });
  const rootPem = buildRoot({
    key: rootKey,
    commonName: 'Bench',
    organization: 'cluster.local',
    now: new Date(),
    lifetimeSeconds: 3650 * 86400,
    backdateSeconds: 60,
    serial: Buffer.from([1]),
  });
  const issuer = compileIssuer({
    certPem: rootPem,
    privateKey: rootKey.privateKey,
    chainPems: [],
    windowCertificates: [],
  });
  const verified = {
    ...importPublicKey(parseCsr(csrDerFromPem(csrs.p256)).spki),
    spki: parseCsr(csrDerFromPem(csrs.p256)).spki,
    names: parseCsr(csrDerFromPem(csrs.p256)).names,
  };
  const policy = { defaultTtlSeconds: 86400, maxTtlSeconds: 604800, backdateSeconds: 60 };
  const template = () =>
    workloadTemplate({
      csr: {
        publicKey: verified.key,
        keyType: verified.keyType,
        spki: verified.spki,
        names: verified.names,
      },
      spiffeId: ID,
      ttlSeconds: undefined,
      now: new Date(),
      serial: serialNumber(systemRandom),
      issuer: issuer.window,
      policy,
    });
  const akid = keyIdentifier(readRootSpki(rootPem));
  out.tbs = [
    await rate('direct DER: template + TBS (shipped)', o.seconds, () => {
      const t = template();
      return buildTbs({
        serial: t.serial,
        signatureAlgorithm: issuer.signer.algorithmIdentifierDer,
        issuerName: issuer.nameDer,
        notBefore: t.notBefore,
        notAfter: t.notAfter,
        subjectName: t.subjectName,
        spki: t.spki,
        extensions: [...t.extensions, issuer.authorityKeyIdExtension],
      });
    }),
    await rate('node-forge ASN.1 objects + toDer', o.seconds, () =>
      forgeTbs({
        serial: serialNumber(systemRandom),
        alg: issuer.signer.algorithmIdentifierDer,
        issuer: issuer.nameDer,
        spki: verified.spki,
        notBefore: new Date(),
        notAfter: new Date(Date.now() + 86400e3),
        akid,
      }),
    ),
    await rate('direct DER + sign (whole certificate)', o.seconds, () =>
      signLeaf(template(), issuer),
    ),
  ];

  process.stderr.write(
    'Authority.issueWorkload() end to end (parse, verify, profile, build, sign, PEM)\n',
  );
  out.issue = [];
  for (const cryptoMode of ['sync', 'threadpool', 'batched'] as const) {
    for (const rootKeyType of ['ecdsa-p256', 'rsa-2048'] as const) {
      const config = defaultConfig();
      const authority = await Authority.open(
        {
          trustDomain: 'cluster.local',
          ca: { ...config.ca, rootKeyType },
          clock: systemClock,
          random: systemRandom,
          schedule: nextTurn,
          store: new MemoryStore(),
          cryptoMode,
        },
        { create: true },
      );
      for (const [kind, pem] of Object.entries(csrs)) {
        const issue = () => authority.issueWorkload({ csrPem: pem, spiffeId: ID });
        // 16 in flight, as concurrent HTTP requests would have them.
        const batch = () => Promise.all(Array.from({ length: 16 }, issue));
        const r = await rate(
          `${cryptoMode}: ${rootKeyType} CA, ${kind} CSR, 16 at a time`,
          o.seconds,
          batch,
        );
        const perCert = {
          name: r.name,
          perSecond: r.perSecond * 16,
          microseconds: Math.round((r.microseconds / 16) * 10) / 10,
        };
        process.stderr.write(`    = ${perCert.perSecond} certificates/s\n`);
        out.issue.push(perCert);
      }
    }
  }
  rmSync(dir, { recursive: true, force: true });
  return out;
}

function readRootSpki(pem: string): Buffer {
  return createPublicKey(pem).export({ format: 'der', type: 'spki' });
}

// --- http -----------------------------------------------------------------------------------

interface LoadResult {
  readonly name: string;
  readonly loader: string;
  readonly rps: number;
  readonly p50ms: number;
  readonly p99ms: number;
  readonly errors: number;
  /** CPU time of the server's process tree per answered request, µs (when its pid is known). */
  cpuUsPerRequest?: number;
}

/** What to load: a URL, its body and headers, and the server's pid and trust anchor. */
interface Target {
  readonly url: string;
  readonly body: string;
  readonly headers: Record<string, string>;
  /** PEM of the TLS server's CA (autocannon verifies it); wrk does not check certificates. */
  readonly ca?: string;
  readonly pid?: number;
}

function runWrk(name: string, t: Target, o: Options, dir: string): LoadResult {
  const bodyFile = join(dir, `body-${Math.random().toString(36).slice(2)}.json`);
  writeFileSync(bodyFile, t.body);
  const script = luaPost(`${bodyFile}.lua`, bodyFile, t.headers);
  return {
    name,
    loader: 'wrk',
    ...runWrkOnce(t.url, { connections: o.connections, duration: o.duration, script }),
  };
}

interface AutocannonResult {
  requests: { average: number };
  latency: { p50: number; p99: number };
  non2xx: number;
  errors: number;
  timeouts: number;
}

async function runAutocannon(name: string, t: Target, o: Options): Promise<LoadResult> {
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  const autocannon = require('autocannon') as (
    opts: Record<string, unknown>,
  ) => Promise<AutocannonResult>;
  const r = await autocannon({
    url: t.url,
    method: 'POST',
    headers: t.headers,
    body: t.body,
    connections: o.connections,
    duration: o.duration,
    ...(t.ca === undefined ? {} : { tlsOptions: { ca: t.ca } }),
  });
  return {
    name,
    loader: 'autocannon',
    rps: Math.round(r.requests.average),
    p50ms: r.latency.p50,
    p99ms: r.latency.p99,
    errors: r.non2xx + r.errors + r.timeouts,
  };
}

/** One measured run, with the server's CPU time per request when its pid is known. */
async function measure(run: () => LoadResult | Promise<LoadResult>, t: Target, o: Options) {
  const cpuBefore = t.pid === undefined ? 0 : treeCpuSeconds(t.pid);
  const result = await run();
  if (t.pid !== undefined) {
    const cpu = treeCpuSeconds(t.pid) - cpuBefore;
    result.cpuUsPerRequest = Math.round((cpu * 1e6) / (result.rps * o.duration));
  }
  return result;
}

async function load(name: string, t: Target, o: Options, dir: string): Promise<LoadResult[]> {
  const results: LoadResult[] = [];
  // Unmeasured load first: a long-running server is measured, not its first seconds.
  if (o.warmup > 0) runWrk(`${name} (warm-up)`, t, { ...o, duration: o.warmup }, dir);
  if (o.loader !== 'autocannon') results.push(await measure(() => runWrk(name, t, o, dir), t, o));
  if (o.loader !== 'wrk') results.push(await measure(() => runAutocannon(name, t, o), t, o));
  for (const r of results)
    process.stderr.write(
      `  ${r.loader.padEnd(10)} ${name}: ${r.rps}/s p50 ${r.p50ms} ms p99 ${r.p99ms} ms errors ${r.errors}` +
        (r.cpuUsPerRequest === undefined ? '\n' : ` cpu ${r.cpuUsPerRequest} µs/request\n`),
    );
  return results;
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

function httpStatus(port: number, path: string, method = 'GET'): Promise<number> {
  return new Promise((resolve) => {
    const req = httpRequest({ host: '127.0.0.1', port, path, method, timeout: 500 }, (res) => {
      res.resume();
      resolve(res.statusCode ?? 0);
    });
    req.on('error', () => resolve(0));
    req.on('timeout', () => {
      req.destroy();
      resolve(0);
    });
    req.end();
  });
}

async function waitFor(check: () => Promise<boolean>, what: string): Promise<void> {
  for (let i = 0; i < 600; i++) {
    if (await check()) return;
    await sleep(50);
  }
  throw new Error(`${what} did not start`);
}

async function stop(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null) return;
  const exited = new Promise((r) => child.once('exit', r));
  child.kill('SIGTERM');
  await exited;
}

interface Started {
  readonly child: ChildProcess;
  readonly url: string;
  readonly ca: string;
}

async function startMooring(
  build: ServerBuild,
  dir: string,
  rootKeyType: string,
  port: number,
  workers: string,
): Promise<Started & { token: string }> {
  const dataDir = join(dir, `${build.name}-${rootKeyType}`);
  const config = join(dir, `${build.name}-${rootKeyType}.yaml`);
  writeFileSync(config, `ca:\n  rootKeyType: ${rootKeyType}\n`);
  const log = openSync(join(dir, `serve-${build.name}-${rootKeyType}-${port}.log`), 'a');
  if (!existsSync(join(build.dir, 'dist', 'cli', 'main.js')))
    throw new Error(`run \`make build\` in ${build.dir} first (dist/ is missing)`);
  const child = spawn(
    build.node,
    [
      join(build.dir, 'bin', 'mooring.js'),
      'serve',
      '--workers',
      workers,
      '--config',
      config,
      '--data-dir',
      dataDir,
      '--listen',
      `127.0.0.1:${port}`,
      '--admin-listen',
      `127.0.0.1:${port + 1}`,
    ],
    { stdio: ['ignore', 'ignore', log], cwd: build.dir },
  );
  // With several workers, /readyz is 200 once every worker is ready.
  await waitFor(async () => (await httpStatus(port + 1, '/readyz')) === 200, 'mooring serve');
  return {
    child,
    url: `https://127.0.0.1:${port}/v1/admin/certificates`,
    token: readFileSync(join(dataDir, 'admin-token'), 'utf8').trim(),
    ca: readFileSync(join(dataDir, 'root-cert.pem'), 'utf8'),
  };
}

/** A self-signed CA (or TLS) certificate and key made by openssl, as files. */
function opensslSelfSigned(
  dir: string,
  name: string,
  kind: 'ecdsa' | 'rsa',
  extensions: string[],
): { cert: string; key: string } {
  const key = join(dir, `${name}-key.pem`);
  const cert = join(dir, `${name}.pem`);
  const newKey =
    kind === 'ecdsa'
      ? ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256']
      : ['-newkey', 'rsa:2048'];
  execFileSync(
    'openssl',
    [
      'req',
      '-x509',
      '-new',
      '-nodes',
      ...newKey,
      '-keyout',
      key,
      '-out',
      cert,
      '-subj',
      `/CN=${name}`,
      '-days',
      '3650',
      ...extensions.flatMap((e) => ['-addext', e]),
    ],
    { stdio: 'ignore' },
  );
  return { cert, key };
}

/**
 * `cfssl serve` with a CA of its own, over TLS with an ECDSA P-256 serving certificate (as
 * Mooring's), or plain HTTP with --cfssl-plain.
 */
async function startCfssl(
  dir: string,
  kind: 'ecdsa' | 'rsa',
  port: number,
  plain: boolean,
): Promise<Started> {
  const ca = opensslSelfSigned(dir, `cfssl-${kind}`, kind, [
    'basicConstraints=critical,CA:TRUE',
    'keyUsage=critical,keyCertSign,cRLSign',
  ]);
  const tls = opensslSelfSigned(dir, `cfssl-tls-${kind}`, 'ecdsa', ['subjectAltName=IP:127.0.0.1']);
  const child = spawn(
    'cfssl',
    [
      'serve',
      '-address',
      '127.0.0.1',
      '-port',
      String(port),
      '-ca',
      ca.cert,
      '-ca-key',
      ca.key,
      ...(plain ? [] : ['-tls-cert', tls.cert, '-tls-key', tls.key]),
    ],
    { stdio: 'ignore' },
  );
  const scheme = plain ? 'http' : 'https';
  const url = `${scheme}://127.0.0.1:${port}/api/v1/cfssl/sign`;
  // curl exits 0 on any HTTP answer (a GET on the sign endpoint is a 405), 7 while refused.
  await waitFor(
    () => Promise.resolve(spawnSync('curl', ['-sk', '-o', '/dev/null', url]).status === 0),
    'cfssl serve',
  );
  return { child, url, ca: readFileSync(tls.cert, 'utf8') };
}

async function http(o: Options): Promise<LoadResult[]> {
  const dir = mkdtempSync(join(tmpdir(), 'mooring-bench-http-'));
  const csrs = { 'P-256': opensslCsr(dir, 'p256'), 'RSA 2048': opensslCsr(dir, 'rsa2048') };
  const results: LoadResult[] = [];
  const children: ChildProcess[] = [];
  try {
    if (o.url !== undefined) {
      for (const [kind, csr] of Object.entries(csrs)) {
        const t: Target = {
          url: o.url,
          body: JSON.stringify({ csr, spiffeId: ID }),
          headers: { 'content-type': 'application/json', authorization: `Bearer ${o.token ?? ''}` },
        };
        results.push(...(await load(`given server, ${kind} CSR`, t, o, dir)));
      }
      return results;
    }
    const cas = [
      ['ECDSA P-256 CA', 'ecdsa-p256', 'ecdsa'],
      ['RSA 2048 CA', 'rsa-2048', 'rsa'],
    ] as const;
    let port = 19443;
    for (const [caName, rootKeyType, cfsslKind] of cas) {
      if (o.cas !== 'both' && o.cas !== cfsslKind) continue;
      const targets: { name: string; child: ChildProcess; target: (csr: string) => Target }[] = [];
      for (const build of o.servers) {
        const m = await startMooring(build, dir, rootKeyType, port, o.workers);
        port += 2;
        children.push(m.child);
        targets.push({
          name: build.name,
          child: m.child,
          target: (csr) => ({
            url: m.url,
            body: JSON.stringify({ csr, spiffeId: ID }),
            headers: { 'content-type': 'application/json', authorization: `Bearer ${m.token}` },
            ca: m.ca,
            ...(m.child.pid === undefined ? {} : { pid: m.child.pid }),
          }),
        });
      }
      const cfssl = await startCfssl(dir, cfsslKind, port, o.cfsslPlain);
      port += 2;
      children.push(cfssl.child);
      targets.push({
        name: 'cfssl',
        child: cfssl.child,
        target: (csr) => ({
          url: cfssl.url,
          body: JSON.stringify({ certificate_request: csr }),
          headers: { 'content-type': 'application/json' },
          ca: cfssl.ca,
          ...(cfssl.child.pid === undefined ? {} : { pid: cfssl.child.pid }),
        }),
      });
      for (let round = 0; round < o.rounds; round++)
        for (const [kind, csr] of Object.entries(csrs))
          // One after the other on the same machine, never at the same time.
          for (const t of targets)
            results.push(
              ...(await load(`${t.name}, ${caName}, ${kind} CSR`, t.target(csr), o, dir)),
            );
      for (const t of targets) await stop(t.child);
    }
    summarize(results, o);
    return results;
  } finally {
    for (const c of children) await stop(c);
    rmSync(dir, { recursive: true, force: true });
  }
}

const median = (values: number[]): number => {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = Math.floor(sorted.length / 2);
  return sorted.length % 2 === 1
    ? (sorted[mid] as number)
    : ((sorted[mid - 1] as number) + (sorted[mid] as number)) / 2;
};

/** Median certificates/s and CPU µs per certificate per case, each server beside cfssl. */
function summarize(results: LoadResult[], o: Options): void {
  const servers = [...o.servers.map((s) => s.name), 'cfssl'];
  const cases = [
    ...new Set(results.map((r) => `${r.loader}|${r.name.slice(r.name.indexOf(', ') + 2)}`)),
  ];
  process.stderr.write(
    `\nmedians over ${o.rounds} round(s), alternating the servers: certificates/s (CPU µs per certificate); ratio to cfssl\n`,
  );
  for (const c of cases) {
    const [loader, rest] = c.split('|') as [string, string];
    const of = (who: string) => {
      const runs = results.filter((r) => r.loader === loader && r.name === `${who}, ${rest}`);
      return {
        rps: median(runs.map((r) => r.rps)),
        cpu: median(runs.map((r) => r.cpuUsPerRequest ?? NaN)),
      };
    };
    const cfssl = of('cfssl');
    const cells = servers.map((who) => {
      const v = of(who);
      const ratio = who === 'cfssl' ? '' : ` ${(v.rps / cfssl.rps).toFixed(2)}x`;
      return `${who} ${Math.round(v.rps)} (${Math.round(v.cpu)} µs)${ratio}`;
    });
    process.stderr.write(`  ${loader.padEnd(10)} ${rest.padEnd(28)} ${cells.join('  ')}\n`);
  }
}

async function main(): Promise<void> {
  const o = parseArgs(process.argv.slice(2));
  const result = o.mode === 'core' ? await core(o) : await http(o);
  if (o.json) process.stdout.write(`${JSON.stringify(result, null, 2)}\n`);
}

main().catch((err: unknown) => {
  process.stderr.write(`${String((err as Error).stack ?? err)}\n`);
  process.exit(1);
});
