// A real mutual-TLS handshake between two workloads whose certificates the CA issued, each
// pinning only the trust bundle, each checking the peer's SPIFFE ID from its URI SAN.

import { once } from 'node:events';
import type { AddressInfo } from 'node:net';
import { connect, createServer, type PeerCertificate, type TLSSocket } from 'node:tls';
import { Authority } from '../../../src/ca/authority';
import type { KeyAlgorithm } from '../../../src/ca/ports';
import {
  cachedKeyGenerator,
  caConfig,
  countingRandom,
  csrPem,
  fixedClock,
  MemoryStore,
  testKey,
  withKey,
} from './fixtures';

const SERVER_ID = 'spiffe://cluster.local/ns/shop/sa/cart';
const CLIENT_ID = 'spiffe://cluster.local/ns/shop/sa/web';

interface Identity {
  key: string;
  cert: string;
  ca: string;
}

async function openCA(): Promise<Authority> {
  return Authority.open(
    {
      trustDomain: 'cluster.local',
      ca: caConfig(),
      clock: fixedClock(new Date()),
      random: countingRandom(),
      store: new MemoryStore(),
      generateKey: cachedKeyGenerator(),
    },
    { create: true },
  );
}

async function identity(
  ca: Authority,
  spiffeId: string,
  type: KeyAlgorithm,
  slot: number,
): Promise<Identity> {
  const key = testKey(type, slot);
  const chain = await ca.issueWorkload({ csrPem: csrPem(withKey(key)), spiffeId });
  return {
    key: key.privateKey.export({ format: 'pem', type: 'pkcs8' }).toString(),
    cert: chain.certificateChain.join(''),
    ca: chain.trustBundle.join(''),
  };
}

const uriOf = (cert: PeerCertificate): string | undefined =>
  /(?:^|, )URI:([^,]+)/.exec(cert.subjectaltname ?? '')?.[1];

/** Runs one handshake; resolves with what each side saw, or the error of the side that refused. */
async function handshake(server: Identity, client: Identity, expectServerId: string) {
  const seenByServer: string[] = [];
  const srv = createServer(
    {
      key: server.key,
      cert: server.cert,
      ca: server.ca,
      requestCert: true,
      rejectUnauthorized: true,
    },
    (socket: TLSSocket) => {
      seenByServer.push(uriOf(socket.getPeerCertificate()) ?? '');
      socket.end('hello');
    },
  );
  const serverErrors: Error[] = [];
  srv.on('tlsClientError', (err) => serverErrors.push(err));
  srv.listen(0, '127.0.0.1');
  await once(srv, 'listening');
  const { port } = srv.address() as AddressInfo;
  try {
    const socket = connect({
      host: '127.0.0.1',
      port,
      key: client.key,
      cert: client.cert,
      ca: client.ca,
      checkServerIdentity: (_host, cert) =>
        uriOf(cert) === expectServerId
          ? undefined
          : new Error(`unexpected server identity ${uriOf(cert) ?? 'none'}`),
    });
    const outcome = await new Promise<{ seenByClient: string; data: string } | { error: string }>(
      (resolve) => {
        let data = '';
        socket.on('secureConnect', () => socket.on('data', (d: Buffer) => (data += d.toString())));
        socket.on('end', () =>
          resolve({ seenByClient: uriOf(socket.getPeerCertificate()) ?? '', data }),
        );
        socket.on('error', (err) => resolve({ error: err.message }));
      },
    );
    socket.destroy();
    // With TLS 1.3 the client may finish before the server has judged its certificate.
    for (let i = 0; i < 50 && seenByServer.length === 0 && serverErrors.length === 0; i++) {
      await new Promise((r) => setTimeout(r, 10));
    }
    return { outcome, seenByServer, serverErrors: serverErrors.map((e) => e.message) };
  } finally {
    srv.close();
  }
}

describe('mutual TLS between two issued identities', () => {
  it.each<[string, KeyAlgorithm, KeyAlgorithm]>([
    ['two ECDSA P-256 workloads', 'ecdsa-p256', 'ecdsa-p256'],
    ['an RSA server and an Ed25519 client', 'rsa-2048', 'ed25519'],
    ['a P-384 server and an RSA 3072 client', 'ecdsa-p384', 'rsa-3072'],
  ])(
    'succeeds between %s, each side seeing the other SPIFFE ID',
    async (_name, serverKey, clientKey) => {
      const ca = await openCA();
      const result = await handshake(
        await identity(ca, SERVER_ID, serverKey, 1),
        await identity(ca, CLIENT_ID, clientKey, 2),
        SERVER_ID,
      );
      expect(result.outcome).toEqual({ seenByClient: SERVER_ID, data: 'hello' });
      expect(result.seenByServer).toEqual([CLIENT_ID]);
    },
  );

  it('is refused by the server when the client certificate comes from another CA', async () => {
    const ca = await openCA();
    const other = await openCA();
    const server = await identity(ca, SERVER_ID, 'ecdsa-p256', 1);
    // The client trusts the server's CA, but its own certificate comes from the other one.
    const client = { ...(await identity(other, CLIENT_ID, 'ecdsa-p256', 2)), ca: server.ca };
    const result = await handshake(server, client, SERVER_ID);
    expect(result.seenByServer).toEqual([]);
    // The server never completes the handshake (its error is the client hanging up once the
    // alert arrives, under TLS 1.3) and never sends a byte.
    expect(result.outcome).not.toHaveProperty('data', 'hello');
    expect(result.serverErrors).toHaveLength(1);
  });

  it('is refused by the client when the server certificate comes from another CA', async () => {
    const ca = await openCA();
    const other = await openCA();
    const client = await identity(ca, CLIENT_ID, 'ecdsa-p256', 2);
    const result = await handshake(
      { ...(await identity(other, SERVER_ID, 'ecdsa-p256', 1)), ca: client.ca },
      client,
      SERVER_ID,
    );
    expect(result.outcome).toEqual({
      error: expect.stringMatching(/certificate/i),
    });
  });

  it('is refused by the client when the server has another SPIFFE ID', async () => {
    const ca = await openCA();
    const result = await handshake(
      await identity(ca, 'spiffe://cluster.local/ns/shop/sa/impostor', 'ecdsa-p256', 1),
      await identity(ca, CLIENT_ID, 'ecdsa-p256', 2),
      SERVER_ID,
    );
    expect(result.outcome).toEqual({
      error: 'unexpected server identity spiffe://cluster.local/ns/shop/sa/impostor',
    });
  });
});
