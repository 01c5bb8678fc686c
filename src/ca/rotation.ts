// The CA state as plain data, and root rotation as pure transitions over it given `now`.
//
//   start     a new root joins the bundle as `pending`, activateAt = now + propagation delay
//   activate  at activateAt the pending root becomes `active` (issuance moves to it); the old
//             active root becomes `retired`, removeAt = now + the longest lifetime anything it
//             signed can have (+ a grace for replicas that have not reloaded yet), never past
//             its own notAfter
//   remove    at removeAt the retired root leaves the bundle
//
// Automatic start when the active root has less than beforeExpirySeconds left; on demand with
// `mooring ca rotate`. The shell (a timer in local mode, the Lease holder in cluster mode) calls
// these and persists the result; nothing here reads a clock.

import { X509Certificate } from 'node:crypto';
import { MooringError } from '../errors';

export type RootStatus = 'pending' | 'active' | 'retired';

export interface RootRecord {
  readonly certPem: string;
  /** PKCS#8 PEM of the root's private key. */
  readonly keyPem: string;
  readonly status: RootStatus;
  /** ISO 8601 instants. */
  readonly addedAt: string;
  /** pending: when issuance moves to it. */
  readonly activateAt?: string;
  /** active and retired: when issuance moved to it. */
  readonly activatedAt?: string;
  /** retired: when issuance left it. */
  readonly retiredAt?: string;
  /** retired: when it leaves the bundle. */
  readonly removeAt?: string;
}

export interface CAState {
  readonly schema: 1;
  /** Exactly one active, at most one pending, any number retired. */
  readonly roots: readonly RootRecord[];
}

export interface RotationPolicy {
  readonly auto: boolean;
  readonly beforeExpirySeconds: number;
  readonly propagationDelaySeconds: number;
  /** The longest lifetime of anything a root signs: max(workload max TTL, serving lifetime). */
  readonly maxIssuedLifetimeSeconds: number;
  /** Added to removeAt for replicas still issuing from their last reload (check interval). */
  readonly graceSeconds: number;
}

/** A freshly generated root, not yet in the state. */
export interface NewRoot {
  readonly certPem: string;
  readonly keyPem: string;
}

export type RotationEvent =
  | { readonly event: 'rotation-started'; readonly certPem: string; readonly activateAt: Date }
  | { readonly event: 'root-activated'; readonly certPem: string; readonly retiredCertPem: string }
  | { readonly event: 'root-removed'; readonly certPem: string };

const iso = (d: Date): string => d.toISOString();
const at = (s: string | undefined): number => (s === undefined ? NaN : Date.parse(s));
const addSeconds = (d: Date, s: number): Date => new Date(d.getTime() + s * 1000);

const storeError = (message: string): MooringError => new MooringError('CA_ERR_STORE', message);

/** The validity of a root certificate. */
export function rootValidity(root: Pick<RootRecord, 'certPem'>): {
  notBefore: Date;
  notAfter: Date;
} {
  const cert = new X509Certificate(root.certPem);
  return { notBefore: new Date(cert.validFrom), notAfter: new Date(cert.validTo) };
}

/** The state of a new CA: one active root. */
export function initialState(root: NewRoot, now: Date): CAState {
  return {
    schema: 1,
    roots: [{ ...root, status: 'active', addedAt: iso(now), activatedAt: iso(now) }],
  };
}

/** Checks the invariants of a loaded state; throws CA_ERR_STORE naming the broken one. */
export function checkState(state: unknown): CAState {
  if (typeof state !== 'object' || state === null)
    throw storeError('the CA state is not an object');
  const s = state as Partial<CAState>;
  if (s.schema !== 1) throw storeError(`unknown CA state schema ${String(s.schema)}`);
  if (!Array.isArray(s.roots)) throw storeError('the CA state has no roots list');
  const roots = s.roots as unknown[];
  for (const [i, r] of roots.entries()) {
    const root = r as Partial<RootRecord>;
    if (typeof root.certPem !== 'string' || typeof root.keyPem !== 'string') {
      throw storeError(`root ${i} has no certificate or key`);
    }
    if (!['pending', 'active', 'retired'].includes(root.status as string)) {
      throw storeError(`root ${i} has an unknown status ${String(root.status)}`);
    }
    if (root.status === 'pending' && Number.isNaN(at(root.activateAt))) {
      throw storeError(`pending root ${i} has no activateAt`);
    }
    if (root.status === 'retired' && Number.isNaN(at(root.removeAt))) {
      throw storeError(`retired root ${i} has no removeAt`);
    }
  }
  const count = (status: RootStatus): number =>
    roots.filter((r) => (r as RootRecord).status === status).length;
  if (count('active') !== 1)
    throw storeError(`the CA state has ${count('active')} active roots, not 1`);
  if (count('pending') > 1) throw storeError('the CA state has more than one pending root');
  return state as CAState;
}

export const activeRoot = (state: CAState): RootRecord =>
  state.roots.find((r) => r.status === 'active') as RootRecord;
export const pendingRoot = (state: CAState): RootRecord | undefined =>
  state.roots.find((r) => r.status === 'pending');

/** Every root a workload must trust right now: active, then pending, then retired. */
export function bundleRoots(state: CAState): RootRecord[] {
  const order: Record<RootStatus, number> = { active: 0, pending: 1, retired: 2 };
  return [...state.roots].sort((a, b) => order[a.status] - order[b.status]);
}

/** Adds `root` as pending. CA_ERR_ROTATION if a rotation is already under way. */
export function startRotation(
  state: CAState,
  now: Date,
  root: NewRoot,
  policy: RotationPolicy,
): { state: CAState; events: RotationEvent[] } {
  if (pendingRoot(state) !== undefined) {
    throw new MooringError(
      'CA_ERR_ROTATION',
      `a root rotation is already under way: the new root activates at ${pendingRoot(state)?.activateAt ?? '?'}`,
    );
  }
  const activateAt = addSeconds(now, policy.propagationDelaySeconds);
  const pending: RootRecord = {
    ...root,
    status: 'pending',
    addedAt: iso(now),
    activateAt: iso(activateAt),
  };
  return {
    state: { ...state, roots: [...state.roots, pending] },
    events: [{ event: 'rotation-started', certPem: root.certPem, activateAt }],
  };
}

/** When the retired root `old`, retired at `now`, may leave the bundle. */
export function removalTime(old: RootRecord, now: Date, policy: RotationPolicy): Date {
  const lastValid = addSeconds(now, policy.maxIssuedLifetimeSeconds + policy.graceSeconds);
  const notAfter = rootValidity(old).notAfter;
  return lastValid < notAfter ? lastValid : notAfter;
}

/** The pending root becomes active once its activateAt has come. */
export function activateDue(
  state: CAState,
  now: Date,
  policy: RotationPolicy,
): { state: CAState; events: RotationEvent[] } {
  const pending = pendingRoot(state);
  if (pending === undefined || at(pending.activateAt) > now.getTime()) return { state, events: [] };
  const old = activeRoot(state);
  const roots = state.roots.map((r): RootRecord => {
    if (r === pending) {
      const { activateAt: _, ...rest } = r;
      return { ...rest, status: 'active', activatedAt: iso(now) };
    }
    if (r === old) {
      return {
        ...r,
        status: 'retired',
        retiredAt: iso(now),
        removeAt: iso(removalTime(old, now, policy)),
      };
    }
    return r;
  });
  return {
    state: { ...state, roots },
    events: [{ event: 'root-activated', certPem: pending.certPem, retiredCertPem: old.certPem }],
  };
}

/** Retired roots leave once their removeAt has come. */
export function removeDue(state: CAState, now: Date): { state: CAState; events: RotationEvent[] } {
  const gone = state.roots.filter((r) => r.status === 'retired' && at(r.removeAt) <= now.getTime());
  if (gone.length === 0) return { state, events: [] };
  return {
    state: { ...state, roots: state.roots.filter((r) => !gone.includes(r)) },
    events: gone.map((r) => ({ event: 'root-removed', certPem: r.certPem })),
  };
}

/** Activation and removal that are due at `now`, in that order. */
export function applyDue(
  state: CAState,
  now: Date,
  policy: RotationPolicy,
): { state: CAState; events: RotationEvent[] } {
  const a = activateDue(state, now, policy);
  const r = removeDue(a.state, now);
  return { state: r.state, events: [...a.events, ...r.events] };
}

/** When the next automatic rotation starts (null when automatic rotation is off). */
export function autoRotationAt(state: CAState, policy: RotationPolicy): Date | null {
  if (!policy.auto) return null;
  return addSeconds(rootValidity(activeRoot(state)).notAfter, -policy.beforeExpirySeconds);
}

/** An automatic rotation should start now: auto on, none under way, inside the window. */
export function rotationDue(state: CAState, now: Date, policy: RotationPolicy): boolean {
  if (pendingRoot(state) !== undefined) return false;
  const start = autoRotationAt(state, policy);
  return start !== null && start.getTime() <= now.getTime();
}

/** For status: the pending root's activation if a rotation is under way, else the next start. */
export function nextRotationAt(state: CAState, policy: RotationPolicy): Date | null {
  const pending = pendingRoot(state);
  if (pending !== undefined) return new Date(at(pending.activateAt));
  return autoRotationAt(state, policy);
}

/** The earliest instant at which a transition becomes due (for a shell's timer), or null. */
export function nextTransitionAt(state: CAState, policy: RotationPolicy): Date | null {
  const times = [
    at(pendingRoot(state)?.activateAt),
    ...state.roots.filter((r) => r.status === 'retired').map((r) => at(r.removeAt)),
    pendingRoot(state) === undefined ? (autoRotationAt(state, policy)?.getTime() ?? NaN) : NaN,
  ].filter((t) => !Number.isNaN(t));
  return times.length === 0 ? null : new Date(Math.min(...times));
}
