// Local mode of `mooring serve` (PRODUCT.md "Local mode"): the CA in --data-dir (created on
// first start), the admin credential in <data-dir>/admin-token, workload tokens in
// <data-dir>/tokens.json, a serving certificate for localhost and 127.0.0.1.

import { X509Certificate } from 'node:crypto';
import { isIP } from 'node:net';
import { openLocalCA, openLocalCredentials } from '../adapters/local-ca';
import { MeshDirSource } from '../adapters/mesh-dir';
import type { ModeAdapters, ModeContext } from './mode';

/** Names the local serving certificate is valid for: localhost, 127.0.0.1, and the listen host. */
export function localServingNames(listenHost: string): {
  dnsNames: string[];
  ipAddresses: string[];
} {
  const dnsNames = ['localhost'];
  const ipAddresses = ['127.0.0.1'];
  const wildcard = listenHost === '0.0.0.0' || listenHost === '::';
  if (!wildcard) {
    if (isIP(listenHost) !== 0) {
      if (!ipAddresses.includes(listenHost)) ipAddresses.push(listenHost);
    } else if (!dnsNames.includes(listenHost)) {
      dnsNames.push(listenHost);
    }
  }
  return { dnsNames, ipAddresses };
}

export async function buildLocalMode(ctx: ModeContext): Promise<ModeAdapters> {
  const { config, logger, clock, listen } = ctx;
  const dataDir = config.server.dataDir;
  const { authority, plugin } = await openLocalCA({
    config,
    dataDir,
    create: true,
    clock,
    ...(ctx.cryptoMode === undefined ? {} : { cryptoMode: ctx.cryptoMode }),
  });
  const credentials = await openLocalCredentials(dataDir);
  const status = authority.status();
  logger.info(
    {
      dataDir,
      pluggedIn: plugin !== undefined,
      roots: status.roots.map((r) => ({
        fingerprint: r.fingerprint,
        notAfter: r.notAfter.toISOString(),
        status: r.status,
      })),
      issuer: status.issuer.subject,
    },
    'certificate authority loaded',
  );
  return {
    name: 'local',
    certificates: authority,
    authenticator: credentials.authenticator,
    adminAuthorizer: credentials.adminAuthorizer,
    servingNames: localServingNames(listen.host),
    // A tokens.json broken while the server runs refuses every workload (503): not ready.
    async checks() {
      const problem = await credentials.authenticator.problem();
      return {
        workloadTokens:
          problem === null ? null : `tokens.json is ${problem.kind}: ${problem.message}`,
      };
    },
    mesh: {
      rootNamespace: config.cluster.namespace,
      source:
        config.server.meshDir === null
          ? null
          : (deps) => new MeshDirSource({ dir: config.server.meshDir ?? '', ...deps }),
      waitForSource: true,
    },
    async tick() {
      const { reloaded, events } = await authority.tick(clock.now());
      if (reloaded) logger.info({ dataDir }, 'CA store changed on disk: reloaded');
      for (const e of events) {
        const fingerprint = new X509Certificate(e.certPem).fingerprint256;
        const activateAt = e.event === 'rotation-started' ? e.activateAt.toISOString() : undefined;
        logger.info({ event: e.event, fingerprint, activateAt }, 'CA rotation step');
      }
    },
    close: () => Promise.resolve(),
  };
}
