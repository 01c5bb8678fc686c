// Local mode's CA in one call: the file store in --data-dir (or a plugged-in CA from
// config.ca.pluginDir), the system clock and randomness, the admin token and tokens.json.
// Used by `mooring serve` (local mode) and `mooring ca`.

import { mkdir, readFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { Authority, type AuthorityOptions } from '../ca/authority';
import type { CryptoMode } from '../ca/csr';
import type { KeyPair, RootKeyType } from '../ca/keys';
import { loadPluginCA, type PluginCA } from '../ca/plugin';
import type { Clock, RandomSource } from '../ca/ports';
import type { Config } from '../config/types';
import { PLUGIN_CA_FILES } from '../constants';
import { MooringError } from '../errors';
import { writeFileAtomic } from './atomic-file';
import {
  bundleText,
  DATA_DIR_MODE,
  FileCAStore,
  PUBLIC_FILE_MODE,
  STORE_FILES,
  type FileStoreOptions,
} from './file-store';
import { ensureAdminToken, LocalAdminAuthorizer, TokensFileAuthenticator } from './local-auth';
import { nextTurn, systemClock, systemRandom } from './system-clock';

export interface LocalCAOptions {
  readonly config: Config;
  readonly dataDir: string;
  /** Create the CA when the store is empty (serve, ca init); false: CA_ERR_STORE. */
  readonly create: boolean;
  readonly clock?: Clock;
  readonly random?: RandomSource;
  readonly generateKey?: (type: RootKeyType) => Promise<KeyPair>;
  readonly storeOptions?: FileStoreOptions;
  /** See AuthorityOptions.cryptoMode. */
  readonly cryptoMode?: CryptoMode;
}

export interface LocalCA {
  readonly authority: Authority;
  /** Undefined with a plugged-in CA. */
  readonly store: FileCAStore | undefined;
  readonly plugin: PluginCA | undefined;
}

export interface LocalCredentials {
  readonly adminToken: string;
  readonly adminAuthorizer: LocalAdminAuthorizer;
  readonly authenticator: TokensFileAuthenticator;
}

/** Reads and checks the four files of a plugged-in CA; CA_ERR_PLUGIN names a missing one. */
export async function readPluginCA(dir: string, now: Date): Promise<PluginCA> {
  const read = async (name: string): Promise<string> => {
    try {
      return await readFile(join(dir, name), 'utf8');
    } catch (err) {
      throw new MooringError(
        'CA_ERR_PLUGIN',
        `plugged-in CA: cannot read ${join(dir, name)}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`,
        { cause: err },
      );
    }
  };
  return loadPluginCA(
    {
      caCertPem: await read(PLUGIN_CA_FILES.cert),
      caKeyPem: await read(PLUGIN_CA_FILES.key),
      certChainPem: await read(PLUGIN_CA_FILES.chain),
      rootCertPem: await read(PLUGIN_CA_FILES.root),
    },
    now,
  );
}

/**
 * No CA where one was expected: the error names the directory (absolute: a relative default
 * depends on where the command runs) and says first how to point at an existing CA, so that
 * nobody makes a second CA by mistake.
 */
export function noCAIn(dataDir: string): MooringError {
  const dir = resolve(dataDir);
  return new MooringError(
    'CA_ERR_STORE',
    `there is no CA in the data directory ${dir}: if your CA lives elsewhere, name its directory ` +
      `(--data-dir DIR, or server.dataDir in --config); to make a new CA here, run ` +
      `mooring ca init --data-dir ${dir} (mooring serve makes one on its first start)`,
  );
}

/** Opens the CA of local mode. */
export async function openLocalCA(options: LocalCAOptions): Promise<LocalCA> {
  const clock = options.clock ?? systemClock;
  const pluginDir = options.config.ca.pluginDir;
  const plugin = pluginDir === null ? undefined : await readPluginCA(pluginDir, clock.now());
  const store =
    plugin === undefined ? new FileCAStore(options.dataDir, options.storeOptions) : undefined;
  if (store !== undefined && !options.create && !(await store.exists())) {
    throw noCAIn(options.dataDir);
  }
  const authorityOptions: AuthorityOptions = {
    trustDomain: options.config.trustDomain,
    ca: options.config.ca,
    clock,
    random: options.random ?? systemRandom,
    schedule: nextTurn,
    ...(store === undefined ? {} : { store }),
    ...(plugin === undefined ? {} : { plugin }),
    ...(options.generateKey === undefined ? {} : { generateKey: options.generateKey }),
    ...(options.cryptoMode === undefined ? {} : { cryptoMode: options.cryptoMode }),
  };
  const authority = await Authority.open(authorityOptions, { create: options.create });
  if (plugin !== undefined) await exportPluginBundle(options.dataDir, authority.trustBundle());
  return { authority, store, plugin };
}

/**
 * `<dataDir>/root-cert.pem` is where every local recipe finds the trust bundle (curl --cacert, the
 * agent's --root-cert): with a plugged-in CA it holds the plug-in's roots, not a stale one.
 */
async function exportPluginBundle(dataDir: string, bundle: readonly string[]): Promise<void> {
  await mkdir(dataDir, { recursive: true, mode: DATA_DIR_MODE });
  await writeFileAtomic(join(dataDir, STORE_FILES.rootExport), bundleText(bundle), {
    mode: PUBLIC_FILE_MODE,
  });
}

/** The admin token (created if absent) and the tokens.json authenticator of `dataDir`. */
export async function openLocalCredentials(dataDir: string): Promise<LocalCredentials> {
  const adminToken = await ensureAdminToken(dataDir);
  // Both files are read before the server can say it is ready: a request that comes first finds
  // them loaded, and a broken one stops the start.
  const authenticator = new TokensFileAuthenticator(dataDir);
  const adminAuthorizer = new LocalAdminAuthorizer(dataDir);
  await Promise.all([authenticator.check(), adminAuthorizer.check()]);
  return {
    adminToken,
    adminAuthorizer,
    authenticator,
  };
}
