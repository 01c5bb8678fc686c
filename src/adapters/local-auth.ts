// Local-mode credentials (PRODUCT.md "Local mode"):
//   <data-dir>/admin-token  the admin credential: random, 0600, created if absent;
//   <data-dir>/tokens.json  workload tokens: {"<token>": {"namespace": ..., "serviceAccount": ...}};
//                           without it every workload token is refused.
// Both are re-read when they change (checked at most once a second), so that replacing a leaked
// token takes effect without a restart. Both must be private files (private-file.ts). A file that
// is unsafe or cannot be parsed refuses every credential it would have vouched for (503) until it
// is fixed: a broken edit meant to revoke a token must not keep that token valid.
// Tokens are never logged and never appear in error messages.

import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import type { AdminAuthorizer, Authenticator, WorkloadIdentity } from '../ca/ports';
import { MooringError } from '../errors';
import { writeFileAtomic } from './atomic-file';
import { DATA_DIR_MODE, KEY_FILE_MODE } from './file-store';
import {
  checkDataDir,
  fileSignature,
  PrivateFileError,
  readPrivateFile,
  type FileProblem,
} from './private-file';

export const ADMIN_TOKEN_FILE = 'admin-token';
export const TOKENS_FILE = 'tokens.json';
export const LOCAL_ADMIN_SUBJECT = 'local-admin';

const digest = (token: string): Buffer => createHash('sha256').update(token, 'utf8').digest();

const unauthenticated = (message: string): MooringError =>
  new MooringError('CA_ERR_UNAUTHENTICATED', message);

/** The admin token of a file's text: an empty one is an error. */
function parseAdminToken(text: string, path: string): string {
  const token = text.trim();
  if (token === '') {
    throw new MooringError('CA_ERR_STORE', `${path} is empty: delete it to get a new admin token`);
  }
  return token;
}

/** Reads `<dataDir>/admin-token`, creating it (32 random bytes, base64url, 0600) if absent. */
export async function ensureAdminToken(dataDir: string): Promise<string> {
  const path = join(dataDir, ADMIN_TOKEN_FILE);
  await mkdir(dataDir, { recursive: true, mode: DATA_DIR_MODE });
  await checkDataDir(dataDir);
  try {
    await writeFileAtomic(path, `${randomBytes(32).toString('base64url')}\n`, {
      mode: KEY_FILE_MODE,
      exclusive: true,
    });
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
  }
  const bytes = await readPrivateFile(path);
  if (bytes === null) throw new MooringError('CA_ERR_STORE', `${path} disappeared`);
  return parseAdminToken(bytes.toString('utf8'), path);
}

export interface WatchOptions {
  /** Minimum time between two checks of the file for changes. */
  readonly recheckMs?: number;
  /** Monotonic milliseconds (performance.now by default). */
  readonly monotonicMs?: () => number;
}

type Watched<T> = { readonly value: T } | { readonly problem: MooringError } | null;

/**
 * A private file parsed into T, re-read when its metadata changes; null while it is absent.
 * One read at a time: callers that arrive while the file is being checked or read wait for that
 * read, and the signature and the state it read are recorded together, so that no caller ever
 * sees "checked" without the state of that check (concurrent first admin requests were refused as
 * if there were no admin-token).
 */
class WatchedPrivateFile<T> {
  /** Of the last read; undefined when it could not be taken (read again at the next check). */
  private signature: string | null | undefined = undefined;
  private state: Watched<T> = null;
  private loadedOnce = false;
  private checkedAt = -Infinity;
  private reading: Promise<Watched<T>> | null = null;
  private readonly recheckMs: number;
  private readonly monotonicMs: () => number;

  constructor(
    readonly path: string,
    private readonly parse: (text: string, path: string) => T,
    options: WatchOptions,
  ) {
    this.recheckMs = options.recheckMs ?? 1000;
    this.monotonicMs = options.monotonicMs ?? (() => performance.now());
  }

  /** True once the file has been read (or found absent) at least once. */
  get loaded(): boolean {
    return this.loadedOnce;
  }

  current(): Promise<Watched<T>> {
    if (this.reading !== null) return this.reading;
    const t = this.monotonicMs();
    if (this.loadedOnce && t - this.checkedAt < this.recheckMs) return Promise.resolve(this.state);
    const reading = this.refresh(t).finally(() => {
      this.reading = null;
    });
    this.reading = reading;
    return reading;
  }

  private async refresh(t: number): Promise<Watched<T>> {
    let signature: string | null | undefined = undefined;
    let state: Watched<T>;
    try {
      signature = await fileSignature(this.path);
      if (this.loadedOnce && signature === this.signature && signature !== undefined) {
        this.checkedAt = t;
        return this.state;
      }
      const bytes = await readPrivateFile(this.path);
      state = bytes === null ? null : { value: this.parse(bytes.toString('utf8'), this.path) };
    } catch (err) {
      // A file that fails its checks keeps its signature (a chmod or a new file changes it);
      // one whose signature could not be taken is read again at the next check.
      state = {
        problem:
          err instanceof MooringError
            ? err
            : new MooringError('CA_ERR_STORE', `${this.path}: ${(err as Error).message}`),
      };
    }
    this.signature = signature;
    this.state = state;
    this.loadedOnce = true;
    this.checkedAt = t;
    return state;
  }
}

/** Reads the file now if it was never read, and throws what is wrong with it (not its absence). */
async function loadOrThrow<T>(file: WatchedPrivateFile<T>): Promise<void> {
  const state = await file.current();
  if (state !== null && 'problem' in state) throw state.problem;
}

/** What is wrong with a credential file, as a client and /readyz may be told. */
export type CredentialProblem = FileProblem | 'invalid';

const PROBLEM_TEXT: Readonly<Record<CredentialProblem, string>> = {
  unsafe: 'unsafe (its mode, owner or type would let someone else read or write it)',
  unreadable: 'unreadable',
  invalid: 'invalid (not the JSON it must be)',
};

/** The kind of problem of a file's error: the file's own (unsafe, unreadable), else its content. */
const problemOf = (err: MooringError): CredentialProblem =>
  err instanceof PrivateFileError ? err.problem : 'invalid';

/**
 * The 503 of a credential file that cannot be trusted or parsed: nothing it lists is accepted.
 * The client learns which file and the kind of problem; the log gets the whole message.
 */
const unusable = (problem: MooringError, file: string, refused: string): MooringError =>
  new MooringError('CA_ERR_NOT_READY', `${problem.message}; ${refused} until it is fixed`, {
    cause: problem,
    publicDetail: `${refused}: the server's ${file} is ${PROBLEM_TEXT[problemOf(problem)]}`,
  });

/**
 * The admin credential of local mode: the token in `<dataDir>/admin-token`, compared in constant
 * time, re-read when the file changes (deleting it refuses every admin request).
 */
export class LocalAdminAuthorizer implements AdminAuthorizer {
  private readonly file: WatchedPrivateFile<Buffer>;

  constructor(dataDir: string, options: WatchOptions = {}) {
    this.file = new WatchedPrivateFile(
      join(dataDir, ADMIN_TOKEN_FILE),
      (text, path) => digest(parseAdminToken(text, path)),
      options,
    );
  }

  async authorizeAdmin(token: string): Promise<{ readonly subject: string }> {
    const file = await this.file.current();
    if (file === null) {
      throw unauthenticated(
        `there is no ${ADMIN_TOKEN_FILE} in the data directory: \`mooring ca init\` makes a new one`,
      );
    }
    if ('problem' in file) {
      throw unusable(file.problem, ADMIN_TOKEN_FILE, 'admin requests are refused');
    }
    // Both sides are SHA-256 digests: equal lengths, and the comparison leaks nothing.
    if (!timingSafeEqual(digest(token), file.value)) {
      throw unauthenticated('the admin credential is not valid');
    }
    return { subject: LOCAL_ADMIN_SUBJECT };
  }

  /** True once admin-token has been read: serve reads it before it says it is ready. */
  get loaded(): boolean {
    return this.file.loaded;
  }

  /** Reads admin-token and throws what is wrong with it (its absence is not wrong). */
  check(): Promise<void> {
    return loadOrThrow(this.file);
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

/** Workload tokens of local mode, from `<dataDir>/tokens.json`, re-read when the file changes. */
export class TokensFileAuthenticator implements Authenticator {
  private readonly file: WatchedPrivateFile<Map<string, WorkloadIdentity>>;

  constructor(dataDir: string, options: WatchOptions = {}) {
    this.file = new WatchedPrivateFile(join(dataDir, TOKENS_FILE), parseTokensFile, options);
  }

  get path(): string {
    return this.file.path;
  }

  async authenticateWorkload(token: string): Promise<WorkloadIdentity> {
    const file = await this.file.current();
    if (file === null) {
      throw unauthenticated(
        `workload tokens are checked against ${TOKENS_FILE} in the data directory, which does not exist`,
      );
    }
    if ('problem' in file) {
      throw unusable(file.problem, TOKENS_FILE, 'every workload token is refused');
    }
    const identity = file.value.get(digest(token).toString('hex'));
    if (identity === undefined) throw unauthenticated('the workload token is not valid');
    return identity;
  }

  /** True once tokens.json has been read (or found absent). */
  get loaded(): boolean {
    return this.file.loaded;
  }

  /** Throws what is wrong with tokens.json (its absence is not wrong): checked at start. */
  check(): Promise<void> {
    return loadOrThrow(this.file);
  }

  /**
   * What is wrong with tokens.json now (its absence is not wrong), for readiness: the kind of
   * problem and the message (the file, what to fix; never a token). Null when it is usable.
   */
  async problem(): Promise<{ readonly kind: CredentialProblem; readonly message: string } | null> {
    const file = await this.file.current();
    if (file === null || !('problem' in file)) return null;
    return { kind: problemOf(file.problem), message: file.problem.message };
  }
}
