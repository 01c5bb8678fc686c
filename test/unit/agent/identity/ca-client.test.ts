import type { ServerResponse } from 'node:http';
import https from 'node:https';
import type { AddressInfo } from 'node:net';
import {
  requestCertificate,
  RenewalError,
  type CertificateRequest,
} from '../../../../src/agent/identity/ca-client';
import { makeCa, makeServing } from '../../../fixtures/agent-pki';

const root = makeCa('CA Root');
const serving = makeServing(root);

interface Seen {
  authorization?: string;
  contentType?: string;
  body?: unknown;
}

type Reply = (res: ServerResponse) => void;

async function fakeCa(
  reply: Reply,
  tls: { cert: string; key: string } = serving,
): Promise<{ url: URL; seen: Seen[]; close(): Promise<void> }> {
  const seen: Seen[] = [];
  const server = https.createServer({ cert: tls.cert, key: tls.key }, (req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      seen.push({
        authorization: req.headers.authorization,
        contentType: req.headers['content-type'],
        body: JSON.parse(Buffer.concat(chunks).toString() || 'null'),
      });
      reply(res);
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const { port } = server.address() as AddressInfo;
  return {
    url: new URL(`https://localhost:${port}`),
    seen,
    close: () =>
      new Promise((r) => {
        server.closeAllConnections();
        server.close(() => r());
      }),
  };
}

const json =
  (status: number, body: unknown): Reply =>
  (res) => {
    res.writeHead(status, { 'content-type': 'application/json' });
    res.end(JSON.stringify(body));
  };

const ok = json(200, {
  certificateChain: ['LEAF'],
  trustBundle: ['ROOT'],
  expiresAt: '2030-01-01T00:00:00Z',
});

const request = (url: URL, more: Partial<CertificateRequest> = {}): Promise<unknown> =>
  requestCertificate({
    caUrl: url,
    token: 'the-token',
    csrPem: 'CSR',
    ttlSeconds: 60,
    roots: [root.pem],
    timeoutMs: 2000,
    ...more,
  });

async function failure(p: Promise<unknown>): Promise<RenewalError> {
  try {
    await p;
  } catch (err) {
    expect(err).toBeInstanceOf(RenewalError);
    return err as RenewalError;
  }
  throw new Error('expected a RenewalError');
}

describe('requestCertificate', () => {
  it('posts the CSR and TTL with the bearer token and returns the answer', async () => {
    const ca = await fakeCa(ok);
    try {
      await expect(request(ca.url)).resolves.toEqual({
        certificateChain: ['LEAF'],
        trustBundle: ['ROOT'],
        expiresAt: '2030-01-01T00:00:00Z',
      });
      expect(ca.seen).toEqual([
        {
          authorization: 'Bearer the-token',
          contentType: 'application/json',
          body: { csr: 'CSR', ttlSeconds: 60 },
        },
      ]);
    } finally {
      await ca.close();
    }
  });

  it('leaves the TTL to the CA when none is set', async () => {
    const ca = await fakeCa(ok);
    try {
      await request(ca.url, { ttlSeconds: undefined });
      expect(ca.seen[0]?.body).toEqual({ csr: 'CSR' });
    } finally {
      await ca.close();
    }
  });

  it('refuses a CA whose certificate does not chain to the roots it was given', async () => {
    const ca = await fakeCa(ok);
    try {
      const err = await failure(request(ca.url, { roots: [makeCa('Other').pem] }));
      expect(err.reason).toBe('tls');
      expect(ca.seen).toHaveLength(0);
    } finally {
      await ca.close();
    }
  });

  it('checks the CA host name against its certificate', async () => {
    const ca = await fakeCa(ok, makeServing(root, { dns: ['ca.elsewhere.example'], ips: [] }));
    try {
      const err = await failure(request(ca.url));
      expect(err.reason).toBe('tls');
      expect(err.message).toContain('ERR_TLS_CERT_ALTNAME_INVALID');
    } finally {
      await ca.close();
    }
  });

  it.each([
    ['a 401', 401, 'rejected', 'CA_ERR_UNAUTHENTICATED'],
    ['a 400', 400, 'rejected', 'CA_ERR_CSR'],
    ['a 503', 503, 'unavailable', 'CA_ERR_NOT_READY'],
    ['a 500', 500, 'unavailable', 'CA_ERR_INTERNAL'],
  ])('reports %s with its code', async (_name, status, reason, code) => {
    const ca = await fakeCa(json(status, { code, message: 'nope' }));
    try {
      const err = await failure(request(ca.url));
      expect(err.reason).toBe(reason);
      expect(err.detail).toEqual({ status, code });
      expect(err.message).toContain(code);
    } finally {
      await ca.close();
    }
  });

  it.each([
    ['invalid JSON', (res: ServerResponse) => res.end('{')],
    [
      'an answer without a chain',
      json(200, { certificateChain: [], trustBundle: [], expiresAt: 'x' }),
    ],
    ['an answer without expiresAt', json(200, { certificateChain: ['a'], trustBundle: [] })],
  ])('refuses %s', async (_name, reply) => {
    const ca = await fakeCa(reply);
    try {
      expect((await failure(request(ca.url))).reason).toBe('invalid_response');
    } finally {
      await ca.close();
    }
  });

  it('never repeats the token or the CSR of a CA that echoes the request in its error', async () => {
    const csr =
      '-----BEGIN CERTIFICATE REQUEST-----\nMIIBSECRETCSR\n-----END CERTIFICATE REQUEST-----\n';
    const ca = await fakeCa(
      json(400, {
        code: 'CA_ERR_CSR',
        message: `AUTH=Bearer tok-SECRET-1 BODY={"csr":${JSON.stringify(csr)}} ${'x'.repeat(500)}`,
      }),
    );
    try {
      const err = await failure(request(ca.url, { token: 'tok-SECRET-1', csrPem: csr }));
      expect(err.message).not.toContain('tok-SECRET-1');
      expect(err.message).not.toContain('MIIBSECRETCSR');
      expect(err.message).toContain(
        'CA_ERR_CSR: AUTH=Bearer [redacted] BODY={"csr":"[PEM redacted]',
      );
      expect(err.message.length).toBeLessThan(400);
    } finally {
      await ca.close();
    }
  });

  it('reports a CA that is down as unreachable', async () => {
    const ca = await fakeCa(ok);
    await ca.close();
    expect((await failure(request(ca.url))).reason).toBe('unreachable');
  });

  it('gives up on a CA that does not answer within the timeout', async () => {
    const ca = await fakeCa(() => undefined);
    try {
      const started = Date.now();
      const err = await failure(request(ca.url, { timeoutMs: 200 }));
      expect(err.reason).toBe('unreachable');
      expect(Date.now() - started).toBeLessThan(1500);
    } finally {
      await ca.close();
    }
  });

  it('stops when aborted', async () => {
    const ca = await fakeCa(() => undefined);
    try {
      const abort = new AbortController();
      const p = request(ca.url, { signal: abort.signal, timeoutMs: 10_000 });
      setTimeout(() => abort.abort(), 50);
      expect((await failure(p)).message).toMatch(/abort/i);
    } finally {
      await ca.close();
    }
  });
});
