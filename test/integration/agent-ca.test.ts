// The agent's certificate lifecycle against a real `mooring serve` in local mode: first
// issuance, renewal with a short lifetime (files replaced atomically), the CA down then back,
// a token file rotated between calls, and a root rotation reaching the agent through its root
// file. The agent runs in-process (runAgent), serve is the compiled CLI.

import { EventEmitter } from 'node:events';
import { createPrivateKey, createPublicKey, X509Certificate } from 'node:crypto';
import { execFileSync } from 'node:child_process';
import { promises as fs, readFileSync, renameSync, statSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { Writable } from 'node:stream';
import pino from 'pino';
import { runAgent } from '../../src/agent/agent';
import { resolveAgentOptions, type AgentFlags } from '../../src/agent/options';
import {
  BIN,
  ConfigMapVolume,
  eventually,
  opensslVerify,
  pemCertificates,
  sleep,
  startServe,
  tempDir,
  type ServeProcess,
} from './agent-harness';

jest.setTimeout(90_000);

interface RunningAgent {
  readonly outDir: string;
  readonly tokenFile: string;
  readiness(): Promise<number>;
  metric(name: string): Promise<number>;
  logs(): string;
  stop(): Promise<number>;
}

function writeAtomic(file: string, content: string): void {
  writeFileSync(`${file}.tmp`, content);
  renameSync(`${file}.tmp`, file);
}

async function startAgent(
  serve: ServeProcess,
  rootFile: string,
  token: string,
  flags: AgentFlags = {},
): Promise<RunningAgent> {
  const dir = tempDir('mooring-agent');
  const outDir = path.join(dir, 'out');
  const tokenFile = path.join(dir, 'token');
  writeAtomic(tokenFile, `${token}\n`);
  const options = resolveAgentOptions(
    {
      caUrl: serve.url,
      tokenFile,
      rootCert: rootFile,
      outDir,
      listenHost: '127.0.0.1',
      readinessPort: '0',
      agentPort: '0',
      rootPollInterval: '200ms',
      drain: '0',
      logLevel: 'debug',
      // The certificate lifecycle alone: the built-in proxy is proven in test/netns/mesh.test.ts.
      proxy: false,
      ...flags,
    },
    {},
  );
  let logs = '';
  const sink = new Writable({
    write(chunk: Buffer, _enc, cb) {
      logs += chunk.toString();
      cb();
    },
  });
  const signals = new EventEmitter();
  let ports = { readiness: 0, agent: 0 };
  const listening = new Promise<void>((resolve) => {
    const done = runAgent(options, {
      log: pino({ level: 'debug' }, sink),
      signals,
      onListening: (a) => {
        ports = { readiness: a.readiness.port, agent: a.agent.port };
        resolve();
      },
    });
    running.set(signals, done);
  });
  await listening;
  const done = running.get(signals) as Promise<number>;
  return {
    outDir,
    tokenFile,
    readiness: async () =>
      (await fetch(`http://127.0.0.1:${ports.readiness}/healthz/ready`)).status,
    metric: async (name) => {
      const text = await (await fetch(`http://127.0.0.1:${ports.agent}/metrics`)).text();
      return text
        .split('\n')
        .filter((l) => l.startsWith(name) && !l.startsWith('#'))
        .reduce((sum, l) => sum + Number(l.split(' ').pop()), 0);
    },
    logs: () => logs,
    stop: async () => {
      signals.emit('SIGTERM');
      const code = await done;
      running.delete(signals);
      return code;
    },
  };
}
const running = new Map<EventEmitter, Promise<number>>();

afterAll(async () => {
  for (const [signals, done] of running) {
    signals.emit('SIGTERM');
    await done;
  }
});

const read = (dir: string, name: string): string => readFileSync(path.join(dir, name), 'utf8');
const leafOf = (outDir: string): X509Certificate =>
  pemCertificates(read(outDir, 'cert-chain.pem'))[0] as X509Certificate;
const spiffeIdOf = (cert: X509Certificate): string =>
  (cert.subjectAltName ?? '').replace(/^URI:/, '');

async function rootVolumeFor(serve: ServeProcess): Promise<ConfigMapVolume> {
  const volume = new ConfigMapVolume();
  await volume.write(readFileSync(serve.rootsFile, 'utf8'));
  return volume;
}

describe('mooring agent against mooring serve (local mode)', () => {
  let serve: ServeProcess;
  let roots: ConfigMapVolume;

  beforeAll(async () => {
    serve = await startServe({
      tokens: {
        'token-web': { namespace: 'shop', serviceAccount: 'web' },
        'token-api': { namespace: 'shop', serviceAccount: 'api' },
        'token-old': { namespace: 'shop', serviceAccount: 'rotating' },
        'token-new': { namespace: 'shop', serviceAccount: 'rotating-next' },
      },
    });
    roots = await rootVolumeFor(serve);
  });
  afterAll(async () => {
    await serve?.stop();
  });

  it('obtains a first certificate: files written, key 0600, chain verified by openssl, SAN from tokens.json', async () => {
    const agent = await startAgent(serve, roots.file, 'token-web');
    await eventually('readiness 200', async () => (await agent.readiness()) === 200);

    const out = agent.outDir;
    expect(statSync(path.join(out, 'key.pem')).mode & 0o777).toBe(0o600);
    expect(read(out, 'root-cert.pem')).toBe(readFileSync(serve.rootsFile, 'utf8'));
    expect(
      opensslVerify(path.join(out, 'root-cert.pem'), path.join(out, 'cert-chain.pem')),
    ).toContain('OK');

    const leaf = leafOf(out);
    expect(spiffeIdOf(leaf)).toBe('spiffe://cluster.local/ns/shop/sa/web');
    expect(leaf.publicKey.equals(createPublicKey(createPrivateKey(read(out, 'key.pem'))))).toBe(
      true,
    );
    expect(leaf.publicKey.asymmetricKeyDetails?.namedCurve).toBe('prime256v1');
    // The CA's default lifetime (24h) when no --ttl is given.
    expect(new Date(leaf.validTo).getTime() - Date.now()).toBeGreaterThan(23 * 3600_000);

    expect(await agent.metric('mooring_agent_renewals_total')).toBe(1);
    expect(await agent.metric('mooring_agent_certificate_expiry_timestamp_seconds')).toBe(
      new Date(leaf.validTo).getTime() / 1000,
    );
    expect(agent.logs()).not.toContain('PRIVATE KEY');
    expect(agent.logs()).not.toContain('token-web');
    expect(await agent.stop()).toBe(0);
  });

  it.each([
    ['ecdsa-p384', 'secp384r1'],
    ['ed25519', undefined],
    ['rsa-2048', undefined],
  ])('obtains a certificate for a %s key', async (keyType, curve) => {
    const agent = await startAgent(serve, roots.file, 'token-web', { keyType });
    await eventually('readiness 200', async () => (await agent.readiness()) === 200);
    const leaf = leafOf(agent.outDir);
    expect(leaf.publicKey.asymmetricKeyType).toBe(
      keyType.startsWith('ecdsa') ? 'ec' : keyType.split('-')[0],
    );
    expect(leaf.publicKey.asymmetricKeyDetails?.namedCurve).toBe(curve);
    await agent.stop();
  });

  it('renews a short-lived certificate with a new key and serial; a reader never sees a torn file', async () => {
    const agent = await startAgent(serve, roots.file, 'token-api', { ttl: '3s' });
    await eventually('readiness 200', async () => (await agent.readiness()) === 200);
    const out = agent.outDir;

    const serials = new Set<string>();
    const keys = new Set<string>();
    const problems: string[] = [];
    let reads = 0;
    const stopAt = Date.now() + 7000;
    while (Date.now() < stopAt) {
      // A careful reader: resolve ..data once, read the pair from that version.
      const version = await fs.readlink(path.join(out, '..data'));
      try {
        const chain = await fs.readFile(path.join(out, version, 'cert-chain.pem'), 'utf8');
        const key = await fs.readFile(path.join(out, version, 'key.pem'), 'utf8');
        const leaf = pemCertificates(chain)[0] as X509Certificate;
        if (!leaf.publicKey.equals(createPublicKey(createPrivateKey(key))))
          problems.push(`mismatch in ${version}`);
        serials.add(leaf.serialNumber);
        keys.add(key);
      } catch (err) {
        // Only a version removed two switches later may vanish under a slow reader.
        if ((err as NodeJS.ErrnoException).code !== 'ENOENT') problems.push(String(err));
      }
      // A naive reader of the stable names: every file it reads is whole.
      try {
        new X509Certificate(await fs.readFile(path.join(out, 'cert-chain.pem')));
        createPrivateKey(await fs.readFile(path.join(out, 'key.pem')));
      } catch (err) {
        problems.push(`torn file: ${String(err)}`);
      }
      reads += 1;
      await sleep(5);
    }
    expect(problems).toEqual([]);
    expect(reads).toBeGreaterThan(100);
    expect(serials.size).toBeGreaterThanOrEqual(3);
    expect(keys.size).toBe(serials.size);
    expect(await agent.metric('mooring_agent_renewals_total')).toBeGreaterThanOrEqual(3);
    expect(await agent.metric('mooring_agent_renewal_failures_total')).toBe(0);
    expect(await agent.readiness()).toBe(200);
    expect(
      opensslVerify(path.join(out, 'root-cert.pem'), path.join(out, 'cert-chain.pem')),
    ).toContain('OK');
    // Only the current and the previous version are kept: between writing a new version and
    // pruning, a renewal in progress briefly holds a third.
    await eventually(
      'two versions at most',
      async () => (await fs.readdir(out)).filter((e) => e.startsWith('..v')).length <= 2,
    );
    await agent.stop();
  });

  it('re-reads the token file at every call (the kubelet rotates it)', async () => {
    const agent = await startAgent(serve, roots.file, 'token-old', { ttl: '3s' });
    await eventually('readiness 200', async () => (await agent.readiness()) === 200);
    expect(spiffeIdOf(leafOf(agent.outDir))).toBe('spiffe://cluster.local/ns/shop/sa/rotating');

    // The kubelet writes the new token; then the old one stops being accepted.
    writeAtomic(agent.tokenFile, 'token-new\n');
    serve.setTokens({
      'token-web': { namespace: 'shop', serviceAccount: 'web' },
      'token-api': { namespace: 'shop', serviceAccount: 'api' },
      'token-new': { namespace: 'shop', serviceAccount: 'rotating-next' },
    });
    await eventually(
      'a certificate for the new token',
      () => spiffeIdOf(leafOf(agent.outDir)) === 'spiffe://cluster.local/ns/shop/sa/rotating-next',
    );
    const renewals = await agent.metric('mooring_agent_renewals_total');
    await eventually(
      'one more renewal with the new token',
      async () => (await agent.metric('mooring_agent_renewals_total')) > renewals,
    );
    expect(await agent.metric('mooring_agent_renewal_failures_total')).toBe(0);
    expect(await agent.readiness()).toBe(200);
    await agent.stop();
  });

  it('refuses to start issuing with a token the CA does not know, and says so', async () => {
    const agent = await startAgent(serve, roots.file, 'token-nobody', { ttl: '3s' });
    await eventually(
      'a rejected request',
      async () => (await agent.metric('mooring_agent_renewal_failures_total')) >= 1,
    );
    expect(await agent.readiness()).toBe(503);
    expect(agent.logs()).toContain('CA_ERR_UNAUTHENTICATED');
    await agent.stop();
  });
});

describe('the CA down, then back', () => {
  it('backs off, keeps the old certificate until it expires, then renews once the CA is back', async () => {
    const serve = await startServe({
      tokens: { 'token-web': { namespace: 'shop', serviceAccount: 'web' } },
    });
    try {
      const roots = await rootVolumeFor(serve);
      const agent = await startAgent(serve, roots.file, 'token-web', { ttl: '8s' });
      await eventually('readiness 200', async () => (await agent.readiness()) === 200);
      const first = leafOf(agent.outDir);

      await serve.stop();
      await eventually(
        'two failed renewals',
        async () => (await agent.metric('mooring_agent_renewal_failures_total')) >= 2,
      );
      // Still serving with the old certificate while it is valid.
      if (Date.now() < new Date(first.validTo).getTime() - 500)
        expect(await agent.readiness()).toBe(200);
      expect(leafOf(agent.outDir).serialNumber).toBe(first.serialNumber);

      // Past its expiry the agent is not ready, and still has not replaced it.
      await eventually(
        'readiness 503 after expiry',
        async () => (await agent.readiness()) === 503,
        15_000,
      );
      expect(Date.now()).toBeGreaterThanOrEqual(new Date(first.validTo).getTime());
      expect(leafOf(agent.outDir).serialNumber).toBe(first.serialNumber);

      await serve.start();
      await eventually(
        'a renewed certificate',
        () => leafOf(agent.outDir).serialNumber !== first.serialNumber,
        15_000,
      );
      await eventually('readiness 200 again', async () => (await agent.readiness()) === 200);

      // Backoff: doubling from about 1 s, capped at a quarter of the lifetime (2 s here).
      const retries = agent
        .logs()
        .split('\n')
        .filter((l) => l.includes('certificate request failed'))
        .map((l) => JSON.parse(l) as { retryInMs: number; reason: string; attempt: number });
      expect(retries.length).toBeGreaterThanOrEqual(3);
      expect(retries.every((r) => r.reason === 'unreachable')).toBe(true);
      expect(retries[0]?.retryInMs).toBeLessThanOrEqual(1200);
      expect(retries[0]?.retryInMs).toBeGreaterThanOrEqual(800);
      expect(Math.max(...retries.map((r) => r.retryInMs))).toBeLessThanOrEqual(2000);
      expect(retries[1]?.retryInMs).toBeGreaterThan(retries[0]?.retryInMs ?? 0);
      expect(await agent.stop()).toBe(0);
    } finally {
      await serve.stop();
    }
  });
});

describe('a root rotation on the server', () => {
  it('reaches the agent through its root file, and every certificate verifies all along', async () => {
    const serve = await startServe({
      tokens: { 'token-web': { namespace: 'shop', serviceAccount: 'web' } },
      config: { ca: { rotation: { propagationDelaySeconds: 3, checkIntervalSeconds: 1 } } },
    });
    const roots = await rootVolumeFor(serve);
    // The ConfigMap controller's part: copy the CA's trust bundle into the volume.
    let distributing = true;
    const distributor = (async () => {
      while (distributing) {
        await roots.write(readFileSync(serve.rootsFile, 'utf8')).catch(() => false);
        await sleep(200);
      }
    })();
    try {
      const agent = await startAgent(serve, roots.file, 'token-web', { ttl: '3s' });
      await eventually('readiness 200', async () => (await agent.readiness()) === 200);
      const out = agent.outDir;
      const oldRoot = pemCertificates(read(out, 'root-cert.pem'))[0] as X509Certificate;

      // Every version the agent writes holds a chain that verifies against its own roots.
      const problems: string[] = [];
      let checking = true;
      const checker = (async () => {
        while (checking) {
          try {
            const version = await fs.readlink(path.join(out, '..data'));
            const chain = pemCertificates(
              await fs.readFile(path.join(out, version, 'cert-chain.pem'), 'utf8'),
            );
            const bundle = pemCertificates(
              await fs.readFile(path.join(out, version, 'root-cert.pem'), 'utf8'),
            );
            const leaf = chain[0] as X509Certificate;
            if (!bundle.some((r) => leaf.checkIssued(r) && leaf.verify(r.publicKey))) {
              problems.push(
                `${version}: leaf ${leaf.serialNumber} does not verify against its roots`,
              );
            }
          } catch (err) {
            if ((err as NodeJS.ErrnoException).code !== 'ENOENT') problems.push(String(err));
          }
          await sleep(20);
        }
      })();

      execFileSync(
        process.execPath,
        [BIN, 'ca', 'rotate', '--data-dir', serve.dataDir, '--config', serve.configFile as string],
        {
          stdio: 'pipe',
        },
      );

      await eventually(
        'both roots in the agent root-cert.pem',
        () => pemCertificates(read(out, 'root-cert.pem')).length === 2,
        20_000,
      );
      const newRoot = pemCertificates(read(out, 'root-cert.pem')).find(
        (r) => r.fingerprint256 !== oldRoot.fingerprint256,
      );
      expect(newRoot).toBeDefined();
      await eventually(
        'a certificate issued from the new root',
        () => {
          const leaf = leafOf(out);
          return (
            leaf.checkIssued(newRoot as X509Certificate) &&
            leaf.verify((newRoot as X509Certificate).publicKey)
          );
        },
        30_000,
      );
      checking = false;
      await checker;
      expect(problems).toEqual([]);
      expect(
        opensslVerify(path.join(out, 'root-cert.pem'), path.join(out, 'cert-chain.pem')),
      ).toContain('OK');
      expect(agent.logs()).toContain('root file changed');
      expect(await agent.readiness()).toBe(200);
      expect(await agent.stop()).toBe(0);
    } finally {
      distributing = false;
      await distributor;
      await serve.stop();
    }
  });
});
