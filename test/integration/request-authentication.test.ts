// RequestAuthentication between two real sidecars on loopback with mutual TLS: the server's
// sidecar verifies the request's JWT (401 with Envoy's message and challenge when it fails),
// removes the token unless told to keep it, writes the claims it is asked for (never a client's
// own), and an AuthorizationPolicy decides on the request principal and the claims (403).
import http2 from 'node:http2';
import type { AddressInfo } from 'node:net';
import type { JwtProvider, AuthorizationPolicyRules } from '../../src/api/mesh';
import { endpoint, meshState, meshedAs, port, proxyScope, service } from '../fixtures/mesh';
import {
  destination,
  get,
  startEchoApp,
  startSidecar,
  type EchoApp,
  type LoopbackSidecar,
} from '../fixtures/sidecars';
import { nowS, testIssuer } from '../fixtures/jwt';

jest.setTimeout(30_000);

const ISS = 'https://issuer.example.com';
const CLUSTER_IP = '10.96.0.10';
const GRPC_IP = '10.96.0.12';
const issuer = testIssuer('ES256');
const stranger = testIssuer('ES256', issuer.kid);

let a: LoopbackSidecar;
let b: LoopbackSidecar;
let app: EchoApp;
/** An h2c app answering gRPC: status 0 and the caller's x-user. */
let grpcApp: http2.Http2Server;
let grpcPort: number;

function serverMesh(jwt: JwtProvider[], authorization: AuthorizationPolicyRules[] = []): void {
  b.sidecar.setMesh(
    meshState(
      proxyScope('server', (p) => ({ ...p, inbound: { ...p.inbound, jwt, authorization } })),
    ),
  );
}

const provider = (more: Partial<JwtProvider> = {}): JwtProvider => ({
  source: 'default/jwt',
  issuer: ISS,
  jwks: issuer.jwks,
  ...more,
});

const token = (claims: Record<string, unknown> = {}): string =>
  issuer.token({ iss: ISS, sub: 'alice', exp: nowS() + 300, ...claims });

beforeAll(async () => {
  a = await startSidecar('client');
  b = await startSidecar('server');
  app = await startEchoApp();
  a.sidecar.setMesh(
    meshState(
      proxyScope('client'),
      service(
        'server',
        CLUSTER_IP,
        [port(80, 'http')],
        [endpoint('127.0.0.1', { 80: b.inbound }, meshedAs('server'))],
      ),
      service(
        'grpc',
        GRPC_IP,
        [port(7070, 'grpc')],
        [endpoint('127.0.0.1', { 7070: b.inbound }, meshedAs('server'))],
      ),
    ),
  );
  grpcApp = http2.createServer();
  grpcApp.on('stream', (stream, headers) => {
    stream.respond(
      { ':status': 200, 'content-type': 'application/grpc' },
      { waitForTrailers: true },
    );
    stream.on('wantTrailers', () =>
      stream.sendTrailers({ 'grpc-status': '0', 'x-user': String(headers['x-user'] ?? '') }),
    );
    stream.end();
  });
  await new Promise<void>((resolve) => grpcApp.listen(0, '127.0.0.1', resolve));
  grpcPort = (grpcApp.address() as AddressInfo).port;
  a.outboundTarget = destination(CLUSTER_IP, 80);
  b.inboundTarget = destination('127.0.0.1', app.port);
});

afterAll(async () => {
  await a.close();
  await b.close();
  await app.close();
  await new Promise((r) => grpcApp.close(r));
});

/** A gRPC call (h2c) through the client's sidecar: the status and the app's x-user trailer. */
function grpcCall(headers: Record<string, string>): Promise<{ status: string; user: string }> {
  return new Promise((resolve, reject) => {
    const session = http2.connect(`http://127.0.0.1:${a.outbound}`);
    session.on('error', reject);
    const req = session.request({
      ':method': 'POST',
      ':path': '/shop.Orders/List',
      'content-type': 'application/grpc',
      te: 'trailers',
      ...headers,
    });
    let status = '';
    req.on('response', (h) => {
      if (h['grpc-status'] !== undefined) status = String(h['grpc-status']);
    });
    let user = '';
    req.on('trailers', (t) => {
      status = String(t['grpc-status']);
      user = String(t['x-user'] ?? '');
    });
    req.on('end', () => {
      session.close();
      resolve({ status, user });
    });
    req.resume();
    req.end();
  });
}

it('lets a request without a token through, verifies a good one (token removed, claims written), refuses a bad one with 401', async () => {
  serverMesh([provider({ outputClaimToHeaders: [{ header: 'x-user', claim: 'sub' }] })]);
  expect((await get(a.outbound, '/anonymous')).status).toBe(200);
  expect(app.seen.at(-1)?.['x-user']).toBeUndefined();

  const ok = await get(a.outbound, '/with-token', {
    authorization: `Bearer ${token()}`,
    // A client's own claim header is never passed on.
    'x-user': 'mallory',
  });
  expect(ok.status).toBe(200);
  expect(app.seen.at(-1)?.['x-user']).toBe('alice');
  expect(app.seen.at(-1)?.authorization).toBeUndefined();

  const forged = await get(a.outbound, '/forged', {
    authorization: `Bearer ${stranger.token({ iss: ISS, sub: 'alice', exp: nowS() + 300 })}`,
  });
  expect(forged.status).toBe(401);
  expect(forged.text).toBe('Jwt verification fails');
  expect(forged.headers['www-authenticate']).toBe(
    'Bearer realm="http://server/forged", error="invalid_token"',
  );
  const expired = await get(a.outbound, '/expired', {
    authorization: `Bearer ${token({ exp: nowS() - 3600 })}`,
  });
  expect([expired.status, expired.text]).toEqual([401, 'Jwt is expired']);
  const blocked = await get(a.outbound, '/anonymous-again', { 'x-user': 'mallory' });
  expect(blocked.status).toBe(200);
  expect(app.seen.at(-1)?.['x-user']).toBeUndefined();
});

it('keeps the token for the app with forwardOriginalToken', async () => {
  serverMesh([provider({ forwardOriginalToken: true })]);
  const t = token();
  expect((await get(a.outbound, '/kept', { authorization: `Bearer ${t}` })).status).toBe(200);
  expect(app.seen.at(-1)?.authorization).toBe(`Bearer ${t}`);
});

it('with an AuthorizationPolicy: only requests with a principal from the issuer and the claim go through (403 otherwise)', async () => {
  serverMesh(
    [provider()],
    [
      {
        name: 'default/require-jwt',
        action: 'ALLOW',
        rules: [
          {
            from: [{ requestPrincipals: [`${ISS}/*`] }],
            when: [{ key: 'request.auth.claims[groups]', values: ['admins'] }],
          },
        ],
      },
    ],
  );
  const admin = await get(a.outbound, '/admin', {
    authorization: `Bearer ${token({ groups: ['dev', 'admins'] })}`,
  });
  expect(admin.status).toBe(200);
  const dev = await get(a.outbound, '/admin', {
    authorization: `Bearer ${token({ groups: ['dev'] })}`,
  });
  expect([dev.status, dev.text]).toEqual([403, 'RBAC: access denied']);
  const none = await get(a.outbound, '/admin');
  expect([none.status, none.text]).toEqual([403, 'RBAC: access denied']);
});

it('over gRPC: a refused token is UNAUTHENTICATED (16); a verified one reaches the app with its claim', async () => {
  serverMesh([provider({ outputClaimToHeaders: [{ header: 'x-user', claim: 'sub' }] })]);
  a.outboundTarget = destination(GRPC_IP, 7070);
  b.inboundTarget = destination('127.0.0.1', grpcPort);
  try {
    const forged = stranger.token({ iss: ISS, sub: 'alice', exp: nowS() + 300 });
    expect(await grpcCall({ authorization: `Bearer ${forged}` })).toEqual({
      status: '16',
      user: '',
    });
    expect(await grpcCall({ authorization: `Bearer ${token()}` })).toEqual({
      status: '0',
      user: 'alice',
    });
  } finally {
    a.outboundTarget = destination(CLUSTER_IP, 80);
    b.inboundTarget = destination('127.0.0.1', app.port);
  }
});
