// Leader election on a coordination.k8s.io/v1 Lease, as client-go's leaderelection does it:
// the holder renews the Lease every renewMs; another candidate takes it over only when it has
// seen the same record unchanged for leaseDurationSeconds (its own clock, never the holder's);
// every write carries the resourceVersion, so that two candidates never both win. Mooring uses
// it so that exactly one replica performs CA rotation steps (`mooring-ca-rotation`).

import type { Clock } from '../../ca/ports';
import {
  groupPath,
  isAlreadyExists,
  isConflict,
  isNotFound,
  type KubeApi,
  type KubeObject,
} from './api';

export interface LeaseSpec {
  readonly holderIdentity?: string | null;
  readonly leaseDurationSeconds?: number;
  readonly acquireTime?: string | null;
  readonly renewTime?: string | null;
  readonly leaseTransitions?: number;
}

export interface Lease extends KubeObject {
  readonly spec?: LeaseSpec;
}

/** Kubernetes MicroTime: RFC 3339 with microseconds. */
export function microTime(date: Date): string {
  return date.toISOString().replace(/\.(\d{3})Z$/, '.$1000Z');
}

export interface LeaseElectorLogger {
  info(obj: object, msg: string): void;
  warn(obj: object, msg: string): void;
}

export interface LeaseElectorOptions {
  readonly api: KubeApi;
  readonly clock: Clock;
  readonly namespace: string;
  readonly name: string;
  /** Unique per replica: pod name + random suffix. */
  readonly identity: string;
  readonly leaseDurationSeconds?: number;
  readonly renewMs?: number;
  readonly retryMs?: number;
  readonly logger: LeaseElectorLogger;
  readonly onStartedLeading?: () => void;
  readonly onStoppedLeading?: () => void;
}

export class LeaseElector {
  private leader = false;
  private timer: NodeJS.Timeout | null = null;
  private stopped = true;
  private observedKey = '';
  private observedAt = 0;
  private lastRenewOk = 0;
  private running: Promise<void> | null = null;
  private readonly path: string;
  private readonly durationS: number;

  constructor(private readonly options: LeaseElectorOptions) {
    this.path = groupPath('coordination.k8s.io/v1', 'leases', options.namespace, options.name);
    this.durationS = options.leaseDurationSeconds ?? 15;
  }

  isLeader(): boolean {
    return this.leader;
  }

  get identity(): string {
    return this.options.identity;
  }

  start(): void {
    if (!this.stopped) return;
    this.stopped = false;
    this.schedule(0);
  }

  /** Stops competing; releases the Lease if held, so that another replica takes over at once. */
  async stop(): Promise<void> {
    this.stopped = true;
    if (this.timer !== null) clearTimeout(this.timer);
    this.timer = null;
    await this.running;
    if (this.leader) {
      this.setLeader(false);
      try {
        const lease = await this.options.api.request<Lease>({ method: 'GET', path: this.path });
        if (lease.spec?.holderIdentity === this.options.identity) {
          await this.options.api.request({
            method: 'PUT',
            path: this.path,
            body: {
              ...lease,
              spec: {
                ...lease.spec,
                holderIdentity: null,
                leaseDurationSeconds: 1,
                renewTime: microTime(this.options.clock.now()),
              },
            },
          });
        }
      } catch (err) {
        this.options.logger.warn({ err, lease: this.options.name }, 'could not release the lease');
      }
    }
  }

  /** One attempt to acquire or renew; resolves to whether this replica holds the Lease. */
  async tryAcquireOrRenew(): Promise<boolean> {
    const { api, clock, identity } = this.options;
    const now = clock.now();
    const fresh: LeaseSpec = {
      holderIdentity: identity,
      leaseDurationSeconds: this.durationS,
      acquireTime: microTime(now),
      renewTime: microTime(now),
      leaseTransitions: 0,
    };
    let lease: Lease;
    try {
      lease = await api.request<Lease>({ method: 'GET', path: this.path });
    } catch (err) {
      if (!isNotFound(err)) throw err;
      try {
        await api.request({
          method: 'POST',
          path: groupPath('coordination.k8s.io/v1', 'leases', this.options.namespace),
          body: {
            apiVersion: 'coordination.k8s.io/v1',
            kind: 'Lease',
            metadata: { name: this.options.name, namespace: this.options.namespace },
            spec: fresh,
          },
        });
        return true;
      } catch (createErr) {
        if (isAlreadyExists(createErr)) return false;
        throw createErr;
      }
    }
    const spec = lease.spec ?? {};
    const holder = spec.holderIdentity ?? '';
    // Expiry is judged by when *we* first saw this exact record, not by the holder's timestamps.
    const key = `${holder}|${spec.renewTime ?? ''}|${lease.metadata?.resourceVersion ?? ''}`;
    if (key !== this.observedKey) {
      this.observedKey = key;
      this.observedAt = now.getTime();
    }
    const duration = (spec.leaseDurationSeconds ?? this.durationS) * 1000;
    const heldByOther = holder !== '' && holder !== identity;
    if (heldByOther && this.observedAt + duration > now.getTime()) return false;
    const ours = holder === identity;
    const next: LeaseSpec = ours
      ? { ...spec, renewTime: microTime(now), leaseDurationSeconds: this.durationS }
      : { ...fresh, leaseTransitions: (spec.leaseTransitions ?? 0) + (holder === '' ? 0 : 1) };
    try {
      await api.request({ method: 'PUT', path: this.path, body: { ...lease, spec: next } });
    } catch (err) {
      if (isConflict(err)) return false;
      throw err;
    }
    return true;
  }

  private setLeader(leader: boolean): void {
    if (leader === this.leader) return;
    this.leader = leader;
    this.options.logger.info(
      { lease: this.options.name, identity: this.options.identity, leader },
      leader ? 'became the leader' : 'lost the leadership',
    );
    if (leader) this.options.onStartedLeading?.();
    else this.options.onStoppedLeading?.();
  }

  private schedule(ms: number): void {
    if (this.stopped) return;
    this.timer = setTimeout(() => {
      this.timer = null;
      this.running = this.round().finally(() => {
        this.running = null;
      });
    }, ms);
    this.timer.unref();
  }

  private async round(): Promise<void> {
    const renewMs = this.options.renewMs ?? 5_000;
    const retryMs = this.options.retryMs ?? 2_000;
    const now = this.options.clock.now().getTime();
    let held: boolean;
    try {
      held = await this.tryAcquireOrRenew();
      if (held) this.lastRenewOk = now;
    } catch (err) {
      this.options.logger.warn({ err, lease: this.options.name }, 'lease acquire/renew failed');
      // A leader that cannot renew keeps leading until its lease would have expired for others.
      held = this.leader && now - this.lastRenewOk < (this.durationS * 1000 * 2) / 3;
    }
    if (this.stopped) return;
    this.setLeader(held);
    this.schedule(held ? renewMs : retryMs);
  }
}
