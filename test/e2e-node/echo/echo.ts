// The test app of the node tests, run as Pods from the image `localhost/mooring-e2e-echo`
// (hack/build-images.sh). A server that answers with what it received, and a client that makes a
// request from inside its Pod on a test's behalf, so that a test drives Pod-to-Pod calls.
//
// Listeners (environment, defaults):
//   ECHO_HTTP_PORT    8080   HTTP/1.1: every path echoes the request, except the ones below
//   ECHO_CONTROL_PORT 8081   the same handler; tests reach the app here (a Pod's injection
//                            excludes it from the inbound capture)
//   ECHO_GRPC_PORT    50051  gRPC in plaintext (grpc-js): grpc.health.v1.Health/Check and
//                            mooring.e2e.Echo/Echo (JSON messages), Echo/Fail (answers the status
//                            {"code", "details"} it is sent), Echo/Count ({"n"}: n messages back)
//   ECHO_TCP_PORT     9000   raw TCP: echoes the bytes (a half-close ends the echo)
//   ECHO_GREET_PORT   2525   a server-first TCP protocol (as SMTP): `220 <pod> ready` at once,
//                            then each line back upper-cased
//   ECHO_STARTUP_CHECK_URL   fetched once at start; GET /startup answers what came back (proves
//                            that the app was held until the proxy was ready)
//
// HTTP paths:
//   GET  /healthz        200 while HTTP health is on, else 503
//   GET  /startup        the answer of ECHO_STARTUP_CHECK_URL at start
//   POST /admin/health   {"http"?: bool, "grpc"?: bool, "tcp"?: bool}: health on or off (tcp off
//                        closes the TCP listener)
//   POST /call           {"url", "method"?, "headers"?, "body"?, "timeoutMs"?}: an HTTP/1.1
//                        request from this Pod; answers {"status", "headers", "body"} or 502
//                        {"error"}
//   POST /grpc-call      {"target": "host:port", "message"?, "metadata"?, "timeoutMs"?}: a unary
//                        Echo call from this Pod; answers {"response", "metadata"} or 502
//                        {"error", "code"}
//   POST /repeat         {"url", "count"?, "durationMs"?, "intervalMs"?, "method"?, "headers"?,
//                        "timeoutMs"?}: requests one after another (a new connection each) until
//                        `count` or `durationMs`; answers {"sent", "ok", "failures" (the first 20),
//                        "byStatus", "byPod", "byVersion"} (the last two from echo answers)
//   GET  /delay/<ms>...  the echo below, answered after <ms> milliseconds
//   anything else        {"pod", "version", "method", "path", "httpVersion", "headers", "body",
//                        "peer", "local"}
//   an Upgrade request   101, then every byte back upper-cased (a WebSocket-like echo)
// ECHO_VERSION is the `version` of the answers (a weighted split tells the versions apart).
import * as grpc from '@grpc/grpc-js';
import * as http from 'node:http';
import * as net from 'node:net';
import * as os from 'node:os';

const env = (name: string, fallback: number): number => Number(process.env[name] ?? fallback);
const POD = process.env.POD_NAME ?? os.hostname();
const health = { http: true, grpc: true, tcp: true };
let startup: unknown = { skipped: 'ECHO_STARTUP_CHECK_URL is not set' };

// --- gRPC: raw JSON messages, and the health messages encoded by hand ---------------------------

const json = {
  serialize: (value: unknown): Buffer => Buffer.from(JSON.stringify(value)),
  deserialize: (bytes: Buffer): unknown => (bytes.length === 0 ? {} : JSON.parse(bytes.toString())),
};
const jsonMethod = (name: string, responseStream = false) => ({
  path: `/mooring.e2e.Echo/${name}`,
  requestStream: false,
  responseStream,
  requestSerialize: json.serialize,
  requestDeserialize: json.deserialize,
  responseSerialize: json.serialize,
  responseDeserialize: json.deserialize,
});
const ECHO_SERVICE = {
  echo: jsonMethod('Echo'),
  fail: jsonMethod('Fail'),
  count: jsonMethod('Count', true),
} satisfies grpc.ServiceDefinition;
// HealthCheckResponse { ServingStatus status = 1; }: field 1, varint; SERVING 1, NOT_SERVING 2.
const HEALTH_SERVICE = {
  check: {
    path: '/grpc.health.v1.Health/Check',
    requestStream: false,
    responseStream: false,
    requestSerialize: (b: Buffer): Buffer => b,
    requestDeserialize: (b: Buffer): Buffer => b,
    responseSerialize: (serving: boolean): Buffer => Buffer.from([0x08, serving ? 1 : 2]),
    responseDeserialize: (b: Buffer): boolean => b[1] === 1,
  },
} satisfies grpc.ServiceDefinition;
const EchoClient = grpc.makeGenericClientConstructor(ECHO_SERVICE, 'Echo');

function metadataObject(md: grpc.Metadata): Record<string, unknown> {
  return md.getMap();
}

function startGrpc(port: number): void {
  const server = new grpc.Server();
  server.addService(ECHO_SERVICE, {
    echo: (call: grpc.ServerUnaryCall<unknown, unknown>, done: grpc.sendUnaryData<unknown>) =>
      done(null, {
        pod: POD,
        message: call.request,
        metadata: metadataObject(call.metadata),
        peer: call.getPeer(),
      }),
    fail: (call: grpc.ServerUnaryCall<unknown, unknown>, done: grpc.sendUnaryData<unknown>) => {
      const want = call.request as { code?: number; details?: string };
      done({
        code: want.code ?? grpc.status.UNKNOWN,
        details: want.details ?? 'failed on request',
      });
    },
    count: (call: grpc.ServerWritableStream<unknown, unknown>) => {
      const n = Number((call.request as { n?: number }).n ?? 3);
      for (let i = 1; i <= n; i++) call.write({ pod: POD, i });
      call.end();
    },
  });
  server.addService(HEALTH_SERVICE, {
    check: (_call: grpc.ServerUnaryCall<Buffer, boolean>, done: grpc.sendUnaryData<boolean>) =>
      done(null, health.grpc),
  });
  server.bindAsync(`0.0.0.0:${port}`, grpc.ServerCredentials.createInsecure(), (err) => {
    if (err) throw err;
  });
}

interface GrpcCall {
  readonly target: string;
  readonly message?: unknown;
  readonly metadata?: Record<string, string>;
  readonly timeoutMs?: number;
}

function grpcCall(call: GrpcCall): Promise<unknown> {
  const client = new EchoClient(call.target, grpc.credentials.createInsecure());
  const md = new grpc.Metadata();
  for (const [k, v] of Object.entries(call.metadata ?? {})) md.set(k, v);
  let headers: Record<string, unknown> = {};
  return new Promise<unknown>((resolve, reject) => {
    const deadline = new Date(Date.now() + (call.timeoutMs ?? 10_000));
    const c = client.makeUnaryRequest(
      ECHO_SERVICE.echo.path,
      json.serialize,
      json.deserialize,
      call.message ?? {},
      md,
      { deadline },
      (err: grpc.ServiceError | null, response?: unknown) => {
        if (err) reject(err);
        else resolve({ response, metadata: headers });
      },
    );
    c.on('metadata', (m: grpc.Metadata) => (headers = metadataObject(m)));
  }).finally(() => client.close());
}

// --- HTTP ---------------------------------------------------------------------------------------

interface HttpCall {
  readonly url: string;
  readonly method?: string;
  readonly headers?: Record<string, string>;
  readonly body?: string;
  readonly timeoutMs?: number;
}

interface HttpAnswer {
  readonly status: number;
  readonly headers: http.IncomingHttpHeaders;
  readonly body: string;
}

function httpCall(call: HttpCall): Promise<HttpAnswer> {
  return new Promise((resolve, reject) => {
    const req = http.request(
      call.url,
      {
        method: call.method ?? 'GET',
        headers: call.headers ?? {},
        timeout: call.timeoutMs ?? 10_000,
        agent: false,
      },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () =>
          resolve({
            status: res.statusCode ?? 0,
            headers: res.headers,
            body: Buffer.concat(chunks).toString(),
          }),
        );
        res.on('error', reject);
      },
    );
    req.on('timeout', () => req.destroy(new Error(`timeout after ${call.timeoutMs ?? 10_000} ms`)));
    req.on('error', reject);
    req.end(call.body);
  });
}

interface Repeat extends HttpCall {
  readonly count?: number;
  readonly durationMs?: number;
  readonly intervalMs?: number;
}

/** A JSON object's fields, or none when the text is not one (an answer not from echo). */
function parseObject(text: string): Record<string, unknown> {
  try {
    const value: unknown = JSON.parse(text);
    return typeof value === 'object' && value !== null ? (value as Record<string, unknown>) : {};
  } catch {
    return {};
  }
}

async function repeat(r: Repeat): Promise<Record<string, unknown>> {
  const until = Date.now() + (r.durationMs ?? 0);
  const count = r.count ?? (r.durationMs === undefined ? 1 : Number.MAX_SAFE_INTEGER);
  const tally = (map: Record<string, number>, key: string): void => {
    map[key] = (map[key] ?? 0) + 1;
  };
  const out = {
    sent: 0,
    ok: 0,
    failures: [] as { at: number; status?: number; error?: string }[],
    byStatus: {} as Record<string, number>,
    byPod: {} as Record<string, number>,
    byVersion: {} as Record<string, number>,
  };
  const t0 = Date.now();
  while (out.sent < count && (r.durationMs === undefined || Date.now() < until)) {
    out.sent++;
    const failed = (f: { status?: number; error?: string }): void => {
      if (out.failures.length < 20) out.failures.push({ at: Date.now() - t0, ...f });
    };
    const a: HttpAnswer | { error: string } = await httpCall(r).catch((err: unknown) => ({
      error: err instanceof Error ? err.message : String(err),
    }));
    if ('error' in a) {
      tally(out.byStatus, 'error');
      failed({ error: a.error });
    } else {
      tally(out.byStatus, String(a.status));
      if (a.status >= 200 && a.status < 300) out.ok++;
      else failed({ status: a.status });
      const body = parseObject(a.body);
      if (typeof body.pod === 'string') tally(out.byPod, body.pod);
      if (typeof body.version === 'string') tally(out.byVersion, body.version);
    }
    if (r.intervalMs !== undefined) await new Promise((done) => setTimeout(done, r.intervalMs));
  }
  return out;
}

function reply(res: http.ServerResponse, status: number, body: unknown): void {
  const text = JSON.stringify(body);
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': text.length });
  res.end(text);
}

const errorOf = (err: unknown): Record<string, unknown> => ({
  error: err instanceof Error ? err.message : String(err),
  ...(typeof (err as { code?: unknown }).code === 'number'
    ? { code: (err as { code: number }).code }
    : {}),
});

let tcpServer: net.Server | undefined;

async function handle(req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
  const chunks: Buffer[] = [];
  for await (const chunk of req) chunks.push(chunk as Buffer);
  const body = Buffer.concat(chunks).toString();
  const path = req.url ?? '/';
  const input = (): Record<string, unknown> =>
    body === '' ? {} : (JSON.parse(body) as Record<string, unknown>);

  if (req.method === 'GET' && path === '/healthz') {
    reply(res, health.http ? 200 : 503, { healthy: health.http });
  } else if (req.method === 'GET' && path === '/startup') {
    reply(res, 200, startup);
  } else if (req.method === 'POST' && path === '/admin/health') {
    const want = input() as Partial<typeof health>;
    if (typeof want.http === 'boolean') health.http = want.http;
    if (typeof want.grpc === 'boolean') health.grpc = want.grpc;
    if (typeof want.tcp === 'boolean' && want.tcp !== health.tcp) {
      health.tcp = want.tcp;
      if (want.tcp) startTcp();
      else await new Promise((resolve) => tcpServer?.close(resolve));
    }
    reply(res, 200, health);
  } else if (req.method === 'POST' && path === '/call') {
    await httpCall(input() as unknown as HttpCall).then(
      (answer) => reply(res, 200, answer),
      (err: unknown) => reply(res, 502, errorOf(err)),
    );
  } else if (req.method === 'POST' && path === '/grpc-call') {
    await grpcCall(input() as unknown as GrpcCall).then(
      (answer) => reply(res, 200, answer),
      (err: unknown) => reply(res, 502, errorOf(err)),
    );
  } else if (req.method === 'POST' && path === '/repeat') {
    reply(res, 200, await repeat(input() as unknown as Repeat));
  } else {
    // GET /delay/<ms>...: the echo after that many milliseconds (a request in flight for drains).
    const delay = /^\/delay\/(\d{1,6})(?:[/?]|$)/.exec(path);
    if (delay !== null) await new Promise((done) => setTimeout(done, Number(delay[1])));
    reply(res, 200, {
      pod: POD,
      version: process.env.ECHO_VERSION ?? null,
      method: req.method,
      path,
      httpVersion: req.httpVersion,
      headers: req.headers,
      body,
      peer: { address: req.socket.remoteAddress, port: req.socket.remotePort },
      local: { address: req.socket.localAddress, port: req.socket.localPort },
    });
  }
}

function startHttp(port: number): http.Server {
  const server = http.createServer((req, res) => {
    handle(req, res).catch((err: unknown) => reply(res, 400, errorOf(err)));
  });
  server.on('upgrade', (req: http.IncomingMessage, socket: net.Socket, head: Buffer) => {
    socket.write(
      `HTTP/1.1 101 Switching Protocols\r\nUpgrade: ${req.headers.upgrade ?? 'echo'}\r\nConnection: Upgrade\r\n\r\n`,
    );
    const upper = (d: Buffer): boolean => socket.write(d.toString().toUpperCase());
    if (head.length > 0) upper(head);
    socket.on('data', upper);
    socket.on('end', () => socket.end());
    socket.on('error', () => socket.destroy());
  });
  server.listen(port, '0.0.0.0');
  return server;
}

/** A server-first protocol: the server speaks first, as SMTP or MySQL do. */
function startGreeter(port: number): net.Server {
  const server = net.createServer((socket) => {
    socket.on('error', () => socket.destroy());
    socket.write(`220 ${POD} ready\r\n`);
    let buffered = '';
    socket.on('data', (d: Buffer) => {
      buffered += d.toString();
      let nl: number;
      while ((nl = buffered.indexOf('\n')) !== -1) {
        socket.write(`${buffered.slice(0, nl).toUpperCase()}\n`);
        buffered = buffered.slice(nl + 1);
      }
    });
  });
  server.listen(port, '0.0.0.0');
  return server;
}

function startTcp(): void {
  tcpServer = net.createServer({ allowHalfOpen: true }, (socket) => {
    socket.on('error', () => socket.destroy());
    socket.pipe(socket);
  });
  tcpServer.listen(env('ECHO_TCP_PORT', 9000), '0.0.0.0');
}

async function main(): Promise<void> {
  const checkUrl = process.env.ECHO_STARTUP_CHECK_URL;
  if (checkUrl !== undefined && checkUrl !== '') {
    startup = await httpCall({ url: checkUrl, timeoutMs: 2_000 }).then(
      (a) => ({ url: checkUrl, status: a.status, body: a.body }),
      (err: unknown) => ({ url: checkUrl, ...errorOf(err) }),
    );
  }
  const servers: net.Server[] = [
    startHttp(env('ECHO_HTTP_PORT', 8080)),
    startHttp(env('ECHO_CONTROL_PORT', 8081)),
  ];
  startTcp();
  servers.push(startGreeter(env('ECHO_GREET_PORT', 2525)));
  startGrpc(env('ECHO_GRPC_PORT', 50051));
  process.stdout.write(`${JSON.stringify({ msg: 'echo started', pod: POD, startup })}\n`);
  process.on('SIGTERM', () => {
    process.stdout.write(`${JSON.stringify({ msg: 'SIGTERM: exiting', pod: POD })}\n`);
    for (const s of servers) s.close();
    tcpServer?.close();
    process.exit(0);
  });
}

void main();
