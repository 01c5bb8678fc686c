// The CA store of cluster mode: Secret `mooring-ca` in Mooring's namespace, implementing the
// KeyStore port with optimistic concurrency. The version is the Secret's resourceVersion.
// - save(state, null) creates; 409 AlreadyExists (another replica created first) is a conflict:
//   the caller reloads and adopts the winner's CA, so that two replicas starting together end
//   with one root.
// - save(state, version) replaces with metadata.resourceVersion = version; 409 Conflict (someone
//   wrote since) is a conflict too: reload, decide again.

import type { KeyStore, StoredCAState } from '../../ca/ports';
import { MooringError } from '../../errors';
import {
  corePath,
  isAlreadyExists,
  isConflict,
  isNotFound,
  type KubeApi,
  type KubeObject,
} from './api';
import { MANAGED_BY, MANAGED_BY_LABEL } from './trust-distributor';

export interface Secret extends KubeObject {
  readonly type?: string;
  readonly data?: Readonly<Record<string, string>>;
}

/** Turns the CA state into the Secret's data (plain strings; base64 is done here) and back. */
export interface StateCodec<S> {
  encode(state: S): Record<string, string>;
  decode(data: Readonly<Record<string, string>>): S;
}

/** Secret `data` (base64 values) to plain strings. */
export function decodeSecretData(
  data: Readonly<Record<string, string>> | undefined,
): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [key, value] of Object.entries(data ?? {})) {
    out[key] = Buffer.from(value, 'base64').toString('utf8');
  }
  return out;
}

export function encodeSecretData(plain: Readonly<Record<string, string>>): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [key, value] of Object.entries(plain)) {
    out[key] = Buffer.from(value, 'utf8').toString('base64');
  }
  return out;
}

const conflict = (message: string, cause: unknown): MooringError =>
  new MooringError('CA_ERR_CONFLICT', message, { cause });

export interface SecretKeyStoreOptions<S> {
  readonly api: KubeApi;
  readonly namespace: string;
  readonly name: string;
  readonly codec: StateCodec<S>;
}

export class SecretKeyStore<S> implements KeyStore<S> {
  constructor(private readonly options: SecretKeyStoreOptions<S>) {}

  private path(withName: boolean): string {
    return corePath('secrets', this.options.namespace, withName ? this.options.name : undefined);
  }

  /** The state of a Secret as read (from a GET or a watch event). */
  fromSecret(secret: Secret): StoredCAState<S> {
    const version = secret.metadata?.resourceVersion ?? '';
    try {
      return { state: this.options.codec.decode(decodeSecretData(secret.data)), version };
    } catch (err) {
      throw new MooringError(
        'CA_ERR_STORE',
        `Secret ${this.options.namespace}/${this.options.name} does not hold a valid CA: ${err instanceof Error ? err.message : String(err)}`,
        { cause: err },
      );
    }
  }

  async load(): Promise<StoredCAState<S> | null> {
    let secret: Secret;
    try {
      secret = await this.options.api.request<Secret>({ method: 'GET', path: this.path(true) });
    } catch (err) {
      if (isNotFound(err)) return null;
      throw new MooringError(
        'CA_ERR_STORE',
        `cannot read Secret ${this.options.namespace}/${this.options.name}`,
        {
          cause: err,
        },
      );
    }
    return this.fromSecret(secret);
  }

  async save(state: S, expectedVersion: string | null): Promise<string> {
    const { namespace, name } = this.options;
    const metadata = {
      name,
      namespace,
      labels: { [MANAGED_BY_LABEL]: MANAGED_BY },
      ...(expectedVersion === null ? {} : { resourceVersion: expectedVersion }),
    };
    const body = {
      apiVersion: 'v1',
      kind: 'Secret',
      type: 'Opaque',
      metadata,
      data: encodeSecretData(this.options.codec.encode(state)),
    };
    try {
      const written =
        expectedVersion === null
          ? await this.options.api.request<Secret>({ method: 'POST', path: this.path(false), body })
          : await this.options.api.request<Secret>({ method: 'PUT', path: this.path(true), body });
      return written.metadata?.resourceVersion ?? '';
    } catch (err) {
      if (isAlreadyExists(err)) {
        throw conflict(`Secret ${namespace}/${name} was created by another replica first`, err);
      }
      if (isConflict(err)) {
        throw conflict(
          `Secret ${namespace}/${name} changed since version ${expectedVersion ?? ''}`,
          err,
        );
      }
      if (isNotFound(err)) {
        throw conflict(
          `Secret ${namespace}/${name} was deleted since version ${expectedVersion ?? ''}`,
          err,
        );
      }
      throw new MooringError('CA_ERR_STORE', `cannot write Secret ${namespace}/${name}`, {
        cause: err,
      });
    }
  }
}
