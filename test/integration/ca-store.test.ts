import {
  chmodSync,
  chownSync,
  mkdtempSync,
  readFileSync,
  readdirSync,
  renameSync,
  statSync,
  symlinkSync,
  unlinkSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { writeFileAtomic, type AtomicStep } from '../../src/adapters/atomic-file';
import { FileCAStore, STORE_FILES } from '../../src/adapters/file-store';
import { pooledRandom } from '../../src/adapters/system-clock';
import { openLocalCA, openLocalCredentials } from '../../src/adapters/local-ca';
import {
  ADMIN_TOKEN_FILE,
  ensureAdminToken,
  LocalAdminAuthorizer,
  TOKENS_FILE,
  TokensFileAuthenticator,
} from '../../src/adapters/local-auth';
import { startRotation, type CAState } from '../../src/ca/rotation';
import { defaultConfig, validateConfig } from '../../src/config/validate';
import { MooringError } from '../../src/errors';
import { cachedKeyGenerator, csrPem, errorCode, verifiesAgainst } from '../unit/ca/fixtures';

const tempDir = (): string => mkdtempSync(join(tmpdir(), 'mooring-store-'));
const mode = (path: string): number => statSync(path).mode & 0o777;

async function sampleStates(): Promise<[CAState, CAState]> {
  const { authority } = await openLocalCA({
    config: defaultConfig(),
    dataDir: tempDir(),
    create: true,
    generateKey: cachedKeyGenerator(),
  });
  const s1 = authority.snapshot().state as CAState;
  const { state: s2 } = startRotation(
    s1,
    new Date(),
    { certPem: s1.roots[0]?.certPem as string, keyPem: 'k' },
    {
      auto: true,
      beforeExpirySeconds: 1,
      propagationDelaySeconds: 60,
      maxIssuedLifetimeSeconds: 60,
      graceSeconds: 0,
    },
  );
  return [s1, s2];
}

describe('the file store', () => {
  it('writes the state 0600 in a 0700 directory, the bundle export 0644, and reads it back', async () => {
    const dir = join(tempDir(), 'data');
    const store = new FileCAStore(dir);
    const [state] = await sampleStates();
    const version = await store.save(state, null);
    expect(mode(dir)).toBe(0o700);
    expect(mode(join(dir, STORE_FILES.state))).toBe(0o600);
    expect(mode(join(dir, STORE_FILES.rootExport))).toBe(0o644);
    expect(readFileSync(join(dir, STORE_FILES.rootExport), 'utf8')).toBe(state.roots[0]?.certPem);
    expect(await store.load()).toEqual({ state, version });
    expect(readdirSync(dir).sort()).toEqual([STORE_FILES.state, STORE_FILES.rootExport].sort());
  });

  it('is empty before the first save', async () => {
    expect(await new FileCAStore(tempDir()).load()).toBeNull();
  });

  it('refuses a write based on a stale version, and a create over an existing state', async () => {
    const store = new FileCAStore(tempDir());
    const [s1, s2] = await sampleStates();
    const v1 = await store.save(s1, null);
    const v2 = await store.save(s2, v1);
    expect(v2).not.toBe(v1);
    expect(await errorCode(() => store.save(s1, v1))).toBe('CA_ERR_CONFLICT');
    expect(await errorCode(() => store.save(s1, null))).toBe('CA_ERR_CONFLICT');
    expect((await store.load())?.state).toEqual(s2);
  });

  it('refuses to load a state file others can read', async () => {
    const dir = tempDir();
    const store = new FileCAStore(dir);
    await store.save((await sampleStates())[0], null);
    chmodSync(join(dir, STORE_FILES.state), 0o644);
    await expect(store.load()).rejects.toThrow('chmod 600');
  });

  // Another local user must not be able to plant a CA whose key they hold (sshd's StrictModes).
  it.each<[string, (dir: string) => void, string]>([
    [
      'a data directory others can write to',
      (dir) => chmodSync(dir, 0o777),
      `the data directory DIR is writable by group or others (mode 0777): whoever can write there could replace the CA or its credentials; run chmod 700 DIR`,
    ],
    [
      'a state file owned by another user',
      (dir) => chownSync(join(dir, STORE_FILES.state), 65534, 65534),
      'DIR/ca-state.json belongs to uid 65534, not to the user running Mooring',
    ],
    [
      'a state file that is a symbolic link',
      (dir) => {
        renameSync(join(dir, STORE_FILES.state), join(dir, 'elsewhere.json'));
        symlinkSync(join(dir, 'elsewhere.json'), join(dir, STORE_FILES.state));
      },
      'DIR/ca-state.json is a symbolic link',
    ],
  ])('refuses to load %s, and says how to fix it', async (_name, spoil, message) => {
    const dir = tempDir();
    const store = new FileCAStore(dir);
    await store.save((await sampleStates())[0], null);
    spoil(dir);
    const err = await store.load().catch((e: unknown) => e);
    expect(err).toMatchObject({ code: 'CA_ERR_STORE' });
    expect((err as Error).message).toContain(message.replaceAll('DIR', dir));
  });

  it('refuses a state file that is not JSON', async () => {
    const dir = tempDir();
    writeFileSync(join(dir, STORE_FILES.state), '{', { mode: 0o600 });
    expect(await errorCode(() => new FileCAStore(dir).load())).toBe('CA_ERR_STORE');
  });

  it('repairs a bundle export left behind by a crash between the two writes', async () => {
    const dir = tempDir();
    const store = new FileCAStore(dir);
    const [s1, s2] = await sampleStates();
    const v1 = await store.save(s1, null);
    const exported = readFileSync(join(dir, STORE_FILES.rootExport), 'utf8');
    await store.save(s2, v1);
    writeFileSync(join(dir, STORE_FILES.rootExport), exported);
    await store.load();
    expect(readFileSync(join(dir, STORE_FILES.rootExport), 'utf8')).toBe(
      s2.roots.map((r) => r.certPem).join(''),
    );
  });

  it('removes temporary files of dead writers and takes over their lock', async () => {
    const dir = tempDir();
    const store = new FileCAStore(dir, { lockTimeoutMs: 2000 });
    const [s1] = await sampleStates();
    writeFileSync(join(dir, `.${STORE_FILES.state}.999999999.abcdef.tmp`), 'partial', {
      mode: 0o600,
    });
    writeFileSync(join(dir, STORE_FILES.lock), '999999999');
    await store.save(s1, null);
    expect(readdirSync(dir).sort()).toEqual([STORE_FILES.state, STORE_FILES.rootExport].sort());
  });

  it('takes over an empty lock file (left by an older version or a torn write)', async () => {
    const dir = tempDir();
    writeFileSync(join(dir, STORE_FILES.lock), '');
    await new FileCAStore(dir, { lockTimeoutMs: 2000 }).save((await sampleStates())[0], null);
    expect(readdirSync(dir)).not.toContain(STORE_FILES.lock);
  });

  it('waits for a live writer and gives up with CA_ERR_STORE', async () => {
    const dir = tempDir();
    writeFileSync(join(dir, STORE_FILES.lock), String(process.ppid));
    const store = new FileCAStore(dir, { lockTimeoutMs: 100 });
    const err = await store.save((await sampleStates())[0], null).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(MooringError);
    expect((err as MooringError).message).toContain('timed out waiting for the lock');
  });

  it('serializes two writers of the same process', async () => {
    const dir = tempDir();
    const a = new FileCAStore(dir);
    const b = new FileCAStore(dir);
    const [s1, s2] = await sampleStates();
    const results = await Promise.allSettled([a.save(s1, null), b.save(s2, null)]);
    expect(results.map((r) => r.status).sort()).toEqual(['fulfilled', 'rejected']);
  });
});

describe('atomic writes', () => {
  it('goes through temp-written, temp-synced, renamed, dir-synced and applies the mode exactly', async () => {
    const dir = tempDir();
    const steps: AtomicStep[] = [];
    const old = process.umask(0o077);
    try {
      await writeFileAtomic(join(dir, 'f'), 'x', { mode: 0o644, observe: (s) => steps.push(s) });
    } finally {
      process.umask(old);
    }
    expect(steps).toEqual(['temp-written', 'temp-synced', 'renamed', 'dir-synced']);
    expect(mode(join(dir, 'f'))).toBe(0o644);
  });

  it('leaves the old content and no temporary file when a write fails midway', async () => {
    const dir = tempDir();
    writeFileSync(join(dir, 'f'), 'old');
    const failing = writeFileAtomic(join(dir, 'f'), 'new', {
      mode: 0o600,
      observe: (s) => {
        if (s === 'temp-synced') throw new Error('boom');
      },
    });
    await expect(failing).rejects.toThrow('boom');
    expect(readFileSync(join(dir, 'f'), 'utf8')).toBe('old');
    expect(readdirSync(dir)).toEqual(['f']);
  });

  it('refuses to replace an existing file in exclusive mode', async () => {
    const dir = tempDir();
    writeFileSync(join(dir, 'f'), 'old');
    await expect(
      writeFileAtomic(join(dir, 'f'), 'new', { mode: 0o600, exclusive: true }),
    ).rejects.toMatchObject({ code: 'EEXIST' });
    expect(readdirSync(dir)).toEqual(['f']);
  });
});

describe('the local CA', () => {
  it('reuses its root after a restart and issues certificates that verify', async () => {
    const dir = tempDir();
    const first = await openLocalCA({ config: defaultConfig(), dataDir: dir, create: true });
    const again = await openLocalCA({ config: defaultConfig(), dataDir: dir, create: false });
    expect(again.authority.trustBundle()).toEqual(first.authority.trustBundle());
    const chain = await again.authority.issueWorkload({
      csrPem: csrPem(),
      spiffeId: 'spiffe://cluster.local/ns/a/sa/b',
    });
    expect(
      verifiesAgainst(chain.certificateChain[0] as string, first.authority.trustBundle()),
    ).toBe(true);
  });

  it('names the missing file of a plugged-in CA directory', async () => {
    const config = validateConfig({ ca: { pluginDir: tempDir() } });
    const err = await openLocalCA({ config, dataDir: tempDir(), create: true }).catch(
      (e: unknown) => e,
    );
    expect(err).toMatchObject({ code: 'CA_ERR_PLUGIN' });
    expect((err as Error).message).toContain('ca-cert.pem');
  });
});

describe('local credentials', () => {
  it('creates a random admin token 0600 once and reuses it', async () => {
    const dir = tempDir();
    const token = await ensureAdminToken(dir);
    expect(token).toMatch(/^[A-Za-z0-9_-]{43}$/);
    expect(mode(join(dir, ADMIN_TOKEN_FILE))).toBe(0o600);
    expect(await ensureAdminToken(dir)).toBe(token);
    expect(await ensureAdminToken(tempDir())).not.toBe(token);
  });

  /** A data dir whose admin-token holds `token`, and its authorizer (rechecked every call). */
  const adminSetup = (token: string) => {
    const dir = tempDir();
    writeFileSync(join(dir, ADMIN_TOKEN_FILE), `${token}\n`, { mode: 0o600 });
    return { dir, auth: new LocalAdminAuthorizer(dir, { recheckMs: 0 }) };
  };
  const adminResult = (auth: LocalAdminAuthorizer, token: string) =>
    auth.authorizeAdmin(token).then(
      (r) => (r.subject === 'local-admin' ? 'ok' : 'bad subject'),
      (e: MooringError) => e.code,
    );

  it.each([
    ['the admin token', 'secret-token', 'ok'],
    ['another token', 'secret-tokem', 'CA_ERR_UNAUTHENTICATED'],
    ['a prefix of it', 'secret', 'CA_ERR_UNAUTHENTICATED'],
    ['an empty token', '', 'CA_ERR_UNAUTHENTICATED'],
  ])('the admin authorizer accepts only the admin token: %s', async (_name, token, expected) => {
    expect(await adminResult(adminSetup('secret-token').auth, token)).toBe(expected);
  });

  it('concurrent first admin requests all wait for the one read of admin-token (none refused as if it were absent)', async () => {
    // As after a start: sixteen requests arrive before the file was ever read.
    const dir = tempDir();
    writeFileSync(join(dir, ADMIN_TOKEN_FILE), 'secret-token\n', { mode: 0o600 });
    const auth = new LocalAdminAuthorizer(dir);
    const results = await Promise.all(
      Array.from({ length: 16 }, () => adminResult(auth, 'secret-token')),
    );
    expect(results).toEqual(Array.from({ length: 16 }, () => 'ok'));
  });

  it('reads admin-token and tokens.json before the server can be ready (openLocalCredentials)', async () => {
    const dir = tempDir();
    writeFileSync(join(dir, TOKENS_FILE), '{}', { mode: 0o600 });
    const credentials = await openLocalCredentials(dir);
    expect(credentials.adminAuthorizer.loaded).toBe(true);
    expect(credentials.authenticator.loaded).toBe(true);
  });

  it('takes a replaced admin-token without a restart, and refuses every admin once it is deleted', async () => {
    const { dir, auth } = adminSetup('old-token');
    expect(await adminResult(auth, 'old-token')).toBe('ok');
    writeFileSync(join(dir, 'next'), 'new-token\n', { mode: 0o600 });
    renameSync(join(dir, 'next'), join(dir, ADMIN_TOKEN_FILE));
    expect(await adminResult(auth, 'old-token')).toBe('CA_ERR_UNAUTHENTICATED');
    expect(await adminResult(auth, 'new-token')).toBe('ok');
    unlinkSync(join(dir, ADMIN_TOKEN_FILE));
    const err = await auth.authorizeAdmin('new-token').catch((e: unknown) => e);
    expect(err).toMatchObject({ code: 'CA_ERR_UNAUTHENTICATED' });
    expect((err as Error).message).toContain('mooring ca init');
  });

  it.each<[string, (path: string) => void, string]>([
    ['readable by others', (path) => chmodSync(path, 0o644), 'run chmod 600'],
    ['owned by another user', (path) => chownSync(path, 65534, 65534), 'belongs to uid 65534'],
    [
      'a symbolic link',
      (path) => {
        renameSync(path, `${path}.real`);
        symlinkSync(`${path}.real`, path);
      },
      'is a symbolic link',
    ],
  ])('refuses every admin request (503) while admin-token is %s', async (_name, spoil, why) => {
    const { dir, auth } = adminSetup('secret-token');
    spoil(join(dir, ADMIN_TOKEN_FILE));
    const err = await auth.authorizeAdmin('secret-token').catch((e: unknown) => e);
    expect(err).toMatchObject({ code: 'CA_ERR_NOT_READY', status: 503 });
    expect((err as Error).message).toContain(why);
    expect((err as Error).message).not.toContain('secret-token');
    await expect(ensureAdminToken(dir)).rejects.toThrow(why);
  });

  it('refuses to make an admin token in a data directory others can write to', async () => {
    const dir = tempDir();
    chmodSync(dir, 0o777);
    await expect(ensureAdminToken(dir)).rejects.toThrow('run chmod 700');
  });

  it('refuses every workload token when tokens.json does not exist', async () => {
    const auth = new TokensFileAuthenticator(tempDir());
    await expect(auth.authenticateWorkload('t')).rejects.toMatchObject({
      code: 'CA_ERR_UNAUTHENTICATED',
    });
  });

  it('maps tokens of tokens.json to identities and picks up changes', async () => {
    const dir = tempDir();
    const path = join(dir, TOKENS_FILE);
    writeFileSync(
      path,
      JSON.stringify({ 'token-a': { namespace: 'shop', serviceAccount: 'cart' } }),
      { mode: 0o600 },
    );
    const auth = new TokensFileAuthenticator(dir, { recheckMs: 0 });
    expect(await auth.authenticateWorkload('token-a')).toEqual({
      namespace: 'shop',
      serviceAccount: 'cart',
    });
    await expect(auth.authenticateWorkload('token-b')).rejects.toMatchObject({
      code: 'CA_ERR_UNAUTHENTICATED',
    });

    writeFileSync(
      path,
      JSON.stringify({
        'token-b': { namespace: 'shop', serviceAccount: 'web' },
        x: { namespace: 'a', serviceAccount: 'b' },
      }),
    );
    expect(await auth.authenticateWorkload('token-b')).toEqual({
      namespace: 'shop',
      serviceAccount: 'web',
    });
    await expect(auth.authenticateWorkload('token-a')).rejects.toMatchObject({
      code: 'CA_ERR_UNAUTHENTICATED',
    });

    // A broken edit (meant to revoke token-b, say) refuses every token until it is fixed.
    writeFileSync(path, JSON.stringify({ x: { namespace: 'a', serviceAccount: 'b' } }) + ',');
    const err = await auth.authenticateWorkload('token-b').catch((e: unknown) => e);
    expect(err).toMatchObject({ code: 'CA_ERR_NOT_READY', status: 503 });
    expect((err as Error).message).toContain(`${path}: not valid JSON; every workload token`);
    writeFileSync(path, JSON.stringify({ x: { namespace: 'a', serviceAccount: 'b' } }));
    await expect(auth.authenticateWorkload('token-b')).rejects.toMatchObject({
      code: 'CA_ERR_UNAUTHENTICATED',
    });
    expect(await auth.authenticateWorkload('x')).toEqual({ namespace: 'a', serviceAccount: 'b' });
  });

  it.each([
    ['not JSON', '{', 0o600, 'not valid JSON'],
    ['an array', '[]', 0o600, 'must be an object'],
    [
      'a bad namespace',
      JSON.stringify({ t: { namespace: 'Shop', serviceAccount: 'a' } }),
      0o600,
      'entry 1: "namespace"',
    ],
    [
      'a missing service account',
      JSON.stringify({ t: { namespace: 'shop' } }),
      0o600,
      'entry 1: "serviceAccount"',
    ],
    [
      'readable by others',
      JSON.stringify({ t: { namespace: 'shop', serviceAccount: 'a' } }),
      0o644,
      'run chmod 600',
    ],
  ])(
    'refuses a tokens.json that is %s at start and on every request, without quoting tokens',
    async (_name, content, fileMode, message) => {
      const dir = tempDir();
      writeFileSync(join(dir, TOKENS_FILE), content, { mode: fileMode });
      const auth = new TokensFileAuthenticator(dir);
      const atStart = await auth.check().catch((e: unknown) => e);
      expect(atStart).toMatchObject({ code: 'CA_ERR_STORE' });
      expect((atStart as Error).message).toContain(message);
      const err = await auth.authenticateWorkload('t').catch((e: unknown) => e);
      expect(err).toMatchObject({ code: 'CA_ERR_NOT_READY' });
      expect((err as Error).message).toContain(message);
      expect((err as Error).message).not.toMatch(/"t"/);
    },
  );
});

describe('the system random source', () => {
  it('hands out every pooled byte once, refills, and serves large reads directly', () => {
    const random = pooledRandom(64);
    const reads = Array.from({ length: 10 }, () => random.bytes(16).toString('hex'));
    expect(new Set(reads).size).toBe(10);
    expect(reads.every((r) => r.length === 32)).toBe(true);
    expect(random.bytes(100)).toHaveLength(100);
  });

  it('returns copies that later reads do not change', () => {
    const random = pooledRandom(64);
    const first = random.bytes(16);
    const copy = Buffer.from(first);
    random.bytes(48);
    random.bytes(16);
    expect(first.equals(copy)).toBe(true);
  });
});
