// The CertificateService: one implementation for every mode. It holds the CA state (loaded from
// a KeyStore) compiled into an issuer, issues through the profiles, and performs the rotation
// transitions that are due when the shell calls tick(). A plugged-in CA replaces the state.
//
// Nothing here reads a clock, the environment or a file: time comes from the Clock, randomness
// from the RandomSource, persistence from the KeyStore, new keys from the key generator.

import type { X509Certificate } from 'node:crypto';
import { MooringError } from '../errors';
import { toPem } from './der';
import {
  checkCsr,
  csrDerFromPem,
  parseCsr,
  readCsr,
  type CryptoMode,
  type VerifiedCsr,
} from './csr';
import { CryptoQueue, type Schedule } from './crypto-queue';
import { spiffeIdOf, workloadSpiffeId } from './identity';
import {
  compileIssuer,
  fingerprintOf,
  buildRoot,
  parseCertificatePem,
  signLeaf,
  signLeafInPool,
  signLeafQueued,
  type IssuingCA,
} from './issuer';
import {
  generateKeyPair,
  keyPairFromPem,
  keyTypeOf,
  privateKeyToPem,
  type KeyPair,
  type RootKeyType,
} from './keys';
import type { PluginCA } from './plugin';
import {
  checkCAPolicy,
  rotationPolicyOf,
  servingLifetimes,
  workloadLifetimes,
  type CAPolicy,
} from './policy';
import type {
  CAStatusView,
  CertificateService,
  Clock,
  IssuedChain,
  KeyAlgorithm,
  KeyStore,
  RandomSource,
  ServingIssueRequest,
  WorkloadIdentity,
  WorkloadIssueRequest,
} from './ports';
import {
  serialNumber,
  servingTemplate,
  workloadTemplate,
  type LeafTemplate,
  type LifetimePolicy,
} from './profile';
import {
  activeRoot,
  applyDue,
  bundleRoots,
  checkState,
  initialState,
  nextRotationAt,
  rotationDue,
  startRotation,
  type CAState,
  type NewRoot,
  type RootRecord,
  type RotationEvent,
  type RotationPolicy,
} from './rotation';

export interface AuthorityOptions {
  readonly trustDomain: string;
  /** What it issues and how it rotates (the `ca` section of the configuration fits). */
  readonly ca: CAPolicy;
  readonly clock: Clock;
  readonly random: RandomSource;
  /** The CA state's home; unused (may be omitted) with a plugged-in CA. */
  readonly store?: KeyStore<CAState>;
  /** A checked plugged-in CA (src/ca/plugin.ts); replaces the self-signed roots. */
  readonly plugin?: PluginCA;
  /** Defaults to node:crypto key generation; tests pass pre-generated keys. */
  readonly generateKey?: (type: RootKeyType) => Promise<KeyPair>;
  /**
   * Where CSR signature checks and certificate signatures run (CryptoMode): 'sync' (default) at
   * once on the calling thread; 'threadpool' in libuv's pool, which frees the event loop when a
   * spare core exists but pays two thread hand-offs per certificate; 'batched' on the calling
   * thread, back to back with those of the other requests of the same event-loop turn, the least
   * CPU per certificate under load. bench/ca.ts measures the three.
   */
  readonly cryptoMode?: CryptoMode;
  /** When a 'batched' queue runs: the shell's nextTurn (setImmediate); tests pass their own. */
  readonly schedule?: Schedule;
}

export interface OpenOptions {
  /** Create the CA (a new root) when the store is empty; otherwise CA_ERR_STORE. */
  readonly create: boolean;
}

/** What tick() and rotate() did, for the shell to log. */
export interface TickResult {
  readonly reloaded: boolean;
  readonly events: readonly RotationEvent[];
}

/** One root as compiled for serving. */
interface CompiledRoot {
  readonly record: RootRecord;
  readonly certificate: X509Certificate;
  readonly keyType: KeyAlgorithm | null;
}

interface Compiled {
  readonly issuer: IssuingCA;
  readonly bundle: readonly string[];
  readonly roots: readonly CompiledRoot[];
}

const serialHex = (serial: Buffer): string => serial.toString('hex');

export class Authority implements CertificateService {
  private state: CAState | null = null;
  private version: string | null = null;
  private compiled: Compiled;
  private readonly cache = new Map<string, CompiledRoot>();
  private readonly workloadPolicy: LifetimePolicy;
  private readonly servingPolicy: LifetimePolicy;
  private readonly rotationPolicy: RotationPolicy;
  private readonly generateKey: (type: RootKeyType) => Promise<KeyPair>;
  private readonly cryptoMode: CryptoMode;
  private readonly queue: CryptoQueue;

  private constructor(private readonly options: AuthorityOptions) {
    const ca = options.ca;
    this.workloadPolicy = workloadLifetimes(ca);
    this.servingPolicy = servingLifetimes(ca);
    this.rotationPolicy = rotationPolicyOf(ca);
    this.generateKey = options.generateKey ?? generateKeyPair;
    this.cryptoMode = options.cryptoMode ?? 'sync';
    this.queue = new CryptoQueue(
      options.schedule ??
        (() => {
          throw new Error("a 'batched' CertificateService needs options.schedule");
        }),
    );
    this.compiled = undefined as unknown as Compiled;
  }

  /**
   * Opens the CA: the plugged-in CA if given, else the state of the store (created with a new
   * root when empty and `create`). Due transitions are not applied here: call tick().
   */
  static async open(options: AuthorityOptions, open: OpenOptions): Promise<Authority> {
    checkCAPolicy(options.ca);
    const authority = new Authority(options);
    if (options.plugin !== undefined) {
      authority.compiled = authority.compilePlugin(options.plugin);
      return authority;
    }
    const store = authority.requireStore();
    let loaded = await store.load();
    if (loaded === null) {
      if (!open.create) {
        throw new MooringError(
          'CA_ERR_STORE',
          'the CA store is empty: create the CA first (mooring ca init), or give the configuration of a plugged-in CA (--config)',
        );
      }
      const now = options.clock.now();
      const state = initialState(await authority.newRoot(now), now);
      try {
        const version = await store.save(state, null);
        loaded = { state, version };
      } catch (err) {
        // Someone else created it at the same moment: use theirs.
        if (!(err instanceof MooringError && err.code === 'CA_ERR_CONFLICT')) throw err;
        loaded = await store.load();
        if (loaded === null) throw err;
      }
    }
    authority.adopt(checkState(loaded.state), loaded.version);
    authority.checkTrustDomain();
    return authority;
  }

  /**
   * A root made here names its trust domain (O=); a configuration with another trust domain is
   * the wrong configuration (`mooring ca issue` without the server's --config, say), and would
   * issue identities of one trust domain under the root of another.
   */
  private checkTrustDomain(): void {
    const state = this.state;
    if (state === null) return;
    const active = this.compiled.roots.find((r) => r.record === activeRoot(state));
    const madeFor = active?.certificate.subject
      .split('\n')
      .find((line) => line.startsWith('O='))
      ?.slice(2);
    if (madeFor === undefined || madeFor === this.options.trustDomain) return;
    throw new MooringError(
      'CFG_ERR_INVALID',
      `the CA was made for trust domain "${madeFor}" but trustDomain is "${this.options.trustDomain}": ` +
        `give the configuration the CA was made with (--config), or make a new CA elsewhere`,
    );
  }

  // --- CertificateService ------------------------------------------------------------------

  spiffeIdOf(identity: WorkloadIdentity): string {
    return spiffeIdOf(this.options.trustDomain, identity);
  }

  async issueWorkload(req: WorkloadIssueRequest): Promise<IssuedChain> {
    const spiffeId = workloadSpiffeId(req.spiffeId, this.options.trustDomain);
    const csr = await this.readCsr(req.csrPem);
    const { issuer, bundle } = this.compiled;
    const template = workloadTemplate({
      csr,
      spiffeId: `spiffe://${spiffeId.trustDomain}${spiffeId.path}`,
      ttlSeconds: req.ttlSeconds,
      now: this.options.clock.now(),
      serial: serialNumber(this.options.random),
      issuer: issuer.window,
      policy: this.workloadPolicy,
    });
    return this.finish(template, issuer, bundle, csr.keyType);
  }

  async issueServing(req: ServingIssueRequest): Promise<IssuedChain> {
    const csr = await this.readCsr(req.csrPem);
    const { issuer, bundle } = this.compiled;
    const template = servingTemplate({
      csr,
      dnsNames: req.dnsNames,
      ipAddresses: req.ipAddresses,
      ttlSeconds: req.ttlSeconds,
      now: this.options.clock.now(),
      serial: serialNumber(this.options.random),
      issuer: issuer.window,
      policy: this.servingPolicy,
    });
    return this.finish(template, issuer, bundle, csr.keyType);
  }

  trustBundle(): readonly string[] {
    return this.compiled.bundle;
  }

  status(): CAStatusView {
    const { issuer, roots } = this.compiled;
    const view = (c: X509Certificate) => ({
      subject: c.subject.replace(/\n/g, ', '),
      notBefore: new Date(c.validFrom),
      notAfter: new Date(c.validTo),
      fingerprint: fingerprintOf(c),
    });
    return {
      roots: roots.map((r) => ({
        ...view(r.certificate),
        status: r.record.status,
        ...(r.keyType === null ? {} : { keyType: r.keyType }),
        ...(r.record.activateAt === undefined ? {} : { activateAt: new Date(r.record.activateAt) }),
        ...(r.record.removeAt === undefined ? {} : { removeAt: new Date(r.record.removeAt) }),
      })),
      issuer: view(issuer.certificate),
      intermediate: this.options.plugin !== undefined && issuer.chainPems.length > 0,
      nextRotationAt: this.state === null ? null : nextRotationAt(this.state, this.rotationPolicy),
    };
  }

  ready(): boolean {
    return this.options.clock.now().getTime() < this.compiled.issuer.window.notAfter.getTime();
  }

  // --- state and rotation ------------------------------------------------------------------

  /** The loaded state (null with a plugged-in CA) and its store version. */
  snapshot(): { state: CAState | null; version: string | null } {
    return { state: this.state, version: this.version };
  }

  /** Re-reads the store and adopts it if another process changed it. */
  async reloadIfChanged(): Promise<boolean> {
    if (this.options.plugin !== undefined) return false;
    const loaded = await this.requireStore().load();
    if (loaded === null) throw new MooringError('CA_ERR_STORE', 'the CA store has disappeared');
    if (loaded.version === this.version) return false;
    this.adopt(checkState(loaded.state), loaded.version);
    return true;
  }

  /**
   * Reloads if changed, then performs what is due at `now`: activation of a pending root,
   * removal of retired roots, an automatic rotation start. Persists any change.
   */
  async tick(now: Date = this.options.clock.now()): Promise<TickResult> {
    return this.transition(now, false);
  }

  /** Starts a rotation now (mooring ca rotate), after performing what is due. */
  async rotate(now: Date = this.options.clock.now()): Promise<TickResult> {
    if (this.options.plugin !== undefined) {
      throw new MooringError(
        'CA_ERR_ROTATION',
        'the CA is plugged in: rotate it by replacing the files of ca.pluginDir',
      );
    }
    return this.transition(now, true);
  }

  private async transition(now: Date, force: boolean): Promise<TickResult> {
    if (this.options.plugin !== undefined) return { reloaded: false, events: [] };
    const reloaded = await this.reloadIfChanged();
    for (let attempt = 0; ; attempt++) {
      const current = this.state as CAState;
      const due = applyDue(current, now, this.rotationPolicy);
      let next = due.state;
      const events = [...due.events];
      if (force || (this.rotationPolicy.auto && rotationDue(next, now, this.rotationPolicy))) {
        const started = startRotation(next, now, await this.newRoot(now), this.rotationPolicy);
        next = started.state;
        events.push(...started.events);
      }
      if (next === current) return { reloaded, events };
      try {
        const version = await this.requireStore().save(next, this.version);
        this.adopt(next, version);
        return { reloaded, events };
      } catch (err) {
        if (attempt > 0 || !(err instanceof MooringError && err.code === 'CA_ERR_CONFLICT'))
          throw err;
        await this.reloadIfChanged();
      }
    }
  }

  // --- internals ---------------------------------------------------------------------------

  private requireStore(): KeyStore<CAState> {
    if (this.options.store === undefined) {
      throw new MooringError('CA_ERR_STORE', 'no CA store was configured');
    }
    return this.options.store;
  }

  private async newRoot(now: Date): Promise<NewRoot> {
    const key = await this.generateKey(this.options.ca.rootKeyType);
    const certPem = buildRoot({
      key,
      commonName: this.options.ca.rootSubject,
      organization: this.options.trustDomain,
      now,
      lifetimeSeconds: this.options.ca.rootLifetimeSeconds,
      backdateSeconds: this.options.ca.backdateSeconds,
      serial: serialNumber(this.options.random),
    });
    return { certPem, keyPem: privateKeyToPem(key.privateKey) };
  }

  private compileRoot(record: RootRecord): CompiledRoot {
    const cached = this.cache.get(record.certPem);
    if (cached !== undefined) return { ...cached, record };
    const certificate = parseCertificatePem(record.certPem, 'a root of the CA state');
    const compiled = { record, certificate, keyType: keyTypeOf(certificate.publicKey) };
    this.cache.set(record.certPem, compiled);
    return compiled;
  }

  private adopt(state: CAState, version: string): void {
    const roots = bundleRoots(state).map((r) => this.compileRoot(r));
    const active = activeRoot(state);
    const issuer = this.issuerFor(active, roots.find((r) => r.record === active) as CompiledRoot);
    this.compiled = { issuer, bundle: roots.map((r) => r.certificate.toString()), roots };
    this.state = state;
    this.version = version;
    // Forget compiled roots that left the state.
    for (const pem of this.cache.keys()) {
      if (!state.roots.some((r) => r.certPem === pem)) this.cache.delete(pem);
    }
  }

  private readonly issuers = new Map<string, IssuingCA>();

  private issuerFor(record: RootRecord, root: CompiledRoot): IssuingCA {
    const cached = this.issuers.get(record.certPem);
    if (cached !== undefined) return cached;
    let key: KeyPair;
    try {
      key = keyPairFromPem(record.keyPem);
    } catch (err) {
      throw new MooringError('CA_ERR_STORE', 'the active root key cannot be read', { cause: err });
    }
    if (!root.certificate.checkPrivateKey(key.privateKey)) {
      throw new MooringError('CA_ERR_STORE', 'the active root key does not match its certificate');
    }
    const issuer = compileIssuer({
      certPem: record.certPem,
      privateKey: key.privateKey,
      chainPems: [],
      windowCertificates: [],
    });
    this.issuers.clear();
    this.issuers.set(record.certPem, issuer);
    return issuer;
  }

  private compilePlugin(plugin: PluginCA): Compiled {
    return {
      issuer: plugin.issuer,
      bundle: plugin.rootPems,
      roots: plugin.roots.map((certificate) => ({
        record: {
          certPem: certificate.toString(),
          keyPem: '',
          status: 'active',
          addedAt: certificate.validFrom,
        },
        certificate,
        keyType: keyTypeOf(certificate.publicKey),
      })),
    };
  }

  /** The CSR parsed at once, its key imported and signature checked as cryptoMode says. */
  private async readCsr(pem: string): Promise<VerifiedCsr> {
    if (this.cryptoMode !== 'batched') return readCsr(pem, this.cryptoMode);
    const parsed = parseCsr(csrDerFromPem(pem));
    return this.queue.run(() => checkCsr(parsed));
  }

  private async finish(
    template: LeafTemplate,
    issuer: IssuingCA,
    bundle: readonly string[],
    keyType: KeyAlgorithm,
  ): Promise<IssuedChain> {
    const der =
      this.cryptoMode === 'threadpool'
        ? await signLeafInPool(template, issuer)
        : this.cryptoMode === 'batched'
          ? await signLeafQueued(template, issuer, (op) => this.queue.run(op))
          : signLeaf(template, issuer);
    return {
      certificateChain: [toPem('CERTIFICATE', der), ...issuer.chainPems],
      trustBundle: bundle,
      expiresAt: template.notAfter,
      serialNumber: serialHex(template.serial),
      keyType,
    };
  }
}
