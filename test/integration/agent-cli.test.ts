// `mooring agent` as the injected container runs it: the compiled CLI, configured by the
// environment the injector sets, supervising a stand-in proxy command (test/fixtures/agent-child.js),
// next to a real `mooring serve` in local mode. Plus `mooring agent wait` and usage errors.

import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { X509Certificate } from 'node:crypto';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { AGENT_ENV } from '../../src/constants';
import {
  BIN,
  ensureBuilt,
  eventually,
  freePort,
  sleep,
  startServe,
  tempDir,
  type ServeProcess,
} from './agent-harness';

jest.setTimeout(60_000);

const CHILD = path.join(__dirname, '../fixtures/agent-child.js');

interface Agent {
  readonly process: ChildProcess;
  readonly outDir: string;
  readonly readinessPort: number;
  readonly agentPort: number;
  readonly childLog: string;
  exited: Promise<number>;
  stderr(): string;
  readiness(): Promise<number>;
  /** Until /healthz/ready answers 200; fails at once if the agent exits, with what it printed. */
  waitReady(): Promise<void>;
  childLines(): string[];
}

const spawned: ChildProcess[] = [];
afterEach(() => {
  for (const p of spawned.splice(0))
    if (p.exitCode === null && p.signalCode === null) p.kill('SIGKILL');
});

let serve: ServeProcess;
beforeAll(async () => {
  ensureBuilt();
  serve = await startServe({
    tokens: { 'token-web': { namespace: 'shop', serviceAccount: 'web' } },
  });
});
afterAll(async () => {
  await serve?.stop();
});

async function runAgentCli(
  opts: { args?: string[]; env?: Record<string, string>; command?: string[] } = {},
): Promise<Agent> {
  const dir = tempDir('mooring-agent-cli');
  const outDir = path.join(dir, 'out');
  const tokenFile = path.join(dir, 'token');
  const childLog = path.join(dir, 'child.log');
  writeFileSync(tokenFile, 'token-web');
  const readinessPort = await freePort();
  const agentPort = await freePort();
  const env: NodeJS.ProcessEnv = {
    PATH: process.env.PATH,
    [AGENT_ENV.caUrl]: serve.url,
    [AGENT_ENV.tokenFile]: tokenFile,
    [AGENT_ENV.rootCert]: serve.rootsFile,
    [AGENT_ENV.outDir]: outDir,
    [AGENT_ENV.drain]: '0',
    CHILD_LOG: childLog,
    ...opts.env,
  };
  const args = [
    BIN,
    'agent',
    // The certificate lifecycle alone: the built-in proxy is proven in test/netns/mesh.test.ts.
    '--no-proxy',
    '--listen-host',
    '127.0.0.1',
    '--readiness-port',
    String(readinessPort),
    '--agent-port',
    String(agentPort),
    ...(opts.args ?? []),
    ...(opts.command ? ['--', ...opts.command] : []),
  ];
  const p = spawn(process.execPath, args, { env, stdio: ['ignore', 'pipe', 'pipe'] });
  spawned.push(p);
  let stderr = '';
  p.stderr?.on('data', (c: Buffer) => (stderr += c.toString()));
  const exited = new Promise<number>((resolve) =>
    p.once('exit', (code, signal) => resolve(code ?? (signal ? -1 : 0))),
  );
  const readiness = async (): Promise<number> => {
    try {
      return (await fetch(`http://127.0.0.1:${readinessPort}/healthz/ready`)).status;
    } catch {
      return 0;
    }
  };
  return {
    process: p,
    outDir,
    readinessPort,
    agentPort,
    childLog,
    exited,
    stderr: () => stderr,
    readiness,
    waitReady: async () => {
      // A loaded CI machine runs several suites at once: a cold Node start and the first
      // certificate can take seconds, so the budget is generous and a failure says why.
      const deadline = Date.now() + 45_000;
      for (;;) {
        const status = await readiness();
        if (status === 200) return;
        if (p.exitCode !== null || p.signalCode !== null || Date.now() > deadline) {
          throw new Error(
            `the agent is not ready (last status ${status}, exit ${p.exitCode ?? p.signalCode ?? 'none'}); it printed:\n${stderr.slice(-3000)}`,
          );
        }
        await sleep(50);
      }
    },
    childLines: () =>
      existsSync(childLog) ? readFileSync(childLog, 'utf8').trim().split('\n') : [],
  };
}

const childCommand = [process.execPath, CHILD, 'proxy-arg'];

describe('mooring agent (CLI)', () => {
  it('runs from the environment alone, as in the injected container, with app probes', async () => {
    const app = net.createServer((s) => s.end());
    await new Promise<void>((r) => app.listen(0, '127.0.0.1', r));
    const appPort = (app.address() as net.AddressInfo).port;
    try {
      const agent = await runAgentCli({
        env: {
          [AGENT_ENV.keyType]: 'ecdsa-p384',
          [AGENT_ENV.ttl]: '1h',
          [AGENT_ENV.logLevel]: 'debug',
          [AGENT_ENV.appProbes]: JSON.stringify({ 'web/livez': { tcpSocket: { port: appPort } } }),
        },
      });
      await agent.waitReady();
      const leaf = new X509Certificate(readFileSync(path.join(agent.outDir, 'cert-chain.pem')));
      expect(leaf.publicKey.asymmetricKeyDetails?.namedCurve).toBe('secp384r1');
      const lifetime = new Date(leaf.validTo).getTime() - Date.now();
      expect(lifetime).toBeLessThanOrEqual(3600_000);
      expect(lifetime).toBeGreaterThan(3500_000);
      const probe = await fetch(`http://127.0.0.1:${agent.agentPort}/app-health/web/livez`);
      expect(probe.status).toBe(200);
      expect((await fetch(`http://127.0.0.1:${agent.agentPort}/app-health/db/livez`)).status).toBe(
        404,
      );
      const metrics = await (await fetch(`http://127.0.0.1:${agent.agentPort}/metrics`)).text();
      expect(metrics).toContain('mooring_agent_renewals_total 1');
      agent.process.kill('SIGTERM');
      expect(await agent.exited).toBe(0);
      // Logs are JSON on stderr, and never hold the key.
      expect(agent.stderr()).toContain('"msg":"certificate issued"');
      expect(agent.stderr()).not.toContain('PRIVATE KEY');
    } finally {
      app.close();
    }
  });

  it('lets a flag beat the environment', async () => {
    const agent = await runAgentCli({
      args: ['--key-type', 'ed25519'],
      env: { [AGENT_ENV.keyType]: 'ecdsa-p384' },
    });
    await agent.waitReady();
    const leaf = new X509Certificate(readFileSync(path.join(agent.outDir, 'cert-chain.pem')));
    expect(leaf.publicKey.asymmetricKeyType).toBe('ed25519');
    agent.process.kill('SIGTERM');
    expect(await agent.exited).toBe(0);
  });

  it('logs the CA URL without its user info or query string', async () => {
    const url = new URL(serve.url);
    url.username = 'user';
    url.password = 'SECRET-PASSWORD';
    url.search = '?token=SECRET-QUERY';
    const agent = await runAgentCli({ env: { [AGENT_ENV.caUrl]: url.href } });
    await eventually('the start line', () => agent.stderr().includes('agent started'));
    agent.process.kill('SIGTERM');
    await agent.exited;
    const started = agent
      .stderr()
      .split('\n')
      .find((l) => l.includes('agent started'));
    expect(JSON.parse(started ?? '{}')).toMatchObject({ caUrl: `${url.origin}/` });
    expect(agent.stderr()).not.toMatch(/SECRET-(PASSWORD|QUERY)/);
  });

  it('starts the proxy command once the certificate is on disk, then is ready', async () => {
    const agent = await runAgentCli({ command: childCommand });
    await agent.waitReady();
    await eventually('the command started', () => agent.childLines().length >= 1);
    expect(agent.childLines()[0]).toMatch(/^started \d+ proxy-arg$/);
    expect(existsSync(path.join(agent.outDir, 'key.pem'))).toBe(true);
    agent.process.kill('SIGTERM');
    expect(await agent.exited).toBe(0);
  });

  it('holds the proxy command back and is not ready while there is no certificate', async () => {
    const dir = tempDir('mooring-agent-cli-token');
    writeFileSync(path.join(dir, 'token'), 'token-unknown-to-the-ca');
    const agent = await runAgentCli({
      env: { [AGENT_ENV.tokenFile]: path.join(dir, 'token') },
      command: childCommand,
    });
    await eventually('a refused request', () => agent.stderr().includes('CA_ERR_UNAUTHENTICATED'));
    const res = await fetch(`http://127.0.0.1:${agent.readinessPort}/healthz/ready`);
    expect(res.status).toBe(503);
    const body = await res.text();
    expect(body).toContain('no certificate yet');
    expect(body).toContain('the proxy command is not running');
    expect(agent.childLines()).toEqual([]);
    agent.process.kill('SIGTERM');
    expect(await agent.exited).toBe(0);
  });

  it('forwards signals to the proxy command', async () => {
    const agent = await runAgentCli({ command: childCommand });
    await eventually('the command started', () => agent.childLines().length >= 1);
    agent.process.kill('SIGHUP');
    await eventually('SIGHUP forwarded', () => agent.childLines().includes('signal SIGHUP'));
    agent.process.kill('SIGUSR2');
    await eventually('SIGUSR2 forwarded', () => agent.childLines().includes('signal SIGUSR2'));
    expect(agent.process.exitCode).toBeNull();
    agent.process.kill('SIGTERM');
    await agent.exited;
  });

  it("never opens Node's inspector on SIGUSR1, from its first log line on (the app shares its loopback)", async () => {
    const inspectPort = await freePort();
    const nodeOptions = `--inspect-port=127.0.0.1:${inspectPort}`;
    const inspectorOpen = (): Promise<boolean> =>
      new Promise((resolve) => {
        const s = net.connect(inspectPort, '127.0.0.1');
        s.once('connect', () => {
          s.destroy();
          resolve(true);
        });
        s.once('error', () => resolve(false));
      });
    // The control: a Node process with the same options and no listener opens it.
    const plain = spawn(
      process.execPath,
      ['-e', "process.stdout.write('up'); setTimeout(() => {}, 30000)"],
      { env: { PATH: process.env.PATH, NODE_OPTIONS: nodeOptions }, stdio: 'pipe' },
    );
    spawned.push(plain);
    let plainOut = '';
    let plainErr = '';
    plain.stdout?.on('data', (c: Buffer) => (plainOut += c.toString()));
    plain.stderr?.on('data', (c: Buffer) => (plainErr += c.toString()));
    await eventually('the plain process started', () => plainOut === 'up');
    plain.kill('SIGUSR1');
    await eventually('its inspector opened', () => plainErr.includes('Debugger listening'));
    expect(await inspectorOpen()).toBe(true);
    plain.kill('SIGKILL');
    await eventually('its inspector closed', async () => !(await inspectorOpen()));

    const agent = await runAgentCli({ env: { NODE_OPTIONS: nodeOptions } });
    await eventually('the agent logged', () => agent.stderr().length > 0);
    agent.process.kill('SIGUSR1');
    await agent.waitReady();
    agent.process.kill('SIGUSR1');
    await eventually('the signal was taken', () =>
      agent.stderr().includes('no proxy command to forward the signal to: ignored'),
    );
    expect(agent.stderr()).not.toContain('Debugger listening');
    expect(await inspectorOpen()).toBe(false);
    expect(agent.process.exitCode).toBeNull();
    agent.process.kill('SIGTERM');
    expect(await agent.exited).toBe(0);
  });

  it('on SIGTERM: readiness false at once, the command keeps running through the drain, then stops; its code is the exit code', async () => {
    const agent = await runAgentCli({
      args: ['--drain', '1500ms'],
      env: { CHILD_TERM_CODE: '3' },
      command: childCommand,
    });
    await agent.waitReady();
    const sentAt = Date.now();
    agent.process.kill('SIGTERM');
    await eventually(
      'readiness 503 during the drain',
      async () => (await agent.readiness()) === 503,
      1000,
      20,
    );
    expect(Date.now() - sentAt).toBeLessThan(1000);
    await sleep(500);
    expect(agent.childLines()).not.toContain('signal SIGTERM');
    expect(agent.process.exitCode).toBeNull();
    const code = await agent.exited;
    expect(Date.now() - sentAt).toBeGreaterThanOrEqual(1400);
    expect(agent.childLines()).toContain('signal SIGTERM');
    expect(code).toBe(3);
  });

  it('on SIGTERM without a proxy command (nothing in flight): exits 0 at once, not after --drain', async () => {
    const agent = await runAgentCli({ args: ['--drain', '120s'] });
    await agent.waitReady();
    agent.process.kill('SIGTERM');
    // Within the test's timeout, far below the 120 s of --drain.
    expect(await agent.exited).toBe(0);
    expect(agent.stderr()).toContain('nothing in flight: the drain ends now');
  });

  it('on POST /quitquitquit from loopback (a Job done): stops the command at once, no drain, and exits with its code', async () => {
    const agent = await runAgentCli({
      args: ['--drain', '120s'],
      env: { CHILD_TERM_CODE: '0' },
      command: childCommand,
    });
    await agent.waitReady();
    // Its handlers in place: a SIGTERM before them would kill it (143), not let it exit 0.
    await eventually('the command started', () => agent.childLines().length >= 1);
    // Readiness on the agent's port too, where tools written for pilot-agent poll it.
    expect((await fetch(`http://127.0.0.1:${agent.agentPort}/healthz/ready`)).status).toBe(200);
    const res = await fetch(`http://127.0.0.1:${agent.agentPort}/quitquitquit`, {
      method: 'POST',
    });
    expect([res.status, await res.text()]).toEqual([200, 'OK\n']);
    // Within the test's timeout, far below the 120 s of --drain.
    expect(await agent.exited).toBe(0);
    expect(agent.childLines()).toContain('signal SIGTERM');
    expect(agent.stderr()).toContain('quit requested: no drain');
  });

  it("loads the agent's modules alone: not the other commands' (YAML, JSON Schema, injector, CA)", () => {
    /** The modules `node bin/mooring.js ARGS` has loaded when it exits. */
    const modules = (...args: string[]): string[] => {
      const run = spawnSync(
        process.execPath,
        [
          '-e',
          `process.on('exit', () => process.stderr.write(JSON.stringify(Object.keys(require.cache))));
           process.argv = [process.argv[0], ${JSON.stringify(BIN)}, ...${JSON.stringify(args)}];
           require(${JSON.stringify(BIN)});`,
        ],
        { encoding: 'utf8' },
      );
      return JSON.parse(run.stderr) as string[];
    };
    const others = (list: string[]): string[] =>
      list.filter((m) =>
        /node_modules\/(yaml|ajv)\/|dist\/(injector|admission|config)\/|dist\/ca\/authority/.test(
          m,
        ),
      );
    const agent = modules('agent', '--help');
    expect(agent.some((m) => m.endsWith('dist/cli/agent.js'))).toBe(true);
    expect(others(agent)).toEqual([]);
    // The command that needs them, and the whole CLI's help, do load them (what the test would
    // see if the agent did).
    expect(others(modules('inject', '--help')).length).toBeGreaterThan(0);
    expect(others(modules('--help')).length).toBeGreaterThan(0);
  });

  it('exits non-zero when the proxy command dies on its own, even with code 0', async () => {
    const agent = await runAgentCli({
      env: { CHILD_EXIT_AFTER_MS: '800', CHILD_EXIT_CODE: '0' },
      command: childCommand,
    });
    expect(await agent.exited).toBe(1);
    expect(agent.childLines()).toContain('exiting on its own');
    expect(agent.stderr()).toContain('the proxy command exited on its own');
  });

  it("passes on the dead command's error code", async () => {
    const agent = await runAgentCli({
      env: { CHILD_EXIT_AFTER_MS: '300', CHILD_EXIT_CODE: '9' },
      command: childCommand,
    });
    expect(await agent.exited).toBe(9);
  });

  it('exits 127 when the proxy command does not exist', async () => {
    const agent = await runAgentCli({ command: ['/nonexistent/envoy'] });
    expect(await agent.exited).toBe(127);
  });

  it('exits 2 on an invalid option, naming it', async () => {
    const agent = await runAgentCli({ args: ['--key-type', 'dsa'] });
    expect(await agent.exited).toBe(2);
    expect(agent.stderr()).toContain('--key-type');
  });

  it('exits 2 on an invalid environment variable, naming it', async () => {
    const agent = await runAgentCli({ env: { [AGENT_ENV.renewFraction]: '1.5' } });
    expect(await agent.exited).toBe(2);
    expect(agent.stderr()).toContain('MOORING_RENEW_FRACTION');
  });
});

describe('mooring agent wait', () => {
  const wait = (args: string[]): Promise<{ code: number; out: string }> =>
    new Promise((resolve) => {
      const p = spawn(process.execPath, [BIN, 'agent', 'wait', ...args], {
        stdio: ['ignore', 'pipe', 'pipe'],
      });
      spawned.push(p);
      let out = '';
      p.stdout?.on('data', (c: Buffer) => (out += c.toString()));
      p.stderr?.on('data', (c: Buffer) => (out += c.toString()));
      p.once('exit', (code) => resolve({ code: code ?? -1, out }));
    });

  it('exits 0 once the agent is ready', async () => {
    const agent = await runAgentCli({ command: childCommand });
    const result = await wait([
      '--readiness-port',
      String(agent.readinessPort),
      '--timeout',
      '30s',
      '--interval',
      '100ms',
    ]);
    expect(result.code).toBe(0);
    expect(await agent.readiness()).toBe(200);
    // --timeout 0 still asks once.
    const once = await wait(['--readiness-port', String(agent.readinessPort), '--timeout', '0']);
    expect(once.code).toBe(0);
    agent.process.kill('SIGTERM');
    await agent.exited;
  });

  it('exits 1 when the agent is not ready in time', async () => {
    const port = await freePort();
    const started = Date.now();
    const result = await wait([
      '--readiness-port',
      String(port),
      '--timeout',
      '500ms',
      '--interval',
      '100ms',
    ]);
    expect(result.code).toBe(1);
    expect(result.out).toContain('not ready within 500ms');
    expect(Date.now() - started).toBeLessThan(5000);
  });

  it('exits 2 on a bad timeout', async () => {
    expect((await wait(['--timeout', 'soon'])).code).toBe(2);
  });
});
