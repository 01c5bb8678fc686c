import { createPublicKey, generateKeyPairSync, type KeyObject } from 'node:crypto';
import { Writable } from 'node:stream';
import pino from 'pino';
import { Registry } from 'prom-client';
import type { CertificateResponse } from '../../../../src/api/certificates';
import { RenewalError } from '../../../../src/agent/identity/ca-client';
import type { DirectoryContent } from '../../../../src/agent/identity/cert-dir';
import { generateKeyPair as generateKey } from '../../../../src/ca/keys';
import type { KeyAlgorithm } from '../../../../src/ca/ports';
import {
  CertificateLifecycle,
  type IssueCall,
  type Timers,
} from '../../../../src/agent/identity/lifecycle';
import { createAgentMetrics } from '../../../../src/agent/identity/metrics';
import {
  csrPublicKey,
  makeCa,
  makeLeaf,
  withValidity,
  type Issuer,
} from '../../../fixtures/agent-pki';

const SECOND = 1000;

/** Timers and a clock that move only when the test says so. */
class FakeTime implements Timers {
  nowMs = Math.floor(Date.now() / 1000) * 1000; // certificates carry whole seconds
  private next = 1;
  readonly pending = new Map<number, { at: number; fn: () => void }>();
  setTimeout(fn: () => void, ms: number): number {
    const id = this.next++;
    this.pending.set(id, { at: this.nowMs + ms, fn });
    return id;
  }
  clearTimeout(handle: unknown): void {
    this.pending.delete(handle as number);
  }
  /** Delay until the only pending timer. */
  nextDelay(): number {
    expect(this.pending.size).toBe(1);
    const [t] = [...this.pending.values()];
    return (t?.at ?? 0) - this.nowMs;
  }
  /** Moves the clock to the earliest timer and runs it. */
  fire(): void {
    const [id, t] = [...this.pending.entries()].sort((a, b) => a[1].at - b[1].at)[0] ?? [];
    if (id === undefined || t === undefined) throw new Error('no timer pending');
    this.pending.delete(id);
    this.nowMs = Math.max(this.nowMs, t.at);
    t.fn();
  }
}

interface FakeCaOptions {
  root: Issuer;
  ttlMs: number;
}

/** A CA that signs whatever key the CSR carries, can be taken down, and records calls. */
class FakeCa {
  calls: IssueCall[] = [];
  keys: KeyObject[] = [];
  down = 0;
  signWith: Issuer;
  forgeKey = false;
  /** Refuses every request with this error (a 4xx of the CA). */
  refuseWith: RenewalError | null = null;
  constructor(
    private readonly time: FakeTime,
    private readonly opts: FakeCaOptions,
  ) {
    this.signWith = opts.root;
  }
  issue = (call: IssueCall): Promise<CertificateResponse> => {
    this.calls.push(call);
    if (this.refuseWith !== null) return Promise.reject(this.refuseWith);
    if (this.down > 0) {
      this.down -= 1;
      return Promise.reject(new RenewalError('unreachable', 'connect ECONNREFUSED'));
    }
    const key = this.forgeKey
      ? generateKeyPairSync('ed25519').publicKey
      : csrPublicKey(call.csrPem);
    this.keys.push(key);
    const now = this.time.nowMs;
    const leaf = makeLeaf(
      this.signWith,
      key,
      withValidity(new Date(now - 60 * SECOND), new Date(now + this.opts.ttlMs)),
    );
    return Promise.resolve({
      certificateChain: [leaf],
      trustBundle: [this.opts.root.pem],
      expiresAt: new Date(now + this.opts.ttlMs).toISOString(),
    });
  };
}

function setup(
  opts: {
    ttlMs?: number;
    tokens?: string[];
    directory?: DirectoryContent | null;
    keyType?: KeyAlgorithm;
    ttlSeconds?: number;
  } = {},
) {
  const time = new FakeTime();
  const root = makeCa('Root');
  const ca = new FakeCa(time, { root, ttlMs: opts.ttlMs ?? 100 * SECOND });
  const writes: DirectoryContent[] = [];
  const logLines: string[] = [];
  const sink = new Writable({
    write(chunk: Buffer, _enc, cb) {
      logLines.push(chunk.toString());
      cb();
    },
  });
  const registry = new Registry();
  const metrics = createAgentMetrics(registry);
  const tokens = [...(opts.tokens ?? ['token-1'])];
  let initial = opts.directory ?? null;
  const lifecycle = new CertificateLifecycle(
    {
      clock: { now: () => new Date(time.nowMs) },
      timers: time,
      random: () => 0.5,
      log: pino({ level: 'debug' }, sink),
      metrics,
      directory: {
        write: (c) => {
          writes.push(c);
          initial = null;
          return Promise.resolve(`v${writes.length}`);
        },
        read: () => Promise.resolve(initial),
      },
      readToken: () =>
        Promise.resolve(tokens.length > 1 ? (tokens.shift() as string) : (tokens[0] ?? '')),
      issue: ca.issue,
      generateKey,
    },
    { keyType: opts.keyType ?? 'ecdsa-p256', renewFraction: 0.5, ttlSeconds: opts.ttlSeconds },
  );
  const counter = async (name: string): Promise<number> => {
    const m = await registry.getSingleMetric(name)?.get();
    return (m?.values ?? []).reduce((sum, v) => sum + v.value, 0);
  };
  const lastWrite = (): DirectoryContent => writes[writes.length - 1] ?? {};
  return { time, root, ca, writes, lastWrite, logLines, lifecycle, counter, registry };
}

describe('CertificateLifecycle', () => {
  it('obtains a certificate at start and writes chain, key and roots together', async () => {
    const s = setup();
    await s.lifecycle.start([s.root.pem]);
    const w = s.lastWrite();
    expect(w['cert-chain.pem']).toContain('BEGIN CERTIFICATE');
    expect(w['key.pem']).toContain('BEGIN PRIVATE KEY');
    expect(w['root-cert.pem']).toBe(s.root.pem);
    expect(createPublicKey(w['key.pem'] as string).equals(s.ca.keys[0] as KeyObject)).toBe(true);
    expect(s.lifecycle.hasValidCertificate()).toBe(true);
    expect(await s.counter('mooring_agent_renewals_total')).toBe(1);
    expect(await s.counter('mooring_agent_certificate_expiry_timestamp_seconds')).toBe(
      Math.floor(s.lifecycle.certificate()!.notAfter.getTime() / 1000),
    );
  });

  it('writes the roots before the first certificate arrives', async () => {
    const s = setup();
    s.ca.down = 1;
    await s.lifecycle.start([s.root.pem]);
    expect(s.writes).toEqual([
      { 'cert-chain.pem': undefined, 'key.pem': undefined, 'root-cert.pem': s.root.pem },
    ]);
    expect(s.lifecycle.hasValidCertificate()).toBe(false);
  });

  it('renews at half of the lifetime counted from receipt, not from the backdated notBefore', async () => {
    const s = setup({ ttlMs: 100 * SECOND });
    await s.lifecycle.start([s.root.pem]);
    // notBefore is 60 s back; from receipt the lifetime is 100 s, so renewal is in 50 s.
    expect(s.time.nextDelay()).toBe(50 * SECOND);
  });

  it('renews with a fresh key and a new serial, and re-reads the token each time', async () => {
    const s = setup({ tokens: ['token-1', 'token-2', 'token-3'] });
    await s.lifecycle.start([s.root.pem]);
    const first = s.lifecycle.certificate();
    s.time.fire();
    await s.lifecycle.settled();
    const second = s.lifecycle.certificate();
    expect(second?.serialNumber).not.toBe(first?.serialNumber);
    expect(s.ca.keys[0]?.equals(s.ca.keys[1] as KeyObject)).toBe(false);
    expect(s.ca.calls.map((c) => c.token)).toEqual(['token-1', 'token-2']);
    expect(await s.counter('mooring_agent_renewals_total')).toBe(2);
    expect(s.writes.filter((w) => w['key.pem'] !== undefined)).toHaveLength(2);
  });

  it('backs off 1 s, 2 s, 4 s while the CA is down, keeping the current certificate', async () => {
    const s = setup({ ttlMs: 100 * SECOND });
    await s.lifecycle.start([s.root.pem]);
    const kept = s.lastWrite();
    s.ca.down = 3;
    const delays: number[] = [];
    for (let i = 0; i < 3; i++) {
      s.time.fire();
      await s.lifecycle.settled();
      delays.push(s.time.nextDelay());
      expect(s.lifecycle.hasValidCertificate()).toBe(true);
    }
    expect(delays).toEqual([1 * SECOND, 2 * SECOND, 4 * SECOND]);
    expect(s.lastWrite()).toBe(kept);
    expect(s.lifecycle.lastError()?.reason).toBe('unreachable');
    s.time.fire();
    await s.lifecycle.settled();
    expect(s.lastWrite()).not.toBe(kept);
    expect(s.lifecycle.lastError()).toBeNull();
    expect(s.time.nextDelay()).toBe(50 * SECOND);
    expect(await s.counter('mooring_agent_renewal_failures_total')).toBe(3);
  });

  it('caps the backoff at a quarter of the lifetime', async () => {
    const s = setup({ ttlMs: 8 * SECOND });
    await s.lifecycle.start([s.root.pem]);
    s.ca.down = 10;
    const delays: number[] = [];
    for (let i = 0; i < 4; i++) {
      s.time.fire();
      await s.lifecycle.settled();
      delays.push(s.time.nextDelay());
    }
    expect(delays).toEqual([1000, 2000, 2000, 2000]);
  });

  it('turns not ready once the certificate expires without a renewal', async () => {
    const s = setup({ ttlMs: 8 * SECOND });
    await s.lifecycle.start([s.root.pem]);
    s.ca.down = 1000;
    while (s.time.nowMs < s.lifecycle.certificate()!.notAfter.getTime()) {
      expect(s.lifecycle.hasValidCertificate()).toBe(true);
      s.time.fire();
      await s.lifecycle.settled();
    }
    s.time.nowMs += 1;
    expect(s.lifecycle.hasValidCertificate()).toBe(false);
  });

  it.each([
    ['a chain for another key', (ca: FakeCa) => (ca.forgeKey = true), 'verification'],
    [
      'a chain from an untrusted root',
      (ca: FakeCa) => (ca.signWith = makeCa('Rogue')),
      'verification',
    ],
  ])('refuses %s and writes nothing', async (_name, spoil, reason) => {
    const s = setup();
    spoil(s.ca);
    await s.lifecycle.start([s.root.pem]);
    expect(s.lifecycle.lastError()?.reason).toBe(reason);
    expect(s.writes.every((w) => w['key.pem'] === undefined)).toBe(true);
    expect(s.lifecycle.hasValidCertificate()).toBe(false);
    const failures = await s.registry
      .getSingleMetric('mooring_agent_renewal_failures_total')
      ?.get();
    expect(failures?.values).toEqual([expect.objectContaining({ labels: { reason }, value: 1 })]);
  });

  it('fails with reason token on an empty token file, without calling the CA', async () => {
    const s = setup({ tokens: ['  \n'] });
    await s.lifecycle.start([s.root.pem]);
    expect(s.lifecycle.lastError()?.reason).toBe('token');
    expect(s.ca.calls).toHaveLength(0);
  });

  it('writes new roots out with the same certificate', async () => {
    const s = setup();
    await s.lifecycle.start([s.root.pem]);
    const before = s.lastWrite();
    const next = makeCa('Next Root');
    await s.lifecycle.updateRoots([s.root.pem, next.pem]);
    expect(s.lastWrite()['root-cert.pem']).toBe(s.root.pem + next.pem);
    expect(s.lastWrite()['cert-chain.pem']).toBe(before['cert-chain.pem']);
    expect(s.lastWrite()['key.pem']).toBe(before['key.pem']);
    expect(s.ca.calls).toHaveLength(1);
  });

  it('ignores a root file that did not change', async () => {
    const s = setup();
    await s.lifecycle.start([s.root.pem]);
    const n = s.writes.length;
    await s.lifecycle.updateRoots([s.root.pem]);
    expect(s.writes).toHaveLength(n);
  });

  it('tries again at once when the roots change while it has no certificate yet', async () => {
    const s = setup();
    s.ca.down = 3;
    await s.lifecycle.start([s.root.pem]);
    s.time.fire(); // the first retry fails too
    await s.lifecycle.settled();
    expect(s.ca.calls).toHaveLength(2);
    expect(s.lifecycle.hasValidCertificate()).toBe(false);
    const before = s.time.nowMs;
    s.ca.down = 0;
    await s.lifecycle.updateRoots([s.root.pem, makeCa('Next Root').pem]);
    await s.lifecycle.settled();
    // At once, not at the end of the 2 s backoff.
    expect(s.ca.calls).toHaveLength(3);
    expect(s.time.nowMs).toBe(before);
    expect(s.lifecycle.hasValidCertificate()).toBe(true);
  });

  it('logs a refusal with no certificate yet as an error (it will not pass by itself)', async () => {
    const s = setup();
    s.ca.refuseWith = new RenewalError(
      'rejected',
      'the CA refused the request (CA_ERR_TTL: too long)',
    );
    await s.lifecycle.start([s.root.pem]);
    const line = s.logLines.find((l) => l.includes('no certificate yet, retrying'));
    expect(JSON.parse(line ?? '{}')).toMatchObject({ level: 50, reason: 'rejected' });
  });

  it('renews at once when the current certificate no longer chains to a trusted root', async () => {
    const s = setup();
    await s.lifecycle.start([s.root.pem]);
    const next = makeCa('Next Root');
    s.ca.signWith = next;
    await s.lifecycle.updateRoots([next.pem]);
    await s.lifecycle.settled();
    expect(s.ca.calls).toHaveLength(2);
    expect(s.lastWrite()['root-cert.pem']).toBe(next.pem);
    expect(s.lifecycle.hasValidCertificate()).toBe(true);
  });

  it('keeps a valid certificate found in the output directory instead of requesting one', async () => {
    const root = makeCa('Root');
    const key = await generateKey('ecdsa-p256');
    const chain = makeLeaf(root, key.publicKey);
    const keyPem = key.privateKey.export({ format: 'pem', type: 'pkcs8' }).toString();
    const s = setup({
      directory: { 'cert-chain.pem': chain, 'key.pem': keyPem, 'root-cert.pem': root.pem },
    });
    await s.lifecycle.start([root.pem]);
    expect(s.ca.calls).toHaveLength(0);
    expect(s.lifecycle.hasValidCertificate()).toBe(true);
    expect(s.time.pending.size).toBe(1);
  });

  it.each<[string, { keyType?: KeyAlgorithm; ttlSeconds?: number }]>([
    ['another key type is asked for now', { keyType: 'ecdsa-p384' }],
    ['a shorter lifetime is asked for now', { ttlSeconds: 3600 }],
  ])(
    'requests a new certificate instead of the one in the output directory when %s',
    async (_n, o) => {
      const root = makeCa('Root');
      const key = await generateKey('ecdsa-p256');
      const keyPem = key.privateKey.export({ format: 'pem', type: 'pkcs8' }).toString();
      const s = setup({
        ...o,
        directory: { 'cert-chain.pem': makeLeaf(root, key.publicKey), 'key.pem': keyPem },
      });
      await s.lifecycle.start([root.pem]);
      expect(s.ca.calls).toHaveLength(1);
      expect(s.logLines.join('')).toContain(
        'the certificate in the output directory is not usable',
      );
    },
  );

  it('requests a new certificate when the one in the output directory does not verify', async () => {
    const key = await generateKey('ecdsa-p256');
    const chain = makeLeaf(makeCa('Gone'), key.publicKey);
    const keyPem = key.privateKey.export({ format: 'pem', type: 'pkcs8' }).toString();
    const s = setup({ directory: { 'cert-chain.pem': chain, 'key.pem': keyPem } });
    await s.lifecycle.start([s.root.pem]);
    expect(s.ca.calls).toHaveLength(1);
  });

  it('leaves no timer behind once stopped', async () => {
    const s = setup();
    await s.lifecycle.start([s.root.pem]);
    s.lifecycle.stop();
    expect(s.time.pending.size).toBe(0);
    expect(s.ca.calls[0]?.signal.aborted).toBe(true);
  });

  it('never logs the key or the token', async () => {
    const s = setup({ tokens: ['secret-token-value'] });
    s.ca.down = 1;
    await s.lifecycle.start([s.root.pem]);
    s.time.fire();
    await s.lifecycle.settled();
    const logs = s.logLines.join('');
    expect(logs).toContain('certificate issued');
    expect(logs).not.toContain('PRIVATE KEY');
    expect(logs).not.toContain('secret-token-value');
  });
});
