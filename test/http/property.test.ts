// Property-based tests (fast-check): random bodies, mutated reviews and random Pods never get a
// 5xx or crash the server; every 200 echoes the uid; every patch applies cleanly to the object.
// Once with the injector on the event loop, once in a real inject thread.

import fc from 'fast-check';
import { applyPatch, type Operation } from 'fast-json-patch';
import type { FastifyInstance } from 'fastify';
import { join } from 'node:path';
import { InjectThreads } from '../../src/adapters/inject-threads';
import type { PodInjector } from '../../src/admission';
import { validateConfig } from '../../src/config/validate';
import { buildDist } from '../integration/serve-helpers';
import { ANNOTATION, INJECT_LABEL, STATUS_ANNOTATION } from '../../src/constants';
import { review, type Json } from '../unit/admission/builders';
import { buildTestWebhookApp, JSON_HEADERS } from './helpers';
import { injectorUnderTest, TEST_VERSION } from './injector-under-test';

const RUNS = Number(process.env.FC_RUNS ?? 200);

interface Answer {
  response?: {
    uid?: unknown;
    allowed?: unknown;
    patch?: unknown;
    patchType?: unknown;
    status?: { code?: unknown; message?: unknown };
  };
}

async function post(app: FastifyInstance, payload: string) {
  return app.inject({ method: 'POST', url: '/inject', headers: JSON_HEADERS, payload });
}

/** What must hold of every answer to `body`. */
function checkAnswer(body: unknown, statusCode: number, answer: unknown): void {
  expect(statusCode).toBeLessThan(500);
  expect([200, 400, 413]).toContain(statusCode);
  if (statusCode !== 200) {
    expect(typeof (answer as { code?: unknown }).code).toBe('string');
    return;
  }
  const request = (body as { request: { uid: string; object: unknown } }).request;
  const { response } = answer as Answer;
  expect(response?.uid).toBe(request.uid);
  expect(typeof response?.allowed).toBe('boolean');
  if (response?.allowed === false) {
    expect(typeof response.status?.code).toBe('number');
    expect(typeof response.status?.message).toBe('string');
    expect(response.patch).toBeUndefined();
  }
  if (response?.patch !== undefined) {
    expect(response.patchType).toBe('JSONPatch');
    const ops = JSON.parse(
      Buffer.from(response.patch as string, 'base64').toString('utf8'),
    ) as Operation[];
    expect(ops.length).toBeGreaterThan(0);
    // validate = true: every operation must apply to the object exactly as it was sent.
    expect(() => applyPatch(structuredClone(request.object), ops, true, true)).not.toThrow();
  }
}

/** True when a JSON value holds a key secure-json-parse refuses (as Fastify's parser does). */
function hasPrototypeKey(value: unknown): boolean {
  if (typeof value !== 'object' || value === null) return false;
  const record = value as Record<string, unknown>;
  for (const key of Object.keys(record)) {
    const child = record[key];
    if (key === '__proto__') return true;
    if (key === 'constructor' && typeof child === 'object' && child !== null) {
      if (Object.prototype.hasOwnProperty.call(child, 'prototype')) return true;
    }
    if (hasPrototypeKey(child)) return true;
  }
  return false;
}

/** Every path in a JSON value, as key lists (to pick one to mutate). */
function paths(
  value: unknown,
  prefix: (string | number)[] = [],
  out: (string | number)[][] = [],
): (string | number)[][] {
  out.push(prefix);
  if (prefix.length > 6) return out;
  if (Array.isArray(value)) value.forEach((v, i) => paths(v, [...prefix, i], out));
  else if (value !== null && typeof value === 'object') {
    for (const [k, v] of Object.entries(value)) paths(v, [...prefix, k], out);
  }
  return out;
}

type Mutation = { index: number; action: 'delete' | 'replace'; value: unknown };

function applyMutation(doc: unknown, m: Mutation): unknown {
  const all = paths(doc);
  const path = all[m.index % all.length] ?? [];
  if (path.length === 0) return m.action === 'replace' ? m.value : doc;
  const copy = structuredClone(doc) as Record<string | number, unknown>;
  let parent: Record<string | number, unknown> = copy;
  for (const key of path.slice(0, -1)) parent = parent[key] as Record<string | number, unknown>;
  const last = path[path.length - 1] as string | number;
  if (m.action === 'delete') {
    if (Array.isArray(parent)) parent.splice(Number(last), 1);
    else delete parent[last];
  } else parent[last] = m.value;
  return copy;
}

const interestingValue = fc.oneof(
  fc.jsonValue({ maxDepth: 2 }),
  fc.constantFrom(
    null,
    '',
    [],
    {},
    0,
    -1,
    1e308,
    'x'.repeat(5000),
    '__proto__',
    'CREATE',
    'Pod',
    true,
  ),
);
const mutation: fc.Arbitrary<Mutation> = fc.record({
  index: fc.nat(),
  action: fc.constantFrom('delete' as const, 'replace' as const),
  value: interestingValue,
});

const annotationValue = fc.oneof(
  fc.string({ maxLength: 40 }),
  fc.constantFrom(
    '*',
    '80,443',
    '15020',
    '0',
    '65536',
    '10.0.0.0/8, fd00::/8',
    '1.2.3.4/33',
    'true',
    'false',
    'maybe',
  ),
  fc.constantFrom(
    '100m',
    '128Mi',
    '1Gi',
    '-1',
    'debug',
    'off',
    'loud',
    'registry.example/proxy:2',
    ' , ,',
  ),
);
const annotations = fc.dictionary(
  fc.oneof(
    fc.constantFrom(...Object.values(ANNOTATION), STATUS_ANNOTATION, 'example.com/other'),
    fc.string({ maxLength: 20 }),
  ),
  annotationValue,
  { maxKeys: 6 },
);
const container = fc.record(
  {
    name: fc.oneof(
      fc.constantFrom('app', 'sidecar', 'mooring-proxy', 'mooring-init'),
      fc.string({ maxLength: 12 }),
    ),
    image: fc.string({ maxLength: 30 }),
    ports: fc.array(
      fc.record({
        containerPort: fc.integer({ min: -5, max: 70000 }),
        protocol: fc.constantFrom('TCP', 'UDP'),
      }),
      { maxLength: 3 },
    ),
    readinessProbe: fc.option(
      fc.oneof(
        fc.record({
          httpGet: fc.record({
            path: fc.string({ maxLength: 10 }),
            port: fc.oneof(fc.integer({ min: 0, max: 70000 }), fc.string({ maxLength: 8 })),
          }),
        }),
        fc.record({ tcpSocket: fc.record({ port: fc.integer({ min: 0, max: 70000 }) }) }),
        fc.record({ grpc: fc.record({ port: fc.integer({ min: 0, max: 70000 }) }) }),
      ),
      { nil: undefined },
    ),
  },
  { requiredKeys: ['name'] },
);
const randomPod: fc.Arbitrary<Json> = fc.record(
  {
    apiVersion: fc.constant('v1'),
    kind: fc.constant('Pod'),
    metadata: fc.record(
      {
        name: fc.string({ maxLength: 20 }),
        generateName: fc.string({ maxLength: 20 }),
        namespace: fc.constantFrom('shop', 'kube-system', ''),
        labels: fc.dictionary(
          fc.constantFrom(INJECT_LABEL, 'app'),
          fc.constantFrom('true', 'false', 'web', ''),
        ),
        annotations,
      },
      { requiredKeys: [] },
    ),
    spec: fc.record(
      {
        containers: fc.array(container, { maxLength: 3 }),
        initContainers: fc.array(container, { maxLength: 2 }),
        hostNetwork: fc.boolean(),
        serviceAccountName: fc.string({ maxLength: 10 }),
        volumes: fc.array(
          fc.record({ name: fc.constantFrom('data', 'mooring-certs', 'mooring-token') }),
          { maxLength: 2 },
        ),
      },
      { requiredKeys: ['containers'] },
    ),
  },
  { requiredKeys: ['metadata', 'spec'] },
);

/** The app under test: the real injector on the event loop, or in a real inject thread. */
type Setup = () => Promise<{
  app: FastifyInstance;
  close: () => Promise<void>;
  /** Inject threads replaced so far: a dead thread would hide behind internal-error answers. */
  restarts: () => number;
}>;

const onTheEventLoop: Setup = () => {
  const { app } = buildTestWebhookApp({ injectPod: injectorUnderTest() });
  return Promise.resolve({ app, close: () => app.close(), restarts: () => 0 });
};

// The compiled thread script (dist/), with the configuration injectorUnderTest() binds.
const inAnInjectThread: Setup = async () => {
  buildDist();
  let restarts = 0;
  const threads = new InjectThreads({
    size: 1,
    script: join(__dirname, '..', '..', 'dist', 'adapters', 'inject-thread.js'),
    workerData: { config: validateConfig({}), version: TEST_VERSION },
    logger: { info: () => undefined, error: () => undefined },
    onRestart: () => {
      restarts += 1;
    },
  });
  await threads.start();
  const unused: PodInjector = () => {
    throw new Error('the event loop ran the injector');
  };
  const { app } = buildTestWebhookApp({ injectPod: unused, injectThreads: threads });
  return {
    app,
    close: async () => {
      await app.close();
      await threads.close();
    },
    restarts: () => restarts,
  };
};

describe.each<[string, Setup]>([
  ['the real injector', onTheEventLoop],
  ['the real injector in an inject thread', inAnInjectThread],
])('POST /inject properties with %s', (_name, setup) => {
  let app: FastifyInstance;
  let close: () => Promise<void>;
  let restarts: () => number;
  beforeAll(async () => {
    ({ app, close, restarts } = await setup());
  }, 120_000);
  afterAll(() => close());

  it('never answers 5xx to arbitrary JSON', async () => {
    await fc.assert(
      fc.asyncProperty(fc.jsonValue({ maxDepth: 4 }), async (value) => {
        const res = await post(app, JSON.stringify(value));
        expect(res.statusCode).toBeLessThan(500);
      }),
      { numRuns: RUNS },
    );
  });

  it('never answers 5xx to arbitrary strings', async () => {
    await fc.assert(
      fc.asyncProperty(fc.string({ maxLength: 200 }), async (text) => {
        const res = await post(app, text);
        expect(res.statusCode).toBeLessThan(500);
      }),
      { numRuns: RUNS },
    );
  });

  it('answers mutated reviews with 4xx or a 200 that echoes the uid and carries a clean patch', async () => {
    await fc.assert(
      fc.asyncProperty(fc.array(mutation, { minLength: 1, maxLength: 3 }), async (mutations) => {
        const body = mutations.reduce<unknown>((doc, m) => applyMutation(doc, m), review());
        const res = await post(app, JSON.stringify(body));
        checkAnswer(body, res.statusCode, res.json());
      }),
      { numRuns: RUNS },
    );
  });

  it('answers reviews of random Pods with a 200 that echoes the uid and carries a clean patch', async () => {
    await fc.assert(
      fc.asyncProperty(randomPod, fc.boolean(), async (object, dryRun) => {
        const body = review((r) => ({
          ...r,
          request: { ...(r.request as Json), object, dryRun },
        }));
        const res = await post(app, JSON.stringify(body));
        if (hasPrototypeKey(body)) {
          // Refused before anything reads it, as Fastify's own parser does (never a valid
          // Kubernetes key: names start with a letter or digit).
          expect(res.statusCode).toBe(400);
          expect(res.json<{ message: string }>().message).toMatch(/__proto__/);
          return;
        }
        expect(res.statusCode).toBe(200);
        checkAnswer(body, res.statusCode, res.json());
      }),
      { numRuns: RUNS },
    );
  });

  it('refuses a review whose Pod holds a "__proto__" key with 400, whatever its place', async () => {
    const poisoned = JSON.stringify(review()).replace(
      '"metadata":{',
      '"metadata":{"__proto__":{"polluted":true},',
    );
    expect(poisoned).toContain('__proto__');
    const res = await post(app, poisoned);
    expect(res.statusCode).toBe(400);
    expect(res.json()).toEqual({
      code: 'ADM_ERR_BODY',
      message: 'the body holds a "__proto__" or "constructor.prototype" key',
    });
    expect(({} as Record<string, unknown>).polluted).toBeUndefined();
  });

  it('still serves after all of that', async () => {
    const res = await post(app, JSON.stringify(review()));
    expect(res.statusCode).toBe(200);
    expect(res.json<Answer>().response?.allowed).toBe(true);
    expect(restarts()).toBe(0);
  });
});

describe('POST /inject content types', () => {
  // The stress run sent `application/json; charset=utf-16` and had the body read as UTF-8.
  const { app } = buildTestWebhookApp({ injectPod: injectorUnderTest() });
  afterAll(() => app.close());

  const token = fc.stringMatching(/^[a-z0-9-]{0,10}$/);
  const parameter = fc.record({
    name: fc.oneof(fc.constantFrom('charset', 'Charset', 'CHARSET', 'foo'), token),
    value: fc.oneof(
      fc.constantFrom('utf-8', 'UTF-8', '"utf-8"', 'utf8', 'utf-16', '"UTF-16LE"', 'iso-8859-1'),
      fc.constantFrom('us-ascii', 'utf-32', 'latin1', ''),
      token,
    ),
  });
  const media = fc.oneof(
    fc.constantFrom('application/json', 'Application/JSON', ' application/json '),
    fc.constantFrom('text/plain', 'application/json-patch+json', 'application/jsonx'),
  );
  const utf8 = (value: string): boolean =>
    ['utf-8', 'utf8'].includes(value.replace(/"/g, '').toLowerCase());

  it('reads a review only when it is declared as JSON in UTF-8 (or with no charset), else 415', async () => {
    await fc.assert(
      fc.asyncProperty(media, fc.array(parameter, { maxLength: 3 }), async (type, params) => {
        const header = [type, ...params.map((p) => `${p.name}=${p.value}`)].join('; ');
        const json = type.trim().toLowerCase() === 'application/json';
        const charsets = params.filter((p) => p.name.toLowerCase() === 'charset');
        const accepted = json && charsets.every((p) => utf8(p.value));
        const res = await app.inject({
          method: 'POST',
          url: '/inject',
          headers: { 'content-type': header },
          payload: JSON.stringify(review()),
        });
        expect({ header, status: res.statusCode }).toEqual({
          header,
          status: accepted ? 200 : 415,
        });
        if (!accepted) expect(res.json<{ code: string }>().code).toBe('ADM_ERR_CONTENT_TYPE');
      }),
      { numRuns: RUNS, seed: 20261204 },
    );
  });
});
