// Local-mode credentials (PRODUCT.md "Local mode"):
//   <data-dir>/admin-token  the admin credential: random, 0600, created if absent;
//   <data-dir>/tokens.json  workload tokens: {"<token>": {"namespace": ..., "serviceAccount": ...}}
//                           re-read when it changes; without it every workload token is refused.
// Tokens are never logged and never appear in error messages.

import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import { mkdir, readFile, stat } from 'node:fs/promises';
import { join } from 'node:path';
import type { AdminAuthorizer, Authenticator, WorkloadIdentity } from '../ca/ports';
import { MooringError } from '../errors';
import { writeFileAtomic } from './atomic-file';
import { DATA_DIR_MODE, KEY_FILE_MODE } from './file-store';

export const ADMIN_TOKEN_FILE = 'admin-token';
export const TOKENS_FILE = 'tokens.json';
export const LOCAL_ADMIN_SUBJECT = 'local-admin';

const digest = (token: string): Buffer => createHash('sha256').update(token, 'utf8').digest();

const unauthenticated = (message: string): MooringError =>
  new MooringError('CA_ERR_UNAUTHENTICATED', message);

/** Reads `<dataDir>/admin-token`, creating it (32 random bytes, base64url, 0600) if absent. */
export async function ensureAdminToken(dataDir: string): Promise<string> {
  const path = join(dataDir, ADMIN_TOKEN_FILE);
  await mkdir(dataDir, { recursive: true, mode: DATA_DIR_MODE });
  try {
    await writeFileAtomic(path, `${randomBytes(32).toString('base64url')}\n`, {
      mode: KEY_FILE_MODE,
      exclusive: true,
    });
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
  }
  const token = (await readFile(path, 'utf8')).trim();
  if (token === '') {
    throw new MooringError('CA_ERR_STORE', `${path} is empty: delete it to get a new admin token`);
  }
  return token;
}

/** The admin credential of local mode: one token, compared in constant time. */
export class LocalAdminAuthorizer implements AdminAuthorizer {
  private readonly expected: Buffer;

  constructor(adminToken: string) {
    this.expected = digest(adminToken);
  }

  authorizeAdmin(token: string): Promise<{ readonly subject: string }> {
    // Both sides are SHA-256 digests: equal lengths, and the comparison leaks nothing.
    if (!timingSafeEqual(digest(token), this.expected)) {
      return Promise.reject(unauthenticated('the admin credential is not valid'));
    }
    return Promise.resolve({ subject: LOCAL_ADMIN_SUBJECT });
  }
}

const NAMESPACE = /^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$/;
const SERVICE_ACCOUNT = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/;

/**
 * Parses tokens.json into a map from SHA-256(token) (hex) to identity. Errors name the entry by
 * position, never by token.
 */
export function parseTokensFile(text: string, path: string): Map<string, WorkloadIdentity> {
  const invalid = (why: string): MooringError =>
    new MooringError('CA_ERR_STORE', `${path}: ${why}`);
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch {
    throw invalid('not valid JSON');
  }
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) {
    throw invalid('must be an object from token to {"namespace", "serviceAccount"}');
  }
  const map = new Map<string, WorkloadIdentity>();
  Object.entries(raw as Record<string, unknown>).forEach(([token, value], i) => {
    const entry = `entry ${i + 1}`;
    if (token === '') throw invalid(`${entry} has an empty token`);
    const v = value as Partial<Record<'namespace' | 'serviceAccount', unknown>> | null;
    if (typeof v !== 'object' || v === null) throw invalid(`${entry} must be an object`);
    const { namespace, serviceAccount } = v;
    if (typeof namespace !== 'string' || !NAMESPACE.test(namespace)) {
      throw invalid(`${entry}: "namespace" must be a Kubernetes namespace name`);
    }
    if (
      typeof serviceAccount !== 'string' ||
      serviceAccount.length > 253 ||
      !SERVICE_ACCOUNT.test(serviceAccount)
    ) {
      throw invalid(`${entry}: "serviceAccount" must be a Kubernetes service account name`);
    }
    map.set(digest(token).toString('hex'), { namespace, serviceAccount });
  });
  return map;
}

export interface TokensFileOptions {
  /** Minimum time between two checks of the file for changes. */
  readonly recheckMs?: number;
  /** Monotonic milliseconds (performance.now by default). */
  readonly monotonicMs?: () => number;
}

/** Workload tokens of local mode, from `<dataDir>/tokens.json`, re-read when the file changes. */
export class TokensFileAuthenticator implements Authenticator {
  readonly path: string;
  private tokens: Map<string, WorkloadIdentity> | null = null;
  private signature = '';
  private checkedAt = -Infinity;
  private readonly recheckMs: number;
  private readonly monotonicMs: () => number;

  constructor(dataDir: string, options: TokensFileOptions = {}) {
    this.path = join(dataDir, TOKENS_FILE);
    this.recheckMs = options.recheckMs ?? 1000;
    this.monotonicMs = options.monotonicMs ?? (() => performance.now());
  }

  async authenticateWorkload(token: string): Promise<WorkloadIdentity> {
    await this.refresh();
    if (this.tokens === null) {
      throw unauthenticated(
        `workload tokens are checked against ${TOKENS_FILE} in the data directory, which does not exist`,
      );
    }
    const identity = this.tokens.get(digest(token).toString('hex'));
    if (identity === undefined) throw unauthenticated('the workload token is not valid');
    return identity;
  }

  /** Re-reads the file if it changed (checked at most every recheckMs). */
  async refresh(): Promise<void> {
    const t = this.monotonicMs();
    if (t - this.checkedAt < this.recheckMs) return;
    this.checkedAt = t;
    let signature: string;
    try {
      const s = await stat(this.path);
      signature = `${s.ino}:${s.size}:${s.mtimeMs}`;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
      this.tokens = null;
      this.signature = '';
      return;
    }
    if (signature === this.signature) return;
    // A broken edit keeps the previous good map; with none, the error surfaces (500).
    try {
      this.tokens = parseTokensFile(await readFile(this.path, 'utf8'), this.path);
      this.signature = signature;
    } catch (err) {
      if (this.tokens === null) throw err;
    }
  }
}
